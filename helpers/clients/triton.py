"""Talk to Triton with its own client library: health, metadata, repository load/unload, inference.

The same calls work against KServe's Triton pod and the local one. Every call takes `headers`
for the guide's `curl -H "Host: ${SERVICE_HOSTNAME}"` (reaching an InferenceService through
the ingress). URLs may be given as `http://host:port` or `host:port`. Explained in notebooks
02_server (health, metadata), 03_cifar10 (load, infer) and 04_inception (classification).

`infer` and `classify` keep, per thread, one client per (URL, protocol) and the model's metadata
per (URL, model, protocol, headers), as a long-lived tritonclient would, so a notebook loop costs
what raw tritonclient costs; inputs are still checked against that metadata before sending. Both
are dropped when Triton answers an error (the model may have been reloaded with other inputs) or
the connection fails (a restarted server closed it): the call then fetches them again and retries
once. `forget_clients()` closes them (an open keep-alive connection makes Triton's shutdown wait).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import sys
import threading
from typing import Any, Iterator, Literal, Mapping, Optional, Sequence, Union

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from helpers.clients.triton_errors import (
    InferenceInputError,
    ModelLoadError,  # noqa: F401 - raised by load_model (through load_refused), caught as triton.ModelLoadError
    TritonError,
    TritonTimeout,
    TritonUnreachable,
    answered,
    fix_for,
    fix_server,
    fix_slow,
    load_refused,
    load_timed_out,
    split_url,
    timed_out,
    unreachable,
)
from helpers.core.i18n import _
from helpers.core.wait import poll_until

Protocol = Literal["http", "grpc"]
Headers = Optional[Mapping[str, str]]
Inputs = Union[Mapping[str, np.ndarray], np.ndarray]


def _grpcclient() -> Any:
    """`tritonclient.grpc`, imported on first use: HTTP is the default, and every kernel and model agent
    imports this module."""
    import tritonclient.grpc

    return tritonclient.grpc


@contextlib.contextmanager
def _http(url: str, timeout: float = 60.0) -> Iterator[httpclient.InferenceServerClient]:
    host, ssl = split_url(url)
    client = httpclient.InferenceServerClient(host, ssl=ssl, connection_timeout=5.0, network_timeout=timeout)
    try:
        with _errors(url):
            yield client
    finally:
        client.close()


class _Reused(threading.local):
    """This thread's clients and model metadata (tritonclient's HTTP client is not thread-safe)."""

    def __init__(self) -> None:
        self.clients: dict[tuple, Any] = {}
        self.metadata: dict[tuple, dict] = {}


_reused = _Reused()


def _client(address: str, protocol: Protocol, timeout: float) -> Any:
    key = (address, protocol, timeout)
    client = _reused.clients.get(key)
    if client is None:
        host, ssl = split_url(address)
        client = (_grpcclient().InferenceServerClient(host, ssl=ssl) if protocol == "grpc" else
                  httpclient.InferenceServerClient(host, ssl=ssl, connection_timeout=5.0, network_timeout=timeout))
        _reused.clients[key] = client
    return client


def forget_clients(url: Optional[str] = None) -> None:
    """Close this thread's reused clients (of `url`, or all) and forget their model metadata."""
    for key in [k for k in _reused.clients if url is None or k[0] == url]:
        client = _reused.clients.pop(key)
        with contextlib.suppress(Exception):
            client.close()
    for key in [k for k in _reused.metadata if url is None or k[0] == url]:
        del _reused.metadata[key]


# A gRPC client left to the garbage collector is closed after the grpc module is torn down at exit,
# which prints an AttributeError traceback; close the main thread's clients first.
atexit.register(forget_clients)


def _headers_key(headers: Headers) -> tuple:
    return tuple(sorted((headers or {}).items()))


def _reused_metadata(address: str, model: str, protocol: Protocol, headers: Headers) -> tuple[dict, bool]:
    """The model's metadata and whether it came from the cache."""
    key = (address, model, protocol, _headers_key(headers))
    found = _reused.metadata.get(key)
    if found is not None:
        return found, True
    client = _client(address, protocol, 60.0)
    with _errors(address):
        if protocol == "grpc":
            found = client.get_model_metadata(model, headers=dict(headers) if headers else None, as_json=True)
            # The gRPC JSON form spells int64 shapes as strings.
            for entry in found.get("inputs", []) + found.get("outputs", []):
                entry["shape"] = [int(d) for d in entry.get("shape", [])]
        else:
            found = client.get_model_metadata(model, headers=dict(headers) if headers else None)
    _reused.metadata[key] = found
    return found, False


