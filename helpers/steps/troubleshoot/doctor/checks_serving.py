"""Checks on the server and its models: scheduling and memory, the model config, Triton's answers,
and TrainedModels that cannot go.
"""
from __future__ import annotations

import json
import re

from helpers.clients.inference import conditions
from helpers.clients.k8s import triton_predictor
from helpers.core.constants import (
    model_config_map_name,
)
from helpers.core.i18n import _
from helpers.steps.troubleshoot.doctor.checks_agent import gave_up
from helpers.steps.troubleshoot.doctor.facts import ISSUES, NA, OK, PROBLEM, Facts, Finding, agent_json, events_text, quantity

# The API server's cap on a ConfigMap's data (MaxSecretSize, 1 MiB): past it the write is refused with 422.
CONFIGMAP_LIMIT = 1048576
# Triton's answer to a request whose tensor does not match the model's config (HTTP 400).
_SHAPE_MESSAGE = re.compile(r"unexpected shape for input '([^']+)' for model '([^']+)'\. "
                            r"Expected \[([^\]]*)\], got \[([^\]]*)\]")


def _restarts(facts: Facts) -> str:
    """What the server Pod's container statuses say of restarts: "" when none."""
    said = []
    for status in ((facts.pod or {}).get("status") or {}).get("containerStatuses") or []:
        if status.get("restartCount"):
            last = ((status.get("lastState") or {}).get("terminated") or {}).get("reason", "")
            said.append(_("container {name} restarted {count}x").format(name=status.get("name"),
                                                                       count=status["restartCount"])
                        + (f" (last: {last})" if last else ""))
    return "; ".join(said)


def check_served(facts: Facts) -> Finding:
    """A TrainedModel Ready whose model Triton does not hold: typically Triton restarted (OOMKilled,
    a crash) and the agent, which loads a model only when models.json changes or its pod starts,
    never loads it again (KFServing 0.5.1 and KServe 0.14-0.15 `pkg/agent`: no health watch)."""
    name = _("Ready TrainedModels served by Triton")
    if facts.repository is None:
        return Finding(name, NA, _("Triton's repository index was not reachable"))
    states = {m.get("name"): m.get("state") or "" for m in facts.repository}
    ready = [tm["metadata"]["name"] for tm in facts.trained_models
             if conditions(tm).get("Ready", {}).get("status") == "True"]
    failed = {(r.get("modelName") or r.get("model")) for r in agent_json(facts.agent_lines) if r.get("error")}
    failed |= set(gave_up(facts))  # the agent's own failure line: the check 'no model the agent gave up on' names it
    lost = [n for n in ready if states.get(n) != "READY" and n not in failed]  # an agent error: other checks say why
    if not lost:
        return Finding(name, OK, _("{count} Ready TrainedModel(s), each READY in Triton").format(count=len(ready)))
    absent = _("not in the index")
    seen = ", ".join(f"{n} ({states.get(n) or absent})" for n in lost)
    restarts = _restarts(facts)
    return Finding(name, PROBLEM, _("Ready but not served: {models}").format(models=seen)
                   + (f"; {restarts}" if restarts else ""),
                   _("the agent loads a model when models.json changes or its pod starts, and does not reload what a "
                     "restarted Triton lost: `{command}` (the new pod's agent loads every model), or delete and "
                     "re-apply the TrainedModel").format(
                         command=f"kubectl delete pod -n {facts.namespace} -l {facts.api_group.isvc_label}={facts.server}"))


def check_memory(facts: Facts) -> Finding:
    name = _("TrainedModel memory within the server's")
    limits = (triton_predictor(facts.isvc) or {}).get("resources") or {}
    limit = quantity((limits.get("limits") or {}).get("memory"))
    refused = []
    for tm in facts.trained_models:
        cond = conditions(tm).get("MemoryResourceAvailable")
        if cond and cond.get("status") == "False":
            refused.append(f"{tm['metadata']['name']}: MemoryResourceAvailable=False {cond.get('message', '')}".strip())
    total = sum(quantity(((tm.get("spec") or {}).get("model") or {}).get("memory")) or 0 for tm in facts.trained_models)
    fix = _("give the TrainedModel a smaller spec.model.memory (it is immutable: delete and re-create it) or raise the "
            "server's memory limit; KFServing 0.5 does not check this, KServe refuses the model")
    if refused:
        return Finding(name, PROBLEM, "; ".join(refused), fix, "https://github.com/kserve/kserve/pull/1446")
    if limit is None:
        return Finding(name, NA, _("the server has no memory limit to compare with"))
    if total > limit:
        return Finding(name, PROBLEM, _("TrainedModels ask for {total}Gi in all, the server's limit is {limit}Gi").format(
                           total=f"{total / 2**30:.2f}", limit=f"{limit / 2**30:.2f}"),
                       fix, "https://github.com/kserve/kserve/pull/1446")
    return Finding(name, OK, _("{count} TrainedModel(s) ask {total}Gi of {limit}Gi").format(
        count=len(facts.trained_models), total=f"{total / 2**30:.2f}", limit=f"{limit / 2**30:.2f}"))


