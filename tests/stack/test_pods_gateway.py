"""What a cluster shows, on the local stack: the Node, the server's Pod, container logs, the gateway.

One InferenceService (KFServing's API group, as in the guide) in namespace `pods`; each test reads
it the way a learner would, with kubectl and curl, and the fault tests break it as a node would:
Triton killed, the Pod deleted, the InferenceService deleted (last).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading

import pytest
import requests
from kubernetes import client

from helpers.clients import k8s
from helpers.core.constants import KFSERVING_GROUP
from helpers.core.wait import poll_until
from helpers.local.cluster.gateway import OPEN_ADDRESS
from helpers.local.stack.controlplane import NODE_NAME
from helpers.local.stack.stack import Stack
from support.guide_steps import apply_guide_steps, guide_values

pytestmark = pytest.mark.controlplane
NS, SERVER = "pods", "triton-pods"
LABEL = f"serving.kubeflow.org/inferenceservice={SERVER}"
HOST = f"{SERVER}.{NS}.example.com"


def kubectl(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["kubectl", "--kubeconfig", str(stack.kubeconfig), *args], capture_output=True,
                          text=True, timeout=60)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def pod(stack: Stack) -> dict:
    items = json.loads(kubectl(stack, "get", "pods", "-l", LABEL, "-n", NS, "-o", "json").stdout)["items"]
    live = [item for item in items if not item["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [item["metadata"]["name"] for item in items]
    return live[0]


def restarts(stack: Stack, container: str) -> int:
    statuses = (pod(stack).get("status") or {}).get("containerStatuses") or []
    return next(s["restartCount"] for s in statuses if s["name"] == container)


def ingress(stack: Stack) -> str:
    return poll_until(lambda: stack.env().get("MMS_INGRESS_URL"), "the gateway's address in `env`", timeout=60)


@pytest.fixture(scope="module")
def server(stack: Stack, kube) -> str:
    """The guide's Profile, S3 secret + service account, ExternalName and server, in namespace `pods`."""
    apply_guide_steps(kube, guide_values(stack, NS, SERVER, KFSERVING_GROUP))

    def running() -> bool:
        found = pod(stack)
        statuses = found.get("status", {}).get("containerStatuses") or []
        return found["status"].get("phase") == "Running" and len(statuses) == 3 and all(s["ready"] for s in statuses)
    poll_until(running, "the server's pod to run 3/3", timeout=180, interval=0.5)
    return pod(stack)["metadata"]["name"]


def test_the_node_is_ready_with_its_kubelet_endpoint(stack: Stack, server: str) -> None:
    node = json.loads(kubectl(stack, "get", "node", NODE_NAME, "-o", "json").stdout)
    ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
    assert ready == "True"
    assert node["status"]["addresses"][0] == {"type": "InternalIP", "address": "127.0.0.1"}
    port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    assert port == int((stack.root / "kubelet.port").read_text())


