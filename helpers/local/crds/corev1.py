"""Structural OpenAPI schemas for core/v1 types, built from the `kubernetes` client's own models.

KServe's v1 CRDs embed a full PodSpec and Container in every component, and the apiserver prunes
any field they do not list: a typo such as `serviceAcountName` silently does nothing there. To be
as strict without copying KServe's 15 000-line CRDs, the schemas are generated here from the type
information the `kubernetes` package carries (`openapi_types` and `attribute_map` of each model).
"""
from __future__ import annotations

import copy
import re
from functools import lru_cache
from typing import Any

from kubernetes import client as k8s_models

_QUANTITY = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",  # noqa: E501 - the apiserver's own quantity pattern, verbatim
    "x-kubernetes-int-or-string": True,
}
# Maps of resource name -> Quantity; the client types them as dict(str, str).
_QUANTITY_MAPS = {"limits", "requests", "overhead", "capacity", "allocatable", "hard"}
_SCALARS = {"str": {"type": "string"}, "int": {"type": "integer"}, "float": {"type": "number"},
            "bool": {"type": "boolean"}, "datetime": {"type": "string", "format": "date-time"},
            "date": {"type": "string", "format": "date"}}
# Older clients write list[X] / dict(str, X), later ones dict[str, X], the pydantic ones (37+) List[X] / Dict[str, X].
_LIST = re.compile(r"^[lL]ist\[(.+)\]$")
_DICT = re.compile(r"^(?:dict\(str, (.+)\)|[dD]ict\[str, (.+)\])$")


def _schema(type_name: str, field: str, seen: tuple[str, ...]) -> dict[str, Any]:
    if type_name in _SCALARS:
        return dict(_SCALARS[type_name])
    if type_name == "object":  # IntOrString in core/v1 (ports of probes and services)
        return {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": True}
    match = _LIST.match(type_name)
    if match:
        return {"type": "array", "items": _schema(match.group(1), field, seen)}
    match = _DICT.match(type_name)
    if match:
        inner = match.group(1) or match.group(2)
        value = dict(_QUANTITY) if field in _QUANTITY_MAPS else _schema(inner, field, seen)
        return {"type": "object", "additionalProperties": value}
    return model_schema(type_name, seen)


def model_schema(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    """The structural schema of client model `name` (e.g. "V1Container")."""
    if name in seen:  # no core/v1 pod type recurses, but never loop if one does
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    model = getattr(k8s_models, name)
    properties = {}
    for attr, type_name in model.openapi_types.items():
        json_name = model.attribute_map[attr]
        properties[json_name] = _schema(type_name, json_name, (*seen, name))
    return {"type": "object", "properties": properties}


@lru_cache(maxsize=None)
def _cached(name: str) -> dict[str, Any]:
    return model_schema(name)


def container_properties() -> dict[str, Any]:
    """The properties of a core/v1 Container (a copy: callers may edit it)."""
    return copy.deepcopy(_cached("V1Container")["properties"])


def pod_spec_properties() -> dict[str, Any]:
    """The properties of a core/v1 PodSpec (a copy)."""
    return copy.deepcopy(_cached("V1PodSpec")["properties"])
