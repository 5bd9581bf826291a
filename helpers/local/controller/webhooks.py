"""KServe's admission webhooks (validating, and the InferenceService defaulter), served by the local
controller as the real ones are.

The apiserver calls them over TLS (a `ValidatingWebhookConfiguration` with the CA bundle) on
create and update, so `kubectl apply`, the `kubernetes` client and KServe's SDK all get the
release's own rejection, worded as it words it (`admission webhook "..." denied the request:
...`). The rules are pure functions of the profile and the objects; the server is a thin shell.
Rules, per release (pkg/apis/serving/v1alpha1/trainedmodel_webhook.go and
pkg/apis/serving/v1beta1/component.go, inference_service_validation.go):

- TrainedModel: name pattern, storageUri prefix (the agent's protocols), memory immutable;
- InferenceService: name pattern, exactly one predictor implementation, replicas, concurrency,
  logger mode, the predictor's storageUri scheme;
- the defaulter (inference_service_defaults.go, predictor_*.go): on KFServing 0.5.1 each framework
  container is named `kfserving-container`, gets cpu/memory requests and limits where it sets
  none, and its `runtimeVersion` from `inferenceservice-config`; on KServe 0.10+
  (`setPredictorModelDefaults`, `assign<Framework>Runtime`) a framework predictor is stored as
  `predictor.model` with `modelFormat: {name: <framework>}` (Triton, ONNX and HuggingFace also get
  `protocolVersion: v2`), and `ModelSpec.Default` adds nothing: no name, no resources.
"""
from __future__ import annotations

import base64
import copy
import json
import logging
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.utils import parse_quantity

from helpers.clients.k8s import not_found
from helpers.core.constants import KFSERVING_GROUP, api_group
from helpers.local.stack import controlplane, process
from helpers.local.stack.releases import Profile

log = logging.getLogger("controller")

ISVC_NAME_PATTERN = r"[a-z]([-a-z0-9]*[a-z0-9])?"
# The storage URIs an InferenceService component may name (SupportedStorageURIPrefixList).
ISVC_STORAGE_PREFIXES = ("gs://", "s3://", "pvc://", "file://", "https://", "http://")
# PredictorSpec's implementations, in the order of its struct fields (ExactlyOneErrorFor).
IMPLEMENTATIONS = {
    KFSERVING_GROUP: (("sklearn", "SKLearn"), ("xgboost", "XGBoost"), ("tensorflow", "Tensorflow"),
                      ("pytorch", "PyTorch"), ("triton", "Triton"), ("onnx", "ONNX"), ("pmml", "PMML"),
                      ("lightgbm", "LightGBM")),
    "serving.kserve.io": (("sklearn", "SKLearn"), ("xgboost", "XGBoost"), ("tensorflow", "Tensorflow"),
                          ("pytorch", "PyTorch"), ("triton", "Triton"), ("onnx", "ONNX"),
                          ("huggingface", "HuggingFace"), ("pmml", "PMML"), ("lightgbm", "LightGBM"),
                          ("paddle", "Paddle"), ("model", "Model")),
}
LOGGER_MODES = ("all", "request", "response")


def implementations(group: str, predictor: dict) -> list[str]:
    """The implementation fields a predictor sets, in PredictorSpec's order; `containers` for a custom one."""
    chosen = [key for key, _ in IMPLEMENTATIONS[group] if predictor.get(key) is not None]
    if predictor.get("containers"):
        chosen.append("containers")
    return chosen


def _webhook_server(profile: Profile) -> str:
    return "kfserving-webhook-server" if profile.group == KFSERVING_GROUP else "kserve-webhook-server"


def webhook_names(profile: Profile) -> dict[str, str]:
    """The webhook names the release registers, by resource (they show in every rejection)."""
    server = _webhook_server(profile)
    isvc = f"inferenceservice.{server}.v1beta1.validator" if profile.group == KFSERVING_GROUP \
        else f"inferenceservice.{server}.validator"
    return {"trainedmodels": f"trainedmodel.{server}.validator", "inferenceservices": isvc}


