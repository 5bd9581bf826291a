"""The storageUri server's pure pieces: what the storage initializer copies where and says when it fails
(per release), the pod KServe makes for it (init container, args without explicit model control) and
the statuses the local kubelet writes for it (Init:0/1, Init:Error, Init:CrashLoopBackOff)."""
from __future__ import annotations

import io
import types
from pathlib import Path

import pytest

from helpers.clients.storage import S3Settings
from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP, api_group
from helpers.local import initializer
from helpers.local.controller import pods, servers
from helpers.local.initializer import InitializerError, Output, Release, plan

V051, V0141, V0152 = Release("v0.5.1"), Release("v0.14.1"), Release("v0.15.2")
REPO = ["models/cifar10/1/model.pt", "models/cifar10/config.pbtxt", "models/inception/config.pbtxt"]


@pytest.mark.parametrize("release", [V051, V0141, V0152])
def test_a_repository_prefix_lands_one_folder_per_model(release: Release) -> None:
    assert plan(release, "models", ["models/", *REPO]) == [
        ("models/cifar10/1/model.pt", "cifar10/1/model.pt"), ("models/cifar10/config.pbtxt", "cifar10/config.pbtxt"),
        ("models/inception/config.pbtxt", "inception/config.pbtxt")]


def test_the_prefix_is_matched_as_written_not_as_a_folder() -> None:
    # `s3://b/models` also lists `models-old/...`: KServe 0.15 writes it under `-old/`, as boto3's
    # filter(Prefix=) and re.sub("^models/?") make it; KFServing 0.5.1 strips the "/" too.
    assert plan(V0152, "models", ["models-old/x/config.pbtxt"]) == [("models-old/x/config.pbtxt", "-old/x/config.pbtxt")]
    assert plan(V051, "models", ["models-old/x/config.pbtxt"]) == [("models-old/x/config.pbtxt", "-old/x/config.pbtxt")]


def test_kserve_0_14_1_flattens_a_file_named_like_the_prefix_and_removes_every_occurrence() -> None:
    assert plan(V0141, "m/cifar10", ["m/cifar10/cifar10_labels.txt"]) == [("m/cifar10/cifar10_labels.txt",
                                                                           "cifar10_labels.txt")]
    assert plan(V0141, "a", ["a/x/a/b"])[0][1] == "x//b"  # str.replace removes both "a"s
    assert plan(V0152, "a", ["a/x/a/b"])[0][1] == "x/a/b"


def test_a_uri_naming_one_object_copies_it_alone() -> None:
    keys = ["m/model.pt", "m/model.pt.bak"]
    assert plan(V0152, "m/model.pt", keys) == [("m/model.pt", "model.pt")]
    assert plan(V051, "m/model.pt", keys)[0] == ("m/model.pt", "m/model.pt")  # the full key, where the path was empty


def test_nothing_listed_is_the_release_s_runtime_error() -> None:
    for release in (V051, V0152):
        with pytest.raises(InitializerError):
            plan(release, "nothing", [])
    assert plan(V051, "dir", ["dir/"]) == []  # a directory marker counts as found on 0.5.1: nothing copied, no error
    with pytest.raises(InitializerError):
        plan(V0152, "dir", ["dir/"])
    assert initializer.nothing_found(V0152, "s3://b/none", "none") == \
        "RuntimeError: Failed to fetch model. No model found in none."
    assert initializer.nothing_found(V051, "s3://b/none", "none") == \
        "RuntimeError: Failed to fetch model. The path or model s3://b/none does not exist."


