"""Break a server on purpose, see what a learner sees, let the doctor name it, restore it (06_troubleshooting).

Everything here goes through the Kubernetes API, S3 and the server's endpoint, as a learner's
own commands would (`kubectl apply`, `kubectl delete`, `mc cp`, `curl`), so this module sits in
the learner-facing layer and imports nothing of the local stack. That is also why "S3 down" is
shown as S3 saying no (a bucket that is not there): stopping MinIO itself needs the stack's
controls, which a notebook must not hold; `tests/stack/test_doctor.py` stops the local S3 server and
checks that the doctor names that too.

The notebook works on its own objects in the learner's namespace: the InferenceService
`triton-doctor`, its service account `doctor-sa` with the Secret `doctor-s3`, and TrainedModels
named `doctor-*` whose files are a CIFAR-10 stand-in under `s3://<bucket>/doctor/`. 01-04's
objects are never touched (except the cluster-wide multi-model flag, which it sets back).
"""
from __future__ import annotations

import json
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients import inference, manifests, storage
from helpers.clients.k8s import not_found
from helpers.core.constants import INFERENCESERVICE_CONFIG
from helpers.core.errors import SetupError
from helpers.core.wait import poll_until
from helpers.steps.models import agent_log
from helpers.steps.troubleshoot import doctor

SERVER = "triton-doctor"
ACCOUNT = "doctor-sa"
SECRET = "doctor-s3"
MODEL = "doctor-cifar"
PREFIX = "doctor"
SERVER_MEMORY = "2Gi"  # small enough for any node (the guide's 16Gi is its own pitfall)

# Every section of 06 that breaks something, in the notebook's order. Three run by default: the region
# users meet most (kserve/kserve#2140), the fix that does not reach a running pod, and the config
# name trap; `sections="all"` runs every one.
ALL = ("wrong_prefix", "no_region", "fixed_after_start", "virtual_host", "multi_model_flag", "config_name",
       "memory", "wrong_shape", "s3_bucket")
DEFAULT = ("no_region", "fixed_after_start", "config_name")
NEEDS = {"fixed_after_start": "no_region"}  # section 5 mends what section 4 broke


@dataclass
class Pitfall:
    """One section's record: what broke, what the learner saw, whether the doctor named it, restored."""

    name: str
    check: str
    seen: str = ""
    named: bool = False
    restored: bool = False
    evidence: str = ""
    findings: list = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"check": self.check, "broken_seen": self.seen, "doctor_named": self.named,
                "doctor_evidence": self.evidence, "restored": self.restored}


