"""InferenceServices and TrainedModels, for either API group: apply, wait for Ready, URL, logs.

Explained in 02_server (server, URL, Knative settings in 00_cluster_prep) and 03_cifar10
(TrainedModel, agent log). What differs between targets is kept here:

- the server URL: on a cluster `status.address.url` from inside it, else the Istio ingress
  with a `Host` header (the guide's `SERVICE_HOSTNAME` + `CLUSTER_IP`); on the local target
  `status.address.url` resolved through Services to the loopback address of Triton;
- the agent's log: on a cluster the `agent` container of the pod labelled
  `<group>/inferenceservice=<name>`; locally the file the local controller writes for it.
"""
from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from typing import Any, Iterator, Optional
from urllib.parse import urlsplit

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .constants import KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE, ApiGroup
from .errors import SetupError
from .k8s import resolve_url

ISVC, TM = "inferenceservices", "trainedmodels"
KINDS = {ISVC: "InferenceService", TM: "TrainedModel"}
# Where a cluster's ingress gateway may be (Kubeflow's Istio; the guide's KFServing gateway).
INGRESS_GATEWAYS = (("istio-system", "istio-ingressgateway"), ("istio-system", "kfserving-ingressgateway"))
# On the cluster target outside the cluster: e.g. http://127.0.0.1:8080 after
# `kubectl port-forward svc/istio-ingressgateway -n istio-system 8080:80`.
INGRESS_ENV = "MMS_INGRESS_URL"
# The server container's name in the pod, per API group (the guide: `kubectl logs $SERVER kfserving-container`).
SERVER_CONTAINER = {"serving.kubeflow.org": "kfserving-container", "serving.kserve.io": "kserve-container"}


class Endpoint:
    """Where to send HTTP requests for a server: `base_url`, plus headers (`Host` through an ingress).

    Unpacks as `(base_url, headers)`. `headers` is a fresh dict on every access, so a client
    library that adds its own headers to the dict it is given cannot change the Endpoint.
    """

    def __init__(self, base_url: str, headers: Optional[dict[str, str]] = None) -> None:
        self.base_url = base_url
        self._headers = dict(headers or {})

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._headers)

    def __iter__(self) -> Iterator[Any]:
        return iter((self.base_url, self.headers))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Endpoint) and (self.base_url, self._headers) == (other.base_url, other._headers)

    def __repr__(self) -> str:
        return f"Endpoint(base_url={self.base_url!r}, headers={self._headers!r})"


# --- objects ---------------------------------------------------------------------------------
def _version(group: ApiGroup, plural: str) -> str:
    return group.isvc_version if plural == ISVC else group.tm_version


