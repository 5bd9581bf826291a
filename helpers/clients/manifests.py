"""The guide's YAML files (manifests/*.yaml), rendered for a namespace, names and API group.

Explained in 00_cluster_prep (first use) and 01_minio (the Secret). The files are
`string.Template`s: `${namespace}`, `${api_group}`, ... Each placeholder is first replaced by
an inert token, the text is parsed with `yaml.safe_load_all`, and the values are put in place
of the tokens in the parsed documents, so a value is always a plain string, whatever
characters it holds (a secret key with `:` or `#` cannot break the YAML, and `"0123"` stays a
string). Rendered documents are applied with `helpers.clients.k8s.apply` (create, else patch: running
it twice changes nothing) and shown masked (`to_yaml`), ready for `kubectl apply -f -`.
"""
from __future__ import annotations

import copy
import re
import string
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml

from helpers.clients import k8s
from helpers.core import resources
from helpers.core.constants import KUBEFLOW_NAMESPACE, MINIO_PORT, MINIO_SERVICE
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.settings import PRESETS, preset
from helpers.core.show import display_code

MASK = "********"

# Values the guide fixes and the notebooks do not ask for (each can still be overridden).
DEFAULTS: dict[str, str] = {
    "service_account": "sa",             # the guide's service account for the agent's S3 access
    "secret_name": "mysecret",           # the guide's S3 Secret
    "owner": "user@example.com",         # Kubeflow's default user (the Profile's owner)
    "s3_endpoint": f"{MINIO_SERVICE}.{KUBEFLOW_NAMESPACE}:{MINIO_PORT}",
    **PRESETS["guide"].manifest_values(),  # server cpu/memory and model memory as in the guide
}

# The model name each TrainedModel manifest is written for (the Triton model folder).
MODEL_NAMES = {"trained_model1": "cifar10", "trained_model2": "inception"}


def manifest_dir() -> Path:
    return resources.manifest_dir()


def names() -> list[str]:
    """Every manifest, by file name without `.yaml`."""
    return sorted(p.stem for p in manifest_dir().glob("*.yaml"))


def path(name: str) -> Path:
    found = manifest_dir() / f"{name.removesuffix('.yaml')}.yaml"
    if not found.is_file():
        raise SetupError(_("no manifest {name!r} in {manifest_dir}").format(name=name, manifest_dir=manifest_dir()),
                         _("use one of: {names}").format(names=', '.join(names())))
    return found


def placeholders(name: str) -> set[str]:
    """The `${...}` names a manifest needs."""
    template = string.Template(path(name).read_text())
    return {m.group("named") or m.group("braced") for m in template.pattern.finditer(template.template)
            if m.group("named") or m.group("braced")}


def _put_values(node: Any, tokens: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {_put_values(k, tokens): _put_values(v, tokens) for k, v in node.items()}
    if isinstance(node, list):
        return [_put_values(item, tokens) for item in node]
    if isinstance(node, str) and "MMSVALUE" in node:
        return re.sub(r"MMSVALUE\d+X", lambda m: tokens[m.group(0)], node)
    return node


def render(name: str, **values: Any) -> list[dict]:
    """The manifest's documents with every `${placeholder}` filled from `values` (then DEFAULTS).

    Raises SetupError naming any placeholder left without a value.
    """
    text = path(name).read_text()
    needed = placeholders(name)
    merged = {**DEFAULTS, **{k: v for k, v in values.items() if v is not None}}
    missing = sorted(needed - merged.keys())
    if missing:
        raise SetupError(_("manifest {name} needs a value for {missing}").format(name=name, missing=', '.join(missing)),
                         _("pass {arguments} to render()").format(arguments=', '.join(f'{m}=...' for m in missing)))
    tokens = {key: f"MMSVALUE{i}X" for i, key in enumerate(sorted(needed))}
    filled = string.Template(text).substitute({key: tokens[key] for key in needed})
    back = {token: str(merged[key]) for key, token in tokens.items()}
    docs = [doc for doc in yaml.safe_load_all(filled) if doc]
    return [_put_values(doc, back) for doc in docs]


def values_for(ctx: Any, **extra: Any) -> dict[str, str]:
    """The placeholder values that come from a notebook's settings: namespace, names, API group, and the
    server's cpu/memory and each model's memory from its `preset` (`helpers.core.settings.PRESETS`)."""
    return {"namespace": ctx.namespace, "server_name": ctx.server_name, "bucket": ctx.bucket,
            "api_group": ctx.api_group, **preset(ctx.setting("preset")).manifest_values(),
            **{k: v for k, v in extra.items() if v is not None}}


def masked(docs: Iterable[Mapping[str, Any]]) -> list[dict]:
    """Copies of `docs` with every Secret's `data`/`stringData` value replaced by a mask."""
    out = []
    for doc in docs:
        doc = copy.deepcopy(dict(doc))
        if doc.get("kind") == "Secret":
            for field in ("data", "stringData"):
                if isinstance(doc.get(field), dict):
                    doc[field] = {key: MASK for key in doc[field]}
        out.append(doc)
    return out


def to_yaml(docs: Iterable[Mapping[str, Any]], mask_secrets: bool = True) -> str:
    """The documents as one multi-document YAML text (what `kubectl apply -f -` reads)."""
    docs = masked(docs) if mask_secrets else [dict(d) for d in docs]
    return "---\n".join(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False) for doc in docs)


def show(docs: Iterable[Mapping[str, Any]], name: Optional[str] = None) -> None:
    """Display the rendered YAML (secrets masked) and how to apply it with kubectl."""
    docs = list(docs)
    text = to_yaml(docs)
    if name:
        note = "# " + _("manifests/{name}.yaml, rendered: save it as a file or pipe it to `kubectl apply -f -`").format(
            name=name)
    else:
        note = "# " + _("rendered: save it as a file or pipe it to `kubectl apply -f -`")
    if any(d.get("kind") == "Secret" for d in docs):
        note += "\n# " + _("(secret values are shown as {mask}; the applied object holds the real ones)").format(mask=MASK)
    display_code(f"{note}\n{text}", "yaml")


def apply(api: Any, docs: Iterable[Mapping[str, Any]], namespace: Optional[str] = None) -> list[dict]:
    """Create or update each document on the server (idempotent) and return them as stored."""
    return k8s.apply_all(api, list(docs), namespace)


def summary(stored: Iterable[Mapping[str, Any]]) -> list[str]:
    """`Kind namespace/name` of applied objects, for printing and results (never their content)."""
    return [k8s.describe(obj) for obj in stored]
