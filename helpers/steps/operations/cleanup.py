"""Take down what the walkthrough made, in reverse order, and say what was removed.

Explained in 99_cleanup. `teardown` deletes, each only if it is there (so running it twice is fine):
the server's TrainedModels (03, 04, 05, and 07's copies when 07 stopped midway), the
InferenceService (02; and 07's `<server>-repo` when 07 stopped midway), the S3 Secret and
ServiceAccount and the ExternalName Service (01), the bucket's model files (03-05 and 07's `scale/`,
only with `delete_data`), the Profile and so the namespace (00), and puts back the Knative
`config-deployment` values 00 found. Each step has the shell command that does the same, with
group-qualified resource names (`trainedmodels.serving.kubeflow.org`): a cluster may serve both API
groups. The guide has no teardown, so `show_commands` labels them "not in the guide". `table` shows
each step beside what it removed, `summary` what is left; `python -m helpers.walkthrough --cleanup`
runs the namespace's part of it (`deleted` names what went). What the learner reads (`title`,
`note`, the table) is in their language; `what` and `command` stay English keys for the results
JSON.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from typing import Any, Callable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients import inference, manifests
from helpers.clients.k8s import not_found
from helpers.clients.target import Target
from helpers.core.constants import (
    KUBEFLOW_NAMESPACE,
    MINIO_SERVICE,
    PROFILE_GROUP,
    PROFILE_PLURAL,
    PROFILE_VERSION,
    ApiGroup,
)
from helpers.core.errors import SetupError
from helpers.core.i18n import _
from helpers.core.show import pad, show_not_in_guide, text_width
from helpers.core.wait import poll_until
from helpers.steps.operations.lifecycle import PREFIX as LIFECYCLE_PREFIX  # 05_lifecycle's two versions
from helpers.steps.prep import knative
from helpers.steps.scale.packing import FOLDER as SCALE_FOLDER  # 07_one_server_many_models's copies
from helpers.steps.scale.repository import server_name as repository_server  # ... and its repository server


@dataclass
class Step:
    """One thing to take down: what it is, the shell command that does the same, and what happened.

    `what` is the step's English name (the results JSON's key), `title` the same in the learner's
    language. `kind` is the Kubernetes kind of every name in `removed` when they are objects of one
    kind in the namespace (TrainedModel, Secret, ...); "" when the entries say what they are
    themselves. `kept` is True when something was kept on purpose; `note` says why (or why nothing
    was there to remove).
    """

    what: str
    command: str
    removed: list[str] = field(default_factory=list)
    note: str = ""
    kind: str = ""
    title: str = ""
    kept: bool = False

    def outcome(self, limit: int = 6) -> list[str]:
        """What the step removed, one entry a line (past `limit`, a line says how many more), else why nothing."""
        if not self.removed:
            return ["({})".format(self.note or _("nothing to remove"))]
        more = len(self.removed) - limit
        return self.removed[:limit] + ([_("… {count} more").format(count=more)] if more > 0 else [])

    def keep(self, why: str) -> None:
        """Mark the step as kept on purpose, `why` in one line."""
        self.note, self.kept = why, True

    def as_dict(self) -> dict[str, Any]:
        """The step for a results JSON."""
        return asdict(self)


def model_prefixes(bucket: str) -> list[str]:
    """The S3 prefixes the walkthrough uploaded to: the two TrainedModels' folders (03, 04), 05's and 07's."""
    prefixes = []
    for name, model in manifests.MODEL_NAMES.items():
        (doc,) = manifests.render(name, namespace="x", server_name="x", api_group="x", bucket=bucket, model_name=model)
        prefixes.append(doc["spec"]["model"]["storageUri"].split(f"s3://{bucket}/", 1)[1])
    return prefixes + [LIFECYCLE_PREFIX, SCALE_FOLDER]


def _gone(read: Callable[[], Any]) -> bool:
    try:
        read()
    except ApiException as exc:
        if not_found(exc):
            return True
        raise
    return False


def _delete(call: Callable[[], Any]) -> bool:
    """Run a delete call; False when the object was not there. Core deletes pass `_preload_content=False`:
    the kubernetes client (37) fails to parse some delete answers (a Service's `Status` as a `V1Service`)."""
    try:
        call()
        return True
    except ApiException as exc:
        if not_found(exc):
            return False
        raise


def minio_client(api: client.ApiClient, place: Target) -> Any:
    """A minio client with MinIO's own keys (as 01_minio reads them), so it works after the Secret is gone."""
    from helpers.clients import storage
    from helpers.steps.objectstore import kubeflow_minio

    creds, service = kubeflow_minio.minio_credentials(api), kubeflow_minio.minio_service(api)
    return storage.connect(kubeflow_minio.settings(api, place, creds, service.address))


