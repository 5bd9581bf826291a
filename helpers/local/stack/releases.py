"""Version profiles: which real cluster the local stack reproduces, so it is never friendlier.

A profile is named after what people install (a Kubeflow release, or KFServing's own YAML) and
fixes one KServe/KFServing release with it: the one API group the stack serves (so `kubectl get
inferenceservice` resolves as it does there), where `inferenceservice-config` lives and what it
holds, how the object store and its keys show, whether the CRDs prune unknown fields, the
admission webhooks' rules and defaulting, the TrainedModel condition types, the agent's env
names, Kubeflow's RBAC and who guards which gateway. Every behaviour is cited, file and tag,
in docs/releases.md.

Chosen once per state folder with `python -m helpers.local up --profile NAME` or MMS_PROFILE.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable, Optional

from helpers.core.config import env_flag
from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP
from helpers.core.errors import SetupError
from helpers.core.i18n import _

PROFILE_ENV = "MMS_PROFILE"

# Object stores: "pod-env" (the `minio` pod shows its keys as plain env, `minio-service` labelled
# app=minio: Kubeflow <= 1.6), "secret" (MinIO's keys in Secret mlpipeline-minio-artifact through
# valueFrom, a `minio-service` without that label: Kubeflow 1.7-1.10), "seaweedfs" (SeaweedFS behind
# `minio-service`, admin keys in that Secret through envFrom, and one key per profile namespace
# limited to prefixes of bucket `mlpipeline`: Kubeflow 1.11).
OBJECT_STORES = ("pod-env", "secret", "seaweedfs")


AGENT_RELOADS_ENV = "MMS_AGENT_RELOADS"  # "1": the local agent reloads what a restarted Triton lost
# "1": the local agent retries, paginates, reads the prefix as a folder, skips directory markers and reports a
# missing S3 endpoint (no release's agent does all; helpers/local/agent/release.py), and the controller adds
# ModelLoaded/ModelLoadFailed Events no release records.
AGENT_FRIENDLY_ENV = "MMS_AGENT_FRIENDLY"


@dataclass(frozen=True)
class Profile:
    """One real combination of Kubeflow and KServe/KFServing."""

    name: str
    group: str
    release: str
    # Where the controller reads `inferenceservice-config`: KFServing's own YAML `kfserving-system`,
    # Kubeflow's KServe bundle `kubeflow`.
    config_namespace: str
    # 0.5-0.9 have predictors.triton.multiModelServer; 0.10 removed it (no storageUri = multi-model).
    multi_model_key: bool
    object_store: str
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
    # The env name KServe's credential builder gives the s3-region annotation (s3_secret.go), which
    # the agent reads (pkg/agent/storage/utils.go): AWS_REGION in KFServing 0.5.1, AWS_DEFAULT_REGION
    # in KServe 0.14+.
    region_env: str = "AWS_REGION"
    # KServe >= 0.10's defaulter stores `predictor.triton` as `predictor.model` with modelFormat triton
    # and protocolVersion v2 (assignTritonRuntime); the controller appends --model-control-mode=explicit
    # to the container it makes (SetTritonDefaults).
    triton_as_model: bool = False
    # Does Kubeflow's `kubeflow-edit` (through kubeflow-<app>-edit) grant trainedmodels?
    edit_trainedmodels: bool = False
    # Who guards `istio-ingressgateway` (`helpers/local/cluster/authz.py`): "authservice" (arrikto's
    # oidc-authservice, cookie `authservice_session`, a 302 to Dex without a session), "oauth2-proxy"
    # (Kubeflow 1.9+: cookie `oauth2_proxy_kubeflow`, its sign-in page), "" (none).
    gateway_auth: str = ""
    # Kubeflow 1.0.x's `istio/kfserving-gateway`: a `kfserving-ingressgateway` Service no auth filter
    # selects (the guide's curl answers without a login).
    kfserving_gateway: bool = False
    # Istio's AuthorizationPolicies at the predictor (helpers/local/cluster/mesh.py): "kubeflow-1.10" (the
    # profile controller v1.10.0's `ns-owner-access-istio` plus manifests' `global-deny-all`, which Kubeflow
    # 1.10.x and 1.11.0 ship), "" (none enforced: the guide's Kubeflow 1.0.x, whose Istio 1.1/1.3 has no
    # AuthorizationPolicy kind and whose guide reaches the server through kfserving-ingressgateway).
    mesh: str = ""
    kubeflow: str = ""
    # Does the release's agent load again what a restarted Triton lost? None does: KFServing 0.5.1's
    # and KServe 0.14.1-0.15.2's `pkg/agent` load on models.json events and at the pod's start only
    # (no watch on the server). `MMS_AGENT_RELOADS=1` turns the local agent's reload on anyway.
    agent_reloads_after_server_restart: bool = False
    # The node (helpers/local/cluster/node.py, scheduler.py): its allocatable cpu and memory unless
    # `up --node-cpu/--node-memory` or MMS_NODE_CPU/MMS_NODE_MEMORY say otherwise (a GPU server like the
    # guide's: room for a dozen 16Gi servers, so the test suite's never wait), and whether its
    # kube-scheduler adds DefaultPreemption's verdict to FailedScheduling (not yet in Kubernetes 1.20, the guide's era).
    node_cpu: str = "32"
    node_memory: str = "256Gi"
    scheduler_preemption_message: bool = True

    @property
    def agent_reloads(self) -> bool:
        """What the local agent does here: the release's behaviour, unless MMS_AGENT_RELOADS=1 asks for more."""
        return self.agent_reloads_after_server_restart or env_flag(AGENT_RELOADS_ENV)

    @property
    def agent_friendly(self) -> bool:
        """Whether the local agent does more than `release`'s (only when MMS_AGENT_FRIENDLY=1 asks)."""
        return env_flag(AGENT_FRIENDLY_ENV)

    @property
    def agent_args(self) -> list[str]:
        """The local agent's flags for this profile: the release's agent, unless a switch asks for more."""
        return (["--release", self.release] + (["--friendly"] if self.agent_friendly else [])
                + (["--reload-lost-models"] if self.agent_reloads else []))

    @property
    def summary(self) -> str:
        """What it reproduces, in English (logs keep it so)."""
        return summaries(str)[self.name]

    @property
    def describe(self) -> str:
        return f"{self.name}: {self.summary}"

    @property
    def shown(self) -> str:
        """`describe` in the reader's language (`status` shows it)."""
        return f"{self.name}: {summaries()[self.name]}"

    @property
    def seaweedfs(self) -> bool:
        return self.object_store == "seaweedfs"