def check_pending(facts: Facts) -> Finding:
    name = _("server pod scheduled")
    triton = triton_predictor(facts.isvc) or {}
    asked = (triton.get("resources") or {}).get("requests") or {}
    asks = ", ".join(f"{key} {asked[key]}" for key in ("memory", "cpu") if asked.get(key)) or "-"
    if facts.pod is None:
        if facts.isvc is None:
            return Finding(name, NA, _("no server pod"))
        return Finding(name, PROBLEM, _("no server pod yet"),
                       _("`kubectl describe inferenceservice {server} -n {namespace}`: its conditions and Events say "
                         "why no pod was made").format(server=facts.server, namespace=facts.namespace))
    phase = (facts.pod.get("status") or {}).get("phase")
    failed = [e for e in facts.pod_events if e.get("reason") == "FailedScheduling"]
    if phase == "Pending" and failed:
        return Finding(name, PROBLEM, _("pod {pod} Pending (it requests {asks}); {event}").format(
                           pod=facts.pod["metadata"]["name"], asks=asks, event=events_text(failed)[-1]),
                       _("choose the `small` preset (1 cpu, 2Gi: preset='small' in the notebooks' settings, or "
                         "MMS_PRESET=small) and re-create the server, or lower spec.predictor.triton.resources.requests "
                         "({asks}; the guide asks 16Gi and 1 CPU) to what a node has free; else ask your admin for a "
                         "node with room (`kubectl describe node` shows Allocatable and what is requested)").format(
                             asks=asks), ISSUES + "1601")
    return Finding(name, OK, _("pod {pod} is {phase} (it requests {asks})").format(
        pod=facts.pod["metadata"]["name"], phase=phase, asks=asks))


def check_webhook(facts: Facts) -> Finding:
    name = _("TrainedModel webhook (name, storageUri)")
    probe = facts.unreadable.get("webhook_probe")
    if probe is None:
        return Finding(name, NA, _("not probed"))
    if probe == "accepted":
        return Finding(name, OK, _("a dry-run TrainedModel with a valid name and s3:// storageUri was admitted"))
    return Finding(name, PROBLEM, probe[:300],
                   _("KFServing 0.5 wants a DNS-1035 name ([a-z]([-a-z0-9]*[a-z0-9])?) and an s3:// or gs:// "
                     "storageUri; `memory` cannot change after creation: read the webhook's message"),
                   ISSUES + "1392")


def check_shape(facts: Facts) -> Finding:
    name = _("request tensor shape")
    match = _SHAPE_MESSAGE.search(facts.error or "")
    if not match:
        return Finding(name, NA, _("no failed request to look at (pass the error to diagnose)"))
    tensor, model, expected, got = match.groups()
    return Finding(name, PROBLEM, _("Triton 400: input {tensor} of {model} expected [{expected}], got [{got}]").format(
                       tensor=repr(tensor), model=repr(model), expected=expected, got=got),
                   _("send [{expected}] ('-1' is the batch: any size up to max_batch_size); `{command}` shows the "
                     "input's shape").format(expected=expected, command=f"curl .../v2/models/{model}"))


def entry_bytes(tm: dict) -> int:
    """The bytes a TrainedModel's entry adds to models.json (compact JSON, as `json.Marshal` writes it, and a comma)."""
    model = (tm.get("spec") or {}).get("model") or {}
    entry = {"modelName": tm["metadata"]["name"], "modelSpec": {
        "storageUri": model.get("storageUri", ""), "framework": model.get("framework", ""),
        "memory": str(model.get("memory", ""))}}
    return len(json.dumps(entry, separators=(",", ":")).encode()) + 1


