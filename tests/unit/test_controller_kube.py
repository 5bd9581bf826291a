"""The controller's reading of custom resources while the apiserver restarts."""
from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.local.controller.kube import Kube


def kube_answering_404(monkeypatch: pytest.MonkeyPatch, crd_exists: bool) -> Kube:
    kube = Kube(client.ApiClient(client.Configuration()))

    def list_404(*_args, **_kwargs):
        raise ApiException(status=404, reason="Not Found")

    monkeypatch.setattr(kube.custom, "list_cluster_custom_object", list_404)
    monkeypatch.setattr(kube, "crd_installed", lambda name: crd_exists)
    return kube


def test_a_resource_whose_crd_is_not_installed_lists_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    kube = kube_answering_404(monkeypatch, crd_exists=False)
    assert kube.list_custom("serving.kserve.io", "v1beta1", "inferenceservices") == []


def test_a_404_while_the_crd_exists_is_an_error_not_an_empty_list(monkeypatch: pytest.MonkeyPatch) -> None:
    """A restarted apiserver answers 404 for a CRD's objects until it serves them again; read as "no
    InferenceServices", the controller stopped every server (found by the chaos benchmark)."""
    kube = kube_answering_404(monkeypatch, crd_exists=True)
    with pytest.raises(ApiException):
        kube.list_custom("serving.kserve.io", "v1beta1", "inferenceservices")


def test_only_a_pod_being_deleted_wakes_the_full_pass() -> None:
    """The pods watch (the kubelet's part) asks for a pass on a deletion, and ignores the status the controller writes."""
    from helpers.local.controller import _pod_going

    assert _pod_going({"type": "DELETED", "object": {"metadata": {"name": "p"}}}) == ()
    going = {"name": "p", "deletionTimestamp": "2026-12-05T08:00:00Z"}
    assert _pod_going({"type": "MODIFIED", "object": {"metadata": going}}) == ()
    assert _pod_going({"type": "MODIFIED", "object": {"metadata": {"name": "p"}, "status": {"phase": "Running"}}}) is None
    assert _pod_going({"type": "ADDED", "object": {"metadata": {"name": "p"}}}) is None


class CountingReads:
    """A read_* method that counts its calls; `missing` names answer 404."""

    def __init__(self, missing: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple] = []
        self.missing = missing

    def __call__(self, name: str, namespace: str):
        self.calls.append((name, namespace))
        if name in self.missing:
            raise ApiException(status=404, reason="Not Found")
        return {"name": name, "call": len(self.calls)}


def test_within_a_view_each_object_is_read_once_until_a_write() -> None:
    kube, read = Kube(client.ApiClient(client.Configuration())), CountingReads(missing=("gone",))
    assert kube.read(read, "cm", "ns") != kube.read(read, "cm", "ns")  # outside a view: every time
    read.calls.clear()
    with kube.one_view():
        first = kube.read(read, "cm", "ns")
        assert kube.read(read, "cm", "ns") is first and kube.read(read, "gone", "ns") is None
        assert kube.read(read, "gone", "ns") is None  # a 404 is remembered too
        assert kube.read(read, "other", "ns")["name"] == "other"
        assert read.calls == [("cm", "ns"), ("gone", "ns"), ("other", "ns")]
        kube.forget()  # what the controller's writes do
        assert kube.read(read, "cm", "ns") is not first
    assert kube.read(read, "cm", "ns")["call"] == 5  # the view ended


def test_another_threads_reads_are_never_answered_from_a_view() -> None:
    import threading

    kube, read = Kube(client.ApiClient(client.Configuration())), CountingReads()
    with kube.one_view():
        kube.read(read, "cm", "ns")
        other = threading.Thread(target=lambda: [kube.read(read, "cm", "ns") for _ in range(2)])
        other.start()
        other.join()
        kube.read(read, "cm", "ns")
    assert len(read.calls) == 3


@pytest.mark.parametrize("stamp", ["2026-12-06T04:13:15Z", "2026-12-06T04:13:15.123456Z", "2026-12-06T04:13:15+02:00",
                                   "Sun, 06 Dec 2026 04:13:15 GMT"])
def test_the_controllers_client_reads_timestamps_as_the_kubernetes_client_does(stamp: str) -> None:
    """RFC 3339 through the standard library, anything else through dateutil as before: the same datetime."""
    from helpers.local.controller.kube import _ApiClient

    body = {"metadata": {"name": "p", "creationTimestamp": stamp}}
    ours = _ApiClient(client.Configuration())._ApiClient__deserialize(body, "V1Pod").metadata.creation_timestamp
    theirs = client.ApiClient(client.Configuration())._ApiClient__deserialize(body, "V1Pod").metadata.creation_timestamp
    assert ours == theirs and ours.utcoffset() == theirs.utcoffset()


def test_a_timestamp_neither_reads_fails_as_in_the_kubernetes_client() -> None:
    from helpers.local.controller.kube import _ApiClient

    with pytest.raises(ApiException, match="Failed to parse"):
        _ApiClient(client.Configuration())._ApiClient__deserialize("not a time", "datetime")