def test_the_pod_is_the_one_kfserving_makes(stack: Stack, server: str) -> None:
    found = pod(stack)
    assert re.fullmatch(rf"{SERVER}-predictor-default-00001-deployment-[a-z0-9]{{10}}-[a-z0-9]{{5}}", server)
    spec = found["spec"]
    # Kubeflow 1.0.2's Istio 1.1.6 injects its proxy last (the namespace is labelled istio-injection: enabled)
    assert [c["name"] for c in spec["containers"]] == ["kfserving-container", "agent", "istio-proxy"]
    assert [c["name"] for c in spec["initContainers"]] == ["istio-init"]
    assert spec["containers"][2]["image"] == "docker.io/istio/proxyv2:1.1.6"
    assert spec["containers"][2]["resources"]["requests"] == {"cpu": "10m", "memory": "40Mi"}
    assert spec["nodeName"] == NODE_NAME and spec["serviceAccountName"] == "sa"
    assert found["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    agent_env = {e["name"]: e for e in spec["containers"][1]["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert agent_env[key] == {"name": key, "valueFrom": {"secretKeyRef": {"name": "mysecret", "key": key}}}
    assert agent_env["S3_ENDPOINT"]["value"] == "minio-service.kubeflow:9000"
    assert stack.s3_credentials().secret_key not in json.dumps(found)
    status = found["status"]
    assert status["phase"] == "Running" and status["podIP"] == "127.0.0.1"
    table = kubectl(stack, "get", "pods", "-l", LABEL, "-n", NS).stdout
    assert re.search(rf"^{server}\s+3/3\s+Running\s+\d+", table, re.M), table
    init = {s["name"]: s for s in status["initContainerStatuses"]}["istio-init"]
    assert init["state"]["terminated"]["reason"] == "Completed"
    proxy = {s["name"]: s for s in status["containerStatuses"]}["istio-proxy"]
    assert proxy["ready"] and "running" in proxy["state"]


def test_kubectl_logs_shows_the_agent_and_triton(stack: Stack, server: str) -> None:
    agent = kubectl(stack, "-n", NS, "logs", f"pod/{server}", "agent").stdout.splitlines()
    assert agent and all(json.loads(line)["logger"] for line in agent)
    assert any(json.loads(line)["msg"] == "Watching" for line in agent)
    triton = kubectl(stack, "logs", server, "kfserving-container", "-n", NS).stdout
    assert "Started HTTPService" in triton and "=== " not in triton  # the stack's run headers stay out
    assert len(kubectl(stack, "logs", server, "agent", "-n", NS, "--tail=2").stdout.splitlines()) == 2
    stamped = kubectl(stack, "logs", server, "agent", "-n", NS, "--tail=1", "--timestamps").stdout
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \{", stamped), stamped
    assert kubectl(stack, "logs", server, "agent", "-n", NS, "--since=1h").stdout.strip()
    wrong = kubectl(stack, "logs", server, "nope", "-n", NS, check=False)
    assert wrong.returncode != 0 and "container nope is not valid" in wrong.stderr
    assert kubectl(stack, "logs", server, "istio-proxy", "-n", NS).stdout == ""  # no process here, no lines


def test_kubectl_logs_follows_the_agent(stack: Stack, kube, server: str) -> None:
    follow = subprocess.Popen(["kubectl", "--kubeconfig", str(stack.kubeconfig), "logs", "-f", "--tail=1",
                               server, "agent", "-n", NS], stdout=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follow.stdout), daemon=True)
    reader.start()
    try:
        poll_until(lambda: lines, "the followed log's last line", timeout=60)  # the stream is open
        tm = {"apiVersion": "serving.kubeflow.org/v1alpha1", "kind": "TrainedModel",
              "metadata": {"name": "followed", "namespace": NS},
              "spec": {"inferenceService": SERVER,
                       "model": {"framework": "pytorch", "storageUri": "s3://nowhere/followed", "memory": "64Mi"}}}
        k8s.apply_all(kube, [tm])
        poll_until(lambda: any('"followed"' in line and "adding model" in line for line in lines),
                   "the followed agent log to show the new model", timeout=60)
    finally:
        follow.terminate()
        follow.wait(timeout=10)
        client.CustomObjectsApi(kube).delete_namespaced_custom_object(
            "serving.kubeflow.org", "v1alpha1", NS, "trainedmodels", "followed")


def test_triton_killed_restart_count_grows_and_previous_shows_the_old_log(stack: Stack, server: str) -> None:
    before = restarts(stack, "kfserving-container")
    records = json.loads((stack.servers_dir / f"{NS}.{SERVER}" / "processes.json").read_text())
    old_pid = records["triton"]["pid"]
    os.kill(old_pid, signal.SIGKILL)
    poll_until(lambda: restarts(stack, "kfserving-container") == before + 1,
               "RESTARTS of kfserving-container to grow", timeout=120, interval=0.5)
    table = kubectl(stack, "get", "pod", server, "-n", NS).stdout
    assert re.search(rf"^{server}\s+\d/3\s+\S+\s+{before + 1}\b", table, re.M), table
    last = next(s for s in pod(stack)["status"]["containerStatuses"] if s["name"] == "kfserving-container")
    assert last["lastState"]["terminated"]["exitCode"] == 137  # 128 + SIGKILL, as a runtime reports it
    previous = kubectl(stack, "logs", server, "kfserving-container", "-n", NS, "--previous").stdout
    assert f" {old_pid} " in previous and "Started HTTPService" in previous
    current = kubectl(stack, "logs", server, "kfserving-container", "-n", NS).stdout
    assert f" {old_pid} " not in current
    poll_until(lambda: requests.get(f"{ingress(stack)}/v2", headers={"Host": HOST, **stack.gateway_headers()},
                                            timeout=5).status_code == 200,
               "the restarted server to answer through the gateway", timeout=120)


def test_the_gateway_routes_by_host_and_answers_404_to_others(stack: Stack, server: str) -> None:
    url = ingress(stack)
    root = poll_until(lambda: requests.get(f"{url}/v2", headers={"Host": HOST, **stack.gateway_headers()}, timeout=5),
                      "the route", 60, interval=0.5)
    assert root.status_code == 200 and root.json()["name"] == "triton"
    assert requests.get(f"{url}/v2", headers={"Host": "nobody.example.com", **stack.gateway_headers()},
                        timeout=5).status_code == 404
    # The guide's cluster has KFServing's own gateway beside Istio's, unguarded, on an address of its own.
    open_ip = OPEN_ADDRESS if stack.profile().kfserving_gateway else "127.0.0.1"
    for name, ip in (("istio-ingressgateway", "127.0.0.1"), ("kfserving-ingressgateway", open_ip)):
        svc = json.loads(kubectl(stack, "-n", "istio-system", "get", "service", name, "-o", "json").stdout)
        assert svc["spec"]["type"] == "LoadBalancer"
        assert svc["status"]["loadBalancer"]["ingress"][0]["ip"] == ip
        http2 = next(p["port"] for p in svc["spec"]["ports"] if p["name"] == "http2")
        assert url == ("http://127.0.0.1" if http2 == 80 else f"http://127.0.0.1:{http2}")


def test_the_kubelet_endpoint_refuses_a_client_without_a_certificate(stack: Stack, server: str) -> None:
    port = int((stack.root / "kubelet.port").read_text())
    url = f"https://127.0.0.1:{port}/containerLogs/{NS}/{server}/agent"
    with pytest.raises(requests.exceptions.RequestException):
        requests.get(url, verify=str(stack.cp.kubelet_ca), timeout=10)
    with pytest.raises(requests.exceptions.RequestException):  # a cert the kubelet's CA did not sign
        requests.get(url, verify=str(stack.cp.kubelet_ca), cert=(str(stack.cp.cert), str(stack.cp.key)), timeout=10)
    allowed = requests.get(url, verify=str(stack.cp.kubelet_ca), timeout=10,
                           cert=(str(stack.cp.kubelet_client_cert), str(stack.cp.kubelet_client_key)))
    assert allowed.status_code == 200 and '"logger"' in allowed.text


def test_env_exports_the_gateway_and_an_rclone_remote_without_secrets(stack: Stack, server: str) -> None:
    env = {**os.environ, "MMS_STATE_DIR": str(stack.root)}
    exports = subprocess.run([os.sys.executable, "-m", "helpers.local", "env"], env=env, capture_output=True,
                             text=True, timeout=60).stdout
    creds = stack.s3_credentials()
    assert creds.secret_key not in exports and creds.access_key not in exports
    assert f"export MMS_INGRESS_URL={ingress(stack)}" in exports
    assert stack.rclone_config.stat().st_mode & 0o777 == 0o600
    listed = subprocess.run(["bash", "-c", 'eval "$(python -m helpers.local env)" && rclone lsd myminio:'],
                            env={**env, "PATH": os.path.dirname(os.sys.executable) + os.pathsep + env["PATH"]},
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr


def test_a_deleted_pod_is_replaced_and_a_deleted_server_takes_its_pod(stack: Stack, kube, server: str) -> None:
    """The replacement starts with no restarts, so `--previous` is refused there as the kubelet refuses
    it (whatever the old pod went through); deleting the server then takes its pod and route."""
    kubectl(stack, "delete", "pod", server, "-n", NS, "--wait=false")
    replaced = poll_until(lambda: pod(stack)["metadata"]["name"] != server and pod(stack),
                          "a new pod for the server", timeout=120, interval=0.5)
    assert all(s["restartCount"] == 0 for s in replaced["status"].get("containerStatuses") or [])
    done = kubectl(stack, "logs", replaced["metadata"]["name"], "agent", "-n", NS, "--previous", check=False)
    assert done.returncode != 0 and 'previous terminated container "agent"' in done.stderr
    poll_until(lambda: kubectl(stack, "get", "pod", server, "-n", NS, check=False).returncode != 0,
               "the deleted pod to be gone", timeout=60)
    client.CustomObjectsApi(kube).delete_namespaced_custom_object(
        KFSERVING_GROUP, "v1beta1", NS, "inferenceservices", SERVER)
    poll_until(lambda: not json.loads(kubectl(stack, "get", "pods", "-n", NS, "-o", "json").stdout)["items"],
               "the server's pod to be deleted with it", timeout=120, interval=0.5)
    poll_until(lambda: requests.get(f"{ingress(stack)}/v2", headers={"Host": HOST}, timeout=5,
                                    allow_redirects=False).status_code == 404,
               "the gateway to drop the server's route", timeout=60)
