"""Checks before anything is created: each says what is missing and how to fix it.

Explained in 00_cluster_prep. The API answers; the CRDs are served (Profile, and
InferenceService + TrainedModel in the chosen API group); Triton's `multiModelServer` is true in
`inferenceservice-config` (KFServing 0.5.1 ships it false: the guide's first warning); and the
account may create what the walkthrough creates (one SelfSubjectAccessReview per verb and
resource, as `kubectl auth can-i` asks). Three steps of 00 are an admin's (`ADMIN_STEPS`): a
learner's run skips them and prints what to hand the admin (`require_ok`, `may`). The third,
a Role on trainedmodels for the namespace's `default-editor`, is needed only where Kubeflow's
`kubeflow-edit` lacks them (before KServe 0.15): `learner_may` asks the API server.
"""
from __future__ import annotations

import html
import json
from dataclasses import asdict, dataclass
from typing import Any, Optional

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients.k8s import not_found
from helpers.core.constants import (
    API_GROUPS,
    INFERENCESERVICE_CONFIG,
    KFSERVING_GROUP,
    KNATIVE_NAMESPACE,
    KUBEFLOW_NAMESPACE,
    PROFILE_GROUP,
    PROFILE_PLURAL,
    PROFILE_VERSION,
    ApiGroup,
)
from helpers.core.i18n import _
from helpers.steps.objectstore.kubeflow_minio import PIPELINES_SECRET

# Where `inferenceservice-config` lives: Kubeflow's bundle, standalone KFServing 0.5/0.6, KServe.
CONFIG_NAMESPACES = ("kubeflow", "kfserving-system", "kserve")


@dataclass(frozen=True)
class Check:
    """One preflight result. `ok` is None when the check could not tell (e.g. not allowed to look)."""

    name: str
    ok: Optional[bool]
    message: str
    fix: str = ""
    admin_step: str = ""  # "profile", "knative" or "trainedmodels": a step of 00 an admin may do instead of you
    # True: the row asks whether this identity already has what `admin_step` grants a learner (for a
    # learner, ok False means the step is needed); False: whether this identity may do the step itself.
    learner_right: bool = False

    def as_dict(self) -> dict:
        return asdict(self)


def check_api(api: client.ApiClient) -> Check:
    try:
        version = client.VersionApi(api).get_code(_request_timeout=10)
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return Check(_("API reachable"), False, _("{host} does not answer ({error})").format(
                         host=api.configuration.host, error=type(exc).__name__),
                     _("local: `python -m helpers.local up`; cluster: `kubectl cluster-info` shows what is wrong"))
    return Check(_("API reachable"), True, _("Kubernetes {version} at {host}").format(
        version=version.git_version, host=api.configuration.host))


def _served(api: client.ApiClient, group: str, version: str) -> set[str]:
    """Resource names the apiserver serves in group/version ({} if the group is not served)."""
    try:
        found = client.CustomObjectsApi(api).get_api_resources(group, version)
    except ApiException as exc:
        if not_found(exc):
            return set()
        raise
    return {r.name for r in found.resources}


def served_api_group(api: client.ApiClient) -> str:
    """The API group whose InferenceServices this cluster serves (KFServing's if it serves both)."""
    from helpers.core.errors import SetupError

    for group in API_GROUPS:
        if "inferenceservices" in _served(api, group, "v1beta1"):
            return group
    raise SetupError(_("this cluster serves no InferenceService CRD (neither serving.kubeflow.org nor "
                       "serving.kserve.io)"), _("install KServe (or KFServing), then run this notebook again; "
                                                "`kubectl get crd | grep serving` shows what is there"))


