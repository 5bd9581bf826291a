"""helpers.clients.storage against the real local S3 server: the happy path and every learner mistake."""
from __future__ import annotations

import pytest

from helpers.clients import storage
from helpers.local.stack.process import free_port
from helpers.local.stack.stack import Stack


@pytest.fixture()
def s3(stack: Stack):
    creds = stack.s3_credentials()
    return storage.connect(storage.S3Settings(stack.env()["MMS_S3_ENDPOINT"], creds.access_key, creds.secret_key))


def model_folder(tmp_path):
    folder = tmp_path / "cifar10"
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text('platform: "pytorch_libtorch"\n')
    (folder / "1" / "model.pt").write_bytes(b"\0" * 2048)
    return folder


@pytest.mark.stack
def test_upload_list_read_back_round_trip(s3, tmp_path) -> None:
    keys = storage.upload_folder(s3, model_folder(tmp_path), "models-rt", "torchscript/cifar10", progress=False)
    assert keys == ["torchscript/cifar10/1/model.pt", "torchscript/cifar10/config.pbtxt"]
    assert dict(storage.list_objects(s3, "models-rt", "torchscript")) == {
        "torchscript/cifar10/1/model.pt": 2048, "torchscript/cifar10/config.pbtxt": 29}
    assert s3.get_object("models-rt", "torchscript/cifar10/1/model.pt").read() == b"\0" * 2048
    assert "└─ torchscript" in storage.tree(s3, "models-rt")
    # Running it again is cheap and changes nothing.
    assert storage.upload_folder(s3, model_folder(tmp_path), "models-rt", "torchscript/cifar10", progress=False) == keys
    assert storage.ensure_bucket(s3, "models-rt") is False


@pytest.mark.stack
def test_wrong_credentials_name_the_cause_and_the_fix(stack: Stack) -> None:
    bad = storage.connect(storage.S3Settings(stack.env()["MMS_S3_ENDPOINT"], "minio", "minio123"))
    with pytest.raises(storage.StorageError) as err:
        storage.ensure_bucket(bad, "anything")
    assert "refused the credentials" in str(err.value) and "minio pod" in err.value.fix


@pytest.mark.stack
def test_missing_bucket_and_object(s3, tmp_path) -> None:
    with pytest.raises(storage.StorageError, match="bucket 'no-such-bucket' does not exist"):
        storage.list_objects(s3, "no-such-bucket")
    storage.ensure_bucket(s3, "models-missing")
    with pytest.raises(storage.StorageError, match="does not exist"):
        with storage.s3_errors(s3, "models-missing", "nope/model.pt"):
            s3.stat_object("models-missing", "nope/model.pt")


def test_unreachable_endpoint_fails_fast_with_a_fix() -> None:
    client = storage.connect(storage.S3Settings(f"127.0.0.1:{free_port()}", "a", "b"), retries=0)
    with pytest.raises(storage.StorageError) as err:
        storage.bucket_exists(client, "triton")
    assert "cannot reach the S3 server" in str(err.value) and "helpers.local status" in err.value.fix


def test_settings_never_show_credentials() -> None:
    settings = storage.S3Settings("127.0.0.1:9000", "minio", "minio123")
    assert "minio123" not in repr(settings) and "minio123" not in str(settings)


@pytest.mark.parametrize("uri, expected", [("s3://triton/torchscript/cifar10", ("triton", "torchscript/cifar10")),
                                           ("s3://triton", ("triton", "")), ("s3://b/p/", ("b", "p"))])
def test_parse_s3_uri(uri, expected) -> None:
    assert storage.parse_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["gs://triton/x", "s3://", "triton/x"])
def test_parse_s3_uri_rejects(uri) -> None:
    with pytest.raises(storage.StorageError):
        storage.parse_s3_uri(uri)