# --- the rules (pure) -----------------------------------------------------------------------
def review_trainedmodel(profile: Profile, tm: dict, old: Optional[dict] = None) -> Optional[str]:
    """The TrainedModel webhook's verdict: None to admit, else the release's message."""
    name = tm["metadata"].get("name", "")
    model = (tm.get("spec") or {}).get("model") or {}
    if not re.fullmatch(profile.tm_name_pattern, name):
        if profile.group == KFSERVING_GROUP:
            return (f'the Trained Model "{name}" is invalid: a Trained Model name must consist of lower case '
                    "alphanumeric characters or '-', and must start with alphabetical character. "
                    f"(e.g. \"my-name\" or \"abc-123\", regex used for validation is '^{profile.tm_name_pattern}$')")
        return (f'the Trained Model "{name}" is invalid: a Trained Model name must consist of alphanumeric '
                "characters, '_', or '-'. (e.g. \"my-Name\" or \"abc_123\", regex used for validation is "
                f"'^{profile.tm_name_pattern}$')")
    uri = str(model.get("storageUri", ""))
    if not uri.startswith(profile.tm_storage_prefixes):
        return (f'the Trained Model "{name}" storageUri field is invalid. The storage uri must start with one of '
                f'the prefixes: {", ".join(profile.tm_storage_prefixes)}. (the storage uri given is "{uri}")')
    if old is not None and not (profile.group != KFSERVING_GROUP and tm["metadata"].get("deletionTimestamp")):
        before = ((old.get("spec") or {}).get("model") or {}).get("memory")
        after = model.get("memory")
        if _quantity(before) != _quantity(after):
            return (f'the Trained Model "{name}" memory field is immutable. The memory was "{before}" '
                    f'but it is updated to "{after}"')
    return None


def _quantity(value: object) -> object:
    try:
        return parse_quantity(str(value))
    except ValueError:
        return value


def review_inferenceservice(profile: Profile, isvc: dict) -> Optional[str]:
    """The InferenceService webhook's verdict: None to admit, else the release's message."""
    name = isvc["metadata"].get("name", "")
    if not re.fullmatch(ISVC_NAME_PATTERN, name):
        return (f'The InferenceService "{name}" is invalid: a InferenceService name must consist of lower case '
                "alphanumeric characters or '-', and must start with alphabetical character. "
                f"(e.g. \"my-name\" or \"abc-123\", regex used for validation is '{ISVC_NAME_PATTERN}')")
    spec = isvc.get("spec") or {}
    for kind in ("predictor", "transformer", "explainer"):
        component = spec.get(kind)
        if component is None:
            continue
        problem = _review_component(profile, kind, component)
        if problem:
            return problem
    return None


def _review_component(profile: Profile, kind: str, component: dict) -> Optional[str]:
    if kind == "predictor":
        chosen = implementations(profile.group, component)
        if len(chosen) != 1:
            names = ", ".join([label for _, label in IMPLEMENTATIONS[profile.group]] + ["PodSpec"])
            return f"Exactly one of [{names}] must be specified in PredictorSpec"
        implementation = component.get(chosen[0]) if chosen[0] != "containers" else {}
        uri = (implementation or {}).get("storageUri")
        if uri is not None and re.search(r"\w+?://", uri) and "blob.core.windows.net" not in uri \
                and not uri.startswith(ISVC_STORAGE_PREFIXES):
            return (f"storageUri, must be one of: [{', '.join(ISVC_STORAGE_PREFIXES)}] or match "
                    "https://{}.blob.core.windows.net/{}/{} or be an absolute or relative local path. "
                    f"StorageUri [{uri}] is not supported.")
    low, high = component.get("minReplicas"), component.get("maxReplicas", 0) or 0
    if low is not None and low < 0:
        return "MinReplicas cannot be less than 0."
    if high < 0:
        return "MaxReplicas cannot be less than 0."
    if low is not None and high and low > high:
        return "MinReplicas cannot be greater than MaxReplicas."
    if (component.get("containerConcurrency") or 0) < 0:
        return "Parallelism cannot be less than 0."
    logger = component.get("logger")
    if logger is not None and logger.get("mode", "all") not in LOGGER_MODES:
        return "Invalid logger type"
    return None


# KFServing 0.5.1's defaultResource; KServe reads the same from inferenceservice-config's `resource`.
DEFAULT_RESOURCES = {"cpu": "1", "memory": "2Gi"}