def check_crds(api: client.ApiClient, group: ApiGroup) -> list[Check]:
    wanted = [(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL, "Profile", "Kubeflow"),
              (group.group, group.isvc_version, "inferenceservices", "InferenceService", group.group),
              (group.group, group.tm_version, "trainedmodels", "TrainedModel", group.group)]
    checks = []
    for api_group, version, plural, kind, owner in wanted:
        served = plural in _served(api, api_group, version)
        name = f"CRD {kind} ({api_group}/{version})"
        if served:
            checks.append(Check(name, True, _("{resource} is served").format(resource=f"{plural}.{api_group}")))
        else:
            other = "serving.kserve.io" if api_group == KFSERVING_GROUP else KFSERVING_GROUP
            other_served = api_group != PROFILE_GROUP and plural in _served(api, other, version)
            fix = (_("this cluster serves {other} instead: set api_group={choice} (or leave it empty)").format(
                       other=other, choice=repr(other))
                   if other_served else
                   _("install {owner}; or, if this cluster runs the other API group, set api_group={choice}").format(
                       owner=owner, choice=repr(other))
                   if api_group != PROFILE_GROUP else
                   _("install Kubeflow's profile controller, or create the namespace yourself and skip the Profile"))
            checks.append(Check(name, False, _("{resource} is not served by this cluster").format(
                resource=f"{plural}.{api_group}"), fix))
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
            elif not not_found(exc):
                raise
    return None, denied


def check_multi_model_server(api: client.ApiClient, group: ApiGroup) -> Check:
    """Is a Triton predictor without storageUri a multi-model server, with this release's own switch?"""
    name = "Triton multiModelServer"
    cm, denied = find_inferenceservice_config(api)
    if cm is None:
        if denied:
            return Check(name, None, _("not allowed to read {name} in {namespaces}").format(
                             name=INFERENCESERVICE_CONFIG, namespaces=", ".join(denied)),
                         _("ask the cluster's admin whether Triton's multi-model serving is on "
                           "(KFServing 0.5-0.9: predictors.triton.multiModelServer true)"))
        return Check(name, False, _("ConfigMap {name} is in none of {namespaces}").format(
                         name=INFERENCESERVICE_CONFIG, namespaces=", ".join(CONFIG_NAMESPACES)),
                     _("install {group} (its controller reads this ConfigMap)").format(group=group.group))
    namespace = cm.metadata.namespace
    where = f"ConfigMap {namespace}/{INFERENCESERVICE_CONFIG}"
    raw = (cm.data or {}).get("predictors")
    if raw is None:
        return Check(name, True, _("{where} has no `predictors`: KServe 0.10+ serves any predictor without a "
                                   "storageUri as a multi-model server, nothing to switch on").format(where=where))
    try:
        triton = json.loads(raw).get("triton") or {}
    except ValueError:
        return Check(name, False, _("{where}: `predictors` is not valid JSON").format(where=where),
                     f"`kubectl edit cm {INFERENCESERVICE_CONFIG} -n {namespace}`")
    if triton.get("multiModelServer") is True:
        return Check(name, True, _("{where}: predictors.triton.multiModelServer is true").format(where=where))
    return Check(name, False, _("{where}: predictors.triton.multiModelServer is {value} (KFServing 0.5.1 ships false; "
                                "0.6-0.9 have the same switch)").format(
                     where=where, value=json.dumps(triton.get("multiModelServer"))),
                 _("`kubectl edit cm {name} -n {namespace}`: set it to true in predictors.triton, before the "
                   "InferenceService is created").format(name=INFERENCESERVICE_CONFIG, namespace=namespace))


def can_i(api: client.ApiClient, verb: str, group: str, resource: str, namespace: Optional[str]) -> bool:
    """A SelfSubjectAccessReview: may this identity do it? (`kubectl auth can-i`.)"""
    review = client.V1SelfSubjectAccessReview(spec=client.V1SelfSubjectAccessReviewSpec(
        resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=resource,
                                                        namespace=namespace)))
    answer = client.AuthorizationV1Api(api).create_self_subject_access_review(review, _request_timeout=10)
    return bool(answer.status.allowed)


