"""Checks on the model agent and S3: reaching S3, downloads and loads the agent gave up on, its
crashes, and what one listing of a storageUri returns.
"""
from __future__ import annotations

import re

from helpers.clients.inference import conditions
from helpers.core.constants import (
    KFSERVING_GROUP,
)
from helpers.core.i18n import _
from helpers.steps.models import agent_log
from helpers.steps.troubleshoot.doctor.checks_mesh import race_hint
from helpers.steps.troubleshoot.doctor.facts import ISSUES, NA, OK, PROBLEM, Facts, Finding, agent_env, agent_line, pod_command


def _s3_fix() -> str:
    return _("is MinIO running? `kubectl get pods -n kubeflow -l app=minio`; the agent retries when the model is "
             "applied again")


def check_s3(facts: Facts) -> Finding:
    name = _("S3 reachable, bucket there")
    s3 = facts.s3
    seen = agent_line(facts, "connection refused") or agent_line(facts, "NoSuchBucket")
    if not s3:
        if seen:
            return Finding(name, PROBLEM, seen, _s3_fix() + race_hint(facts), ISSUES + "1370")
        return Finding(name, NA, _("no usable S3 Secret to try"))
    if s3.get("ok"):
        return Finding(name, OK, _("bucket {bucket} at {endpoint}").format(bucket=s3["bucket"], endpoint=s3["endpoint"]))
    error = s3.get("error", "")
    if "does not exist" in error or "NoSuchBucket" in error:
        return Finding(name, PROBLEM, _("bucket {bucket} does not exist at {endpoint}").format(
                           bucket=s3["bucket"], endpoint=s3["endpoint"]),
                       _("create it and upload the models (01_minio, 03, 04), or fix the TrainedModels' storageUri"))
    return Finding(name, PROBLEM, f"{s3['endpoint']}: {error[:200]}" + (f"; {seen}" if seen else ""),
                   _s3_fix(), ISSUES + "1370")


# The agent's failure lines, as puller.go words them (KFServing 0.5.1, KServe 0.14-0.15): the error is
# inside `msg`, there is no `error` field; the local agent writes the same words.
_GAVE_UP = re.compile(r"^Failed to (?:download model (?P<d>\S+) with err |Load model (?P<l>\S+)$|"
                      r"load model (?P<r>\S+) with status )")
# What the agent logs when it starts on a model again (a re-applied TrainedModel, a new pod): the failure
# before it no longer stands.
_STARTED_AGAIN = re.compile(r"^(?:adding model|Downloading model|loading model|Successfully loaded model|"
                            r"Downloading to model dir|removing model)\b")


def gave_up(facts: Facts) -> dict[str, str]:
    """Model -> the agent's last failure line for it, where nothing for that model followed it."""
    last: dict[str, str] = {}
    for event in agent_log.parse(facts.agent_lines):
        msg = event["msg"]
        match = _GAVE_UP.match(msg)
        model = (match.group("d") or match.group("l") or match.group("r")) if match else event["model"]
        if not model:
            continue
        if match:
            extra = str(event["fields"].get("error", "")).split("; fix:")[0]
            last[model] = msg[:240] + (f" ({extra[:160]})" if extra and extra not in msg else "")
        elif _STARTED_AGAIN.match(msg):
            last.pop(model, None)
    return last


def check_gave_up(facts: Facts) -> Finding:
    """A TrainedModel the agent failed on once and never tried again: every release tries each download
    and each load once (`modelProcessor`, puller.go), so the model stays unloaded while the
    TrainedModel, which is Ready as soon as it is in the ConfigMap, looks fine."""
    name = _("no model the agent gave up on")
    failures = gave_up(facts)
    served = {m.get("name") for m in facts.repository or [] if m.get("state") == "READY"}
    ours = {tm["metadata"]["name"]: conditions(tm).get("Ready", {}).get("status") == "True"
            for tm in facts.trained_models}
    stuck = [model for model in failures if model in ours and model not in served]
    if not stuck:
        if not facts.agent_lines:
            return Finding(name, NA, _("no agent log to read"))
        return Finding(name, OK, _("no TrainedModel whose last agent attempt failed"))
    said = []
    for model in stuck:
        state = _("Ready (in the ConfigMap), not served") if ours[model] else _("not Ready, not served")
        said.append(_("TrainedModel {model} is {state}; agent log: {line}").format(
            model=model, state=state, line=failures[model]))
    first = stuck[0]
    return Finding(name, PROBLEM, "; ".join(said)[:600],
                   _("the agent tries each download and each load once and never again: mend the cause (the "
                     "line above, and the other PROBLEM rows), then `kubectl delete trainedmodel {model} -n "
                     "{namespace}` and apply it again (or `{command}`: a new pod's agent tries every model "
                     "once more)").format(model=first, namespace=facts.namespace, command=pod_command(facts)),
                   ISSUES + "1370")


