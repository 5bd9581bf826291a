"""Triton Python-based backend for `platform: "pytorch_libtorch"`: TorchScript on CPU with torch.

Triton runs this file for every model whose config names the `pytorch` backend (the
`pytorch_libtorch` platform maps to it) when `<backend-dir>/pytorch/model.py` exists and no
`libtriton_pytorch.so` does. So the guide's unmodified `cifar10` folder (config.pbtxt +
1/model.pt) serves on a laptop. Inputs are fed positionally in config order (INPUT__0,
INPUT__1, ...), as Triton's libtorch backend does; outputs are matched the same way.
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        name = args["model_name"]
        filename = config.get("default_model_filename") or "model.pt"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(
                f"model '{name}': TorchScript file {path} is missing; "
                f"put the model's {filename} in version folder {args['model_version']}/")

        import torch

        # Two cores are shared by Triton and every model: one math thread per model instance.
        torch.set_num_threads(int(os.environ.get("MMS_TORCH_THREADS", "1")))
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass  # only settable once per process, before any parallel work
        try:
            self.model = torch.jit.load(path, map_location="cpu")
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a bad file
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise pb_utils.TritonModelException(
                f"model '{name}': {path} is not a loadable TorchScript file "
                f"({type(exc).__name__}: {first_line}); save it with torch.jit.save") from None
        self.model.eval()
        self.torch = torch
        self.inputs = [(i["name"], pb_utils.triton_string_to_numpy(i["data_type"])) for i in config["input"]]
        self.outputs = [(o["name"], pb_utils.triton_string_to_numpy(o["data_type"])) for o in config["output"]]

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                responses.append(pb_utils.InferenceResponse(output_tensors=self._run(request)))
            except Exception as exc:  # noqa: BLE001 - one bad request must not fail the others
                responses.append(pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}")))
        return responses

    def _run(self, request):
        torch = self.torch
        args = []
        for name, dtype in self.inputs:
            tensor = pb_utils.get_input_tensor_by_name(request, name)
            if tensor is None:
                raise ValueError(f"input {name} is missing")
            # A copy: Triton's buffers are read-only and torch.from_numpy warns on those.
            args.append(torch.tensor(np.asarray(tensor.as_numpy(), dtype=dtype)))
        with torch.inference_mode():
            result = self.model(*args)
        if isinstance(result, torch.Tensor):
            result = (result,)
        elif isinstance(result, dict):
            result = tuple(result[name] for name, _ in self.outputs)
        if len(result) < len(self.outputs):
            raise ValueError(f"the model returned {len(result)} tensors, its config declares {len(self.outputs)}")
        return [pb_utils.Tensor(name, value.detach().cpu().numpy().astype(dtype, copy=False))
                for (name, dtype), value in zip(self.outputs, result)]

    def finalize(self):
        self.model = None
