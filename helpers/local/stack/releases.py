"""Version profiles: which real cluster the local stack reproduces, so it is never friendlier.

A profile fixes one KServe/KFServing release and one Kubeflow layout: the one API group the
stack serves (so `kubectl get inferenceservice` resolves as it does there), where
`inferenceservice-config` lives and whether it has `multiModelServer`, how MinIO's keys are
published, whether the CRDs prune unknown fields, the admission webhooks' rules, and the
TrainedModel condition types, Kubeflow's RBAC (`rbac`) and who guards the gateway. Facts come from
each release's own sources (cited per field).

Chosen once per state folder with `python -m helpers.local up --profile NAME` or MMS_PROFILE.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP
from helpers.core.errors import SetupError

PROFILE_ENV = "MMS_PROFILE"


@dataclass(frozen=True)
class Profile:
    """One real combination of Kubeflow and KServe/KFServing."""

    name: str
    summary: str
    group: str
    release: str
    # Where the controller reads `inferenceservice-config` (Kubeflow's bundle: `kubeflow`).
    config_namespace: str
    # 0.5-0.9 have predictors.triton.multiModelServer; 0.10 removed it (no storageUri = multi-model).
    multi_model_key: bool
    # "pod-env": keys as plain env of the `minio` pod, `minio-service` labelled app=minio
    # (Kubeflow <= 1.6); "secret": keys in Secret mlpipeline-minio-artifact (valueFrom), and a
    # `minio-service` without that label (Kubeflow 1.7+).
    minio_layout: str
    # KFServing 0.5.1 ships apiextensions/v1beta1 CRDs without preserveUnknownFields: false, so
    # unknown fields are kept; KServe's v1 CRDs prune them.
    prunes_unknown_fields: bool
    # The TrainedModel webhook (pkg/apis/serving/v1alpha1/trainedmodel_webhook.go).
    tm_name_pattern: str
    tm_storage_prefixes: tuple[str, ...]
    # TrainedModel condition types besides Ready (trained_model_status.go).
    tm_conditions: tuple[str, ...]
    # KFServing 0.5.1 deletes a TrainedModel whose InferenceService is gone.
    tm_deleted_with_isvc: bool
    # Who guards the ingress gateway (`helpers/local/cluster/authz.py`): "authservice" (Kubeflow 1.3:
    # arrikto's oidc-authservice, cookie `authservice_session`, a 302 to Dex without a session),
    # "oauth2-proxy" (Kubeflow 1.9+: cookie `oauth2_proxy_kubeflow`, its sign-in page), "" (none).
    gateway_auth: str = ""

    @property
    def describe(self) -> str:
        return f"{self.name}: {self.summary}"


PROFILES = {
    p.name: p for p in (
        Profile(
            name="kfserving-0.5",
            summary="Kubeflow 1.3 with KFServing 0.5.1, the guide's cluster",
            group=KFSERVING_GROUP, release="v0.5.1", config_namespace="kubeflow", multi_model_key=True,
            minio_layout="pod-env", prunes_unknown_fields=False,
            tm_name_pattern=r"[a-z]([-a-z0-9]*[a-z0-9])?", tm_storage_prefixes=("s3://", "gs://"),
            tm_conditions=("InferenceServiceReady",), tm_deleted_with_isvc=True, gateway_auth="authservice"),
        Profile(
            name="kserve",
            summary="KServe 0.20 (standalone, namespace kserve) next to Kubeflow 1.10's MinIO",
            group=KSERVE_GROUP, release="v0.20.0", config_namespace="kserve", multi_model_key=False,
            minio_layout="secret", prunes_unknown_fields=True,
            tm_name_pattern=r"[a-zA-Z0-9_-]+", tm_storage_prefixes=("s3://", "gs://", "https://", "http://"),
            tm_conditions=("InferenceServiceReady", "IsMMSPredictor", "MemoryResourceAvailable"),
            tm_deleted_with_isvc=True, gateway_auth="oauth2-proxy"),
    )
}
DEFAULT_PROFILE = "kfserving-0.5"


def get(name: Optional[str] = None) -> Profile:
    """The profile called `name`, else $MMS_PROFILE, else the guide's (`kfserving-0.5`)."""
    chosen = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    try:
        return PROFILES[chosen]
    except KeyError:
        raise SetupError(f"unknown profile {chosen!r}",
                         f"use one of: {', '.join(PROFILES)} (--profile NAME or {PROFILE_ENV})") from None