def _agent_restarts(facts: Facts) -> tuple[int, dict]:
    for status in ((facts.pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("name") == "agent":
            return status.get("restartCount") or 0, (status.get("lastState") or {}).get("terminated") or {}
    return 0, {}


def check_agent_panic(facts: Facts) -> Finding:
    """KFServing 0.5.1's agent builds an S3 client only when AWS_ENDPOINT_URL is set; without it the first
    download dereferences a nil provider, the container exits 2 and restarts (kserve/kserve#1317)."""
    name = _("agent running (no panic)")
    panic = next((line.strip() for line in reversed(facts.agent_lines) if "nil pointer dereference" in line), "")
    count, last = _agent_restarts(facts)
    env = agent_env(facts)
    if env is None and not panic:
        return Finding(name, NA, _("no server pod"))
    no_endpoint = env is not None and not ({"S3_ENDPOINT", "AWS_ENDPOINT_URL"} & set(env))
    exited = count and last.get("exitCode") == 2
    if not panic and not (exited and no_endpoint):
        return Finding(name, OK, _("no Go panic in the agent's log; container agent restarted {count}x").format(
            count=count))
    evidence = [_("agent log: {line}").format(line=panic[:200])] if panic else []
    if count:
        evidence.append(_("container agent restarted {count}x (last exit code {code})").format(
            count=count, code=last.get("exitCode", "?")))
    if no_endpoint:
        evidence.append(_("its env has no S3_ENDPOINT or AWS_ENDPOINT_URL"))
    return Finding(name, PROBLEM, "; ".join(evidence),
                   _("KFServing 0.5.1's agent has no S3 client without an endpoint and panics on the first download: "
                     "annotate the S3 Secret {annotation} (01_minio), then `{command}` so a new pod takes the env "
                     "(with an Istio sidecar, the new pod's agent can then meet the sidecar race: see the check "
                     "'agent started after the Istio sidecar')").format(
                       annotation=facts.api_group.s3_endpoint, command=pod_command(facts)),
                   ISSUES + "1317")


def check_marker_file(facts: Facts) -> Finding:
    """KFServing 0.5.1's agent turns a directory-marker key (one ending in `/`) into an empty file, so the
    next key under it fails with `not a directory` (kserve/kserve#1769; KServe skips markers from v0.7)."""
    name = _("no directory-marker keys under a model")
    seen = agent_line(facts, "not a directory")
    markers = [(uri, key) for uri, page in facts.listings.items() for key in page.get("markers") or []]
    old_agent = facts.group == KFSERVING_GROUP
    if not seen and not (markers and old_agent):
        if markers:
            return Finding(name, OK, _("marker keys under {uri}, which this release's agent skips").format(
                uri=markers[0][0]))
        if not facts.listings and not facts.agent_lines:
            return Finding(name, NA, _("no listing and no agent log to read"))
        return Finding(name, OK, _("no marker key in the models' listings, no `not a directory` in the agent log"))
    keys = ", ".join(key for _uri, key in markers[:4])
    evidence = "; ".join(filter(None, [seen, _("marker keys: {keys}").format(keys=keys) if keys else ""]))
    return Finding(name, PROBLEM, evidence[:500],
                   _("delete the marker objects (keys ending in `/`: `mc rm` each, or `client.remove_object(bucket, "
                     "key)` in Python), then `{command}`: in the old pod the model's folder holds a file where a "
                     "folder belongs; the new pod's agent downloads each model again (if one still stays unloaded, "
                     "delete and re-apply its TrainedModel)").format(command=pod_command(facts)),
                   ISSUES + "1769")


def check_sibling_prefix(facts: Facts) -> Finding:
    """Every release lists `s3://b/cifar10` with the prefix as written, so `cifar10-old/...` comes along and
    lands in the model's folder as `-old/...` (kserve/kserve#3776, not fixed in the releases here)."""
    name = _("a model's prefix matches no other folder")
    if not facts.listings:
        return Finding(name, NA, _("the models' storage was not listed"))
    found = [(uri, page["siblings"]) for uri, page in facts.listings.items() if page.get("siblings")]
    if not found:
        return Finding(name, OK, _("{count} storageUri(s) listed: every key is inside the model's own folder").format(
            count=len(facts.listings)))
    uri, keys = found[0]
    return Finding(name, PROBLEM, _("ListObjects on {uri} (the prefix as written, as the agent asks) also returns "
                                    "{keys}: the agent writes them into the model's folder").format(
                                        uri=uri, keys=", ".join(keys[:3])),
                   _("give each model a prefix that no other key starts with: move or rename the other folder "
                     "(`cifar10-old/` to `old/cifar10/`), then delete and re-apply the TrainedModel"),
                   ISSUES + "3776")


LIST_PAGE = 1000  # S3's MaxKeys default: what one ListObjects call returns at most


def check_one_page(facts: Facts) -> Finding:
    """Every release reads one ListObjects page (`GetAllObjects`, no Marker loop): keys past the 1000th are
    never downloaded."""
    name = _("a model's folder fits one listing page")
    if not facts.listings:
        return Finding(name, NA, _("the models' storage was not listed"))
    over = [uri for uri, page in facts.listings.items() if page.get("truncated")]
    if not over:
        most = max(page.get("count", 0) for page in facts.listings.values())
        return Finding(name, OK, _("at most {count} key(s) under a model's prefix (one page holds {page})").format(
            count=most, page=LIST_PAGE))
    return Finding(name, PROBLEM, _("ListObjects on {uri} returns {page} keys and more follow (IsTruncated): the agent "
                                    "reads only the first page, so the rest is never downloaded").format(
                                        uri=over[0], page=LIST_PAGE),
                   _("keep fewer than {page} objects under each model's prefix: one model per prefix, nothing else "
                     "beside it (checkpoints, logs, other versions); then delete and re-apply the TrainedModel").format(
                       page=LIST_PAGE),
                   "https://github.com/kserve/kserve/blob/v0.15.2/pkg/agent/storage/s3.go")
