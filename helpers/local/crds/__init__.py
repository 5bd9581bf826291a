"""The CRDs the local control plane installs: Kubeflow's Profile, and InferenceService and
TrainedModel for both API groups (KFServing's `serving.kubeflow.org`, KServe's `serving.kserve.io`).

The serving YAML files are templates: `__GROUP__` becomes the API group and
`__STORAGE_URI_PATTERN__` the pattern built from `STORAGE_URI_SCHEMES`.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from ...constants import API_GROUPS

HERE = Path(__file__).resolve().parent
PROFILE_TEMPLATE = "profile.yaml"
SERVING_TEMPLATES = ("inferenceservice.yaml", "trainedmodel.yaml")
GROUP_PLACEHOLDER = "__GROUP__"
STORAGE_URI_PLACEHOLDER = "__STORAGE_URI_PATTERN__"

# The schemes KServe's TrainedModel webhook accepts (SupportedStorageURIPrefixList).
STORAGE_URI_SCHEMES = ("gs", "s3", "pvc", "file", "https", "http", "hdfs", "webhdfs", "oci", "hf")
# The apiserver checks it with Go's RE2; Python's `re` reads it the same way.
STORAGE_URI_PATTERN = r"^(" + "|".join(STORAGE_URI_SCHEMES) + r")://\S+$"


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


def serving_crds(group: str) -> list[dict]:
    """The InferenceService and TrainedModel CRDs for one API group."""
    if group not in API_GROUPS:
        raise ValueError(f"unknown API group {group!r}: use one of {', '.join(API_GROUPS)}")
    replacements = {GROUP_PLACEHOLDER: group, STORAGE_URI_PLACEHOLDER: STORAGE_URI_PATTERN}
    return [_fill(_template(name), replacements) for name in SERVING_TEMPLATES]


def crd_manifests(groups: Iterable[str] = API_GROUPS) -> list[dict]:
    """Every CRD the local stack installs: Profile, then InferenceService + TrainedModel per group."""
    manifests = [profile_crd()]
    for group in groups:
        manifests.extend(serving_crds(group))
    return manifests