def check_models_json(facts: Facts) -> Finding:
    """Every TrainedModel of a server is one entry of one ConfigMap, `modelconfig-<server>-0` (sharding is a
    TODO in every release); the API server refuses a ConfigMap past 1 MiB (422 `Too long`), the controller
    logs a reconciler error and retries, and the TrainedModel reads Ready all the same (its conditions are
    set before the write), while the agent keeps the last list."""
    name = _("models.json within the ConfigMap's 1 MiB")
    config = facts.model_config
    if config is None:
        configmap = model_config_map_name(facts.server)
        return Finding(name, NA, facts.unreadable.get("model_config") or _("no ConfigMap {configmap}").format(
            configmap=configmap))
    listed = set(config.get("models") or [])
    ready = [tm for tm in facts.trained_models if conditions(tm).get("Ready", {}).get("status") == "True"
             and not (tm.get("metadata") or {}).get("deletionTimestamp")]
    missing = [tm for tm in ready if tm["metadata"]["name"] not in listed]
    size = config.get("bytes", 0)
    needed = size + sum(entry_bytes(tm) for tm in missing)
    if not (missing and needed > CONFIGMAP_LIMIT):
        return Finding(name, OK, _("ConfigMap {configmap}: {count} model(s), {size} of {limit} bytes").format(
            configmap=config.get("name"), count=len(listed), size=size, limit=CONFIGMAP_LIMIT))
    names = ", ".join(tm["metadata"]["name"] for tm in missing[:5]) + (", ..." if len(missing) > 5 else "")
    return Finding(name, PROBLEM, _("ConfigMap {configmap} holds {count} model(s) in {size} bytes; Ready "
                                    "TrainedModel(s) not in it: {models}; with them models.json would be {needed} "
                                    "bytes, past the {limit} the API server allows (422 `Too long`)").format(
                                        configmap=config.get("name"), count=len(listed), size=size, models=names,
                                        needed=needed, limit=CONFIGMAP_LIMIT),
                   _("the controller cannot write a list past 1 MiB, and the TrainedModels read Ready all the same: "
                     "spread the models over another InferenceService (a second server, its TrainedModels naming "
                     "it), or delete TrainedModels you no longer use; the controller then writes the list again"),
                   "https://github.com/kserve/kserve/blob/v0.15.2/pkg/controller/v1alpha1/trainedmodel/sharding/"
                   "memory/strategy.go")


def check_oom(facts: Facts) -> Finding:
    """The server container killed at its memory limit: the kubelet records `OOMKilled` and restarts it,
    and a restarted Triton holds no model (see 'Ready TrainedModels served by Triton')."""
    name = _("server container within its memory limit")
    statuses = ((facts.pod or {}).get("status") or {}).get("containerStatuses")
    if not statuses:
        return Finding(name, NA, _("no server container status"))
    killed = [s for s in statuses if s.get("name") != "agent"
              and ((s.get("lastState") or {}).get("terminated") or {}).get("reason") == "OOMKilled"]
    limits = ((triton_predictor(facts.isvc) or {}).get("resources") or {}).get("limits") or {}
    limit = limits.get("memory") or "-"
    if not killed:
        return Finding(name, OK, _("no container OOMKilled (limits.memory {limit})").format(limit=limit))
    status = killed[0]
    code = ((status.get("lastState") or {}).get("terminated") or {}).get("exitCode", 137)
    total = sum(quantity(((tm.get("spec") or {}).get("model") or {}).get("memory")) or 0 for tm in facts.trained_models)
    return Finding(name, PROBLEM, _("container {container}: lastState.terminated.reason OOMKilled (exit code {code}), "
                                    "restartCount {count}; limits.memory {limit}, the TrainedModels ask "
                                    "{total}Gi").format(container=status.get("name"), code=code,
                                                        count=status.get("restartCount", 0), limit=limit,
                                                        total=f"{total / 2**30:.2f}"),
                   _("raise spec.predictor.triton.resources.limits.memory (the `guide` preset has 16Gi) or load fewer "
                     "or smaller models; then delete and re-apply each TrainedModel, since the agent does not reload "
                     "what the restarted Triton lost"),
                   "https://github.com/kserve/modelmesh-serving/issues/396")


def check_terminating(facts: Facts) -> Finding:
    """A TrainedModel deleted after its InferenceService: its controller needs the parent to finish the
    deletion, so the finalizer stays and the object stays Terminating (kserve/kserve#1422)."""
    name = _("no TrainedModel stuck Terminating")
    deleting = [tm for tm in facts.trained_models if (tm.get("metadata") or {}).get("deletionTimestamp")]
    if not deleting:
        return Finding(name, OK, _("no TrainedModel of {server} is being deleted").format(server=facts.server))
    meta = deleting[0]["metadata"]
    evidence = _("TrainedModel {model}: deletionTimestamp {when}, finalizers {finalizers}").format(
        model=meta["name"], when=meta["deletionTimestamp"], finalizers=meta.get("finalizers") or [])
    if facts.isvc is not None or not meta.get("finalizers"):
        return Finding(name, OK, evidence + _("; its server exists, so the controller can finish"))
    return Finding(name, PROBLEM, evidence + _("; InferenceService {server} does not exist").format(server=facts.server),
                   _("remove the finalizer: `kubectl patch trainedmodel {model} -n {namespace} --type=merge -p "
                     "'{{\"metadata\":{{\"finalizers\":null}}}}'`; next time delete the TrainedModels before their "
                     "server").format(model=meta["name"], namespace=facts.namespace),
                   ISSUES + "1422")
