"""What the doctor reads and what it says: `Facts`, gathered once, and `Finding`, one check's
verdict, with the small readers the checks share.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Optional

from helpers.clients.manifests import DEFAULTS
from helpers.core.constants import (
    API_GROUPS,
    DEFAULT_BUCKET,
    ApiGroup,
    api_group,
)
from helpers.core.i18n import _
from helpers.steps.models import agent_log

OK, PROBLEM, NA = "ok", "problem", "n/a"
ISSUES = "https://github.com/kserve/kserve/issues/"
SERVICE_ACCOUNT = DEFAULTS["service_account"]  # the guide's; once a server exists its spec names the real one
# Memory quantities as Kubernetes writes them.
_UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "K": 10**3, "k": 10**3, "M": 10**6,
          "G": 10**9, "T": 10**12, "m": 1e-3, "": 1}


@dataclass
class Finding:
    """One check's verdict: `result` is ok / problem / n/a; `issue` where users reported it."""

    check: str
    result: str
    evidence: str
    fix: str = ""
    issue: str = ""
    id: str = ""  # the check's name in the code (`region` for check_region): the same in every language

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass
class Facts:
    """What the doctor read, as plain JSON-able dicts (recorded facts make unit tests)."""

    namespace: str
    server: str
    group: str
    bucket: str = DEFAULT_BUCKET
    k8s_version: str = ""
    served: dict = field(default_factory=dict)      # group -> resource names served in v1beta1 (Istio's: group/version)
    isvc: Optional[dict] = None
    isvc_events: list = field(default_factory=list)
    service_account: Optional[dict] = None
    secrets: dict = field(default_factory=dict)     # name -> metadata only (annotations, times)
    services: dict = field(default_factory=dict)    # name -> {"type", "externalName"}
    pod: Optional[dict] = None
    pod_events: list = field(default_factory=list)
    trained_models: list = field(default_factory=list)
    tm_events: dict = field(default_factory=dict)   # TrainedModel name -> its Events
    inference_config: Optional[dict] = None         # {"namespace", "predictors"} or {"denied": [...]}
    agent_lines: list = field(default_factory=list)
    server_lines: list = field(default_factory=list)  # Triton's log lines about model folders it refused
    gateway: Optional[dict] = None                  # {"url", "status", "body", "location", "sent"}
    cluster_local: Optional[dict] = None            # status.address.url probed: {"url", "status", "body"} or "skipped"
    mesh_policies: Optional[list] = None            # the namespace's AuthorizationPolicies ({"name", "spec"}); None: unread
    model_config: Optional[dict] = None             # modelconfig-<server>-0: {"name", "bytes", "models"}
    repository: Optional[list] = None               # Triton's repository index
    s3: Optional[dict] = None                       # {"endpoint", "bucket", "ok", "error"}
    listings: dict = field(default_factory=dict)    # storageUri -> one ListObjects page, as the agent asks
    can_i: dict = field(default_factory=dict)       # "create trainedmodels" -> this identity's answer
    error: str = ""                                 # what failed in the notebook, if it said
    unreadable: dict = field(default_factory=dict)  # what could not be read -> why

    @property
    def api_group(self) -> ApiGroup:
        return api_group(self.group)


def quantity(text: Any) -> Optional[float]:
    """A Kubernetes quantity (`16Gi`, `512Mi`, `1G`) in bytes, or None."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(text or ""))
    if not match or match.group(2) not in _UNITS:
        return None
    return float(match.group(1)) * _UNITS[match.group(2)]


def epoch_seconds(value: Any) -> Optional[float]:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def agent_json(lines: list) -> list[dict]:
    """The agent's JSON log records (real agents and the local one log the same shape)."""
    return [event["fields"] for event in agent_log.parse(lines)]


def agent_line(facts: Facts, needle: str) -> str:
    """The latest agent log line containing `needle` (its message and error), or ""."""
    for record in reversed(agent_json(facts.agent_lines)):
        text = f"{record.get('msg', '')} {record.get('error', '')}"
        if needle in text:
            model = record.get("modelName") or record.get("model") or ""
            error = str(record.get("error", "")).split("; fix:")[0]  # the local agent appends its hint
            error = "" if error and error in str(record.get("msg", "")) else error  # a release's line has it in msg
            line = f"{record.get('msg', '')}{f' ({model})' if model else ''}: {error}".rstrip(": ")
            return _("agent log: {line}").format(line=line)
    for line in reversed(facts.agent_lines):
        if needle in line and not line.strip().startswith("{"):
            return _("agent log: {line}").format(line=line.strip()[:200])
    return ""


def events_text(events: list) -> list[str]:
    return [f"{e.get('type', '')} {e.get('reason', '')}: {e.get('message', '')}" for e in events]


def s3_secret(facts: Facts) -> tuple[str, dict]:
    """(name, metadata) of the service account's Secret that carries an s3-endpoint annotation of
    either group (the first listed, as KServe's builder takes it); ("", {}) if none."""
    for ref in ((facts.service_account or {}).get("secrets") or []):
        meta = facts.secrets.get(ref.get("name"))
        if meta is None:
            continue
        notes = meta.get("annotations") or {}
        if any(f"{g}/s3-endpoint" in notes for g in API_GROUPS):
            return ref["name"], meta
    return "", {}


def server_account(facts: Facts) -> str:
    predictor = ((facts.isvc or {}).get("spec") or {}).get("predictor") or {}
    return predictor.get("serviceAccountName") or ("default" if facts.isvc else SERVICE_ACCOUNT)


def agent_env(facts: Facts) -> Optional[dict]:
    """The agent container's env in the server's Pod: name -> value ("<secret>" for references)."""
    for container in ((facts.pod or {}).get("spec") or {}).get("containers") or []:
        if container.get("name") == "agent":
            return {e["name"]: e.get("value", "<secret>") for e in container.get("env") or []}
    return None


def pod_command(facts: Facts) -> str:
    """The command that replaces the server's pod (a new pod starts its agent afresh)."""
    return f"kubectl delete pod -n {facts.namespace} -l {facts.api_group.isvc_label}={facts.server}"