def test_s3_errors_read_as_boto3_and_minio_6_print_them() -> None:
    assert initializer.s3_error_line(V0152, "NoSuchBucket", "The specified bucket does not exist", 404, "b") == (
        "botocore.errorfactory.NoSuchBucket: An error occurred (NoSuchBucket) when calling the ListObjects "
        "operation: The specified bucket does not exist")
    assert initializer.s3_error_line(V0152, "", "", 403, "b").startswith(
        "botocore.exceptions.ClientError: An error occurred (403) when calling the ListObjects operation: Forbidden")
    assert initializer.s3_error_line(V051, "NoSuchBucket", "whatever", 404, "b") == \
        "minio.error.NoSuchBucket: NoSuchBucket: message: The specified bucket does not exist."
    assert initializer.s3_error_line(V051, "", "", 403, "b") == "minio.error.AccessDenied: AccessDenied: message: Access Denied"
    assert initializer.s3_error_line(V051, "XOdd", "odd", 400, "b").startswith(
        "minio.error.ResponseError: ResponseError: code: XOdd, message: odd, bucket_name: b")


def test_an_error_body_minio_7_will_not_read_still_names_its_code() -> None:
    body = '<?xml version="1.0"?>\n<Error>\n  <Code>NoSuchBucket</Code>\n  <Message>gone</Message>\n</Error>'
    assert initializer.error_body(body) == ("NoSuchBucket", "gone")
    assert initializer.error_body("not xml") == ("", "")


def test_a_failure_prints_the_image_s_traceback_with_the_tag_s_line_numbers() -> None:
    text = initializer.traceback_text(V0152, InitializerError("none", "RuntimeError: x"))
    assert text.splitlines() == [
        "Traceback (most recent call last):",
        '  File "/storage-initializer/scripts/initializer-entrypoint", line 17, in <module>',
        "    Storage.download(src_uri, dest_path)",
        '  File "/kserve/kserve/storage/storage.py", line 91, in download',
        "    model_dir = Storage._download_s3(uri, out_dir)",
        '  File "/kserve/kserve/storage/storage.py", line 281, in _download_s3',
        "    raise RuntimeError(",
        "RuntimeError: x"]
    assert 'kfserving/storage.py", line 89, in _download_s3' in initializer.traceback_text(
        V051, InitializerError("list", "minio.error.NoSuchBucket: x"))
    assert ", line 231, in _download_s3" in initializer.traceback_text(V0141, InitializerError("list", "x"))


def test_kserve_logs_each_step_in_its_format_kfserving_0_5_logs_nothing() -> None:
    out = io.StringIO()
    Output(V0152, out, clock=lambda: 0.25).info("storage.py", "download", "copying", "Copying contents of s3://b/m to local")
    assert out.getvalue() == ("1970-01-01 00:00:00.250 1 kserve INFO [storage.py:download():64] "
                              "Copying contents of s3://b/m to local\n")
    quiet = io.StringIO()
    Output(V051, quiet).info("storage.py", "download", "copying", "anything")
    assert quiet.getvalue() == ""


