"""Workshop settings: set once, in a file or `MMS_*` variables, read by every notebook.

Explained in 00_cluster_prep and the README's instructor's checklist. Each setting comes from
the first of, highest first:

1. the notebook's parameter (papermill `-p`, or the parameters cell), when not None/empty;
2. its environment variable (`MMS_NAMESPACE`, `MMS_BUCKET`, ... see `ENV`);
3. the settings file (`MMS_SETTINGS`, else `~/.config/mms-notebooks/settings.yaml`), which the
   notebooks' settings widgets write with `save`;
4. a per-learner default: on the `cluster` target the namespace is the one the notebook runs in
   (in Kubeflow Notebooks its pod's: `Target.own_namespace()`, passed in as `own_namespace`),
   else `mms-<user>`;
5. the built-in default (the guide's: namespace `mms`, server `triton-mms`, bucket `triton`; the
   target is `cluster` inside a pod, else `local`).

On the `local` target there is no per-learner default: the namespace stays `mms` unless 1-3 say
otherwise. The `preset` chooses the resources the InferenceService and TrainedModels ask for:
`guide` (the guide's 16Gi server; the local default) or `small` (1 cpu, 2Gi; the cluster target's
default, where a 16Gi server rarely finds a shared node with room). The
`language` (`en` or `ko`) is the one notebooks, helper messages and plots speak (helpers.core.i18n).

Core layer: imports only the standard library, PyYAML and helpers.core.config/constants/errors/i18n.
"""
from __future__ import annotations

import getpass
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import yaml

from helpers.core import config, i18n
from helpers.core.constants import API_GROUPS, DEFAULT_BUCKET, DEFAULT_NAMESPACE, DEFAULT_SERVER_NAME
from helpers.core.errors import SetupError
from helpers.core.i18n import _

SETTINGS_FILE_ENV = "MMS_SETTINGS"

# setting -> the environment variable that sets it.
ENV = {"target": "MMS_TARGET", "namespace": "MMS_NAMESPACE", "server_name": "MMS_SERVER_NAME",
       "bucket": "MMS_BUCKET", "api_group": "MMS_API_GROUP", "preset": "MMS_PRESET", "language": i18n.ENV}
KEYS = tuple(ENV)
BUILT_IN = {"target": "local", "namespace": DEFAULT_NAMESPACE, "server_name": DEFAULT_SERVER_NAME,
            "bucket": DEFAULT_BUCKET, "api_group": "", "preset": "guide", "language": i18n.SOURCE_LANGUAGE}

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_FOLDER = re.compile(r"^(?!.*\.\.)(?!.*//)[A-Za-z0-9._-][A-Za-z0-9._/-]*$")


@dataclass(frozen=True)
class Preset:
    """The resources one learner's server and models ask for."""

    name: str
    server_cpu: str
    server_memory: str
    model_memory: str
    why: str

    def manifest_values(self) -> dict[str, str]:
        """The manifests' `${server_cpu}`, `${server_memory}` and `${model_memory}`."""
        return {"server_cpu": self.server_cpu, "server_memory": self.server_memory,
                "model_memory": self.model_memory}


    def summary(self) -> str:
        """One line: what the InferenceService and each TrainedModel ask for, and why."""
        why = {"guide": _("the guide's own values"),
               "small": _("for a shared cluster: many learners' servers fit on a few nodes, and both models fit the server"),
               }.get(self.name, self.why)
        return _("preset {name}: the server asks for {cpu} cpu and {memory}, each model for {model_memory} ({why})").format(
            name=self.name, cpu=self.server_cpu, memory=self.server_memory, model_memory=self.model_memory, why=why)

    def capacity(self, learners: int) -> dict[str, float]:
        """What `learners` servers on this preset ask the cluster for, sidecars included: `cpu` and
        `memory_gi` (the instructor's checklist in the README)."""
        cpu = float(self.server_cpu) + SIDECARS_CPU
        memory = gib(self.server_memory) + SIDECARS_MEMORY_GI
        return {"cpu": round(cpu * learners, 2), "memory_gi": round(memory * learners, 2)}


# What each server's pod asks for beside Triton (the model agent's 100m/100Mi in
# `inferenceservice-config`, Knative's queue-proxy, Istio's proxy where injected): about this much.
SIDECARS_CPU = 0.25
SIDECARS_MEMORY_GI = 0.25

PRESETS = {
    "guide": Preset("guide", "1", "16Gi", "1Gi", "the guide's own values"),
    "small": Preset("small", "1", "2Gi", "512Mi",
                    "for a shared cluster: many learners' servers fit on a few nodes, and both models fit the server"),
}


