"""helpers.steps.troubleshoot.doctor names what 06 does not stage, on both API groups' stacks.

A prefix listed as the agent lists it and a TrainedModel stuck Terminating; a model the release's
agent gave up on until the TrainedModel is applied again; KFServing 0.5.1's agent panic without an
S3 endpoint (and the sidecar race its new pod meets); Ready TrainedModels left out of a models.json
past 1 MiB. 06 itself, and the doctor after each of its pitfalls: test_doctor_06.py.
"""
from __future__ import annotations

import json
import os
import subprocess
from typing import Optional

import pytest

from helpers.core.constants import KFSERVING_GROUP


@pytest.mark.stack
def test_the_doctor_lists_each_prefix_as_the_agent_asks_and_names_a_trainedmodel_stuck_terminating(stack, kube) -> None:
    """Without a server or a notebook: a namespace with the S3 Secret, the bucket with a model folder and a sibling
    (`cifar10-old/`), and a TrainedModel held by a finalizer after its server is gone (the controller deletes a
    TrainedModel without an InferenceService, as KServe does). The doctor lists the prefix on the stack's S3
    server as the agent does and names the sibling; it names the TrainedModel stuck Terminating, and its fix, run
    as printed, lets it go; the admin may create TrainedModels."""
    _listing_and_terminating(stack, kube, KFSERVING_GROUP)


@pytest.mark.stack
def test_the_same_on_the_kubeflow_1_10_profile(kserve_stack, kserve_kube) -> None:
    from helpers.core.constants import KSERVE_GROUP
    from support.stacks import pointed_at

    with pointed_at(kserve_stack):  # Local() reads this stack's state (its S3 address), not the session's first
        _listing_and_terminating(kserve_stack, kserve_kube, KSERVE_GROUP)


def _listing_and_terminating(stack, kube, group_name: str) -> None:
    import base64
    import io
    import json as jsonlib
    import shlex

    from kubernetes import client

    from helpers.clients.manifests import DEFAULTS
    from helpers.clients.storage import connect
    from helpers.clients.target import Local
    from helpers.core.constants import api_group
    from helpers.core.wait import poll_until
    from helpers.steps.objectstore.kubeflow_minio import from_secret
    from helpers.steps.troubleshoot import doctor

    namespace, bucket, server, group = "doctor-listing", "doctor-listing", "gone", api_group(group_name)
    core, custom = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    keys = stack.s3_credentials()
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=namespace)))
    try:
        notes = {group.s3_endpoint: "minio-service.kubeflow:9000", group.s3_usehttps: "0",
                 group.s3_region: "us-east-1", group.s3_usevirtualbucket: "false"}
        data = {"AWS_ACCESS_KEY_ID": keys.access_key, "AWS_SECRET_ACCESS_KEY": keys.secret_key}
        core.create_namespaced_secret(namespace, client.V1Secret(
            metadata=client.V1ObjectMeta(name="doctor-s3", annotations=notes),
            data={k: base64.b64encode(v.encode()).decode() for k, v in data.items()}))
        core.create_namespaced_service_account(namespace, client.V1ServiceAccount(
            metadata=client.V1ObjectMeta(name=DEFAULTS["service_account"]),
            secrets=[client.V1ObjectReference(name="doctor-s3")]))
        s3 = connect(from_secret(kube, Local(), group, namespace, "doctor-s3"))
        if not s3.bucket_exists(bucket):
            s3.make_bucket(bucket)
        for key in ("m/cifar10/config.pbtxt", "m/cifar10/1/model.pt", "m/cifar10-old/config.pbtxt"):
            s3.put_object(bucket, key, io.BytesIO(b"x"), 1)
        custom.create_namespaced_custom_object(group.group, group.tm_version, namespace, "trainedmodels", {
            "apiVersion": group.tm_api_version, "kind": "TrainedModel",
            "metadata": {"name": "cifar10", "finalizers": ["doctor.test/hold"]},
            "spec": {"inferenceService": server, "model": {"framework": "pytorch", "memory": "1Gi",
                                                           "storageUri": f"s3://{bucket}/m/cifar10"}}})

        def terminating() -> bool:
            tm = custom.get_namespaced_custom_object(group.group, group.tm_version, namespace, "trainedmodels", "cifar10")
            return bool(tm["metadata"].get("deletionTimestamp"))

        poll_until(terminating, "the controller to delete the TrainedModel of a missing server", timeout=60)
        facts = doctor.gather(kube, Local(), namespace, server, group.group, bucket=bucket)
        assert facts.listings == {f"s3://{bucket}/m/cifar10": {
            "count": 3, "truncated": False, "markers": [], "siblings": ["m/cifar10-old/config.pbtxt"]}}, facts.listings
        found = {f.id: f for f in doctor.run_checks(facts)}
        sibling = found["sibling_prefix"]
        assert sibling.result == doctor.PROBLEM and "m/cifar10-old/config.pbtxt" in sibling.evidence
        assert found["one_page"].result == doctor.OK and found["rbac"].result == doctor.OK
        stuck = found["terminating"]
        assert stuck.result == doctor.PROBLEM and "doctor.test/hold" in stuck.evidence, stuck
        patch = shlex.split(stuck.fix.split("`")[1])  # the printed command, as a shell would split it
        assert patch[:3] == ["kubectl", "patch", "trainedmodel"] and patch[patch.index("-p") + 1]
        custom.patch_namespaced_custom_object(group.group, group.tm_version, namespace, "trainedmodels", "cifar10",
                                              jsonlib.loads(patch[patch.index("-p") + 1]))
        poll_until(lambda: not custom.list_namespaced_custom_object(
            group.group, group.tm_version, namespace, "trainedmodels")["items"], "the TrainedModel to go", timeout=30)
        again = doctor.gather(kube, Local(), namespace, server, group.group, bucket=bucket)
        assert {f.id: f.result for f in doctor.run_checks(again)}["terminating"] == doctor.OK
    finally:
        core.delete_namespace(namespace)