def _with_reuse(address: str, model: str, protocol: Protocol, headers: Headers, timeout: float,
                send: Any) -> Any:
    """Call `send(client, metadata)` with reused ones; on an error, forget them and try once more.

    The retry covers a restarted server (its keep-alive connection is dead: TritonUnreachable)
    and a reloaded model (Triton refuses the request built from old metadata). A second failure,
    or one with fresh metadata, is raised as it is; a timeout is never retried.
    """
    key = (address, model, protocol, _headers_key(headers))
    for attempt in (1, 2):
        metadata, cached = _reused_metadata(address, model, protocol, headers)
        client = _client(address, protocol, timeout)
        try:
            with _errors(address):
                return send(client, metadata)
        except InferenceInputError:
            _reused.metadata.pop(key, None)  # checked against cached metadata: check against fresh once
            if attempt == 2 or not cached:
                if not cached:
                    _reused.metadata[key] = metadata  # fresh, and still valid: keep it
                raise
        except (TritonUnreachable, TritonTimeout):
            forget_clients(address)  # the connection is gone or stuck
            if attempt == 2 or not cached or isinstance(sys.exc_info()[1], TritonTimeout):
                raise
        except TritonError:
            _reused.metadata.pop(key, None)  # 4xx/5xx: the model may have changed under us
            if attempt == 2 or not cached:
                raise
    raise AssertionError("unreachable")


@contextlib.contextmanager
def _errors(url: str) -> Iterator[None]:
    """Connection failures and Triton's refusals as TritonError subclasses; Triton's message is kept whole."""
    try:
        yield
    except InferenceServerException as exc:
        message = exc.message() or str(exc)
        status = str(exc.status())
        if "UNAVAILABLE" in status or "failed to connect" in message.lower():
            raise TritonUnreachable(_("cannot reach Triton at {url}: {message}").format(url=url, message=message),
                                    fix_server()) from None
        if "DEADLINE_EXCEEDED" in status:
            raise TritonTimeout(_("Triton at {url} gave no answer in time ({message})").format(url=url, message=message),
                                fix_slow()) from None
        raise answered(url, message) from None
    except TimeoutError as exc:
        raise timed_out(url, exc) from None
    except OSError as exc:  # ConnectionRefusedError, unknown host, reset
        raise unreachable(url, exc) from None


def server_metadata(url: str, headers: Headers = None) -> dict:
    """What `GET /v2` returns: name, version, extensions (notebook 02_server)."""
    with _http(url) as client:
        return client.get_server_metadata(headers=headers)


def server_ready(url: str, headers: Headers = None) -> bool:
    """`GET /v2/health/ready` is 200; False also when Triton cannot be reached (02_server)."""
    try:
        with _http(url, timeout=10) as client:
            return bool(client.is_server_ready(headers=headers))
    except TritonError:
        return False


def model_ready(url: str, model: str, headers: Headers = None, version: str = "") -> bool:
    """`GET /v2/models/<model>[/versions/<version>]/ready` is 200, the guide's readiness check (03_cifar10)."""
    with _http(url, timeout=10) as client:
        return bool(client.is_model_ready(model, model_version=version, headers=headers))


def model_statistics(url: str, model: str = "", headers: Headers = None) -> list[dict]:
    """`GET /v2/models/<model>/stats` (every loaded model when `model` is ""): counts and times per version (05_lifecycle)."""
    with _http(url) as client:
        return list(client.get_inference_statistics(model, headers=headers).get("model_stats") or [])


def model_metadata(url: str, model: str, headers: Headers = None) -> dict:
    """`GET /v2/models/<model>`: inputs and outputs with names, datatypes and shapes (03_cifar10)."""
    with _http(url) as client:
        return client.get_model_metadata(model, headers=headers)


def model_config(url: str, model: str, headers: Headers = None) -> dict:
    """`GET /v2/models/<model>/config`: the config Triton uses, defaults filled in (03_cifar10)."""
    with _http(url) as client:
        return client.get_model_config(model, headers=headers)