def get(api: client.ApiClient, group: ApiGroup, plural: str, name: str, namespace: str) -> Optional[dict]:
    """The object as stored, or None if it does not exist."""
    try:
        return client.CustomObjectsApi(api).get_namespaced_custom_object(
            group.group, _version(group, plural), namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def conditions(obj: Optional[dict]) -> dict[str, dict]:
    """Status conditions by type."""
    return {c.get("type"): c for c in ((obj or {}).get("status") or {}).get("conditions") or []}


def is_ready(obj: Optional[dict]) -> bool:
    """Ready=True for the object's current spec (a status written for an older generation does not count)."""
    if not obj:
        return False
    observed = (obj.get("status") or {}).get("observedGeneration")
    if observed is not None and observed != obj.get("metadata", {}).get("generation", observed):
        return False
    return conditions(obj).get("Ready", {}).get("status") == "True"


def describe_conditions(obj: Optional[dict]) -> str:
    """`Ready=False (Reason): message; ...`, or a note that there are none yet."""
    conds = conditions(obj)
    if not conds:
        return "no status conditions yet (is the controller running?)"
    parts = []
    for kind, cond in conds.items():
        text = f"{kind}={cond.get('status')}"
        if cond.get("reason"):
            text += f" ({cond['reason']})"
        if cond.get("message") and cond.get("status") != "True":
            text += f": {cond['message']}"
        parts.append(text)
    return "; ".join(parts)


def _blocking_message(obj: Optional[dict]) -> str:
    conds = conditions(obj)
    ready = conds.get("Ready", {})
    if ready.get("message"):
        return ready["message"]
    for cond in conds.values():
        if cond.get("status") != "True" and cond.get("message"):
            return cond["message"]
    return ""


def _state(obj: Optional[dict]) -> str:
    if obj is None:
        return "not created yet"
    ready = conditions(obj).get("Ready")
    if not ready:
        return "no status yet"
    text = f"Ready={ready.get('status')}"
    if ready.get("reason"):
        text += f" ({ready['reason']})"
    return text


def wait_ready(api: client.ApiClient, group: ApiGroup, plural: str, name: str, namespace: str,
               timeout: float = 300.0, interval: float = 1.0, false_grace: float = 30.0,
               progress: bool = True) -> dict:
    """Poll until the object's `Ready` condition is True and return the object.

    A progress display shows the time spent and the Ready state. When the object stays
    `Ready=False` for `false_grace` seconds, or `timeout` passes, raises SetupError whose
    message lists the status conditions; the fix is the blocking condition's message.
    """
    from .progress import progress as tqdm

    kind = KINDS[plural]
    what = f"{kind} {namespace}/{name}"
    began = time.monotonic()
    false_since: Optional[float] = None
    obj: Optional[dict] = None
    last = ""
    with tqdm(total=int(timeout), desc=f"waiting for {kind} {name}", unit="s", disable=not progress,
              bar_format="{desc}: {elapsed} elapsed{postfix}", mininterval=0.5) as bar:
        while True:
            obj = get(api, group, plural, name, namespace)
            now = time.monotonic()
            bar.n = min(int(now - began), int(timeout))
            state = _state(obj)
            if state != last:
                bar.set_postfix_str(state, refresh=False)
                last = state
            bar.refresh()
            if is_ready(obj):
                bar.set_postfix_str("Ready=True", refresh=False)
                bar.total = bar.n = max(bar.n, 1)  # a full bar: a notebook bar closed short turns red
                bar.refresh()
                return obj  # type: ignore[return-value]
            if conditions(obj).get("Ready", {}).get("status") == "False":
                false_since = false_since or now
            else:
                false_since = None
            if false_since is not None and now - false_since >= false_grace:
                break
            if now - began >= timeout:
                break
            time.sleep(interval)
    waited = time.monotonic() - began
    if obj is None:
        raise SetupError(f"{what} does not exist after {waited:.0f}s",
                         f"create it first (`kubectl get {plural} -n {namespace}` lists what is there)")
    fix = _blocking_message(obj) or f"`kubectl describe {plural} {name} -n {namespace}` shows its events"
    if plural == TM and conditions(obj).get("InferenceServiceReady", {}).get("status") == "False":
        server = (obj.get("spec") or {}).get("inferenceService", "")
        fix = (f"its InferenceService {server!r} is not Ready: `kubectl describe {group.isvc_resource} {server} "
               f"-n {namespace}` says why (02_server makes it)")
    raise SetupError(f"{what} is not Ready after {waited:.0f}s: {describe_conditions(obj)}", fix)


def require_ready(api: client.ApiClient, group: ApiGroup, plural: str, name: str, namespace: str,
                  notebook: str) -> dict:
    """The object if it exists and is Ready; else SetupError saying which notebook makes it."""
    obj = get(api, group, plural, name, namespace)
    what = f"{KINDS[plural]} {namespace}/{name} ({group.group})"
    if obj is None:
        raise SetupError(f"{what} does not exist", f"run {notebook} first, with the same settings")
    if not is_ready(obj):
        raise SetupError(f"{what} is not Ready: {describe_conditions(obj)}",
                         _blocking_message(obj) or f"run {notebook} again and read its output")
    return obj


def delete(api: client.ApiClient, group: ApiGroup, plural: str, name: str, namespace: str) -> bool:
    """Delete the object; False if it was not there."""
    try:
        client.CustomObjectsApi(api).delete_namespaced_custom_object(
            group.group, _version(group, plural), namespace, plural, name)
        return True
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise


# --- the server's URL ------------------------------------------------------------------------
def _answers(url: str, headers: dict[str, str]) -> bool:
    """True only when Triton itself answers `/v2/health/live` (200). Istio's 403 `RBAC: access
    denied`, a gateway's 404 for an unknown Host, and a redirect to Dex's login all come from
    something in front of Triton, so such an address is not the server's."""
    try:
        answer = requests.get(f"{url}/v2/health/live", headers=headers, timeout=3, allow_redirects=False)
    except requests.RequestException:
        return False
    return answer.status_code == 200


def _ingress_address(api: client.ApiClient) -> Optional[str]:
    core = client.CoreV1Api(api)
    for namespace, name in INGRESS_GATEWAYS:
        try:
            svc = core.read_namespaced_service(name, namespace)
        except ApiException:
            continue
        http2 = [p.port for p in (svc.spec.ports or []) if p.name == "http2"] if svc.spec else []
        port = f":{http2[0]}" if http2 and http2[0] != 80 else ""
        for ingress in (svc.status.load_balancer.ingress if svc.status and svc.status.load_balancer else None) or []:
            if ingress.ip or ingress.hostname:
                return f"http://{ingress.ip or ingress.hostname}{port}"
    return None


def server_url(api: client.ApiClient, target: str, group: ApiGroup, name: str, namespace: str) -> Endpoint:
    """How this notebook reaches the server: `(base_url, headers)`."""
    isvc = require_ready(api, group, ISVC, name, namespace, "02_server")
    status = isvc.get("status") or {}
    address = (status.get("address") or {}).get("url") or ""
    public = status.get("url") or ""
    host = urlsplit(public).hostname or ""
    if target == "local":
        # As the guide does: the ingress gateway (the stack's nginx) with the Host of status.url.
        ingress = _ingress_address(api)
        if ingress and host and _answers(ingress, {"Host": host}):
            return Endpoint(ingress, {"Host": host})
        if not address:
            raise SetupError(f"InferenceService {namespace}/{name} has no status.address.url",
                             "check the local controller: `python -m helpers.local logs controller`")
        return Endpoint(resolve_url(api, address, namespace).rstrip("/"), {})
    override = os.environ.get(INGRESS_ENV)
    if override:
        return Endpoint(override.rstrip("/"), {"Host": host})
    if os.environ.get("KUBERNETES_SERVICE_HOST") and address and _answers(address.rstrip("/"), {}):
        return Endpoint(address.rstrip("/"), {})
    ingress = _ingress_address(api)
    if ingress and host:
        return Endpoint(ingress, {"Host": host})
    raise SetupError(
        f"found no way to reach InferenceService {namespace}/{name} from here",
        "as the guide suggests: `kubectl port-forward svc/istio-ingressgateway -n istio-system 8080:80` and set "
        f"{INGRESS_ENV}=http://127.0.0.1:8080, or expose the pod (`kubectl expose pod ... --type=NodePort`)")


def curl(endpoint: Endpoint, path: str, method: str = "GET", data_file: Optional[str] = None,
         guide: bool = True) -> str:
    """The curl command for a request; with `guide`, the guide's form through the ingress, runnable as shown.

    The guide's variables: `SERVICE_HOSTNAME` and `CLUSTER_IP` (set as 02_server shows), and
    `MODEL_NAME` for a model's path. An absolute `data_file` is shown as the guide has it,
    `-d @./${MODEL_NAME}.json`, after a `cd` to its folder. When the endpoint is the ingress on
    another port than 80, the line that runs here uses `${MMS_INGRESS_URL}` (`helpers.local env`).
    """
    model = re.match(r"^/v2/models/([^/]+)/", path)
    lines = []
    if model and guide:
        lines.append(f"MODEL_NAME={model.group(1)}")
        path = path.replace(f"/v2/models/{model.group(1)}/", "/v2/models/${MODEL_NAME}/", 1)
    if data_file:
        # `curl -d` alone sends `application/x-www-form-urlencoded`, and Triton 2.51 crashes
        # (Signal 11) parsing a large body of that type (inception's 5.7 MB): say it is JSON.
        lines.append("# -H Content-Type: JSON, not the form type curl -d sends (Triton 2.51 crashes on a large form body)")
    if data_file and os.path.isabs(data_file):
        folder, name = os.path.split(data_file)
        lines.append(f"cd {folder}  # where this notebook wrote {name}")
        data_file = "./${MODEL_NAME}.json" if model and guide and name == f"{model.group(1)}.json" else f"./{name}"

    def command(base: str, headers: dict[str, str], verbose: bool) -> str:
        parts = ["curl"] + (["-v"] if verbose else [])
        if method != "GET":
            parts += ["-X", method]
        if data_file:
            headers = {"Content-Type": "application/json", **headers}
        parts += [f'-H "{k}: {v}"' for k, v in headers.items()]
        parts.append(f"{base}{path}")
        if data_file:
            parts += ["-d", f"@{data_file}"]
        return " ".join(parts)

    if not guide:
        return command(endpoint.base_url, endpoint.headers, False)
    theirs = command("http://${CLUSTER_IP}", {"Host": "${SERVICE_HOSTNAME}"}, True)
    through_ingress = bool(endpoint.headers.get("Host"))
    if through_ingress and urlsplit(endpoint.base_url).port in (None, 80):
        return "\n".join(lines + ["# the guide's command, through the ingress gateway:", theirs])
    if through_ingress:
        mine = command("${MMS_INGRESS_URL}", {"Host": "${SERVICE_HOSTNAME}"}, True)
        note = f"# here the gateway listens on {endpoint.base_url}, which MMS_INGRESS_URL holds:"
    else:
        mine = command(endpoint.base_url, endpoint.headers, False)
        note = "# the same request on this target:"
    return "\n".join(lines + ["# the guide, through the ingress:", theirs, note, mine])


# --- logs ------------------------------------------------------------------------------------
def _local_log(namespace: str, name: str, role: str) -> str:
    from .local.stack import Stack

    path = Stack().logs / f"{role}-{namespace}.{name}.log"
    return path.read_text(errors="replace") if path.exists() else ""


def _pod_log(api: client.ApiClient, group: ApiGroup, name: str, namespace: str, container: str) -> str:
    core = client.CoreV1Api(api)
    pods = [pod for pod in core.list_namespaced_pod(namespace, label_selector=f"{group.isvc_label}={name}").items
            if not pod.metadata.deletion_timestamp]
    if not pods:
        raise SetupError(f"no pod labelled {group.isvc_label}={name} in {namespace}",
                         f"`kubectl get pods -n {namespace}`: is the InferenceService running (02_server)?")
    return core.read_namespaced_pod_log(pods[0].metadata.name, namespace, container=container)


def _container_log(api: client.ApiClient, target: str, group: ApiGroup, name: str, namespace: str,
                   container: str, role: str) -> str:
    """The container's log through the API (`kubectl logs`), on both targets; locally, while the
    server has no Pod yet, the file its process writes."""
    try:
        return _pod_log(api, group, name, namespace, container)
    except (SetupError, ApiException):
        if target != "local":
            raise
        return _local_log(namespace, name, role)


def agent_log(api: client.ApiClient, target: str, group: ApiGroup, name: str, namespace: str) -> list[str]:
    """The model agent's log lines (`kubectl logs $SERVER agent -n <namespace>`)."""
    return _container_log(api, target, group, name, namespace, "agent", "agent").splitlines()


def server_log(api: client.ApiClient, target: str, group: ApiGroup, name: str, namespace: str) -> list[str]:
    """Triton's own log lines (`kubectl logs $SERVER kfserving-container`)."""
    return _container_log(api, target, group, name, namespace, SERVER_CONTAINER[group.group], "triton").splitlines()


def wait_agent_loaded(api: client.ApiClient, target: str, group: ApiGroup, name: str, namespace: str,
                      model: str, timeout: float = 300.0) -> tuple[list[str], dict]:
    """Poll the agent's log until it shows `model` loaded (or failed); return (lines, timeline).

    The timeline is `helpers.agent_log.timeline`: seconds from the config event to download
    done and load done. After `timeout` the last timeline is returned as it is (steps None).
    """
    from .agent_log import timeline

    deadline = time.monotonic() + timeout
    while True:
        lines = agent_log(api, target, group, name, namespace)
        try:
            found = timeline(lines, model)
        except ValueError:
            found = {"model": model, "start": None, "download_s": None, "load_s": None,
                     "downloaded": None, "failed": None}
        if found["load_s"] is not None or found["failed"] or time.monotonic() >= deadline:
            return lines, found
        time.sleep(0.5)


# --- Knative ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Change:
    key: str
    before: Optional[str]
    after: Optional[str]

    @property
    def changed(self) -> bool:
        return self.before != self.after

    def as_dict(self) -> dict:
        return {"key": self.key, "before": self.before, "after": self.after, "changed": self.changed}


# Where 00_cluster_prep keeps the values it found, for 99_cleanup to put back (JSON: key -> value or null).
SAVED_ANNOTATION = "mms-notebooks/config-deployment-before"


def patch_config_deployment(api: client.ApiClient, patches: list[dict]) -> list[Change]:
    """Merge each patch's `data` into knative-serving/config-deployment (as `kubectl patch cm`).

    Idempotent: a key that already has the value is not written again. Returns each key's
    value before and after. The first patch that changes something also saves the values it
    found in the annotation `SAVED_ANNOTATION`, which `restore_config_deployment` puts back.
    """
    core = client.CoreV1Api(api)
    try:
        found = core.read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE)
        before = found.data or {}
    except ApiException as exc:
        if exc.status == 404:
            raise SetupError(f"ConfigMap {KNATIVE_NAMESPACE}/{KNATIVE_CONFIG_DEPLOYMENT} not found",
                             "is Knative Serving installed? KFServing's serverless mode needs it") from None
        if exc.status == 403:
            raise SetupError(f"you may not read {KNATIVE_NAMESPACE}/{KNATIVE_CONFIG_DEPLOYMENT} (403)",
                             "ask the cluster's admin to apply the two patches (this notebook shows them)") from None
        raise
    wanted = {k: str(v) for patch in patches for k, v in (patch.get("data") or {}).items()}
    todo = {k: v for k, v in wanted.items() if before.get(k) != v}
    if todo:
        body: dict[str, Any] = {"data": todo}
        if SAVED_ANNOTATION not in (found.metadata.annotations or {}):
            import json

            saved = json.dumps({k: before.get(k) for k in wanted})
            body["metadata"] = {"annotations": {SAVED_ANNOTATION: saved}}
        try:
            core.patch_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE, body)
        except ApiException as exc:
            if exc.status == 403:
                raise SetupError(f"you may not patch {KNATIVE_NAMESPACE}/{KNATIVE_CONFIG_DEPLOYMENT} (403)",
                                 "ask the cluster's admin to apply the two patches shown above") from None
            raise
    after = core.read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE).data or {}
    return [Change(k, before.get(k), after.get(k)) for k in wanted]