@pytest.mark.stack
def test_the_doctor_names_a_model_the_release_agent_gave_up_on_until_it_is_applied_again(stack, kube, tmp_path) -> None:
    """The guide's server with a TrainedModel whose files are not uploaded yet: the agent (KFServing 0.5.1's, as
    the profile has it) tries once, and the doctor quotes its failure line. Uploading alone changes nothing; the
    doctor's fix (delete the TrainedModel, apply it again) loads it, and the check is quiet."""
    _gave_up_until_applied_again(stack, kube, tmp_path, KFSERVING_GROUP)


@pytest.mark.stack
def test_the_same_agent_failure_on_the_kubeflow_1_10_profile(kserve_stack, kserve_kube, tmp_path) -> None:
    from helpers.core.constants import KSERVE_GROUP
    from support.stacks import pointed_at

    with pointed_at(kserve_stack):
        _gave_up_until_applied_again(kserve_stack, kserve_kube, tmp_path, KSERVE_GROUP)


def _gave_up_until_applied_again(stack, kube, tmp_path, group_name: str) -> None:
    from kubernetes import client

    from helpers.clients import k8s, storage
    from helpers.core.constants import api_group
    from helpers.core.wait import poll_until
    from helpers.steps.troubleshoot import doctor
    from support.guide_steps import apply_guide_steps, guide_values, stack_s3, trained_model, upload_cifar10_as
    from support.walkthroughs import delete_server

    namespace, server, model = "doctor-gave-up", "triton-gave-up", "late"
    group = api_group(group_name)
    values = guide_values(stack, namespace, server, group.group)
    bucket = "doctor-gave-up"
    uri = f"s3://{bucket}/doctor/{model}"
    s3 = stack_s3(stack, bucket)
    custom = client.CustomObjectsApi(kube)
    tm = trained_model(group, model, namespace, server, uri)

    def finding(key: str) -> doctor.Finding:
        facts = doctor.gather(kube, _local(), namespace, server, group.group, bucket=bucket)
        return {f.id: f for f in doctor.run_checks(facts)}[key]

    def agent_says(words: str) -> bool:
        """An agent log event for the model whose message starts with `words` (KFServing 0.5.1 names the model
        in a field, not in msg, but for its failure lines)."""
        from helpers.steps.models import agent_log

        log = stack.logs / f"agent-{namespace}.{server}.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        return any(e["msg"].startswith(words) and e["model"] == model for e in agent_log.parse(lines))

    try:
        apply_guide_steps(kube, values)
        poll_until(lambda: "True" in [c.get("status") for c in (custom.get_namespaced_custom_object(
            group.group, group.isvc_version, namespace, "inferenceservices", server).get("status") or {}).get(
            "conditions", []) if c.get("type") == "Ready"], "the server to be Ready", timeout=300)
        k8s.apply(kube, tm)
        poll_until(lambda: agent_says(f"Failed to download model {model} with err"), "the agent to fail once", timeout=120)
        gave_up = finding("gave_up")
        assert gave_up.result == doctor.PROBLEM, gave_up
        assert f"Failed to download model {model} with err" in gave_up.evidence
        assert f"TrainedModel {model} is Ready (in the ConfigMap)" in gave_up.evidence
        assert f"kubectl delete trainedmodel {model} -n {namespace}" in gave_up.fix
        assert finding("served").result == doctor.OK  # left to gave_up
        upload_cifar10_as(s3, tmp_path / model, bucket, f"doctor/{model}", model)
        assert finding("gave_up").result == doctor.PROBLEM  # no release's agent tries again by itself
        custom.delete_namespaced_custom_object(group.group, group.tm_version, namespace, "trainedmodels", model)
        poll_until(lambda: not custom.list_namespaced_custom_object(
            group.group, group.tm_version, namespace, "trainedmodels")["items"], "the TrainedModel to go", timeout=120)
        k8s.apply(kube, tm)
        poll_until(lambda: agent_says("Successfully loaded model"), "the agent to load it", timeout=180)
        poll_until(lambda: finding("gave_up").result == doctor.OK, "the doctor to see it loaded", timeout=60)
        assert finding("served").result == doctor.OK
    finally:
        delete_server(kube, stack, group.group, server, namespace)
        storage.delete_prefix(s3, bucket, f"doctor/{model}")
        custom.delete_cluster_custom_object("kubeflow.org", "v1", "profiles", namespace)