def served_by(url: str, model: str, headers: Headers = None) -> str:
    """Which of Triton's backends serves `model`, read from its config, in words (03_cifar10, 04_inception).

    A Python-based backend shows as `runtime: model.py` (the model runs in a python stub process
    beside Triton); Triton's own backends run the model inside Triton's process.
    """
    config = model_config(url, model, headers)
    backend = config.get("backend") or config.get("platform") or "?"
    runtime = config.get("runtime") or ""
    if runtime.endswith(".py"):
        return _("a Python-based {backend} backend ({runtime}, run by a python stub process beside Triton)").format(
            backend=backend, runtime=runtime)
    return _("Triton's own {backend} backend ({runtime}, inside Triton's process)").format(
        backend=backend, runtime=runtime or f"libtriton_{backend}.so")


def repository_index(url: str, headers: Headers = None) -> list[dict]:
    """Every model folder Triton sees: name, version, state (READY, UNAVAILABLE...) and reason (03_cifar10)."""
    with _http(url) as client:
        found = client.get_model_repository_index(headers=headers)
    return [{"name": m.get("name", ""), "version": m.get("version", ""),
             "state": m.get("state", ""), "reason": m.get("reason", "")} for m in found]


def load_model(url: str, model: str, headers: Headers = None, timeout: float = 300.0) -> None:
    """Ask Triton to (re)load `model` from its repository, as the agent does (03_cifar10).

    Raises ModelLoadError with Triton's own message when the load fails.
    """
    try:
        with _http(url, timeout=timeout) as client:
            client.load_model(model, headers=headers)
    except TritonUnreachable:
        raise
    except TritonTimeout:
        raise load_timed_out(model, timeout) from None
    except TritonError as exc:
        raise load_refused(model, getattr(exc, "triton_message", exc.cause)) from None


def unload_model(url: str, model: str, headers: Headers = None, wait: bool = True, timeout: float = 60.0) -> None:
    """Ask Triton to unload `model`, as the agent does when its TrainedModel is deleted (03_cifar10).

    Triton answers as soon as the unload starts (state UNLOADING); with `wait` this returns once
    it has finished and the model's memory is free.
    """
    with _http(url) as client:
        client.unload_model(model, headers=headers)
    if wait:
        def finished() -> bool:
            states = [m["state"] for m in repository_index(url, headers) if m["name"] == model]
            return all(state not in ("READY", "UNLOADING", "LOADING") for state in states)

        poll_until(finished, _("Triton to finish unloading {model!r}").format(model=model), timeout=timeout)