def restore_config_deployment(api: client.ApiClient) -> list[Change]:
    """Put back the config-deployment values `patch_config_deployment` saved (a key that was unset
    is removed again) and drop the annotation; [] when nothing was saved (99_cleanup)."""
    import json

    core = client.CoreV1Api(api)
    try:
        found = core.read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE)
    except ApiException as exc:
        if exc.status == 404:
            return []
        raise
    saved = (found.metadata.annotations or {}).get(SAVED_ANNOTATION)
    if saved is None:
        return []
    try:
        values = json.loads(saved)
    except ValueError:
        raise SetupError(f"the annotation {SAVED_ANNOTATION} on {KNATIVE_NAMESPACE}/{KNATIVE_CONFIG_DEPLOYMENT} "
                         "is not the JSON 00_cluster_prep wrote",
                         "set the keys back by hand (`kubectl edit cm config-deployment -n knative-serving`) "
                         "and remove the annotation") from None
    before = found.data or {}
    try:
        core.patch_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE, {
            "data": values, "metadata": {"annotations": {SAVED_ANNOTATION: None}}})
    except ApiException as exc:
        if exc.status == 403:
            raise SetupError(f"you may not patch {KNATIVE_NAMESPACE}/{KNATIVE_CONFIG_DEPLOYMENT} (403)",
                             "ask the cluster's admin to set back the values this notebook shows") from None
        raise
    after = core.read_namespaced_config_map(KNATIVE_CONFIG_DEPLOYMENT, KNATIVE_NAMESPACE).data or {}
    return [Change(k, before.get(k), after.get(k)) for k in values]


