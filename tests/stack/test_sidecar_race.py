"""The Istio sidecar race (kserve/kserve#1370) on the kubeflow-1.10 stack, and the doctor's `sidecar_race`.

Kubeflow 1.10's istiod injects a native sidecar, which starts before the agent: no race there, and the local
API server (Kubernetes 1.20) cannot even store it. A pod that asks for the old kind
(`sidecar.istio.io/nativeSidecar: "false"`) gets the `istio-proxy` container last: a new pod's agent then calls
S3 before Envoy listens and is refused; the release's agent tries once and leaves the model unloaded. With
`proxy.istio.io/config: '{"holdApplicationUntilProxyStarts": true}'` the proxy goes first with `pilot-agent
wait` and the new pod's agent loads every model. The doctor names the first and is quiet on the second.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from helpers.core.constants import KSERVE_GROUP

NS, SERVER, MODEL, BUCKET = "sidecar-race", "triton-race", "early", "sidecar-race"
OLD_KIND = {"sidecar.istio.io/nativeSidecar": "false"}
HOLD = {"proxy.istio.io/config": '{"holdApplicationUntilProxyStarts": true}'}


@pytest.mark.stack
def test_a_new_pods_agent_meets_the_sidecar_race_until_the_pod_holds_for_its_proxy(kserve_stack, kserve_kube,
                                                                                     tmp_path) -> None:
    from support.stacks import pointed_at

    with pointed_at(kserve_stack):
        _race(kserve_stack, kserve_kube, tmp_path)


def _race(stack, kube, tmp_path) -> None:
    from kubernetes import client

    from helpers.clients import k8s, manifests, storage
    from helpers.clients.target import Local
    from helpers.core.constants import api_group
    from helpers.core.wait import poll_until
    from helpers.steps.models import agent_log
    from helpers.steps.troubleshoot import doctor
    from support.guide_steps import apply_guide_steps, guide_values, stack_s3, trained_model, upload_cifar10_as
    from support.walkthroughs import delete_server

    group = api_group(KSERVE_GROUP)
    values = guide_values(stack, NS, SERVER, group.group)
    core, custom = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    s3 = stack_s3(stack, BUCKET)
    upload_cifar10_as(s3, tmp_path / MODEL, BUCKET, f"race/{MODEL}", MODEL)
    tm = trained_model(group, MODEL, NS, SERVER, f"s3://{BUCKET}/race/{MODEL}")
    label = f"{group.isvc_label}={SERVER}"
    log = stack.logs / f"agent-{NS}.{SERVER}.log"

    def server(annotations: dict) -> None:
        (isvc,) = manifests.render("multi_model_triton_server.yaml", **values)
        isvc["metadata"]["annotations"] = annotations  # the manifest's hold replaced by what this step asks
        k8s.apply(kube, isvc)
        poll_until(lambda: "True" in [c.get("status") for c in (custom.get_namespaced_custom_object(
            group.group, group.isvc_version, NS, "inferenceservices", SERVER).get("status") or {}).get(
            "conditions", []) if c.get("type") == "Ready"], "the server to be Ready", timeout=300)

    def live_pod() -> dict:
        """The pod of the InferenceService there now (a deleted one's pod may linger until garbage-collected)."""
        uid = custom.get_namespaced_custom_object(group.group, group.isvc_version, NS, "inferenceservices",
                                                  SERVER)["metadata"]["uid"]
        pods = [p for p in core.list_namespaced_pod(NS, label_selector=label).items if not p.metadata.deletion_timestamp
                and any(o.uid == uid for o in p.metadata.owner_references or [])]
        assert len(pods) == 1, [p.metadata.name for p in pods]
        return kube.sanitize_for_serialization(pods[0])

    def events_since(offset: int) -> list[dict]:
        data = log.read_bytes() if log.exists() else b""
        data = data[offset:] if offset <= len(data) else data
        return [e for e in agent_log.parse(data.decode(errors="replace").splitlines()) if e["model"] == MODEL]

    def loaded_since(offset: int) -> bool:
        return any(e["msg"].startswith("Successfully loaded model") for e in events_since(offset))

    def new_pod() -> tuple[str, int]:
        """Delete the server's pod, as `kubectl delete pod -l` does; the new pod's agent starts with the model listed."""
        old = live_pod()["metadata"]["name"]
        offset = log.stat().st_size
        done = subprocess.run(["kubectl", "delete", "pod", "-n", NS, "-l", label, "--wait=false"], capture_output=True,
                              text=True, timeout=60, env={**os.environ, **stack.env()})
        assert done.returncode == 0, done.stderr
        poll_until(lambda: live_pod()["metadata"]["name"] != old and live_pod(), "a new pod", timeout=120, interval=0.5)
        return old, offset

    def checks() -> dict:
        facts = doctor.gather(kube, Local(), NS, SERVER, group.group, bucket=BUCKET)
        return {f.id: f for f in doctor.run_checks(facts)}

    try:
        apply_guide_steps(kube, values, server=False)
        # 1. The old kind of sidecar, not held: last among the containers, with istio-init.
        server(OLD_KIND)
        found = live_pod()
        assert [c["name"] for c in found["spec"]["containers"]] == ["kserve-container", "agent", "istio-proxy"]
        assert [c["name"] for c in found["spec"]["initContainers"]] == ["istio-init"]
        proxy = found["spec"]["containers"][2]
        assert proxy["image"] == "gcr.io/istio-release/proxyv2:1.24.3" and "lifecycle" not in proxy
        table = subprocess.run(["kubectl", "--kubeconfig", str(stack.kubeconfig), "get", "pods", "-n", NS, "-l", label],
                               capture_output=True, text=True, timeout=60).stdout
        assert " 3/3 " in table and "Running" in table, table
        quiet = checks()["sidecar_race"]
        assert quiet.result == doctor.OK and "no `connection refused`" in quiet.evidence, quiet
        # A model applied to a running server: the proxy is up by then, the agent loads it.
        k8s.apply(kube, tm)
        poll_until(lambda: loaded_since(0), "the agent to load the model", timeout=180)

        # 2. A new pod starts with the model listed: its agent's listing is refused before Envoy listens.
        _, offset = new_pod()

        def refused() -> list[dict]:
            return [e for e in events_since(offset) if e["msg"].startswith(f"Failed to download model {MODEL} with err")]

        (failure,) = poll_until(refused, "the new pod's agent to give up on the model", timeout=180)
        assert "connect: connection refused" in failure["msg"] and "127.0.0.1" not in failure["msg"], failure
        assert 'Get "http://minio-service.kubeflow:9000/' in failure["msg"]
        race = poll_until(lambda: (f := checks()["sidecar_race"]).result == doctor.PROBLEM and f,
                          "the doctor to name the race", timeout=60)
        # (a long line is quoted by its start and the part that ends with `connection refused`)
        assert f"Failed to download model {MODEL} with err" in race.evidence and "no `pilot-agent wait` hook" in race.evidence
        assert "proxy.istio.io/config" in race.fix and race.issue.endswith("1370")
        gave_up = checks()["gave_up"]
        assert gave_up.result == doctor.PROBLEM and MODEL in gave_up.evidence, gave_up
        assert not loaded_since(offset)  # the release's agent tried once

        # 3. The fix: the server again with the hold; a new pod then holds its containers for the proxy.
        delete_server(kube, stack, group.group, SERVER, NS)
        server({**OLD_KIND, **HOLD})
        found = live_pod()
        proxy = found["spec"]["containers"][0]
        assert proxy["name"] == "istio-proxy"
        assert proxy["lifecycle"] == {"postStart": {"exec": {"command": ["pilot-agent", "wait"]}}}
        offset = log.stat().st_size if log.exists() else 0
        k8s.apply(kube, tm)
        poll_until(lambda: loaded_since(offset), "the model loaded", timeout=180)
        _, offset = new_pod()
        poll_until(lambda: loaded_since(offset), "the held pod's agent to load the model at once", timeout=180)
        assert not [e for e in events_since(offset) if "connection refused" in json.dumps(e)]
        held = checks()["sidecar_race"]
        assert held.result == doctor.OK and "waits for the proxy" in held.evidence, held
        assert checks()["gave_up"].result == doctor.OK
    finally:
        delete_server(kube, stack, group.group, SERVER, NS)
        storage.delete_prefix(s3, BUCKET, f"race/{MODEL}")
        custom.delete_cluster_custom_object("kubeflow.org", "v1", "profiles", NS)
