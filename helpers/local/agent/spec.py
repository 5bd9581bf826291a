"""The agent's contract types: a model's spec as `models.json` states it, its sha, and an operation.

`models.json` is KServe's model-config format: a JSON list of
`{"modelName": str, "modelSpec": {"storageUri": "s3://bucket/prefix", "framework": str, "memory": str}}`.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal, Optional

# Triton uses the name as a folder name and a URL path segment.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")

OpKind = Literal["add", "replace", "remove", "reload"]


class ConfigError(ValueError):
    """`models.json` (or one entry of it) cannot be used; the message says which and why."""


@dataclass(frozen=True)
class ModelSpec:
    """What a TrainedModel asks for: where its files are, its framework, its memory."""

    storage_uri: str
    framework: str = ""
    memory: str = ""

    def to_json(self) -> dict[str, str]:
        return {"storageUri": self.storage_uri, "framework": self.framework, "memory": self.memory}

    @classmethod
    def from_json(cls, data: Any) -> "ModelSpec":
        if not isinstance(data, dict) or not isinstance(data.get("storageUri"), str) or not data["storageUri"]:
            raise ConfigError(f"modelSpec needs a storageUri string, got {data!r}")
        return cls(data["storageUri"], str(data.get("framework") or ""), str(data.get("memory") or ""))

    def canonical(self) -> str:
        """The spec as canonical JSON (sorted keys, no spaces): what the sha is taken of."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))

    @property
    def sha(self) -> str:
        """sha256 of the canonical JSON: names the `SUCCESS.<sha>` marker."""
        return hashlib.sha256(self.canonical().encode()).hexdigest()


@dataclass(frozen=True)
class Op:
    """One thing to do to one model. `replace` is KServe's remove + add of a changed spec;
    `reload` loads what is on disk again (after Triton restarted)."""

    kind: OpKind
    name: str
    spec: Optional[ModelSpec] = None


def valid_name(name: str) -> bool:
    """True if `name` can be a Triton model (and folder) name."""
    return bool(_NAME.match(name)) and name not in (".", "..")


def parse_model_configs(text: str) -> tuple[dict[str, ModelSpec], list[str]]:
    """Parse `models.json` text into {modelName: spec} plus one problem string per skipped entry.

    Empty text means no models. Text that is not a JSON list raises ConfigError (the caller keeps
    its last good state: a half-written file must not unload every model).
    """
    if not text.strip():
        return {}, []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"not valid JSON: {exc}") from None
    if data is None:
        return {}, []
    if not isinstance(data, list):
        raise ConfigError(f"expected a JSON list of models, got {type(data).__name__}")
    models: dict[str, ModelSpec] = {}
    problems = []
    for index, entry in enumerate(data):
        name = entry.get("modelName") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not valid_name(name):
            problems.append(f"entry {index}: modelName {name!r} is not a valid model name")
            continue
        try:
            models[name] = ModelSpec.from_json(entry.get("modelSpec"))
        except ConfigError as exc:
            problems.append(f"entry {index} ({name}): {exc}")
    return models, problems