def describe_changes(changes: list[Change]) -> str:
    """`key: before -> after (changed|unchanged)` lines."""
    width = max((len(c.key) for c in changes), default=0)
    return "\n".join(f"{c.key:<{width}}  {c.before or '(unset)'} -> {c.after or '(unset)'}  "
                     f"({'changed' if c.changed else 'already set, unchanged'})" for c in changes)


def knative_patch_commands(patches: list[dict]) -> str:
    """The guide's `kubectl patch cm config-deployment ...` line for each patch."""
    import json

    return "\n".join(f"kubectl patch cm {KNATIVE_CONFIG_DEPLOYMENT} --patch '{json.dumps({'data': p.get('data') or {}})}'"
                     f" -n {KNATIVE_NAMESPACE}" for p in patches)


def _short_paths(text: str) -> str:
    """`<state>/servers/ns.isvc/models/cifar10/SUCCESS.<sha>` -> `.../cifar10/SUCCESS.<12 hex>…` (the part that teaches)."""
    def short(match: "re.Match[str]") -> str:
        parts = match.group(0).split("/")
        return match.group(0) if len(parts) <= 4 else ".../" + "/".join(parts[-2:])

    text = re.sub(r"(?<![\w:/.])/[^\s\"']+", short, text)
    return re.sub(r"(SUCCESS\.[0-9a-f]{12})[0-9a-f]{52}", r"\1…", text)  # the marker's sha, abridged