def _local():
    from helpers.clients.target import Local

    return Local()


@pytest.mark.stack
def test_the_doctor_names_kfserving_051s_agent_panic_without_an_endpoint(stack, kube, tmp_path) -> None:
    """KFServing 0.5.1's agent (the kfserving-0.5 profile) with a Secret that has no s3-endpoint annotation panics on
    the first download and restarts (kserve/kserve#1317): the doctor quotes the panic, the agent's restarts and
    its env; after its fix (annotate the Secret, delete the pod) the new pod's agent no longer panics but meets
    Istio 1.1's sidecar race, and applying the TrainedModel again loads the model."""
    from kubernetes import client

    from helpers.clients import k8s, manifests, storage
    from helpers.core.constants import api_group
    from helpers.core.wait import poll_until
    from helpers.steps.models import agent_log
    from helpers.steps.troubleshoot import doctor
    from support.guide_steps import apply_guide_steps, guide_values, stack_s3, trained_model, upload_cifar10_as
    from support.walkthroughs import delete_server

    if stack.profile().release != "v0.5.1":
        pytest.skip("only KFServing 0.5.1's agent panics without an endpoint")
    namespace, server, model, bucket = "doctor-panic", "triton-panic", "panicky", "doctor-panic"
    group = api_group(KFSERVING_GROUP)
    values = guide_values(stack, namespace, server, group.group)
    s3 = stack_s3(stack, bucket)
    upload_cifar10_as(s3, tmp_path / model, bucket, f"doctor/{model}", model)
    core, custom = client.CoreV1Api(kube), client.CustomObjectsApi(kube)
    tm = trained_model(group, model, namespace, server, f"s3://{bucket}/doctor/{model}")

    def checks() -> dict:
        facts = doctor.gather(kube, _local(), namespace, server, group.group, bucket=bucket)
        return {f.id: f for f in doctor.run_checks(facts)}

    def agent_events() -> list[dict]:
        log = stack.logs / f"agent-{namespace}.{server}.log"
        return agent_log.parse(log.read_text(errors="replace").splitlines()) if log.exists() else []

    try:
        apply_guide_steps(kube, values, server=False)
        secret = values["secret_name"]
        core.patch_namespaced_secret(secret, namespace, {"metadata": {"annotations": {group.s3_endpoint: None}}})
        k8s.apply_all(kube, manifests.render("multi_model_triton_server.yaml", **values))
        poll_until(lambda: "True" in [c.get("status") for c in (custom.get_namespaced_custom_object(
            group.group, group.isvc_version, namespace, "inferenceservices", server).get("status") or {}).get(
            "conditions", []) if c.get("type") == "Ready"], "the server to be Ready", timeout=300)
        k8s.apply(kube, tm)
        log = stack.logs / f"agent-{namespace}.{server}.log"
        poll_until(lambda: log.exists() and "nil pointer dereference" in log.read_text(errors="replace"),
                   "the agent to panic", timeout=120)
        def restarted() -> Optional[doctor.Finding]:
            found = checks()["agent_panic"]
            return found if found.result == doctor.PROBLEM and "(last exit code 2)" in found.evidence else None

        panic = poll_until(restarted, "the doctor to see the agent restarted", timeout=120)
        assert panic.result == doctor.PROBLEM and "nil pointer dereference" in panic.evidence, panic
        assert "no S3_ENDPOINT or AWS_ENDPOINT_URL" in panic.evidence and panic.issue.endswith("1317")
        assert f"{group.s3_endpoint} (01_minio)" in panic.fix
        command = panic.fix.split("`")[1]
        assert command.startswith(f"kubectl delete pod -n {namespace} -l {group.isvc_label}={server}")
        # the fix, as printed: annotate the Secret, then the delete-pod command
        core.patch_namespaced_secret(secret, namespace, {"metadata": {"annotations": {
            group.s3_endpoint: values["s3_endpoint"]}}})
        before = len(agent_events())
        done = subprocess.run(command.split(), capture_output=True, text=True, timeout=120,
                              env={**os.environ, **stack.env()})
        assert done.returncode == 0, done.stderr
        # The new pod has an endpoint now, and no panic; but on the guide's Istio 1.1.6 its proxy starts after the
        # agent (proxy.istio.io/config, which Istio 1.7+ reads, changes nothing there), so the agent's first listing
        # is refused and, trying once, it leaves the model unloaded (kserve/kserve#1370). Applying the TrainedModel
        # again once the pod runs loads it.
        refused = poll_until(lambda: [e for e in agent_events()[before:] if e["model"] == model
                                      and e["msg"].startswith(f"Failed to download model {model} with err")],
                             "the new pod's agent to meet the sidecar race", timeout=180)
        assert "connect: connection refused" in refused[0]["msg"], refused
        assert not [e for e in agent_events()[before:] if "nil pointer dereference" in json.dumps(e)]
        # the doctor names the race, and sends the learner to the TrainedModels, not to the annotation Istio 1.1.6 ignores
        race = poll_until(lambda: (f := checks()["sidecar_race"]).result == doctor.PROBLEM and f,
                          "the doctor to name the sidecar race", timeout=60)
        assert "Istio 1.1.6 has no such option" in race.evidence and "Istio 1.1.6 cannot hold" in race.fix, race
        custom.delete_namespaced_custom_object(group.group, group.tm_version, namespace, "trainedmodels", model)
        poll_until(lambda: not custom.list_namespaced_custom_object(
            group.group, group.tm_version, namespace, "trainedmodels")["items"], "the TrainedModel to go", timeout=120)
        k8s.apply(kube, tm)
        poll_until(lambda: any(e["msg"].startswith("Successfully loaded model") and e["model"] == model
                               for e in agent_events()[before:]), "the new pod's agent to load the model", timeout=180)
    finally:
        delete_server(kube, stack, group.group, server, namespace)
        storage.delete_prefix(s3, bucket, f"doctor/{model}")
        custom.delete_cluster_custom_object("kubeflow.org", "v1", "profiles", namespace)


