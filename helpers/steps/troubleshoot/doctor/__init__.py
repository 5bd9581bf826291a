"""The guide's known pitfalls, checked on a namespace and its server: `python -m helpers.doctor`.

Explained in 06_troubleshooting. The doctor reads only what a learner can read on any cluster:
the Kubernetes API (the S3 Secret's annotations, never its values; the service account, the
server's Pod and its Events, the TrainedModels and their conditions and Events, the cluster's
version and served API groups), the agent's log (`kubectl logs <pod> agent`), the ingress
gateway and Triton's repository index through the server's endpoint, and S3 with the Secret's
keys. `gather` collects those facts once; each check is a pure function of them, so a check
can be tested on facts recorded from a cluster the local stack cannot imitate.

Each finding is `ok`, `problem` or `n/a` (not applicable, or not visible with your rights),
with the evidence it saw and the fix.

The checks live by what they look at (`checks_setup`, `checks_serving`, `checks_agent`,
`checks_mesh`); `gather` reads the cluster, `facts` holds what it read. This module runs them
in order and shows the findings; its names are the doctor's API (`from helpers import doctor`).
"""
from __future__ import annotations

from typing import Any, Callable, Optional

from helpers.core.i18n import _
from helpers.core.show import pad, text_width
from helpers.steps.troubleshoot.doctor.checks_agent import (
    check_agent_panic,
    check_gave_up,
    check_marker_file,
    check_one_page,
    check_s3,
    check_sibling_prefix,
)
from helpers.steps.troubleshoot.doctor.checks_mesh import MESH_GROUP, check_cluster_local, check_gateway, check_sidecar_race
from helpers.steps.troubleshoot.doctor.checks_serving import (
    check_memory,
    check_models_json,
    check_oom,
    check_pending,
    check_served,
    check_shape,
    check_terminating,
    check_webhook,
)
from helpers.steps.troubleshoot.doctor.checks_setup import (
    check_annotation_prefix,
    check_config_name,
    check_crds,
    check_endpoint_scheme,
    check_external_name,
    check_multi_model,
    check_rbac,
    check_region,
    check_service_account,
    check_stale_env,
    check_virtual_host,
)
from helpers.steps.troubleshoot.doctor.facts import ISSUES, NA, OK, PROBLEM, Facts, Finding, quantity
from helpers.steps.troubleshoot.doctor.gather import facts_for_record, gather, list_page

CHECKS: list[Callable[[Facts], Finding]] = [
    check_crds, check_service_account, check_annotation_prefix, check_region, check_virtual_host, check_stale_env,
    check_external_name, check_multi_model, check_pending, check_memory, check_config_name, check_webhook,
    check_served, check_models_json, check_gateway, check_cluster_local, check_shape, check_s3, check_sidecar_race,
    check_gave_up, check_agent_panic, check_marker_file, check_sibling_prefix, check_one_page, check_oom,
    check_endpoint_scheme, check_terminating, check_rbac]


def run_checks(facts: Facts) -> list[Finding]:
    """Every check on the facts (a check that trips over odd facts says so as n/a)."""
    findings = []
    for check in CHECKS:
        key = check.__name__.removeprefix("check_")
        try:
            found = check(facts)
        except Exception as exc:  # noqa: BLE001 - one odd object must not hide the other checks
            found = Finding(key, NA, _("could not check: {error}").format(error=repr(exc))[:200])
        found.id = key
        findings.append(found)
    return findings


def table(findings: list[Finding], width: int = 120) -> str:
    """The findings as a plain-text table: check, result, evidence, fix."""
    marks = {OK: "ok", PROBLEM: "PROBLEM", NA: "n/a"}
    check, result, evidence, fix = _("check"), _("result"), _("evidence / fix"), _("fix:")
    name_w = max([text_width(f.check) for f in findings] + [text_width(check)])
    lines = [f"{pad(check, name_w)}  {pad(result, 7)}  {evidence}", "-" * min(width, name_w + 60)]
    for f in findings:
        lines.append(f"{pad(f.check, name_w)}  {marks[f.result]:<7}  {f.evidence}")
        if f.result == PROBLEM:
            lines.append(f"{'':<{name_w}}  {'':<7}  {fix} {f.fix}" + (f"  [{f.issue}]" if f.issue else ""))
    return "\n".join(lines)


def problems(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.result == PROBLEM]


def diagnose(ctx: Any, error: Optional[BaseException] = None, server: Optional[str] = None,
             show: bool = True, only_problems: bool = False) -> list[Finding]:
    """For a notebook: check the notebook's namespace and server (and `error`, if a request failed);
    print the table (with `only_problems`: the command that prints the same from a terminal, then
    the PROBLEM rows only); return every finding."""
    server = server or ctx.server_name
    facts = gather(ctx.api, ctx.place, ctx.namespace, server, ctx.group.group, bucket=ctx.bucket, error=error)
    findings = run_checks(facts)
    if show and only_problems:
        from helpers.core.show import show_not_in_guide

        show_not_in_guide(f"python -m helpers.doctor --namespace {ctx.namespace} --server {server} --problems",
                          _("the same look from a terminal (`--json` for every row)"))
        bad = problems(findings)
        print(table(bad) if bad else _("no PROBLEM rows: the doctor sees none of the known pitfalls"))
    elif show:
        print(table(findings))
    return findings


__all__ = ["CHECKS", "ISSUES", "MESH_GROUP", "NA", "OK", "PROBLEM", "Facts", "Finding", "diagnose", "facts_for_record",
           "gather", "list_page", "problems", "quantity", "run_checks", "table",
           *(check.__name__ for check in CHECKS)]
