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
