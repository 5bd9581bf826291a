"""Checks before anything is created: each says what is missing and how to fix it.

Explained in 00_cluster_prep. The API answers; the CRDs are served (Profile, and
InferenceService + TrainedModel in the chosen API group); Triton's `multiModelServer` is true in
`inferenceservice-config` (KFServing 0.5.1 ships it false: the guide's first warning); and the
account may create what the walkthrough creates (one SelfSubjectAccessReview per verb and
resource, as `kubectl auth can-i` asks).
"""
from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from .constants import (API_GROUPS, INFERENCESERVICE_CONFIG, KFSERVING_GROUP, KNATIVE_NAMESPACE,
                        KUBEFLOW_NAMESPACE, PROFILE_GROUP, PROFILE_PLURAL, PROFILE_VERSION, ApiGroup)

# Where `inferenceservice-config` lives: Kubeflow's bundle, standalone KFServing 0.5/0.6, KServe.
CONFIG_NAMESPACES = ("kubeflow", "kfserving-system", "kserve")


@dataclass(frozen=True)
class Check:
    """One preflight result. `ok` is None when the check could not tell (e.g. not allowed to look)."""

    name: str
    ok: Optional[bool]
    message: str
    fix: str = ""
    admin_step: str = ""  # "profile" or "knative": a step of 00 an admin may do instead of you

    def as_dict(self) -> dict:
        return asdict(self)


def check_api(api: client.ApiClient) -> Check:
    try:
        version = client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return Check("API reachable", False, f"{api.configuration.host} does not answer ({type(exc).__name__})",
                     "local: `python -m helpers.local up`; cluster: `kubectl cluster-info` shows what is wrong")
    return Check("API reachable", True, f"Kubernetes {version.git_version} at {api.configuration.host}")


def _served(api: client.ApiClient, group: str, version: str) -> set[str]:
    """Resource names the apiserver serves in group/version ({} if the group is not served)."""
    try:
        found = client.CustomObjectsApi(api).get_api_resources(group, version)
    except ApiException as exc:
        if exc.status == 404:
            return set()
        raise
    return {r.name for r in found.resources}


def served_api_group(api: client.ApiClient) -> str:
    """The API group whose InferenceServices this cluster serves (KFServing's if it serves both)."""
    from .errors import SetupError

    for group in API_GROUPS:
        if "inferenceservices" in _served(api, group, "v1beta1"):
            return group
    raise SetupError("this cluster serves no InferenceService CRD (neither serving.kubeflow.org nor "
                     "serving.kserve.io)", "install KServe (or KFServing), then run this notebook again; "
                     "`kubectl get crd | grep serving` shows what is there")


def check_crds(api: client.ApiClient, group: ApiGroup) -> list[Check]:
    wanted = [(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL, "Profile", "Kubeflow"),
              (group.group, group.isvc_version, "inferenceservices", "InferenceService", group.group),
              (group.group, group.tm_version, "trainedmodels", "TrainedModel", group.group)]
    checks = []
    for api_group, version, plural, kind, owner in wanted:
        served = plural in _served(api, api_group, version)
        name = f"CRD {kind} ({api_group}/{version})"
        if served:
            checks.append(Check(name, True, f"{plural}.{api_group} is served"))
        else:
            other = "serving.kserve.io" if api_group == KFSERVING_GROUP else KFSERVING_GROUP
            other_served = api_group != PROFILE_GROUP and plural in _served(api, other, version)
            fix = (f"this cluster serves {other} instead: set api_group={other!r} (or leave it empty)"
                   if other_served else
                   f"install {owner}; or, if this cluster runs the other API group, set api_group={other!r}"
                   if api_group != PROFILE_GROUP else
                   "install Kubeflow's profile controller, or create the namespace yourself and skip the Profile")
            checks.append(Check(name, False, f"{plural}.{api_group} is not served by this cluster", fix))
    return checks