def gib(quantity: str) -> float:
    """A `Gi`/`Mi` memory quantity in GiB."""
    units = {"Gi": 1.0, "Mi": 1 / 1024}
    return float(quantity[:-2]) * units[quantity[-2:]]


def validate(key: str, value: Any) -> str:
    """Check one setting; raise SetupError naming what a valid value looks like. Returns it stripped."""
    text = str(value if value is not None else "").strip()
    if key == "target":
        try:
            return config.target(text or None)
        except ValueError as exc:
            raise SetupError(str(exc), _("set target to 'local' or 'cluster'")) from None
    if key == "language":
        try:
            return i18n.check(text or i18n.SOURCE_LANGUAGE)
        except ValueError:
            raise SetupError(_("language {text!r} is not one of {choices}").format(text=text, choices=", ".join(i18n.LANGUAGES)),
                             _("set language to 'en' (English) or 'ko' (한국어)")) from None
    if key == "api_group":
        if text and text not in API_GROUPS:
            raise SetupError(_("api_group {text!r} is not one of {api_groups}").format(
                                 text=text, api_groups=', '.join(API_GROUPS)),
                             _("leave it empty for the group the cluster serves; KFServing 0.5/0.6 (the guide) uses "
                               "serving.kubeflow.org, KServe serving.kserve.io"))
        return text
    if key == "namespace":
        if len(text) > 63 or not _DNS_LABEL.match(text):
            raise SetupError(_("namespace {text!r} is not a valid Kubernetes name").format(text=text),
                             _("use lower-case letters, digits and '-', starting and ending with a letter or digit"))
        return text
    if key == "server_name":
        if len(text) > 45 or not _DNS_1035.match(text):
            raise SetupError(_("server_name {text!r} is not a valid InferenceService name").format(text=text),
                             _("use lower-case letters, digits and '-', starting with a letter (at most 45)"))
        return text
    if key == "bucket":  # a bucket, or a folder of one (`mlpipeline/private/<ns>`: Kubeflow 1.11)
        name, _slash, folder = text.partition("/")
        if not _BUCKET.match(name) or ".." in name:
            raise SetupError(_("bucket {name!r} is not a valid S3 bucket name").format(name=name),
                             _("use 3-63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit"))
        if folder and not _FOLDER.match(folder):
            raise SetupError(_("bucket folder {folder!r} is not a plain S3 path").format(folder=folder),
                             _("write bucket/folder with letters, digits, '.', '_', '-' and '/' (no '..', no '//')"))
        return text.rstrip("/")
    if key == "preset":
        if text not in PRESETS:
            raise SetupError(_("preset {text!r} is not one of {presets}").format(text=text, presets=', '.join(PRESETS)),
                             _("use 'guide' (the guide's 16Gi server) or 'small' (1 cpu, 2Gi: for shared clusters)"))
        return text
    return text


def settings_path() -> Path:
    """The settings file: MMS_SETTINGS, else `$XDG_CONFIG_HOME/mms-notebooks/settings.yaml` (~/.config)."""
    value = os.environ.get(SETTINGS_FILE_ENV)
    if value:
        return Path(value).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "mms-notebooks" / "settings.yaml"


def load(path: Optional[Path] = None) -> dict[str, str]:
    """The settings file's values (empty when there is no file), each checked; SetupError names the file."""
    path = Path(path) if path else settings_path()
    if not path.is_file():
        return {}
    try:
        found = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SetupError(_("cannot read the settings file {path}: {error}").format(path=path, error=str(exc).splitlines()[0]),
                         _("fix the YAML (one `key: value` a line), or delete {path}").format(path=path)) from None
    if not isinstance(found, dict):
        raise SetupError(_("the settings file {path} is not a mapping of settings").format(path=path),
                         _("write one `key: value` a line, keys from: {keys}").format(keys=', '.join(KEYS)))
    unknown = sorted(str(k) for k in found if k not in KEYS)
    if unknown:
        raise SetupError(_("the settings file {path} has unknown setting(s) {unknown}").format(
                             path=path, unknown=', '.join(unknown)),
                         _("use only: {keys}").format(keys=', '.join(KEYS)))
    values = {}
    for key, value in found.items():
        if value is None or str(value).strip() == "":
            continue
        try:
            values[key] = validate(key, value)
        except SetupError as exc:
            raise SetupError(_("{cause} (in the settings file {path})").format(cause=exc.cause, path=path), exc.fix) from None
    return values