def summaries(_: Callable[[str], str] = _) -> dict[str, str]:
    """Each profile's one line, by name: in the reader's language, or in English with `summaries(str)`.

    The parameter is called `_` so that the catalogue tool finds the messages, as it finds every `_()`."""
    return {"kfserving-0.5": _("the guide's cluster: a Kubeflow 1.0.x layout with KFServing 0.5.1 from its own "
                               "YAML, MinIO keys as plain env, kfserving-ingressgateway without a login"),
            "kubeflow-1.10.0": _("Kubeflow 1.10.0: KServe 0.14.1, MinIO (mlpipeline-minio-artifact), no "
                                 "trainedmodels in kubeflow-edit"),
            "kubeflow-1.10": _("Kubeflow 1.10.1/1.10.2: KServe 0.15.0, MinIO (mlpipeline-minio-artifact)"),
            "kubeflow-1.11": _("Kubeflow 1.11.0: KServe 0.15.2, SeaweedFS behind minio-service, one key per "
                               "namespace")}


_KSERVE_TM = dict(tm_name_pattern=r"[a-zA-Z0-9_-]+", tm_storage_prefixes=("s3://", "gs://", "https://", "http://"),
                  tm_conditions=("InferenceServiceReady", "IsMMSPredictor", "MemoryResourceAvailable"),
                  tm_deleted_with_isvc=True)
_KUBEFLOW_KSERVE = dict(group=KSERVE_GROUP, config_namespace="kubeflow", multi_model_key=False,
                        prunes_unknown_fields=True, region_env="AWS_DEFAULT_REGION", triton_as_model=True,
                        gateway_auth="oauth2-proxy", mesh="kubeflow-1.10", **_KSERVE_TM)

PROFILES = {
    p.name: p for p in (
        Profile(
            name="kfserving-0.5",
            group=KFSERVING_GROUP, release="v0.5.1", config_namespace="kfserving-system", multi_model_key=True,
            object_store="pod-env", prunes_unknown_fields=False,
            tm_name_pattern=r"[a-z]([-a-z0-9]*[a-z0-9])?", tm_storage_prefixes=("s3://", "gs://"),
            tm_conditions=("InferenceServiceReady",), tm_deleted_with_isvc=True, region_env="AWS_REGION",
            gateway_auth="authservice", kfserving_gateway=True, kubeflow="1.0.2",
            scheduler_preemption_message=False),
        Profile(
            name="kubeflow-1.10.0",
            release="v0.14.1", object_store="secret", edit_trainedmodels=False, kubeflow="1.10.0",
            **_KUBEFLOW_KSERVE),
        Profile(
            name="kubeflow-1.10",
            release="v0.15.0", object_store="secret", edit_trainedmodels=True, kubeflow="1.10.1",
            **_KUBEFLOW_KSERVE),
        Profile(
            name="kubeflow-1.11",
            release="v0.15.2", object_store="seaweedfs", edit_trainedmodels=True, kubeflow="1.11.0",
            **_KUBEFLOW_KSERVE),
    )
}
DEFAULT_PROFILE = "kfserving-0.5"
# Names that once meant a profile, and why they no longer do.
RETIRED = {"kserve": "it modelled KServe 0.20 standalone next to Kubeflow 1.10's MinIO, which no release ships"}


def get(name: Optional[str] = None) -> Profile:
    """The profile called `name`, else $MMS_PROFILE, else the guide's (`kfserving-0.5`)."""
    chosen = name or os.environ.get(PROFILE_ENV) or DEFAULT_PROFILE
    try:
        return PROFILES[chosen]
    except KeyError:
        why = f" ({RETIRED[chosen]})" if chosen in RETIRED else ""
        raise SetupError(_("unknown profile {chosen!r}{why}").format(chosen=chosen, why=why),
                         _("use one of: {choices} (--profile NAME or {profile_env}); for a KServe cluster, the Kubeflow "
                           "release it came with").format(choices=', '.join(PROFILES), profile_env=PROFILE_ENV)) from None