def default_inferenceservice(profile: Profile, isvc: dict, config: dict[str, str]) -> dict:
    """The InferenceService's spec with the release's defaults filled in (the input is not changed)."""
    spec = copy.deepcopy(isvc.get("spec") or {})
    predictors = json.loads(config.get("predictors", "{}") or "{}")
    resource = json.loads(config.get("resource", "{}") or "{}")
    requests = {"cpu": resource.get("cpuRequest", DEFAULT_RESOURCES["cpu"]),
                "memory": resource.get("memoryRequest", DEFAULT_RESOURCES["memory"])}
    limits = {"cpu": resource.get("cpuLimit", DEFAULT_RESOURCES["cpu"]),
              "memory": resource.get("memoryLimit", DEFAULT_RESOURCES["memory"])}
    component = spec.get("predictor")
    if not isinstance(component, dict):
        return spec
    chosen = implementations(profile.group, component)
    if profile.triton_as_model:
        # setPredictorModelDefaults: the first framework field in its switch order becomes `model`,
        # replacing one already stored (a merge patch of the guide's manifest over the stored object).
        framework = next((f for f in MODEL_FORMATS if isinstance(component.get(f), dict)), None)
        if framework or chosen == ["model"]:
            return _as_model(spec, component, framework or "model")
        return spec
    if len(chosen) != 1 or chosen[0] == "containers" or not isinstance(component[chosen[0]], dict):
        return spec  # refused by the validator, or a custom container: the defaulter leaves it, as KServe's
    framework = component[chosen[0]]
    framework["name"] = api_group(profile.group).server_container
    known = predictors.get(chosen[0]) if isinstance(predictors.get(chosen[0]), dict) else {}
    if profile.group == KFSERVING_GROUP and framework.get("runtimeVersion") is None and known.get("defaultImageVersion"):
        framework["runtimeVersion"] = known["defaultImageVersion"]
    resources = framework.setdefault("resources", {})
    for part, values in (("requests", requests), ("limits", limits)):
        held = resources.setdefault(part, {})
        for key, value in values.items():
            held.setdefault(key, value)
    return spec


# KServe 0.14/0.15's assign<Framework>Runtime, in setPredictorModelDefaults' switch order: the predictor
# field -> modelFormat name, and the frameworks given protocolVersion v2 when they set none.
MODEL_FORMATS = {"sklearn": "sklearn", "tensorflow": "tensorflow", "xgboost": "xgboost", "pytorch": "pytorch",
                 "triton": "triton", "onnx": "onnx", "huggingface": "huggingface", "pmml": "pmml",
                 "lightgbm": "lightgbm", "paddle": "paddle"}
V2_BY_DEFAULT = ("triton", "onnx", "huggingface")


def _as_model(spec: dict, component: dict, chosen: str) -> dict:
    """KServe's setPredictorModelDefaults: `predictor.<framework>` becomes `predictor.model`."""
    if chosen == "model":
        model = component["model"]
        if (model.get("modelFormat") or {}).get("name") == "triton" and model.get("protocolVersion") is None:
            model["protocolVersion"] = "v2"
        return spec
    framework = component.pop(chosen)
    if chosen in V2_BY_DEFAULT and framework.get("protocolVersion") is None:
        framework["protocolVersion"] = "v2"
    component["model"] = {"modelFormat": {"name": MODEL_FORMATS[chosen]}, **framework}
    return spec


# --- the server -----------------------------------------------------------------------------
Reviewer = Callable[[dict, Optional[dict]], Optional[str]]
Mutator = Callable[[dict], Optional[dict]]  # the new spec, or None to leave the object as it is