def find_inferenceservice_config(api: client.ApiClient) -> tuple[Optional[client.V1ConfigMap], list[str]]:
    """`inferenceservice-config` from the first namespace that has it, and the namespaces not readable."""
    denied = []
    for namespace in CONFIG_NAMESPACES:
        try:
            return client.CoreV1Api(api).read_namespaced_config_map(INFERENCESERVICE_CONFIG, namespace), denied
        except ApiException as exc:
            if exc.status == 403:
                denied.append(namespace)
            elif exc.status != 404:
                raise
    return None, denied


def check_multi_model_server(api: client.ApiClient, group: ApiGroup) -> Check:
    """Is a Triton predictor without storageUri a multi-model server, with this release's own switch?"""
    name = "Triton multiModelServer"
    cm, denied = find_inferenceservice_config(api)
    if cm is None:
        if denied:
            return Check(name, None, f"not allowed to read {INFERENCESERVICE_CONFIG} in {', '.join(denied)}",
                         "ask the cluster's admin whether Triton's multi-model serving is on "
                         "(KFServing 0.5-0.9: predictors.triton.multiModelServer true)")
        return Check(name, False, f"ConfigMap {INFERENCESERVICE_CONFIG} is in none of {', '.join(CONFIG_NAMESPACES)}",
                     f"install {group.group} (its controller reads this ConfigMap)")
    namespace = cm.metadata.namespace
    where = f"ConfigMap {namespace}/{INFERENCESERVICE_CONFIG}"
    raw = (cm.data or {}).get("predictors")
    if raw is None:
        return Check(name, True, f"{where} has no `predictors`: KServe 0.10+ serves any predictor without a "
                                 "storageUri as a multi-model server, nothing to switch on")
    try:
        triton = json.loads(raw).get("triton") or {}
    except ValueError:
        return Check(name, False, f"{where}: `predictors` is not valid JSON", f"`kubectl edit cm {INFERENCESERVICE_CONFIG} -n {namespace}`")
    if triton.get("multiModelServer") is True:
        return Check(name, True, f"{where}: predictors.triton.multiModelServer is true")
    return Check(name, False, f"{where}: predictors.triton.multiModelServer is {json.dumps(triton.get('multiModelServer'))}"
                 " (KFServing 0.5.1 ships false; 0.6-0.9 have the same switch)",
                 f"`kubectl edit cm {INFERENCESERVICE_CONFIG} -n {namespace}`: set it to true in predictors.triton, "
                 "before the InferenceService is created")


def _can(api: client.ApiClient, verb: str, group: str, resource: str, namespace: Optional[str]) -> bool:
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                                        namespace=namespace)))
    answer = client.AuthorizationV1Api(api).create_self_subject_access_review(review)
    return bool(answer.status.allowed)


# The steps of 00_cluster_prep that need more than a Kubeflow Notebook's rights: an admin does them once.
ADMIN_STEPS = {"profile": "the namespace, through a Profile", "knative": "the two Knative config-deployment patches"}


def permissions_needed(group: ApiGroup, namespace: str) -> list[tuple[str, str, str, Optional[str], str, str]]:
    """(verb, group, resource, namespace, which notebook needs it, the admin step it belongs to or "")."""
    return [
        ("create", PROFILE_GROUP, PROFILE_PLURAL, None, "00_cluster_prep", "profile"),
        ("patch", "", "configmaps", KNATIVE_NAMESPACE, "00_cluster_prep", "knative"),
        ("list", "", "pods", KUBEFLOW_NAMESPACE, "01_minio", ""),
        ("create", "", "secrets", namespace, "01_minio", ""),
        ("create", "", "serviceaccounts", namespace, "01_minio", ""),
        ("create", "", "services", namespace, "01_minio", ""),
        ("create", group.group, "inferenceservices", namespace, "02_server", ""),
        ("create", group.group, "trainedmodels", namespace, "03_cifar10", ""),
        ("get", "", "pods/log", namespace, "03_cifar10", ""),
    ]