def _can_as(api: client.ApiClient, user: str, groups: list[str], verb: str, group: str, resource: str,
            namespace: str) -> bool:
    """A SubjectAccessReview: may `user` do it? (`kubectl auth can-i ... --as user`; an admin's question.)"""
    review = client.V1SubjectAccessReview(spec=client.V1SubjectAccessReviewSpec(
        user=user, groups=groups, resource_attributes=client.V1ResourceAttributes(
            verb=verb, group=group, resource=resource, namespace=namespace)))
    answer = client.AuthorizationV1Api(api).create_subject_access_review(review, _request_timeout=10)
    return bool(answer.status.allowed)


# The steps of 00_cluster_prep that need more than a Kubeflow Notebook's rights: an admin does them once.
ADMIN_STEPS = {"profile": "the namespace, through a Profile", "knative": "the two Knative config-deployment patches",
               "trainedmodels": "a Role that lets the namespace's default-editor manage TrainedModels"}
LEARNER_ACCOUNT = "default-editor"  # the Profile's service account a Kubeflow Notebook runs as
RBAC_GROUP = "rbac.authorization.k8s.io"


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
        # the learner's own right, granted by the "trainedmodels" step where kubeflow-edit lacks it
        ("create", group.group, "trainedmodels", namespace, "03_cifar10", "trainedmodels"),
        ("create", RBAC_GROUP, "roles", namespace, "00_cluster_prep", "trainedmodels"),
        ("create", RBAC_GROUP, "rolebindings", namespace, "00_cluster_prep", "trainedmodels"),
        ("get", "", "pods/log", namespace, "03_cifar10", ""),
    ]


def check_permissions(api: client.ApiClient, group: ApiGroup, namespace: str) -> list[Check]:
    checks = []
    for verb, api_group, resource, ns, notebook, step in permissions_needed(group, namespace):
        plural = f"{resource}.{api_group}" if api_group else resource
        scope = f" -n {ns}" if ns else ""
        name = _("can {verb} {resource}").format(verb=verb, resource=f"{plural}{scope}")
        try:
            allowed = can_i(api, verb, api_group, resource, ns)
        except ApiException as exc:
            checks.append(Check(name, None, _("could not ask the apiserver ({status} {reason})").format(
                status=exc.status, reason=exc.reason)))
            continue
        right = resource == "trainedmodels"
        if not allowed and (resource, ns) == ("pods", KUBEFLOW_NAMESPACE) and _pipelines_copy(api, namespace):
            checks.append(Check(name, True, _("not allowed, but {notebook} reads MinIO's keys from Kubeflow "
                                              "Pipelines' copy in {namespace} instead (Secret {secret})").format(
                notebook=notebook, namespace=namespace, secret=PIPELINES_SECRET)))
            continue
        if allowed:
            checks.append(Check(name, True, _("allowed (needed by {notebook})").format(notebook=notebook),
                                admin_step=step, learner_right=right))
        elif right:
            checks.append(Check(name, False, _("not allowed (needed by {notebook}): {why}").format(
                                    notebook=notebook, why=_no_trainedmodels()),
                                _("Kubeflow's default-editor role has them only from KServe 0.15: an admin applies "
                                  "manifests/trainedmodel_editor.yaml (00_cluster_prep as the admin does; as a learner "
                                  "it prints it for your admin)"), step, True))
        elif step:
            checks.append(Check(name, False, _("not allowed: an admin's step ({step})").format(
                                    step=admin_step_name(step)),
                                _("00_cluster_prep skips it and prints what to hand your admin"), step))
        else:
            fix = _("ask the cluster's admin for a role that allows it (`{command}`)").format(
                command=f"kubectl auth can-i {verb} {plural}{scope}")
            checks.append(Check(name, False, _("not allowed (needed by {notebook})").format(notebook=notebook), fix))
    return checks


def _pipelines_copy(api: client.ApiClient, namespace: str) -> bool:
    """May this identity read Kubeflow Pipelines' copy of MinIO's keys in its own namespace (01's way
    for a learner, who may not read pods in `kubeflow`)?"""
    try:
        return can_i(api, "get", "", "secrets", namespace)
    except ApiException:
        return False