def trained_models(api: client.ApiClient, group: ApiGroup, namespace: str, server: str) -> list[str]:
    """Names of the TrainedModels of `server` in `namespace`."""
    try:
        items = client.CustomObjectsApi(api).list_namespaced_custom_object(
            group.group, group.tm_version, namespace, inference.TM)["items"]
    except ApiException as exc:
        if not_found(exc):
            return []
        raise
    return sorted(tm["metadata"]["name"] for tm in items if (tm.get("spec") or {}).get("inferenceService") == server)


def teardown(api: client.ApiClient, group: ApiGroup, namespace: str, server: str, *, s3: Any = None,
             bucket: str = "", delete_data: bool = False, delete_profile: bool = True,
             restore_knative: bool = True, keep_namespace: str = "", timeout: float = 180.0) -> list[Step]:
    """Remove the walkthrough's objects in reverse order of creation; return each step as done.

    Nothing is removed outside `namespace` but the Profile of that name and the Knative values
    00 saved. The Profile is kept when `namespace` is `keep_namespace`, the one this notebook runs in
    (`Target.own_namespace()`: deleting it would delete the notebook server too). Bucket objects go
    only with `delete_data=True` (and `s3`).
    """
    if namespace == KUBEFLOW_NAMESPACE:
        raise SetupError(_("namespace {namespace} is Kubeflow's own, not a learner's").format(namespace=repr(namespace)),
                         _("set namespace to the one 00_cluster_prep made"))
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    steps: list[Step] = []

    def step(what: str, title: str, command: str, kind: str = "") -> Step:
        steps.append(Step(what, command, kind=kind, title=title))
        return steps[-1]

    # 05, 04, 03: the TrainedModels (the finalizer takes each out of models.json first)
    models = trained_models(api, group, namespace, server)
    # the controller labels each TrainedModel with its server (KServe's ParentInferenceServiceLabel)
    s = step("TrainedModels", _("TrainedModels"),
             f"kubectl delete {group.tm_resource} -l inferenceservice={server} -n {namespace}", "TrainedModel")
    for name in models:
        if _delete(lambda: custom.delete_namespaced_custom_object(group.group, group.tm_version, namespace,
                                                                  inference.TM, name)):
            s.removed.append(name)
    poll_until(lambda: not trained_models(api, group, namespace, server), "the TrainedModels to be deleted",
               timeout=timeout, interval=0.5)
    # 02: the InferenceService, and 07's repository server when 07 stopped before deleting it
    s = step("InferenceService", _("InferenceService"), f"kubectl delete {group.isvc_resource} {server} -n {namespace}",
             "InferenceService")
    for name in (server, repository_server(server)):
        if _delete(lambda: custom.delete_namespaced_custom_object(group.group, group.isvc_version, namespace,
                                                                  inference.ISVC, name)):
            s.removed.append(name)
            poll_until(lambda: _gone(lambda: custom.get_namespaced_custom_object(
                group.group, group.isvc_version, namespace, inference.ISVC, name)),
                f"InferenceService {name} to be deleted", timeout=timeout, interval=0.5)
    if len(s.removed) > 1 or s.removed[:1] == [repository_server(server)]:
        s.command = f"kubectl delete {group.isvc_resource} {' '.join(s.removed)} -n {namespace}"
    # 01: the Secret and ServiceAccount, the ExternalName Service
    secret, account = manifests.DEFAULTS["secret_name"], manifests.DEFAULTS["service_account"]
    s = step("Secret (S3 keys)", _("Secret (S3 keys)"), f"kubectl delete secret {secret} -n {namespace}", "Secret")
    if _delete(lambda: core.delete_namespaced_secret(secret, namespace, _preload_content=False)):
        s.removed.append(secret)
    s = step("ServiceAccount", _("ServiceAccount"), f"kubectl delete serviceaccount {account} -n {namespace}", "ServiceAccount")
    if _delete(lambda: core.delete_namespaced_service_account(account, namespace, _preload_content=False)):
        s.removed.append(account)
    s = step("Service (ExternalName to MinIO)", _("Service (ExternalName to MinIO)"),
             f"kubectl delete service {MINIO_SERVICE} -n {namespace}", "Service")
    try:
        found = core.read_namespaced_service(MINIO_SERVICE, namespace)
    except ApiException as exc:
        if not not_found(exc):
            raise
        found = None
    if found is not None and found.spec and found.spec.type == "ExternalName":
        if _delete(lambda: core.delete_namespaced_service(MINIO_SERVICE, namespace, _preload_content=False)):
            s.removed.append(MINIO_SERVICE)
    elif found is not None:
        s.keep(_("kept: type {type}, not the ExternalName 01_minio made").format(
            type=found.spec.type if found.spec else "?"))
    # 03-05: the model files
    prefixes = model_prefixes(bucket) if bucket else []
    purge = "\n".join(f"rclone purge myminio:{bucket}/{p}   # mc: ./mc rm -r --force myminio/{bucket}/{p}"
                      for p in prefixes)
    s = step("bucket objects", _("bucket objects"),
             purge if delete_data else "# " + _("bucket objects kept (delete_data=False)"))
    if delete_data and s3 is not None and bucket:
        from helpers.clients import storage

        for prefix in prefixes:
            s.removed += storage.delete_prefix(s3, bucket, prefix)
        if storage.remove_bucket_if_empty(s3, bucket):
            s.removed.append(f"bucket {bucket} (empty)")
    else:
        s.keep(_("kept: pass delete_data=True to delete them"))
    # 00: the Profile (its controller deletes the namespace), the Knative values
    s = step("Profile and namespace", _("Profile and namespace"), f"kubectl delete profiles.{PROFILE_GROUP} {namespace}")
    if not delete_profile:
        s.keep(_("kept: delete_profile=False"))
    elif namespace == keep_namespace:
        s.keep(_("kept: it is the namespace this notebook runs in"))
    elif _delete(lambda: custom.delete_cluster_custom_object(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL,
                                                             namespace)):
        s.removed.append(f"Profile {namespace}")
        poll_until(lambda: _gone(lambda: core.read_namespace(namespace)), f"namespace {namespace} to be deleted",
                   timeout=timeout, interval=1.0)
        s.removed.append(f"namespace {namespace}")
    s = step("Knative config-deployment", _("Knative config-deployment"), "# " + _("nothing to set back"))
    if restore_knative:
        changes = knative.restore_config_deployment(api)
        for change in changes:
            after = change.after or _("(unset)")
            s.removed.append(f"{change.key}: {change.before} -> {after}")
        if changes:
            s.command = knative.restore_command(changes)
        else:
            s.note = _("nothing saved: 00 changed nothing, or it was restored already")
    else:
        s.keep(_("kept: restore_knative=False"))
    return steps