def test_s3_settings_come_from_the_credential_builder_s_env() -> None:
    env = {"AWS_ENDPOINT_URL": "http://minio-service.kubeflow:9000", "AWS_ACCESS_KEY_ID": "k",
           "AWS_SECRET_ACCESS_KEY": "s", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_REGION": "us-west-2"}
    seen = []
    got = initializer.s3_settings(V0152, env, "b", lambda host: seen.append(host) or "127.0.0.1:1")
    assert got == S3Settings("127.0.0.1:1", "k", "s", False, "eu-west-1") and seen == ["minio-service.kubeflow:9000"]
    assert initializer.s3_settings(V051, env, "b", None).region == "us-west-2"
    virtual = initializer.s3_settings(V0152, {**env, "S3_USER_VIRTUAL_BUCKET": "true"}, "b", None)
    assert virtual.endpoint == "b.minio-service.kubeflow:9000"  # then its name must resolve, as in a pod
    assert initializer.s3_settings(V051, {**env, "S3_USER_VIRTUAL_BUCKET": "true"}, "b", None).endpoint == \
        "minio-service.kubeflow:9000"  # minio-py addresses a non-AWS host path-style whatever the env says


def test_run_copies_or_ends_with_exit_code_1_and_the_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(initializer, "list_keys", lambda *a: ["torchscript/cifar10/config.pbtxt"])
    fetched = []
    monkeypatch.setattr(initializer.Downloader, "fetch", lambda self, name, bucket, items, folder: fetched.extend(items))
    out, err = io.StringIO(), io.StringIO()
    env = {"AWS_ENDPOINT_URL": "http://127.0.0.1:9"}
    assert initializer.run(V0152, "s3://b/torchscript", tmp_path, env, stdout=out, stderr=err) == 0
    assert fetched == [("torchscript/cifar10/config.pbtxt", 0, tmp_path / "cifar10/config.pbtxt")]
    assert "Downloaded object torchscript/cifar10/config.pbtxt to /mnt/models/cifar10/config.pbtxt" in out.getvalue()
    assert "Successfully copied s3://b/torchscript to /mnt/models" in out.getvalue() and err.getvalue() == ""

    def missing(*_a):
        raise InitializerError("list", "botocore.errorfactory.NoSuchBucket: gone")
    monkeypatch.setattr(initializer, "list_keys", missing)
    err = io.StringIO()
    assert initializer.run(V0152, "s3://b/torchscript", tmp_path, env, stdout=io.StringIO(), stderr=err) == 1
    assert err.getvalue().startswith("Traceback (most recent call last):")
    assert err.getvalue().rstrip().endswith("botocore.errorfactory.NoSuchBucket: gone")
    monkeypatch.setattr(initializer, "list_keys", lambda *a: [])
    err = io.StringIO()
    assert initializer.run(V0152, "s3://b/none", tmp_path, env, stdout=io.StringIO(), stderr=err) == 1
    assert "RuntimeError: Failed to fetch model. No model found in none." in err.getvalue()


# --- the pod and its status -------------------------------------------------------------------------
def test_triton_with_a_storage_uri_gets_no_explicit_model_control() -> None:
    for group in (KFSERVING_GROUP, KSERVE_GROUP):
        args = pods.Pods._server_args(api_group(group), {"storageUri": "s3://b/m", "args": ["--log-verbose=1"]})
        assert "--model-control-mode=explicit" not in args and args[1] == "--model-store=/mnt/models"
        assert "--model-control-mode=explicit" in pods.Pods._server_args(api_group(group), {})
    assert pods.provision_volume(api_group(KFSERVING_GROUP)) == "kfserving-provision-location"
    assert pods.provision_volume(api_group(KSERVE_GROUP)) == "kserve-provision-location"


def test_both_spellings_of_the_predictor_name_the_storage_uri() -> None:
    old = {"spec": {"predictor": {"triton": {"storageUri": "s3://b/m"}}}}
    new = {"spec": {"predictor": {"model": {"modelFormat": {"name": "triton"}, "storageUri": "s3://b/m"}}}}
    assert servers.storage_uri(old) == servers.storage_uri(new) == "s3://b/m"
    assert servers.storage_uri({"spec": {"predictor": {"triton": {}}}}) == ""


def test_a_storage_uri_pod_s_containers_are_its_init_container_and_the_server() -> None:
    roles = pods.Pods._container_roles({"group": KSERVE_GROUP, "storageUri": "s3://b/m"})
    assert roles == {"storage-initializer": "initializer", "kserve-container": "triton"}
    assert pods.Pods._container_roles({"group": KFSERVING_GROUP}) == {"kfserving-container": "triton", "agent": "agent"}


class _Record:
    def __init__(self, pid: int, alive: bool) -> None:
        self.pid, self._alive = pid, alive

    def alive(self) -> bool:
        return self._alive


@pytest.fixture
def fake_pod():
    meta = types.SimpleNamespace(name="s-predictor-00001-deployment-x", namespace="ns", uid="u1")
    return types.SimpleNamespace(metadata=meta)


def test_init_container_status_runs_fails_then_crash_loops(tmp_path: Path, fake_pod,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pods.process, "ProcessRecord", _Record)
    log = tmp_path / "initializer.log"
    log.write_text("\n=== 2025-01-01T00:00:00 starting x: python\nTraceback (most recent call last):\nRuntimeError: gone\n")
    owner = pods.Pods.__new__(pods.Pods)
    running = owner._init_status("storage-initializer", "img", _Record(7, True),
                                 [{"pid": 7, "startedAt": "t0", "log": str(log)}], fake_pod)
    assert list(running["state"]) == ["running"] and running["restartCount"] == 0  # kubectl: Init:0/1
    failed_run = {"pid": 7, "startedAt": "t0", "log": str(log), "exitCode": 1, "finishedAt": "t1"}
    failed = owner._init_status("storage-initializer", "img", _Record(7, False), [failed_run], fake_pod)
    ended = failed["state"]["terminated"]  # kubectl: Init:Error
    assert ended["reason"] == "Error" and ended["exitCode"] == 1 and ended["message"].endswith("RuntimeError: gone")
    again = owner._init_status("storage-initializer", "img", _Record(8, False),
                               [failed_run, {**failed_run, "pid": 8}], fake_pod)
    assert again["state"]["waiting"]["reason"] == "CrashLoopBackOff" and again["restartCount"] == 1
    assert again["lastState"]["terminated"]["reason"] == "Error"  # kubectl: Init:CrashLoopBackOff
    done = owner._init_status("storage-initializer", "img", _Record(9, False),
                              [{"pid": 9, "startedAt": "t0", "exitCode": 0, "finishedAt": "t1"}], fake_pod)
    assert done["ready"] and done["state"]["terminated"]["reason"] == "Completed"


def test_the_termination_message_is_the_last_run_s_log_end(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    lines = "".join(f"line {i}\n" for i in range(200))
    log.write_text(f"\n=== 2025-01-01T00:00:00 starting x: a\nold run\n\n=== 2025-01-01T00:00:01 starting x: a\n{lines}")
    message = servers.termination_message(log)
    assert message.splitlines()[0] == "line 120" and message.splitlines()[-1] == "line 199"  # 80 lines
    assert "old run" not in message and servers.termination_message(tmp_path / "none.log") == ""


def test_kserve_model_status_follows_the_initializer() -> None:
    group = api_group(KSERVE_GROUP)
    assert servers.model_status(None)["states"] == {"activeModelState": "Loaded", "targetModelState": "Loaded"}
    loading = servers.waiting_for_revision(group, "repo")
    assert loading.unknown and loading.reason == "RevisionMissing"
    assert str(loading) == 'Configuration "repo-predictor" is waiting for a Revision to become ready.'
    assert servers.model_status(loading) == {"transitionStatus": "InProgress",
                                             "states": {"activeModelState": "", "targetModelState": "Loading"}}
    failure = {"reason": "ModelLoadFailed", "exitCode": 1, "message": "RuntimeError: gone"}
    failed = servers.model_status(servers.waiting_for_revision(group, "repo", "FailedToLoad", failure))
    assert failed["transitionStatus"] == "BlockedByFailedLoad" and failed["lastFailureInfo"] == failure
    assert servers.model_status(None, failure)["lastFailureInfo"] == failure  # kept once Loaded, as KServe keeps it
    assert "repo-predictor-default" in str(servers.waiting_for_revision(api_group(KFSERVING_GROUP), "repo"))


def test_triton_runs_in_its_default_mode_for_a_model_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.local.stack import tritonserver

    monkeypatch.setattr(tritonserver, "tritonserver_binary", lambda: "tritonserver")
    ports = {"http": 1, "grpc": 2, "metrics": 3}
    repo = tritonserver.server_argv(Path("/m"), Path("/b"), ports, load_all=True)
    assert not any(a.startswith(("--model-control-mode", "--strict-readiness")) for a in repo)
    assert "--model-control-mode=explicit" in tritonserver.server_argv(Path("/m"), Path("/b"), ports)
