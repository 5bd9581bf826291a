"""Triton Python-based backend for `platform: "tensorflow_graphdef"`: a frozen GraphDef on CPU.

Triton runs this file for every model whose config names the `tensorflow` backend (the
`tensorflow_graphdef` platform maps to it) when `<backend-dir>/tensorflow/model.py` exists and
no `libtriton_tensorflow.so` does. So the guide's unmodified `inception_graphdef` folder
(config.pbtxt + labels + 1/model.graphdef) serves on a laptop. Config input and output names
are graph tensor names: `input` means the tensor `input:0`, as in Triton's TF backend.
"""
import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils


def _tensor_name(name):
    return name if ":" in name else f"{name}:0"


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        name = args["model_name"]
        filename = config.get("default_model_filename") or "model.graphdef"
        path = os.path.join(args["model_repository"], args["model_version"], filename)
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(
                f"model '{name}': frozen GraphDef {path} is missing; "
                f"put the model's {filename} in version folder {args['model_version']}/")

        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ start-up chatter
        import tensorflow as tf

        graph_def = tf.compat.v1.GraphDef()
        try:
            with open(path, "rb") as f:
                graph_def.ParseFromString(f.read())
            graph = tf.Graph()
            with graph.as_default():
                tf.compat.v1.import_graph_def(graph_def, name="")
        except Exception as exc:  # noqa: BLE001 - protobuf and TF raise many types for a bad file
            raise pb_utils.TritonModelException(
                f"model '{name}': {path} is not a frozen TensorFlow GraphDef "
                f"({type(exc).__name__}: {str(exc).strip()[:200]})") from None

        self.inputs, self.outputs = [], []
        for entries, target in ((config["input"], self.inputs), (config["output"], self.outputs)):
            for entry in entries:
                try:
                    tensor = graph.get_tensor_by_name(_tensor_name(entry["name"]))
                except (KeyError, ValueError):
                    raise pb_utils.TritonModelException(
                        f"model '{name}': config.pbtxt names tensor {entry['name']!r}, which graph "
                        f"{path} does not have") from None
                target.append((entry["name"], tensor, pb_utils.triton_string_to_numpy(entry["data_type"])))

        # Two cores are shared by Triton and every model: keep TF's thread pools small.
        threads = int(os.environ.get("MMS_TF_THREADS", "1"))
        session_config = tf.compat.v1.ConfigProto(
            intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
        self.session = tf.compat.v1.Session(graph=graph, config=session_config)

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
        feed = {}
        for name, tensor, dtype in self.inputs:
            given = pb_utils.get_input_tensor_by_name(request, name)
            if given is None:
                raise ValueError(f"input {name} is missing")
            feed[tensor] = np.asarray(given.as_numpy(), dtype=dtype)
        values = self.session.run([tensor for _, tensor, _ in self.outputs], feed_dict=feed)
        return [pb_utils.Tensor(name, np.asarray(value).astype(dtype, copy=False))
                for (name, _, dtype), value in zip(self.outputs, values)]

    def finalize(self):
        session, self.session = getattr(self, "session", None), None
        if session is not None:
            session.close()