def _handler(routes: dict[str, Reviewer], mutators: dict[str, Mutator]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            request = review.get("request") or {}
            path = self.path.split("?", 1)[0]
            route, mutate = routes.get(path), mutators.get(path)
            response: dict = {"uid": request.get("uid", ""), "allowed": True}
            if mutate is not None:
                spec = mutate(request.get("object") or {})
                if spec is not None and spec != (request.get("object") or {}).get("spec"):
                    patch = [{"op": "add", "path": "/spec", "value": spec}]  # add replaces an existing member
                    response.update(patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode())
            else:
                verdict = route(request.get("object") or {}, request.get("oldObject")) if route else "unknown path"
                response["allowed"] = verdict is None
                if verdict is not None:
                    response["status"] = {"code": 400 if route else 404, "message": verdict,
                                          "reason": "BadRequest" if route else "NotFound"}
            body = json.dumps({"apiVersion": review.get("apiVersion", "admission.k8s.io/v1"),
                               "kind": "AdmissionReview", "response": response}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass  # the apiserver calls often; rejections are logged below instead

    return Handler


class Webhooks:
    """The release's validating webhooks: a TLS server on 127.0.0.1 and its registration."""

    def __init__(self, api: client.ApiClient, profile: Profile, state_root: Path) -> None:
        self.api = api
        self.profile = profile
        self.pki = state_root / "pki" / "webhook"
        self.port_file = state_root / "webhook.port"
        self._server: Optional[ThreadingHTTPServer] = None

    def _reviewers(self) -> dict[str, Reviewer]:
        def tm(obj: dict, old: Optional[dict]) -> Optional[str]:
            verdict = review_trainedmodel(self.profile, obj, old)
            if verdict:
                log.info("admission: denied TrainedModel %s: %s", obj.get("metadata", {}).get("name"), verdict)
            return verdict

        def isvc(obj: dict, _old: Optional[dict]) -> Optional[str]:
            verdict = review_inferenceservice(self.profile, obj)
            if verdict:
                log.info("admission: denied InferenceService %s: %s", obj.get("metadata", {}).get("name"), verdict)
            return verdict

        return {"/validate-trainedmodel": tm, "/validate-inferenceservice": isvc}

    def _mutators(self) -> dict[str, Mutator]:
        def isvc(obj: dict) -> Optional[dict]:
            try:
                cm = client.CoreV1Api(self.api).read_namespaced_config_map(
                    "inferenceservice-config", self.profile.config_namespace)
                config = cm.data or {}
            except ApiException:
                config = {}
            return default_inferenceservice(self.profile, obj, config)

        return {"/mutate-inferenceservice": isvc}

    def start(self) -> int:
        """Serve on the port used last time if it is free (else a free one), and register. Returns the port."""
        ca = controlplane.self_signed_cert(self.pki / "tls.crt", self.pki / "tls.key", "kserve-webhook-server")
        last = int(self.port_file.read_text()) if self.port_file.exists() else 0
        port = last if last and process.port_free(last) else process.free_port()
        server = ThreadingHTTPServer(("127.0.0.1", port), _handler(self._reviewers(), self._mutators()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pki / "tls.crt", self.pki / "tls.key")
        server.socket = context.wrap_socket(server.socket, server_side=True)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="webhooks", daemon=True).start()
        self._server = server
        self.port_file.write_text(str(port))
        self.register(port, ca)
        log.info("admission webhooks of %s serve on 127.0.0.1:%s", self.profile.describe, port)
        return port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def configurations(self, port: int, ca: bytes) -> list[dict]:
        """The Validating- and MutatingWebhookConfigurations the release installs, pointed at this server."""
        names = webhook_names(self.profile)
        bundle = base64.b64encode(ca).decode()
        configs = []
        for plural, path, version in (("trainedmodels", "/validate-trainedmodel", "v1alpha1"),
                                      ("inferenceservices", "/validate-inferenceservice", "v1beta1")):
            configs.append({
                "apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": f"{plural[:-1]}.{self.profile.group}"},
                "webhooks": [{
                    "name": names[plural],
                    "clientConfig": {"url": f"https://127.0.0.1:{port}{path}", "caBundle": bundle},
                    "rules": [{"apiGroups": [self.profile.group], "apiVersions": [version],
                               "operations": ["CREATE", "UPDATE"], "resources": [plural]}],
                    "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1", "v1beta1"],
                    "timeoutSeconds": 10,
                }],
            })
        configs.append({
            "apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": f"inferenceservice.{self.profile.group}"},
            "webhooks": [{
                "name": names["inferenceservices"].replace("validator", "defaulter"),
                "clientConfig": {"url": f"https://127.0.0.1:{port}/mutate-inferenceservice", "caBundle": bundle},
                "rules": [{"apiGroups": [self.profile.group], "apiVersions": ["v1beta1"],
                           "operations": ["CREATE", "UPDATE"], "resources": ["inferenceservices"]}],
                "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1", "v1beta1"],
                "reinvocationPolicy": "Never", "timeoutSeconds": 10,
            }],
        })
        return configs

    def register(self, port: int, ca: bytes) -> None:
        registration = client.AdmissionregistrationV1Api(self.api)
        for body in self.configurations(port, ca):
            name = body["metadata"]["name"]
            kind = "mutating" if body["kind"].startswith("Mutating") else "validating"
            read = getattr(registration, f"read_{kind}_webhook_configuration")
            try:
                current = read(name)
            except ApiException as exc:
                if not not_found(exc):
                    raise
                getattr(registration, f"create_{kind}_webhook_configuration")(body)
                continue
            if client.ApiClient().sanitize_for_serialization(current.webhooks)[0]["clientConfig"] != \
                    body["webhooks"][0]["clientConfig"]:
                getattr(registration, f"patch_{kind}_webhook_configuration")(name, {"webhooks": body["webhooks"]})