def _no_trainedmodels() -> str:
    return _("Kubeflow's kubeflow-edit role grants trainedmodels only from KServe 0.15 (kserve#4225)")


def admin_step_name(step: str) -> str:
    """What admin step `step` is, in the learner's language (`ADMIN_STEPS` holds the English)."""
    names = {"profile": _("the namespace, through a Profile"),
             "knative": _("the two Knative config-deployment patches"),
             "trainedmodels": _("a Role that lets the namespace's default-editor manage TrainedModels")}
    return names.get(step, ADMIN_STEPS.get(step, step))


def may(checks: list[Check], step: str) -> bool:
    """Whether this identity may do admin step `step` ("profile", "knative", "trainedmodels") itself."""
    return all(c.ok for c in checks if c.admin_step == step and not c.learner_right)


def needed(checks: list[Check], step: str) -> bool:
    """Whether admin step `step` is still to be done, as far as the checks tell: the Profile and the
    Knative patches always (applying them again changes nothing); the trainedmodels Role only while
    the learner may not create trainedmodels."""
    rights = [c for c in checks if c.admin_step == step and c.learner_right]
    return not rights or not all(c.ok for c in rights)


def learner_may(api: client.ApiClient, group: ApiGroup, namespace: str, resource: str = "trainedmodels",
                until_allowed: bool = False, timeout: float = 30.0) -> Check:
    """May the namespace's `default-editor` (a Kubeflow Notebook's identity) create `resource`?

    As an admin: a SubjectAccessReview about `system:serviceaccount:<namespace>:default-editor`,
    asked once its Profile's `kubeflow-edit` binding shows (it may create inferenceservices), so a
    Profile just made is not mistaken for missing rights. As a learner, who may not ask about
    others: a SelfSubjectAccessReview, this notebook's own identity. `until_allowed` waits (at most
    `timeout`) for a grant just applied to be seen by the authorizer.
    """
    from helpers.core.wait import WaitTimeout, poll_until

    user = f"system:serviceaccount:{namespace}:{LEARNER_ACCOUNT}"
    groups = ["system:serviceaccounts", f"system:serviceaccounts:{namespace}", "system:authenticated"]
    name = _("{account} may create {resource} -n {namespace}").format(
        account=LEARNER_ACCOUNT, resource=f"{resource}.{group.group}", namespace=namespace)
    ask = lambda res: _can_as(api, user, groups, "create", group.group, res, namespace)
    who = _("asked as the admin about {user} (SubjectAccessReview)").format(user=user)
    try:
        ask(resource)
    except ApiException as exc:
        if exc.status not in (401, 403):
            return Check(name, None, _("could not ask the apiserver ({status} {reason})").format(
                             status=exc.status, reason=exc.reason), admin_step="trainedmodels", learner_right=True)
        ask = lambda res: can_i(api, "create", group.group, res, namespace)
        who = _("asked as this notebook's own identity (SelfSubjectAccessReview)")
    try:
        poll_until(lambda: ask("inferenceservices"), f"{user}'s kubeflow-edit rights", timeout=timeout, interval=0.5)
    except WaitTimeout as exc:
        return Check(name, False, f"{exc} ({who})", _("`kubectl get profile {namespace} -o yaml` and `kubectl get "
                     "rolebindings -n {namespace}`: Kubeflow's profile controller binds default-editor to "
                     "kubeflow-edit").format(namespace=namespace), "trainedmodels", True)
    try:
        allowed = poll_until(lambda: ask(resource), f"{user} to be allowed {resource}", timeout=timeout,
                             interval=0.5) if until_allowed else ask(resource)
    except WaitTimeout as exc:
        allowed, who = False, f"{who}; {exc}"
    if allowed:
        return Check(name, True, _("allowed ({who})").format(who=who), admin_step="trainedmodels", learner_right=True)
    return Check(name, False, _("not allowed: {why} ({who})").format(why=_no_trainedmodels(), who=who),
                 _("an admin applies manifests/trainedmodel_editor.yaml"), "trainedmodels", True)


