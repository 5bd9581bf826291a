"""The CRDs the local control plane installs: Kubeflow's Profile, and InferenceService and
TrainedModel in the one API group of the stack's profile (KFServing's `serving.kubeflow.org` or
KServe's `serving.kserve.io`).

The serving YAML files are templates: `__GROUP__` becomes the API group. They type what the guide
and KServe's docs set; the profile then makes them behave as that release's CRDs do:

- KFServing 0.5.1 shipped `apiextensions.k8s.io/v1beta1` CRDs without `preserveUnknownFields:
  false`, so unknown fields are kept (a typo is stored, and ignored);
- KServe's v1 CRDs embed a full core/v1 PodSpec and Container and prune every other field; here
  those parts are generated from the `kubernetes` client's models (`corev1.py`).

Name, storageUri and memory rules are not in the schemas, as they are not in KServe's: the local
controller's admission webhooks enforce them (`controller/webhooks.py`).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import yaml

from helpers.local.crds import corev1
from helpers.local.stack.releases import Profile

HERE = Path(__file__).resolve().parent
PROFILE_TEMPLATE = "profile.yaml"
SERVING_TEMPLATES = ("inferenceservice.yaml", "trainedmodel.yaml")
GROUP_PLACEHOLDER = "__GROUP__"
PRESERVE = "x-kubernetes-preserve-unknown-fields"
FRAMEWORKS = ("triton", "tensorflow", "pytorch", "sklearn", "xgboost", "onnx", "pmml", "lightgbm",
              "paddle", "huggingface", "model")


@lru_cache(maxsize=None)
def _template(name: str) -> Any:
    return yaml.safe_load((HERE / name).read_text())


def _fill(value: Any, replacements: Mapping[str, str]) -> Any:
    """A deep copy of `value` with each placeholder replaced inside every string.

    The copy also unshares the YAML anchors (`*framework`), so callers may edit one part safely.
    """
    if isinstance(value, dict):
        return {_fill(k, replacements): _fill(v, replacements) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(item, replacements) for item in value]
    if isinstance(value, str):
        for placeholder, text in replacements.items():
            value = value.replace(placeholder, text)
    return value


def profile_crd() -> dict:
    """Kubeflow's `Profile` CRD (kubeflow.org/v1, cluster-scoped)."""
    return _fill(_template(PROFILE_TEMPLATE), {})


def _schema(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def _keep_unknown(crd: dict) -> None:
    """As a v1beta1 CRD with preserveUnknownFields left true: nothing under spec/status is pruned."""
    for part in ("spec", "status"):
        _schema(crd)["properties"][part][PRESERVE] = True


def _typed(schema: dict, extra: dict) -> None:
    """Drop `schema`'s catch-all and give it `extra`'s properties (its own typed ones win)."""
    schema.pop(PRESERVE, None)
    schema["properties"] = {**extra, **schema.get("properties", {})}


def _prune_like_kserve(crd: dict) -> None:
    """Components become PodSpec + KServe's fields; frameworks become Container + storage fields."""
    spec = _schema(crd)["properties"]["spec"]["properties"]
    pod = corev1.pod_spec_properties()
    for component in ("predictor", "transformer", "explainer"):
        schema = spec[component]
        _typed(schema, pod)
        for name in FRAMEWORKS:
            if name in schema["properties"]:
                framework = schema["properties"][name]
                _typed(framework, corev1.container_properties())
                framework["properties"]["storage"] = {"type": "object", "properties": {
                    "path": {"type": "string"}, "schemaPath": {"type": "string"}, "key": {"type": "string"},
                    "parameters": {"type": "object", "additionalProperties": {"type": "string"}}}}
        for name, props in (("logger", {"url": {"type": "string"}, "mode": {"type": "string"}}),
                            ("batcher", {"maxBatchSize": {"type": "integer"}, "maxLatency": {"type": "integer"},
                                         "timeout": {"type": "integer"}})):
            schema["properties"][name] = {"type": "object", "properties": props}
    for part in ("predictor", "transformer", "explainer"):
        spec[part]["properties"].pop("containers", None)
        spec[part]["properties"]["containers"] = {"type": "array",
                                                  "items": {"type": "object", "properties": corev1.container_properties()}}


def serving_crds(profile: Profile) -> list[dict]:
    """The InferenceService and TrainedModel CRDs of the profile's API group, shaped as its release's."""
    isvc, tm = (_fill(_template(name), {GROUP_PLACEHOLDER: profile.group}) for name in SERVING_TEMPLATES)
    if profile.prunes_unknown_fields:
        _prune_like_kserve(isvc)
    else:
        _keep_unknown(isvc)
        _keep_unknown(tm)
    return [isvc, tm]


def crd_manifests(profile: Profile) -> list[dict]:
    """Every CRD the local stack installs: Profile, then the profile's InferenceService + TrainedModel, and
    Istio's AuthorizationPolicy where the profile's mesh enforces it."""
    from helpers.local.cluster import mesh

    return [profile_crd(), *serving_crds(profile), *([mesh.crd()] if profile.mesh else [])]