def leftovers(api: client.ApiClient, group: ApiGroup, namespace: str, server: str) -> list[str]:
    """What of the walkthrough still exists in `namespace` (for the check after `teardown`)."""
    custom, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    found = [f"TrainedModel {name}" for name in trained_models(api, group, namespace, server)]
    checks = {
        f"InferenceService {server}": lambda: custom.get_namespaced_custom_object(
            group.group, group.isvc_version, namespace, inference.ISVC, server),
        f"InferenceService {repository_server(server)}": lambda: custom.get_namespaced_custom_object(
            group.group, group.isvc_version, namespace, inference.ISVC, repository_server(server)),
        f"Secret {manifests.DEFAULTS['secret_name']}": lambda: core.read_namespaced_secret(
            manifests.DEFAULTS["secret_name"], namespace),
        f"ServiceAccount {manifests.DEFAULTS['service_account']}": lambda: core.read_namespaced_service_account(
            manifests.DEFAULTS["service_account"], namespace),
        f"Service {MINIO_SERVICE}": lambda: core.read_namespaced_service(MINIO_SERVICE, namespace),
        f"Profile {namespace}": lambda: custom.get_cluster_custom_object(
            PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL, namespace),
        f"namespace {namespace}": lambda: core.read_namespace(namespace),
    }
    return found + [what for what, read in checks.items() if not _gone(read)]


def table(steps: list[Step]) -> str:
    """The steps as a table: each step, what it removed (or, in brackets, why nothing), one entry a line."""
    rows = [(_("STEP"), _("REMOVED"))]
    for s in steps:
        rows += list(zip_longest([s.title or s.what], s.outcome(), fillvalue=""))
    width = max(text_width(row[0]) for row in rows)
    return "\n".join(f"{pad(a, width)}   {b}".rstrip() for a, b in rows)


def commands(steps: list[Step]) -> str:
    """The shell commands that do what the steps did, each under a comment naming its step."""
    return "\n".join(f"# {s.title or s.what}\n{s.command}" for s in steps)


def show_commands(steps: list[Step]) -> None:
    """Show `commands(steps)`, labelled as what they are: the guide has no teardown."""
    show_not_in_guide(commands(steps), _("the guide has no teardown; these commands do what the steps above did"))


def summary(left: list[str], steps: list[Step]) -> str:
    """Two lines after the check: what of the walkthrough is still there, and what was kept on purpose."""
    kept = [s.title or s.what for s in steps if s.kept]
    return "\n".join([
        _("left: {objects}").format(objects=", ".join(left)) if left else _("left: nothing of the walkthrough's objects"),
        _("kept on purpose: {steps}").format(steps=", ".join(kept)) if kept else _("kept on purpose: nothing")])


def deleted(steps: list[Step], namespace: str) -> list[str]:
    """`Kind namespace/name` of each object in `namespace` the steps removed."""
    return [f"{s.kind} {namespace}/{name}" for s in steps if s.kind for name in s.removed]