def _shape_text(shape: Sequence[int]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def check_inputs(model: str, metadata: Mapping[str, Any], inputs: Inputs) -> dict[str, np.ndarray]:
    """Match `inputs` against the model's metadata and return them by name; raise InferenceInputError.

    A bare array is accepted for a one-input model. Shapes compare dimension by dimension, -1
    in the metadata (the batch dimension, or a variable one) matching any size.
    """
    expected = {entry["name"]: entry for entry in metadata.get("inputs", [])}
    if isinstance(inputs, np.ndarray):
        if len(expected) != 1:
            raise InferenceInputError(
                _("model {model!r} has {count} inputs ({names}), one array was given").format(
                    model=model, count=len(expected), names=', '.join(expected)),
                _("pass a dict {input name: array}"))
        inputs = {next(iter(expected)): inputs}
    unknown = [name for name in inputs if name not in expected]
    missing = [name for name in expected if name not in inputs]
    if unknown or missing:
        raise InferenceInputError(
            _("model {model!r} expects inputs {expected}; given {given}").format(
                model=model, expected=", ".join(expected), given=", ".join(inputs) or _("none"))
            + (" " + _("(unknown: {names})").format(names=", ".join(unknown)) if unknown else "")
            + (" " + _("(missing: {names})").format(names=", ".join(missing)) if missing else ""),
            _("name the inputs as the model's metadata does (`model_metadata(url, model)`)"))
    checked = {}
    for name, array in inputs.items():
        array = np.asarray(array)
        want = expected[name]
        want_dtype, want_shape = want["datatype"], [int(d) for d in want["shape"]]
        given_dtype = np_to_triton_dtype(array.dtype) or str(array.dtype)
        if given_dtype != want_dtype:
            numpy_name = _numpy_name(want_dtype)
            raise InferenceInputError(
                _("model {model!r} input {name} expects datatype {want_dtype} with shape {want_shape}; given "
                  "{given_dtype} ({dtype}) with shape {shape}").format(
                    model=model, name=name, want_dtype=want_dtype, want_shape=_shape_text(want_shape),
                    given_dtype=given_dtype, dtype=array.dtype, shape=_shape_text(array.shape)),
                _("convert it: array.astype(np.{numpy_name})").format(numpy_name=numpy_name) if numpy_name
                else _("send {want_dtype} data").format(want_dtype=want_dtype))
        fits = len(array.shape) == len(want_shape) and all(w in (-1, g) for w, g in zip(want_shape, array.shape))
        if not fits:
            hint = (_("add the batch dimension: array[np.newaxis]")
                    if len(array.shape) + 1 == len(want_shape)
                    and all(w in (-1, g) for w, g in zip(want_shape[1:], array.shape))
                    else _("reshape it to {want_shape} (-1: any size)").format(want_shape=_shape_text(want_shape)))
            raise InferenceInputError(
                _("model {model!r} input {name} expects shape {want_shape} (-1: any size) with datatype {want_dtype}; "
                  "given shape {shape} with datatype {given_dtype}").format(
                    model=model, name=name, want_shape=_shape_text(want_shape), want_dtype=want_dtype,
                    shape=_shape_text(array.shape), given_dtype=given_dtype),
                hint)
        checked[name] = array
    return checked


def _numpy_name(triton_dtype: str) -> str:
    names = {"BOOL": "bool_", "UINT8": "uint8", "UINT16": "uint16", "UINT32": "uint32", "UINT64": "uint64",
             "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64", "FP16": "float16",
             "FP32": "float32", "FP64": "float64", "BYTES": "object_"}
    return names.get(triton_dtype, "")


def infer(url: str, model: str, inputs: Inputs, outputs: Optional[Sequence[str]] = None,
          protocol: Protocol = "http", binary: bool = True, headers: Headers = None,
          grpc_url: Optional[str] = None, timeout: float = 60.0) -> dict[str, np.ndarray]:
    """Run one inference and return every requested output as a numpy array (03_cifar10).

    `protocol="http"` is `POST /v2/models/<model>/infer`; `binary=False` sends and receives
    JSON like the guide's `curl -d @cifar10.json`, `binary=True` (default) uses Triton's binary
    tensor extension. `protocol="grpc"` talks to `grpc_url` (Triton's gRPC port, 8001 by
    default), or to `url` if that has no http:// scheme. Inputs are checked against the
    model's metadata first, so a wrong shape or datatype is named before anything is sent.
    """
    if protocol not in ("http", "grpc"):
        raise ValueError(f"protocol must be 'http' or 'grpc', not {protocol!r}")
    address = _grpc_address(url, grpc_url) if protocol == "grpc" else url

    def send(client: Any, metadata: dict) -> dict[str, np.ndarray]:
        arrays = check_inputs(model, metadata, inputs)
        names = list(outputs) if outputs is not None else [o["name"] for o in metadata.get("outputs", [])]
        sent = dict(headers) if headers else None  # tritonclient adds its own entries to this dict
        if protocol == "grpc":
            request_inputs = [_grpc_input(name, array) for name, array in arrays.items()]
            requested = [_grpcclient().InferRequestedOutput(name) for name in names]
            result = client.infer(model, request_inputs, outputs=requested, headers=sent, client_timeout=timeout)
        else:
            request_inputs = [_http_input(name, array, binary) for name, array in arrays.items()]
            requested = [httpclient.InferRequestedOutput(name, binary_data=binary) for name in names]
            result = client.infer(model, request_inputs, outputs=requested, headers=sent)
        return {name: result.as_numpy(name) for name in names}

    return _with_reuse(address, model, protocol, headers, timeout, send)


def _grpc_address(url: str, grpc_url: Optional[str]) -> str:
    if grpc_url:
        return grpc_url
    if url.strip().startswith(("http://", "https://")):
        raise ValueError(f"{url} is an HTTP URL: give grpc_url=<host:port> of Triton's gRPC endpoint (8001 by default)")
    return url


def _http_input(name: str, array: np.ndarray, binary: bool) -> httpclient.InferInput:
    tensor = httpclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    if binary or tensor.datatype() in ("BYTES", "BF16") or not _FAST_JSON:
        tensor.set_data_from_numpy(array, binary_data=binary)
        return tensor
    # JSON numbers: tritonclient converts element by element (`[v.item() for v in a.flatten()]`,
    # ~0.9 ms for one 3x32x32 image); numpy's tolist() gives the same Python values ~30x faster.
    # tritonclient's own checks and fields come from its binary path, then the data is swapped in.
    tensor.set_data_from_numpy(array, binary_data=True)
    tensor._parameters.pop("binary_data_size", None)
    tensor._raw_data = None
    tensor._data = np.ascontiguousarray(array).ravel().tolist()
    return tensor


# The three InferInput fields the JSON fast path sets (tritonclient 2.x); without them, the slow path.
_FAST_JSON = all(hasattr(httpclient.InferInput("x", [1], "FP32"), f) for f in ("_parameters", "_raw_data", "_data"))


def _grpc_input(name: str, array: np.ndarray) -> Any:
    tensor = _grpcclient().InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor


def classify(url: str, model: str, array: Inputs, top_k: int = 5, output: Optional[str] = None,
             headers: Headers = None) -> list[list[tuple[float, int, str]]]:
    """Top-k classes per batch item as (score, index, label), labels from the model's label file (04_inception).

    Uses Triton's classification extension (`"parameters": {"classification": k}` on the
    output): Triton sorts the scores and looks the labels up in the file the output's
    `label_filename` names, so the client never reads the label file.
    """
    def send(client: httpclient.InferenceServerClient, metadata: dict) -> list[list[tuple[float, int, str]]]:
        arrays = check_inputs(model, metadata, array)
        name = output or metadata["outputs"][0]["name"]
        request_inputs = [_http_input(n, a, True) for n, a in arrays.items()]
        requested = [httpclient.InferRequestedOutput(name, binary_data=True, class_count=top_k)]
        sent = dict(headers) if headers else None  # tritonclient adds its own entries to this dict
        result = client.infer(model, request_inputs, outputs=requested, headers=sent)
        return parse_classification(result.as_numpy(name))

    return _with_reuse(url, model, "http", headers, 60.0, send)


def parse_classification(values: np.ndarray) -> list[list[tuple[float, int, str]]]:
    """Triton's classification strings `score:index[:label]` as (score, index, label) per batch item."""
    values = np.asarray(values, dtype=object)
    rows = values.reshape(1, -1) if values.ndim == 1 else values.reshape(values.shape[0], -1)
    parsed = []
    for row in rows:
        items = []
        for entry in row:
            text = entry.decode() if isinstance(entry, bytes) else str(entry)
            parts = text.split(":", 2)
            items.append((float(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else ""))
        parsed.append(items)
    return parsed


def infer_request_json(inputs: Mapping[str, np.ndarray], outputs: Optional[Sequence[str]] = None,
                       classes: int = 0) -> dict:
    """The JSON body of `POST /v2/models/<m>/infer` (KServe v2 protocol): what `curl -d @cifar10.json` sends.

    Built by tritonclient itself with binary data off, as `infer(..., binary=False)` sends it
    (03_cifar10). Without `outputs` the body has inputs only, like the guide's file: Triton
    then returns every output, as JSON. `classes` asks for those outputs through Triton's
    classification extension (`"classification": k`): the top k as `score:index:label` (04_inception).
    """
    request_inputs = [_http_input(name, np.asarray(array), False) for name, array in inputs.items()]
    requested = [httpclient.InferRequestedOutput(name, binary_data=False, class_count=classes)
                 for name in outputs or []]
    body, json_size = httpclient.InferenceServerClient.generate_request_body(request_inputs, requested or None)
    if json_size is not None:
        raise ValueError("tritonclient put binary data in a JSON-only request")
    request = json.loads(body)
    if not outputs:
        # tritonclient asks for binary outputs when none are named; curl users want JSON back.
        request.pop("parameters", None)
    return request


def infer_json(url: str, model: str, request: Mapping[str, Any], headers: Headers = None,
               timeout: float = 60.0) -> dict:
    """`POST /v2/models/<model>/infer` with a JSON body, as curl sends it; the response JSON as Triton wrote it.

    Triton's 400 (e.g. a wrong shape) becomes InferenceInputError with Triton's own message.
    """
    import requests

    try:
        answer = requests.post(f"{url}/v2/models/{model}/infer", json=dict(request), headers=dict(headers or {}),
                               timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        raise TritonUnreachable(_("Triton at {url} did not answer ({kind})").format(url=url, kind=type(exc).__name__),
                                _("check that the server is Ready (02_server) and the address is right")) from None
    if answer.status_code == 400:
        message = answer.json().get("error", answer.text) if answer.headers.get("content-type", "").startswith(
            "application/json") else answer.text
        raise InferenceInputError(_("Triton refused the request for {model}: {message}").format(model=model, message=message),
                                  fix_for(message))
    if answer.status_code != 200:
        raise TritonError(_("POST /v2/models/{model}/infer answered {status_code}: {text}").format(
                              model=model, status_code=answer.status_code, text=answer.text[:200]),
                          fix_for(answer.text))
    return answer.json()