class Lab:
    """The notebook's own server and model, and the ways to break and mend them."""

    def __init__(self, ctx: Any) -> None:
        self.ctx = ctx
        self.api = ctx.api
        self.group = ctx.group
        self.ns = ctx.namespace
        self.core = client.CoreV1Api(self.api)
        self.pitfalls: dict[str, Pitfall] = {}

    # --- set-up ------------------------------------------------------------------------------
    def good_annotations(self) -> dict[str, str]:
        """The S3 Secret's annotations as 01_minio writes them (s3_secret.yaml)."""
        doc = manifests.render("s3_secret", **self._secret_values())[0]
        return dict(doc["metadata"]["annotations"])

    def _secret_values(self) -> dict[str, str]:
        settings = self._learner_keys()
        return manifests.values_for(self.ctx, secret_name=SECRET, service_account=ACCOUNT,
                                    access_key=settings.access_key, secret_key=settings.secret_key)

    def _learner_keys(self) -> storage.S3Settings:
        from helpers.steps.objectstore.kubeflow_minio import from_secret

        return from_secret(self.api, self.ctx.place, self.group, self.ns,
                           self.ctx.param("secret_name", manifests.DEFAULTS["secret_name"]))

    def setup(self) -> list[str]:
        """Upload the stand-in model (as `doctor-cifar`, `doctor-big` and, misnamed, `doctor-named`), apply the
        Secret + service account, and start the server. Returns the uploaded keys."""
        from helpers.steps.models.standins import write_cifar10_standin

        keys = []
        with tempfile.TemporaryDirectory(prefix="mms-doctor-") as tmp:
            folder = write_cifar10_standin(Path(tmp) / "model")
            config = (folder / "config.pbtxt").read_text()
            for model, name in ((MODEL, MODEL), ("doctor-big", "doctor-big"), ("doctor-named", "cifar10")):
                (folder / "config.pbtxt").write_text(re.sub(r'^name: ".*"$', f'name: "{name}"', config, flags=re.M))
                keys += storage.upload_folder(self.ctx.s3, folder, self.ctx.bucket, f"{PREFIX}/{model}", progress=False)
        manifests.apply(self.api, manifests.render("s3_secret", **self._secret_values()))
        self.recreate_server()
        return keys

    # --- the server --------------------------------------------------------------------------
    def server_manifest(self) -> dict:
        doc = manifests.render("multi_model_triton_server",
                               **manifests.values_for(self.ctx, server_name=SERVER, service_account=ACCOUNT))[0]
        resources = doc["spec"]["predictor"]["triton"]["resources"]
        for part in ("limits", "requests"):
            resources[part]["memory"] = SERVER_MEMORY
        return doc

    def delete_server(self) -> None:
        """Delete the InferenceService and wait until it and its pod are gone (its TrainedModels go with it)."""
        inference.delete(self.api, self.group, inference.ISVC, SERVER, self.ns)
        selector = f"{self.group.isvc_label}={SERVER}"
        poll_until(lambda: inference.get(self.api, self.group, inference.ISVC, SERVER, self.ns) is None
                   and not self.core.list_namespaced_pod(self.ns, label_selector=selector).items,
                   f"InferenceService {SERVER} and its pod to be gone", timeout=120)

    def recreate_server(self, wait: bool = True) -> Optional[dict]:
        """A new server (and so a new pod, whose agent takes the Secret as it is now)."""
        self.delete_server()
        manifests.apply(self.api, [self.server_manifest()])
        if not wait:
            return None
        return inference.wait_ready(self.api, self.group, inference.ISVC, SERVER, self.ns, timeout=180, progress=False)

    def server_condition(self, timeout: float = 60.0) -> str:
        """The server's Ready condition once it is decided: `Ready=True` or `Ready=False <reason>: <message>`."""
        def decided() -> Optional[str]:
            obj = inference.get(self.api, self.group, inference.ISVC, SERVER, self.ns)
            ready = inference.conditions(obj).get("Ready") or {}
            if ready.get("status") == "True":
                return "Ready=True"
            if ready.get("status") == "False" and ready.get("reason"):
                return f"Ready=False {ready['reason']}: {ready.get('message', '')}"
            return None
        return poll_until(decided, f"InferenceService {SERVER} to be decided", timeout=timeout)

    # --- the Secret --------------------------------------------------------------------------
    def set_annotations(self, annotations: dict[str, str]) -> None:
        """Replace the Secret's annotations (an edit, as `kubectl annotate --overwrite` + removing keys)."""
        secret = self.core.read_namespaced_secret(SECRET, self.ns)
        secret.metadata.annotations = dict(annotations)
        self.core.replace_namespaced_secret(SECRET, self.ns, secret)

    def annotations_without(self, *keys: str) -> dict[str, str]:
        return {k: v for k, v in self.good_annotations().items() if k not in keys}

    def annotations_for_other_group(self) -> dict[str, str]:
        """The right annotations under the other API group's prefix (the guide's KFServing YAML on KServe, or back)."""
        other = next(g for g in ("serving.kubeflow.org", "serving.kserve.io") if g != self.group.group)
        return {k.replace(self.group.group, other, 1): v for k, v in self.good_annotations().items()}

    # --- TrainedModels -----------------------------------------------------------------------
    def model_manifest(self, name: str = MODEL, uri: Optional[str] = None, memory: str = "256Mi") -> dict:
        doc = manifests.render("trained_model1", **manifests.values_for(self.ctx, server_name=SERVER, model_name=name))[0]
        doc["spec"]["model"]["storageUri"] = uri or f"s3://{self.ctx.bucket}/{PREFIX}/{name}"
        doc["spec"]["model"]["memory"] = memory
        return doc

    def add_model(self, name: str = MODEL, uri: Optional[str] = None, memory: str = "256Mi",
                  timeout: float = 120.0) -> dict:
        """Apply a TrainedModel and wait for the agent's verdict: the timeline (`failed` holds its error)."""
        self.remove_model(name)
        manifests.apply(self.api, [self.model_manifest(name, uri, memory)])
        _, found = agent_log.wait_agent_loaded(self.api, self.ctx.place, self.group, SERVER, self.ns, name,
                                               timeout=timeout, stop=lambda: self.refused_for_memory(name))
        return found

    def refused_for_memory(self, name: str) -> bool:
        """KServe's MemoryResourceAvailable=False: the controller keeps the model out of models.json."""
        found = inference.conditions(self.trained_model(name)).get("MemoryResourceAvailable") or {}
        return found.get("status") == "False"

    def remove_model(self, name: str) -> None:
        if inference.delete(self.api, self.group, inference.TM, name, self.ns):
            poll_until(lambda: inference.get(self.api, self.group, inference.TM, name, self.ns) is None,
                       f"TrainedModel {name} to be deleted", timeout=60)

    def trained_model(self, name: str) -> Optional[dict]:
        return inference.get(self.api, self.group, inference.TM, name, self.ns)

    def model_events(self, name: str) -> list[str]:
        found = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        return [f"{e.type} {e.reason}: {e.message}" for e in found]

    def model_ready(self, name: str = MODEL) -> bool:
        """Triton's own answer: GET /v2/models/<name>/ready through the server's endpoint."""
        isvc = inference.get(self.api, self.group, inference.ISVC, SERVER, self.ns)
        endpoint = self.ctx.place.server_endpoint(self.api, isvc)
        answer = requests.get(f"{endpoint.base_url}/v2/models/{name}/ready", headers=endpoint.headers, timeout=10)
        return answer.status_code == 200

    def wait_model_ready(self, name: str = MODEL, timeout: float = 60.0) -> bool:
        try:
            poll_until(lambda: self.model_ready(name), f"model {name} to be ready in Triton", timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - "not ready" is the answer
            return False

    def infer_raw(self, shape: list[int], name: str = MODEL) -> tuple[int, str]:
        """POST /v2/models/<name>/infer with a JSON body of zeros of `shape`, as the guide's curl: (status, text)."""
        isvc = inference.get(self.api, self.group, inference.ISVC, SERVER, self.ns)
        endpoint = self.ctx.place.server_endpoint(self.api, isvc)
        size = 1
        for n in shape:
            size *= n
        body = {"inputs": [{"name": "INPUT__0", "shape": shape, "datatype": "FP32", "data": [0.0] * size}]}
        answer = requests.post(f"{endpoint.base_url}/v2/models/{name}/infer", headers=endpoint.headers,
                               data=json.dumps(body), timeout=30)
        return answer.status_code, answer.text

    # --- the multi-model flag (cluster-wide: an admin's) ---------------------------------------
    def multi_model_flag(self) -> Optional[client.V1ConfigMap]:
        """inferenceservice-config when this release has the flag (KFServing 0.5-0.9), else None."""
        from helpers.steps.prep.preflight import find_inferenceservice_config

        cm, _ = find_inferenceservice_config(self.api)
        if cm is None or "predictors" not in (cm.data or {}):
            return None
        return cm

    def set_multi_model_flag(self, on: bool) -> None:
        cm = self.multi_model_flag()
        if cm is None:
            raise SetupError("this release has no multiModelServer flag", "skip this section (KServe 0.10+)")
        predictors = json.loads(cm.data["predictors"])
        predictors.setdefault("triton", {})["multiModelServer"] = on
        self.core.patch_namespaced_config_map(INFERENCESERVICE_CONFIG, cm.metadata.namespace,
                                              {"data": {"predictors": json.dumps(predictors, indent=1)}})

    # --- the record --------------------------------------------------------------------------
    def diagnose(self, pitfall: Pitfall, error: Optional[BaseException] = None, error_text: str = "") -> list:
        """Run the doctor on the notebook's server, print its table, note whether it named `pitfall`."""
        facts = doctor.gather(self.api, self.ctx.place, self.ns, SERVER, self.group.group, bucket=self.ctx.bucket,
                              error=error)
        if error_text:
            facts.error = error_text
        findings = doctor.run_checks(facts)
        print(doctor.table(findings))
        named = [f for f in findings if f.check == pitfall.check and f.result == doctor.PROBLEM]
        pitfall.named = bool(named)
        pitfall.evidence = named[0].evidence if named else ""
        pitfall.findings = [f.as_dict() for f in doctor.problems(findings)]
        return findings

    def start(self, name: str, check: str) -> Pitfall:
        self.pitfalls[name] = Pitfall(name, check)
        return self.pitfalls[name]

    def record(self) -> dict:
        return {name: p.as_dict() for name, p in self.pitfalls.items()}

    def cleanup(self) -> None:
        """Delete the server (its TrainedModels go with it), the Secret and service account, and the files."""
        for name in (MODEL, "doctor-named", "doctor-big", "doctor-nobucket"):
            self.remove_model(name)
        self.delete_server()
        for delete, name in ((self.core.delete_namespaced_secret, SECRET),
                             (self.core.delete_namespaced_service_account, ACCOUNT)):
            try:
                delete(name, self.ns)
            except ApiException as exc:
                if not not_found(exc):
                    raise
        s3 = self.ctx.s3
        for key, _ in storage.list_objects(s3, self.ctx.bucket, f"{PREFIX}/"):
            s3.remove_object(self.ctx.bucket, key)


def seen_line(found: dict) -> str:
    """The agent's verdict on a model, as one line for the notebook and the results."""
    if found.get("failed"):
        return f"agent: {str(found['failed']).split('; fix:')[0]}"  # the local agent appends its hint
    if found.get("load_s") is not None:
        return f"agent: loaded in {found['load_s']:.2f}s"
    return "agent: no verdict yet"



def chosen(names: Any = None) -> tuple[str, ...]:
    """The sections to run, in the notebook's order: a comma-separated string or a list of names from
    `ALL`, "all", or "" / None for `DEFAULT`. A section another one needs comes along with it."""
    if names in (None, "", "default"):
        wanted = set(DEFAULT)
    elif names == "all":
        wanted = set(ALL)
    else:
        items = names.split(",") if isinstance(names, str) else list(names)
        wanted = {str(n).strip() for n in items if str(n).strip()}
    unknown = sorted(wanted - set(ALL))
    if unknown:
        raise SetupError(f"no pitfall named {', '.join(unknown)}",
                         f'use "all" or names from: {", ".join(ALL)} (default: {", ".join(DEFAULT)})')
    wanted |= {NEEDS[n] for n in wanted if n in NEEDS}
    return tuple(n for n in ALL if n in wanted)


def may_break(ctx: Any, allowed: Optional[bool] = None) -> bool:
    """Whether 06 may break things here: `allowed` if given, else only on the embedded local stack
    (on a shared cluster the multi-model flag is everyone's, and a learner lacks the rights)."""
    from helpers.clients.target import Local

    return isinstance(ctx.place, Local) if allowed is None else bool(allowed)
