"""Triton's failures in words a learner can act on: the error classes, each with its cause and fix.

`helpers.clients.triton` raises them around tritonclient's calls; the local model agent
(`helpers.local.agent.triton`) raises them around its own plain HTTP calls, without importing
tritonclient. Both build them here, so a refused load reads the same in a notebook and in a
TrainedModel's status.
"""
from __future__ import annotations

from helpers.core.errors import SetupError
from helpers.core.i18n import _


class TritonError(SetupError):
    """Triton could not be reached, or refused a request; the message carries Triton's own words."""

    triton_message: str = ""  # Triton's answer alone, when it gave one


class TritonUnreachable(TritonError):
    """Nothing answers at the URL (refused connection, unknown host, gRPC UNAVAILABLE)."""


class TritonTimeout(TritonError):
    """Triton took the connection but gave no answer in time."""


class ModelLoadError(TritonError):
    """Triton failed to load a model (`POST /v2/repository/models/<m>/load`)."""


class InferenceInputError(TritonError):
    """An input does not match the model's metadata (name, datatype or shape); found before sending."""


def split_url(url: str) -> tuple[str, bool]:
    """`http://h:p` or `h:p` -> ("h:p", ssl)."""
    url = url.strip().rstrip("/")
    for scheme, ssl in (("http://", False), ("https://", True)):
        if url.startswith(scheme):
            return url[len(scheme):], ssl
    if "://" in url:
        raise ValueError(f"{url!r}: Triton URLs start with http:// or https://, or have no scheme")
    return url, False


def fix_server() -> str:
    return _("check that Triton runs and the URL is right: on the local target `python -m helpers.local status`, "
             "on a cluster `kubectl get inferenceservice -n <namespace>`")


def fix_slow() -> str:
    return _("Triton may still be busy (a big model loads slowly) or be stuck: read the server's log, then retry "
             "with a longer timeout")


def fix_for(message: str) -> str:
    lowered = message.lower()
    if "unknown model" in lowered or "is not found" in lowered or "unavailable model" in lowered:
        return (_("load the model first (create its TrainedModel, or `load_model`); `repository_index(url)` lists what "
                  "Triton knows and why a model is not ready"))
    return _("read Triton's message above; the server's log has the details")


def without_stack_trace(message: str) -> str:
    """Triton's message up to the C++ stack trace libtorch appends (`Exception raised from ...`).

    Triton's pytorch backend passes libtorch's error on whole, ~30 frames of it; the server's
    log keeps them, the message a learner reads (and the TrainedModel's status) does not need them.
    """
    head, found, _trace = message.partition("\nException raised from")
    return f"{head.rstrip()} (libtorch's stack trace: in the server's log)" if found else message


def load_fix(model: str, message: str) -> str:
    if "PytorchStreamReader" in message or "not a loadable TorchScript file" in message:
        # Triton's pytorch backend words it as libtorch does; the Python-based one says so itself.
        return (_("the version folder's model.pt of {model!r} is not a loadable TorchScript file: save the model with "
                  "torch.jit.save (torch.save of a module or a state_dict is not TorchScript)").format(model=model))
    if "is not a frozen TensorFlow GraphDef" in message or ("as binary proto" in message and ".graphdef" in message):
        # Triton's tensorflow backend words it as TensorFlow does; the Python-based one says so itself.
        return (_("the version folder's model.graphdef of {model!r} is not a frozen TensorFlow GraphDef: write "
                  "graph.as_graph_def().SerializeToString() of a graph whose variables are constants "
                  "(tf.compat.v1.graph_util.convert_variables_to_constants)").format(model=model))
    if "directory name must equal model name" in message or "unexpected directory name" in message:
        return (_("the config.pbtxt `name` must equal the folder (the TrainedModel's name, {model!r}), or be left out").format(
                    model=model))
    if "failed to poll from model repository" in message:
        # Triton 2.51 keeps the reason ("unexpected directory name ... directory name must equal
        # model name", or a config parse error) in its log and answers only this.
        return (_("Triton could not read the folder's config.pbtxt. Most often its `name` differs from the folder (the "
                  "TrainedModel's name, {model!r}): leave the name out or make it equal. Otherwise the file does not parse. "
                  "The server's log (`Poll failed for model directory`) says which").format(model=model))
    if "no version" in message.lower() or "at least one version" in message.lower():
        return _("put the model file in a numbered version folder (e.g. 1/model.pt) next to config.pbtxt")
    return _("check the model folder: config.pbtxt and the version folder's file (`repository_index` shows each model's "
              "state and reason; the server's log has the details)")


def unreachable(url: str, exc: BaseException) -> TritonUnreachable:
    """Nothing answered at `url` (refused connection, unknown host, reset)."""
    return TritonUnreachable(_("cannot reach Triton at {url} ({kind}: {exc})").format(
        url=url, kind=type(exc).__name__, exc=exc), fix_server())


def timed_out(url: str, exc: BaseException) -> TritonTimeout:
    return TritonTimeout(_("Triton at {url} gave no answer in time ({exc})").format(url=url, exc=exc), fix_slow())


def answered(url: str, message: str) -> TritonError:
    """Triton answered with an error: `message` is its own words, kept whole."""
    error = TritonError(_("Triton at {url} answered: {message}").format(url=url, message=message), fix_for(message))
    error.triton_message = message
    return error


def load_refused(model: str, message: str) -> ModelLoadError:
    """Triton answered a load of `model` with `message` (its own words; libtorch's stack trace left out)."""
    message = without_stack_trace(message)
    error = ModelLoadError(_("Triton could not load model {model!r}: {message}").format(model=model, message=message),
                           load_fix(model, message))
    error.triton_message = message
    return error


def load_timed_out(model: str, timeout: float) -> ModelLoadError:
    return ModelLoadError(
        _("Triton did not finish loading model {model!r} within {timeout:.0f}s").format(model=model, timeout=timeout),
        _("read the server's log: a big model may need a longer timeout; a python backend stub that cannot start "
          "(missing library, wrong Python) makes Triton wait for it forever"))