def run(api: client.ApiClient, group: ApiGroup, namespace: str) -> list[Check]:
    """Every check, in order; later checks are skipped when the API does not answer."""
    first = check_api(api)
    if not first.ok:
        return [first]
    return [first, *check_crds(api, group), check_multi_model_server(api, group),
            *check_permissions(api, group, namespace)]


def _mark(ok: Optional[bool]) -> str:
    return _("ok") if ok else "??" if ok is None else _("MISSING")


def render(checks: list[Check]) -> str:
    """The checks as a plain-text table, with the fix under each failed one."""
    width = max(len(c.name) for c in checks)
    head, result, detail, fix = _("CHECK"), _("RESULT"), _("DETAIL"), _("fix:")
    lines = [f"{head:<{width}}  {result:<7}  {detail}"]
    for c in checks:
        lines.append(f"{c.name:<{width}}  {_mark(c.ok):<7}  {c.message}")
        if c.ok is not True and c.fix:
            lines.append(f"{'':<{width}}  {'':<7}  {fix} {c.fix}")
    return "\n".join(lines)


def _html(checks: list[Check]) -> str:
    colour = {True: "#1a7f37", False: "#cf222e", None: "#9a6700"}
    rows, fix_word = [], _("fix:")
    for c in checks:
        fix = f"<br><small><b>{fix_word}</b> {html.escape(c.fix)}</small>" if c.ok is not True and c.fix else ""
        rows.append(f"<tr><td style='text-align:left'>{html.escape(c.name)}</td>"
                    f"<td style='color:{colour[c.ok]};font-weight:bold'>{_mark(c.ok)}</td>"
                    f"<td style='text-align:left'>{html.escape(c.message)}{fix}</td></tr>")
    head, result, detail = _("check"), _("result"), _("detail")
    return (f"<table><thead><tr><th style='text-align:left'>{head}</th><th>{result}</th>"
            f"<th style='text-align:left'>{detail}</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


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
    name) when it is still needed, and 00_cluster_prep prints what to hand an admin instead of
    doing it.
    """
    from helpers.core.errors import SetupError

    bad = [c for c in failed(checks) if not c.admin_step]
    if bad:
        raise SetupError(_("preflight found {problems}").format(
                             problems="; ".join(f"{c.name}: {c.message}" for c in bad)),
                         " / ".join(c.fix for c in bad if c.fix))
    steps = {c.admin_step for c in checks if c.admin_step}
    return sorted(step for step in steps if needed(checks, step) and not may(checks, step))


def describe_admin_steps(steps: list[str]) -> str:
    """The line under the checks: which admin steps this identity may not do itself."""
    if not steps:
        return _("admin steps you may not do yourself: none")
    return _("admin steps you may not do yourself: {steps}").format(steps=", ".join(admin_step_name(s) for s in steps))


def describe_namespace(ns: Any) -> str:
    return _("namespace {name} is {phase}").format(name=ns.metadata.name, phase=ns.status.phase)


def role_commands(group: ApiGroup, namespace: str) -> str:
    """The question the Role cell asks, and the apply that follows where the answer is no."""
    return "\n".join([f"kubectl auth can-i create trainedmodels.{group.group} -n {namespace} "
                      f"--as system:serviceaccount:{namespace}:{LEARNER_ACCOUNT}",
                      "# " + _("where the answer is no:"),
                      "kubectl apply -f trainedmodel_editor.yaml"])


def handoff_name(step: str) -> str:
    """What 00_cluster_prep hands the admin for admin step `step`, as the hand-off block names it."""
    names = {"profile": _("the Profile (cluster-wide)"), "knative": _("the two Knative patches"),
             "trainedmodels": _("a Role on TrainedModels for default-editor")}
    return names.get(step, step)
