"""What the cluster made for the multi-model InferenceService: its Pod, the Pod's containers, the
agent's environment (names and where each value comes from, never a value), and the guide's
fallbacks when `GET /v2` through the ingress fails (expose the pod as a NodePort Service, the pod's
IP on 8080) plus `kubectl port-forward`.

Explained in 02_server. Everything is read through the API with the learner's rights (pods in the
own namespace), as `kubectl get pods` would; `06_troubleshooting`'s pitfalls are about this env.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.core.constants import ApiGroup
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.show import mask

AGENT_CONTAINER = "agent"
SERVER_PORT = 8080  # the port Triton's HTTP endpoint has in the predictor pod (containerPort user-port)
EXPOSED_SERVICE = "serving-service"  # the guide's name for the exposed pod

# KServe's credential builder: agent env variable -> the S3 Secret's annotation (suffix) it comes from.
ANNOTATION_OF = {"S3_ENDPOINT": "s3-endpoint", "AWS_ENDPOINT_URL": "s3-endpoint", "S3_USE_HTTPS": "s3-usehttps",
                 "AWS_REGION": "s3-region", "S3_USER_VIRTUAL_BUCKET": "s3-usevirtualbucket",
                 "S3_VERIFY_SSL": "s3-verifyssl"}


def server_pods(api: client.ApiClient, group: ApiGroup, name: str, namespace: str) -> list[Any]:
    """The InferenceService's pods (label `<group>/inferenceservice=<name>`), running ones first."""
    pods = client.CoreV1Api(api).list_namespaced_pod(
        namespace, label_selector=f"{group.group}/inferenceservice={name}").items
    pods = [p for p in pods if not p.metadata.deletion_timestamp]
    return sorted(pods, key=lambda p: ((p.status.phase if p.status else "") != "Running", p.metadata.name))


def server_pod(api: client.ApiClient, group: ApiGroup, name: str, namespace: str) -> Any:
    """The InferenceService's running pod; SetupError when it has none."""
    pods = server_pods(api, group, name, namespace)
    if not pods:
        raise SetupError(_("InferenceService {name} has no pod in namespace {namespace}").format(
                             name=name, namespace=namespace),
                         _("`kubectl get pods -n {namespace}` and `kubectl describe inferenceservice {name} -n "
                           "{namespace}` say why").format(name=name, namespace=namespace))
    return pods[0]


