"""Syncer: at start, rebuild what is on disk from the `SUCCESS.<sha>` markers, and tidy up.

As KServe's syncer does, a model folder with a valid marker counts as downloaded for that
spec. Folders whose marker matches the desired spec need only a load; folders with no marker
(a download cut short) or a stale marker (another spec) are removed; models no TrainedModel
asks for any more are left to the puller to unload and delete.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Literal, Optional

from helpers.core.constants import SUCCESS_MARKER_PREFIX
from helpers.local.agent.log import Logger
from helpers.local.agent.spec import ConfigError, ModelSpec

# load: marker matches the desired spec; unload: a downloaded model no longer asked for (Triton
# may still serve it: the puller unloads it, then deletes the folder); clean: delete the folder.
Decision = Literal["load", "unload", "clean"]


def read_marker(folder: Path) -> Optional[ModelSpec]:
    """The spec a model folder holds, if it has exactly one marker whose content matches its sha."""
    markers = [p for p in Path(folder).glob(f"{SUCCESS_MARKER_PREFIX}*") if p.is_file()]
    if len(markers) != 1:
        return None
    marker = markers[0]
    try:
        spec = ModelSpec.from_json(json.loads(marker.read_text()))
    except (OSError, ValueError, ConfigError):
        return None
    return spec if marker.name == f"{SUCCESS_MARKER_PREFIX}{spec.sha}" else None


def scan(model_dir: Path) -> dict[str, Optional[ModelSpec]]:
    """Every model folder under `model_dir` and the spec its marker proves (None: no valid marker)."""
    root = Path(model_dir)
    if not root.is_dir():
        return {}
    return {p.name: read_marker(p) for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}


def plan(on_disk: dict[str, Optional[ModelSpec]], desired: dict[str, ModelSpec]) -> dict[str, Decision]:
    """Pure: what to do with each model folder on disk, given the models asked for."""
    decisions: dict[str, Decision] = {}
    for name, spec in on_disk.items():
        if spec is not None and desired.get(name) == spec:
            decisions[name] = "load"
        elif spec is not None and name not in desired:
            decisions[name] = "unload"
        else:
            decisions[name] = "clean"
    return decisions


def sync(model_dir: Path, desired: dict[str, ModelSpec], log: Logger) -> dict[str, Decision]:
    """Scan `model_dir`, remove the folders to clean, and return every folder's decision."""
    log = log.named("Syncer")
    log.info("Syncing from model dir", modelDir=str(model_dir))
    on_disk = scan(model_dir)
    decisions = plan(on_disk, desired)
    for name, decision in decisions.items():
        spec = on_disk[name]
        if decision == "load":
            log.info("recovered model", modelName=name, storageUri=spec.storage_uri if spec else "")
        elif decision == "unload":
            log.info("model no longer in the model config", modelName=name)
        else:
            reason = "no valid success file" if spec is None else "spec changed"
            log.info("Removing stale model dir", modelName=name, reason=reason)
            shutil.rmtree(Path(model_dir) / name, ignore_errors=True)
    return decisions