def learner_name(user: Optional[str] = None) -> str:
    """`mms-<user>` as a DNS label (lower case, other characters as '-', at most 63), or `mms`."""
    try:
        user = user if user is not None else getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        user = ""
    slug = re.sub(r"[^a-z0-9]+", "-", user.lower()).strip("-")
    return f"{DEFAULT_NAMESPACE}-{slug}"[:63].rstrip("-") if slug else DEFAULT_NAMESPACE


OwnNamespace = Callable[[str], str]  # target name -> the namespace this process runs in, "" outside a cluster


def learner_namespace(target: str, own_namespace: Optional[OwnNamespace] = None,
                      user: Optional[str] = None) -> Optional[str]:
    """The per-learner namespace on the cluster target: the pod's own namespace, else `mms-<user>`; None locally."""
    if target != "cluster":
        return None
    return (own_namespace(target) if own_namespace else "") or learner_name(user)


def built_in(key: str, target: str = "local") -> str:
    """The built-in default of one setting; the target's is `helpers.core.config.target`'s: `cluster` inside a
    pod (a Kubeflow Notebook), else `local`. The preset's depends on the target: the guide's 16Gi server
    locally, `small` on a cluster, where a 16Gi server rarely finds a shared node with room (Pending,
    FailedScheduling)."""
    if key == "target":
        return validate("target", "")
    if key == "preset" and target == "cluster":
        return "small"
    return BUILT_IN[key]


def _resolve(params: Optional[Mapping[str, Any]], path: Optional[Path],
             own_namespace: Optional[OwnNamespace], user: Optional[str]) -> tuple[dict[str, str], dict[str, str]]:
    params = params or {}
    from_file = load(path)
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for key in KEYS:  # target first: the per-learner namespace depends on it
        given = params.get(key)
        env = os.environ.get(ENV[key], "").strip()
        learner = learner_namespace(values["target"], own_namespace, user) if key == "namespace" else None
        for source, value in (("parameter", given), (ENV[key], env),
                              ("settings file", from_file.get(key)), ("per-learner default", learner),
                              ("default", built_in(key, values.get("target", "local")))):
            if value is not None and str(value).strip() != "":
                values[key], sources[key] = validate(key, value), source
                break
        else:
            values[key], sources[key] = built_in(key, values.get("target", "local")), "default"
    return values, sources


def resolve_with_sources(params: Optional[Mapping[str, Any]] = None, *, path: Optional[Path] = None,
                         own_namespace: Optional[OwnNamespace] = None,
                         user: Optional[str] = None) -> tuple[dict[str, str], dict[str, str]]:
    """Every setting in `KEYS` and where each came from: the notebook's `params` (None or "" = not
    given), MMS_* variables, the settings file, a per-learner default, the built-in default.

    `own_namespace(target)`: the namespace the notebook runs in on that target ("" when none), e.g.
    `lambda t: helpers.clients.target.select(t).own_namespace()`.
    """
    return _resolve(params, path, own_namespace, user)


def sources(params: Optional[Mapping[str, Any]] = None, *, path: Optional[Path] = None,
            own_namespace: Optional[OwnNamespace] = None, user: Optional[str] = None) -> dict[str, str]:
    """Where each setting of `resolve` came from: parameter, its MMS_* variable, settings file, or a default."""
    return _resolve(params, path, own_namespace, user)[1]


def preset(name: str) -> Preset:
    """The Preset called `name` (`guide` or `small`)."""
    return PRESETS[validate("preset", name)]


def save(values: Mapping[str, Any], path: Optional[Path] = None) -> Path:
    """Merge `values` into the settings file (made if missing; other settings kept) and return its path.

    Each value is checked first: a bad one raises SetupError and the file is not touched. An
    empty value removes that setting from the file.
    """
    path = Path(path) if path else settings_path()
    unknown = sorted(k for k in values if k not in KEYS)
    if unknown:
        raise SetupError(_("cannot save unknown setting(s) {unknown}").format(unknown=', '.join(unknown)),
                         _("use only: {keys}").format(
                                                                                     keys=', '.join(KEYS)))
    merged = load(path)
    for key, value in values.items():
        if value is None or str(value).strip() == "":
            merged.pop(key, None)
        else:
            merged[key] = validate(key, value)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = ("# mms-notebooks settings, read by every notebook: a notebook parameter or MMS_* variable\n"
              "# wins over this file. Keys: " + ", ".join(KEYS) + "\n")
    body = yaml.safe_dump({k: merged[k] for k in KEYS if k in merged}, sort_keys=False, default_flow_style=False)
    handle, tmp = tempfile.mkstemp(prefix=".settings-", dir=path.parent)
    with os.fdopen(handle, "w") as out:
        out.write(header + (body if merged else ""))
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return path