def check_permissions(api: client.ApiClient, group: ApiGroup, namespace: str) -> list[Check]:
    checks = []
    for verb, api_group, resource, ns, notebook, step in permissions_needed(group, namespace):
        plural = f"{resource}.{api_group}" if api_group else resource
        scope = f" -n {ns}" if ns else ""
        name = f"can {verb} {plural}{scope}"
        try:
            allowed = _can(api, verb, api_group, resource, ns)
        except ApiException as exc:
            checks.append(Check(name, None, f"could not ask the apiserver ({exc.status} {exc.reason})"))
            continue
        if allowed:
            checks.append(Check(name, True, f"allowed (needed by {notebook})", admin_step=step))
        elif step:
            checks.append(Check(name, False, f"not allowed: an admin's step ({ADMIN_STEPS[step]})",
                                "00_cluster_prep skips it and prints what to hand your admin", step))
        else:
            fix = f"ask the cluster's admin for a role that allows it (`kubectl auth can-i {verb} {plural}{scope}`)"
            if resource == "trainedmodels":
                fix += "; Kubeflow's default-editor role allows it only from KServe 0.15"
            checks.append(Check(name, False, f"not allowed (needed by {notebook})", fix))
    return checks


def may(checks: list[Check], step: str) -> bool:
    """Whether this identity may do admin step `step` ("profile", "knative") itself."""
    return all(c.ok for c in checks if c.admin_step == step)


def run(api: client.ApiClient, group: ApiGroup, namespace: str) -> list[Check]:
    """Every check, in order; later checks are skipped when the API does not answer."""
    first = check_api(api)
    if not first.ok:
        return [first]
    return [first, *check_crds(api, group), check_multi_model_server(api, group),
            *check_permissions(api, group, namespace)]


def _mark(ok: Optional[bool]) -> str:
    return "ok" if ok else "??" if ok is None else "MISSING"


def render(checks: list[Check]) -> str:
    """The checks as a plain-text table, with the fix under each failed one."""
    width = max(len(c.name) for c in checks)
    lines = [f"{'CHECK':<{width}}  {'RESULT':<7}  DETAIL"]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {_mark(c.ok):<7}  {c.message}")
        if c.ok is not True and c.fix:
            lines.append(f"{'':<{width}}  {'':<7}  fix: {c.fix}")
    return "\n".join(lines)


def _html(checks: list[Check]) -> str:
    colour = {True: "#1a7f37", False: "#cf222e", None: "#9a6700"}
    rows = []
    for c in checks:
        fix = f"<br><small><b>fix:</b> {html.escape(c.fix)}</small>" if c.ok is not True and c.fix else ""
        rows.append(f"<tr><td style='text-align:left'>{html.escape(c.name)}</td>"
                    f"<td style='color:{colour[c.ok]};font-weight:bold'>{_mark(c.ok)}</td>"
                    f"<td style='text-align:left'>{html.escape(c.message)}{fix}</td></tr>")
    return ("<table><thead><tr><th style='text-align:left'>check</th><th>result</th>"
            "<th style='text-align:left'>detail</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def show(checks: list[Check]) -> None:
    """Display the table: HTML in Jupyter, plain text in logs."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        print(render(checks))
        return
    if get_ipython() is None:
        print(render(checks))
        return
    display({"text/plain": render(checks), "text/html": _html(checks)}, raw=True)


def failed(checks: list[Check]) -> list[Check]:
    return [c for c in checks if c.ok is False]


def summary(checks: list[Check]) -> list[dict[str, Any]]:
    """For the results JSON."""
    return [{"name": c.name, "ok": c.ok} for c in checks]


def require_ok(checks: list[Check]) -> list[str]:
    """Raise SetupError listing every failed check and its fix (checks that could not tell pass).

    An admin step this identity may not do does not stop the notebook: it is returned (its
    name), and 00_cluster_prep prints what to hand an admin instead of doing it.
    """
    from .errors import SetupError

    bad = [c for c in failed(checks) if not c.admin_step]
    if bad:
        raise SetupError("preflight found " + "; ".join(f"{c.name}: {c.message}" for c in bad),
                         " / ".join(c.fix for c in bad if c.fix))
    return sorted({c.admin_step for c in failed(checks)})