def agent_events(lines: list[str], model: str, limit: int = 14) -> str:
    """The agent's log lines about `model` since its latest `adding model`, one short line each.

    `+0.000s  Logger  message  key=value ...`, times from the config event that added it.
    """
    from .agent_log import parse

    events = parse(lines)
    adds = [i for i, e in enumerate(events) if e["model"] == model and e["msg"].startswith("adding model")]
    if not adds:
        return f"(no 'adding model {model}' event in the agent log yet)"
    first = adds[-1]
    for i in range(first, -1, -1):
        if events[i]["msg"].startswith("Processing event"):
            first = i
            break
    start = events[first]["ts"]
    last = max(i for i, e in enumerate(events) if e["model"] == model)
    shown = [e for e in events[first:last + 1] if e["model"] in (model, None)][:limit]
    skip = {"level", "ts", "logger", "msg", "caller", "modelName", "model"}
    out = []
    for e in shown:
        extra = " ".join(f"{k}={_short_paths(str(v))}" for k, v in e["fields"].items() if k not in skip)
        out.append(f"+{e['ts'] - start:7.3f}s  {e['logger']:<15} {e['msg']}  {extra}".rstrip())
    return "\n".join(out)


def timelines(lines: list[str], models: list[str]) -> list[dict]:
    """`agent_log.timeline` of each model the log mentions (models it does not mention are left out)."""
    from .agent_log import timeline

    found = []
    for model in models:
        try:
            found.append(timeline(lines, model))
        except ValueError:
            continue
    return found