def _age(created: Optional[dt.datetime]) -> str:
    if created is None:
        return "<unknown>"
    seconds = int((dt.datetime.now(dt.timezone.utc) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def pods_table(api: client.ApiClient, namespace: str) -> str:
    """The namespace's pods as `kubectl get pods -n <namespace>` prints them."""
    pods = client.CoreV1Api(api).list_namespaced_pod(namespace).items
    rows = [("NAME", "READY", "STATUS", "RESTARTS", "AGE")]
    for pod in sorted(pods, key=lambda p: p.metadata.name):
        statuses = (pod.status.container_statuses or []) if pod.status else []
        # kubectl (Kubernetes 1.28+) counts native sidecars too: init containers with restartPolicy Always
        sidecars = {c.name for c in pod.spec.init_containers or [] if c.restart_policy == "Always"}
        init_statuses = (pod.status.init_container_statuses or []) if pod.status else []
        running = list(statuses) + [s for s in init_statuses if s.name in sidecars]
        ready = f"{sum(bool(s.ready) for s in running)}/{len(pod.spec.containers) + len(sidecars)}"
        restarts = str(sum(s.restart_count or 0 for s in list(statuses) + list(init_statuses)))
        phase = (pod.status.phase if pod.status else None) or "Unknown"
        if pod.metadata.deletion_timestamp:
            phase = "Terminating"
        rows.append((pod.metadata.name, ready, phase, restarts, _age(pod.metadata.creation_timestamp)))
    if len(rows) == 1:
        return f"No resources found in {namespace} namespace."  # kubectl's words
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def containers_table(pod: Any) -> str:
    """Each container of the pod: its name, image and ports."""
    rows = [(_("CONTAINER"), _("IMAGE"), _("PORTS"))]
    for c in pod.spec.containers:
        ports = ", ".join(f"{p.container_port}/{p.protocol or 'TCP'}" + (f" ({p.name})" if p.name else "")
                          for p in c.ports or []) or "-"
        rows.append((c.name, c.image or "-", ports))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


@dataclass(frozen=True)
class EnvEntry:
    """One variable of the agent's env: its name, where the value comes from, the value masked."""

    name: str
    source: str
    shown: str


def agent_env(pod: Any, group: ApiGroup, secret_name: str) -> list[EnvEntry]:
    """The agent container's env: names, and where each value comes from (the S3 Secret's key or
    annotation); values only masked (`mask`), never shown."""
    agent = next((c for c in pod.spec.containers if c.name == AGENT_CONTAINER), None)
    if agent is None:
        raise SetupError(_("pod {pod} has no {container} container").format(pod=pod.metadata.name,
                                                                             container=AGENT_CONTAINER),
                         _("with multiModelServer true (00_cluster_prep's check) and no storageUri, the controller "
                           "adds it; create the InferenceService again after fixing the flag"))
    entries = []
    for env in agent.env or []:
        ref = env.value_from.secret_key_ref if env.value_from else None
        if ref is not None:
            source = _("Secret {secret}, key {key}").format(secret=ref.name, key=ref.key)
            shown = _("(read by the kubelet when the container starts)")
        elif env.name in ANNOTATION_OF:
            source = _("annotation {annotation} of Secret {secret}").format(
                annotation=f"{group.group}/{ANNOTATION_OF[env.name]}", secret=secret_name)
            shown = mask(env.value)
        else:
            source = _("set by the controller")
            shown = mask(env.value)
        entries.append(EnvEntry(env.name, source, shown))
    return entries


def env_table(entries: list[EnvEntry]) -> str:
    rows = [(_("NAME"), _("FROM"), _("VALUE"))] + [(e.name, e.source, e.shown) for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows)


def pod_commands(group: ApiGroup, name: str, namespace: str) -> str:
    """The kubectl lines that show what `pods_table`, `containers_table` and `agent_env` read."""
    return "\n".join([
        f"kubectl get pods -n {namespace}",
        f"POD_NAME=$(kubectl get pods -l {group.group}/inferenceservice={name} -o name -n {namespace} "
        '| cut -d "/" -f 2)',
        f"kubectl get pod ${{POD_NAME}} -n {namespace} -o jsonpath='{{range .spec.containers[*]}}{{.name}}"
        "{\"\\t\"}{.image}{\"\\n\"}{end}'",
        f"kubectl get pod ${{POD_NAME}} -n {namespace} "
        f"-o jsonpath='{{.spec.containers[?(@.name==\"{AGENT_CONTAINER}\")].env[*].name}}'"])


@dataclass(frozen=True)
class Exposed:
    """The NodePort Service made the guide's way (`kubectl expose pod`), and the pod's own address."""

    service: str
    node_port: Optional[int]
    pod_ip: str
    pod_port: int
    error: str = ""  # why the Service could not be made here (e.g. 403: no right to create Services)


def expose(api: client.ApiClient, pod: Any, namespace: str, name: str = EXPOSED_SERVICE) -> Exposed:
    """`kubectl expose pod <pod> --type=NodePort --name serving-service`: a Service that selects the pod by
    its labels, on its container ports; the API server picks the node port. Read back, then deleted
    again by `unexpose` (the guide leaves it; the walkthrough does not keep what it does not need)."""
    ports = [p for c in pod.spec.containers for p in c.ports or []] or [client.V1ContainerPort(
        container_port=SERVER_PORT)]
    body = client.V1Service(
        metadata=client.V1ObjectMeta(name=name, namespace=namespace),
        spec=client.V1ServiceSpec(type="NodePort", selector=dict(pod.metadata.labels or {}), ports=[
            client.V1ServicePort(name=p.name, port=p.container_port, target_port=p.container_port,
                                 protocol=p.protocol or "TCP") for p in ports]))
    core = client.CoreV1Api(api)
    pod_ip = (pod.status.pod_ip if pod.status else "") or ""
    try:
        try:
            core.delete_namespaced_service(name, namespace, _preload_content=False)  # one left from an earlier run
        except ApiException as exc:
            if exc.status != 404:
                raise
        made = core.create_namespaced_service(namespace, body)
    except ApiException as exc:  # a fallback shown, not needed: say why it could not be made, do not stop
        return Exposed(name, None, pod_ip, ports[0].container_port, f"{exc.status} {exc.reason}")
    node_port = next((p.node_port for p in made.spec.ports or [] if p.node_port), None)
    return Exposed(name, node_port, pod_ip, ports[0].container_port)


def unexpose(api: client.ApiClient, namespace: str, name: str = EXPOSED_SERVICE) -> None:
    """Delete the Service `expose` made (`kubectl delete service serving-service`)."""
    try:
        client.CoreV1Api(api).delete_namespaced_service(name, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status != 404:
            raise


def expose_commands(group: ApiGroup, name: str, namespace: str, local: bool) -> str:
    """The guide's expose fallback as shell lines that run here; the lines that need the cluster's
    network (a node's address, the pod's IP) are comments on the local stack, with the reason."""
    pod_name = (f"POD_NAME=$(kubectl get pods -l {group.group}/inferenceservice={name} -o name -n {namespace} "
                '| cut -d "/" -f 2)')
    lines = [pod_name,
             f"kubectl expose pod ${{POD_NAME}} --type=NodePort --name {EXPOSED_SERVICE} -n {namespace}",
             f"TARGET_PORT=$(kubectl get service {EXPOSED_SERVICE} -n {namespace} "
             "-o jsonpath='{.spec.ports[0].nodePort}')",
             "NODE_IP=$(kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type==\"InternalIP\")].address}')",
             f"POD_IP=$(kubectl get pod ${{POD_NAME}} -n {namespace} -o jsonpath='{{.status.podIP}}')"]
    node = "curl -v http://${NODE_IP}:${TARGET_PORT}/v2"
    pod_ip = f"curl -v http://${{POD_IP}}:{SERVER_PORT}/v2"
    if local:
        lines += ["# " + _("on a cluster, through the node port:"), f"# {node}",
                  "# " + _("on a cluster, from a pod (e.g. a Kubeflow Notebook):"), f"# {pod_ip}",
                  "# " + _("(the local stack has no kube-proxy and no pod network: neither answers here)")]
    else:
        lines += ["# " + _("through the node port (NODE_IP needs the right to list nodes; else ask your admin):"), node,
                  "# " + _("from a pod (e.g. a Kubeflow Notebook):"), pod_ip]
    lines.append(f"kubectl delete service {EXPOSED_SERVICE} -n {namespace}")
    return "\n".join(lines)


def port_forward_commands(group: ApiGroup, name: str, namespace: str, local_port: int = SERVER_PORT) -> str:
    """`kubectl port-forward` to the server pod's 8080 in the background, a `GET /v2` through it, and stop."""
    return "\n".join([
        f"POD_NAME=$(kubectl get pods -l {group.group}/inferenceservice={name} -o name -n {namespace} "
        '| cut -d "/" -f 2)',
        f"kubectl port-forward pod/${{POD_NAME}} {local_port}:{SERVER_PORT} -n {namespace} > port-forward.log 2>&1 &",
        "sleep 2",
        f"curl -v http://127.0.0.1:{local_port}/v2",
        "kill $!  # " + _("stops the port-forward")])


def describe_exposed(exposed: Exposed) -> str:
    """What `expose` made and what answers where, in a few lines."""
    if exposed.error:
        return "\n".join([
            _("could not expose the pod here ({error}); the lines below are the guide's way").format(
                error=exposed.error),
            _("the pod's own address: {ip}:{port}").format(ip=exposed.pod_ip or "-", port=exposed.pod_port)])
    return "\n".join([
        _("Service {service} (NodePort): node port {node_port} -> the pod's port {port}").format(
            service=exposed.service, node_port=exposed.node_port, port=exposed.pod_port),
        _("the pod's own address: {ip}:{port}").format(ip=exposed.pod_ip or "-", port=exposed.pod_port),
        _("deleted again: the ingress answered, so the fallback is not needed")])


def forward_get_v2(api: client.ApiClient, namespace: str, pod: str) -> str:
    """Open a port-forward to the pod's port 8080 (as `kubectl port-forward` does), ask `GET /v2` through it,
    close it; what happened, in one line (a failure is said, not raised: this is the third fallback)."""
    from helpers.clients import portforward, triton

    try:
        forward = portforward.forward_pod(api, namespace, pod, SERVER_PORT)
    except SetupError as exc:
        return _("no port-forward here: {error}").format(error=exc.cause)
    try:
        meta = triton.server_metadata(forward.url, {})
    except Exception as exc:  # noqa: BLE001 - e.g. no right to create pods/portforward: the tunnel closes
        return _("port-forward {address}: GET /v2 failed ({error})").format(
            address=forward.address, error=forward.last_error or type(exc).__name__)
    finally:
        forward.stop()
    return describe_forward(forward.address, meta)


def describe_forward(address: str, meta: dict) -> str:
    return _("port-forward {address} -> the pod's port {port}: GET /v2 answered {name} {version}").format(
        address=address, port=SERVER_PORT, name=meta.get("name"), version=meta.get("version"))