@pytest.mark.stack
def test_the_doctor_names_ready_trainedmodels_left_out_of_a_models_json_past_one_mib(stack, kube) -> None:
    """Two TrainedModels with 600 KB storageUris (issue 24): the controller cannot write the second into the
    ConfigMap (422 `Too long`) and the TrainedModel reads Ready all the same; the doctor names it with the
    ConfigMap's size and the fix, and is quiet once it is deleted."""
    _models_json_past_one_mib(stack, kube, KFSERVING_GROUP)


@pytest.mark.stack
def test_the_same_past_one_mib_on_the_kubeflow_1_10_profile(kserve_stack, kserve_kube) -> None:
    from helpers.core.constants import KSERVE_GROUP
    from support.stacks import pointed_at

    with pointed_at(kserve_stack):
        _models_json_past_one_mib(kserve_stack, kserve_kube, KSERVE_GROUP)


def _models_json_past_one_mib(stack, kube, group_name: str) -> None:
    from kubernetes import client

    from helpers.clients import k8s
    from helpers.core.constants import api_group
    from helpers.core.wait import poll_until
    from helpers.steps.troubleshoot import doctor
    from support.guide_steps import apply_guide_steps, guide_values
    from support.walkthroughs import delete_server

    namespace, server = "doctor-mib", "triton-mib"
    group = api_group(group_name)
    custom = client.CustomObjectsApi(kube)

    def tm(name: str) -> dict:
        return {"apiVersion": group.tm_api_version, "kind": "TrainedModel",
                "metadata": {"name": name, "namespace": namespace},
                "spec": {"inferenceService": server, "model": {
                    "framework": "pytorch", "memory": "1Mi", "storageUri": f"s3://doctor-mib/{'p' * 600_000}-{name}"}}}

    def ready(name: str) -> bool:
        found = custom.get_namespaced_custom_object(group.group, group.tm_version, namespace, "trainedmodels", name)
        return any(c.get("type") == "Ready" and c.get("status") == "True"
                   for c in (found.get("status") or {}).get("conditions") or [])

    def finding() -> doctor.Finding:
        facts = doctor.gather(kube, _local(), namespace, server, group.group, probe_s3=False)
        return {f.id: f for f in doctor.run_checks(facts)}["models_json"]

    try:
        apply_guide_steps(kube, guide_values(stack, namespace, server, group.group))
        poll_until(lambda: "True" in [c.get("status") for c in (custom.get_namespaced_custom_object(
            group.group, group.isvc_version, namespace, "inferenceservices", server).get("status") or {}).get(
            "conditions", []) if c.get("type") == "Ready"], "the server to be Ready", timeout=300)
        k8s.apply(kube, tm("huge-first"))
        poll_until(lambda: ready("huge-first"), "huge-first Ready", timeout=60)
        quiet = finding()
        assert quiet.result == doctor.OK and f"modelconfig-{server}-0: 1 model(s)" in quiet.evidence, quiet
        k8s.apply(kube, tm("huge-second"))
        poll_until(lambda: ready("huge-second"), "huge-second Ready (handed over, as upstream says it)", timeout=60)
        found = finding()
        assert found.result == doctor.PROBLEM, found
        assert "Ready TrainedModel(s) not in it: huge-second" in found.evidence and "1048576" in found.evidence
        assert "another InferenceService" in found.fix
        custom.delete_namespaced_custom_object(group.group, group.tm_version, namespace, "trainedmodels", "huge-second")
        poll_until(lambda: finding().result == doctor.OK, "the doctor to be quiet without huge-second", timeout=60)
    finally:
        for name in ("huge-second", "huge-first"):
            try:
                custom.delete_namespaced_custom_object(group.group, group.tm_version, namespace, "trainedmodels", name)
            except client.exceptions.ApiException:
                pass
        delete_server(kube, stack, group.group, server, namespace)
        custom.delete_cluster_custom_object("kubeflow.org", "v1", "profiles", namespace)
