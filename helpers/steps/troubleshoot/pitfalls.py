"""Break a server on purpose, see what a learner sees, let the doctor name it, mend it (06_troubleshooting).

Each pitfall is four steps, each shown as the commands a learner could type and then run here:
`break_it` (a `kubectl annotate`, `apply` or `patch`), `symptom` (the agent's log line, an Event or a
condition, as `kubectl` prints it), `diagnose` (`python -m helpers.doctor --problems`: PROBLEM rows only)
and `mend`. The commands are the real equivalents of what runs through the Kubernetes API here, and
paste as shown on the local stack after `eval "$(python -m helpers.local env)"`; the manifests they
apply are written to `<build>/06_troubleshooting/` and shown as YAML.

Everything goes through the Kubernetes API, S3 and the server's endpoint, so this module sits in the
learner-facing layer and imports nothing of the local stack. "S3 down" is shown as S3 saying no (a
bucket that is not there): stopping MinIO needs the stack's controls; `tests/stack/test_doctor_06.py`
stops the local S3 server and checks that the doctor names that too.

Where 06 may not break things (a cluster), each step shows what a local run recorded
(`recorded.json` beside this module, written by `python -m helpers.pitfalls record <results.json>`),
labelled as recorded; the doctor's findings are computed again from the recorded facts, so they
speak the learner's language.

The notebook's own objects, in the learner's namespace: the InferenceService `triton-doctor`, its
service account `doctor-sa` with the Secret `doctor-s3`, and TrainedModels named `doctor-*` whose files
are a CIFAR-10 stand-in under `s3://<bucket>/doctor/`. 01-04's objects are never touched (except the
cluster-wide multi-model flag, which it sets back).
"""
from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Optional

import requests
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from helpers.clients import inference, manifests, storage
from helpers.clients.k8s import not_found
from helpers.core import i18n
from helpers.core.constants import INFERENCESERVICE_CONFIG
from helpers.core.errors import SetupError
from helpers.core.i18n import _, gettext
from helpers.core.show import display_code, show_lines, show_not_in_guide
from helpers.core.wait import poll_until
from helpers.steps import troubleshoot
from helpers.steps.models import agent_log
from helpers.steps.troubleshoot import doctor

SERVER = "triton-doctor"
ACCOUNT = "doctor-sa"
SECRET = "doctor-s3"
MODEL = "doctor-cifar"
PREFIX = "doctor"
SERVER_MEMORY = "2Gi"  # small enough for any node (the guide's 16Gi is its own pitfall)
RECORDED = Path(troubleshoot.__file__).with_name("recorded.json")  # this module may run as helpers.pitfalls

# Every pitfall of 06, in the notebook's order. Three run by default: the region users meet most
# (kserve/kserve#2140), the fix that does not reach a running pod, and the config name trap;
# `pitfalls="all"` runs every one.
ALL = ("no_region", "fixed_after_start", "config_name", "wrong_prefix", "virtual_host", "multi_model_flag",
       "memory", "wrong_shape", "s3_bucket")
DEFAULT = ("no_region", "fixed_after_start", "config_name")
# no_region breaks what fixed_after_start mends, and fixed_after_start needs it broken.
NEEDS = {"fixed_after_start": "no_region", "no_region": "fixed_after_start"}
# The doctor's check (Finding.id) that should name each pitfall.
CHECK = {"wrong_prefix": "annotation_prefix", "no_region": "region", "fixed_after_start": "stale_env",
         "virtual_host": "virtual_host", "multi_model_flag": "multi_model", "config_name": "config_name",
         "memory": "memory", "wrong_shape": "shape", "s3_bucket": "s3"}


def _labels() -> dict[str, str]:
    """What each shown block is for (looked up when shown, so a recorded run speaks the learner's language)."""
    return {"setup": _("06's own server, service account, Secret and model"),
            "break": _("break it, as you could by hand"),
            "see": _("look where a learner looks"),
            "doctor": _("the doctor, PROBLEM rows only"),
            "mend": _("mend it"),
            "cleanup": _("06's own objects go"),
            "output": _("what it prints")}


def _comments(_: Callable[[str], str] = gettext) -> dict[str, str]:
    """The comments 06 writes after its shown commands, by key: in the reader's language, or looked up
    with another `_` (`str` gives the English). A recording holds them in the language of the run that
    made it; `_said_again` finds them there and says them in the reader's. The parameter is called `_`
    so that the catalogue tool finds the messages, as it finds every `_()`."""
    return {"gone": _("its pod and TrainedModels go with it"),
            "new_pod": _("a new pod takes the Secret as it is now"),
            "old_pod": _("the fix, but the pod is the old one"),
            "misnamed": _('its config.pbtxt says name: "cifar10"'),
            "big": _("spec.model.memory: 4Gi, on a server of {memory}").format(memory=SERVER_MEMORY),
            "no_bucket": _("a bucket that does not exist")}


def _said_again(command: str) -> str:
    """`command` with each comment 06 wrote (`  # ...` after a command, or a line of its own) in the
    reader's language, whichever language the run that recorded it spoke; the command itself, and any
    comment 06 did not write, stay as recorded."""
    here, known = _comments(), {}
    for code in i18n.LANGUAGES:
        found = i18n.catalogue(code)  # empty for English, the source language
        known.update({text: here[key] for key, text in _comments(lambda message: found.get(message, message)).items()})
    return re.sub(r"(^\s*# |  # )(.*)$", lambda m: m.group(1) + known.get(m.group(2), m.group(2)), command,
                  flags=re.M)


def _yaml_label(path: str) -> str:
    return _("the manifest 06 applies ({path})").format(path=path)


def _texts() -> dict[str, str]:
    return {"loaded": _("the agent loaded {model} in {seconds:.2f}s; Triton says it is ready: {ready}"),
            "failed": _("the agent could not load {model} (its log line is below)"),
            "refused": _("the controller kept {model} out of models.json (its condition is below)"),
            "no_verdict": _("the agent has said nothing of {model} yet"),
            "named": _("the doctor names it: {check}"),
            "not_named": _("the doctor did not name it (expected: {check})"),
            "no_problem": _("no PROBLEM rows: the doctor sees none of the known pitfalls"),
            "mended": _("mended: {model} loads again and Triton says it is ready"),
            "not_mended": _("not mended yet: {model} does not load"),
            "gone": _("mended: {model} is gone, and the other models still serve"),
            "status": _("HTTP {status}"),
            "later": _("the natural fix follows in the next section, and shows why it is not enough"),
            "no_flag": _("this release has no multiModelServer flag (KServe 0.10+): nothing to break"),
            "recorded": _("recorded on the local stack ({when}); nothing was broken here: on a cluster 06 "
                          "only looks"),
            "not_recorded": _("no recording of this pitfall"),
            "not_run": _('not run: set `pitfalls = "all"` (or name it) in the parameters cell to run it'),
            "runs": _("this run breaks and mends its own server: {names}"),
            "looks": _("this run only looks, and shows what a run on the local stack recorded: {names}")}


def say(key: str, **args: Any) -> str:
    return _texts()[key].format(**args)


@dataclass
class Pitfall:
    """One section's record: what broke, what the learner saw, whether the doctor named it, restored."""

    name: str
    check: str = ""
    seen: str = ""
    named: bool = False
    restored: bool = False
    evidence: str = ""
    findings: list = field(default_factory=list)
    blocks: list = field(default_factory=list)  # what was shown, for the recording

    def as_dict(self) -> dict:
        return {"check": self.check, "broken_seen": self.seen, "doctor_named": self.named,
                "doctor_evidence": self.evidence, "restored": self.restored}


def chosen(names: Any = None) -> tuple[str, ...]:
    """The pitfalls to run, in the notebook's order: "default" (or "" / None) for `DEFAULT`, "all", or a
    comma-separated string or list of names from `ALL`. One another needs comes along with it."""
    if names in (None, "", "default"):
        wanted = set(DEFAULT)
    elif names == "all":
        wanted = set(ALL)
    else:
        items = names.split(",") if isinstance(names, str) else list(names)
        wanted = {str(n).strip() for n in items if str(n).strip()}
    unknown = sorted(wanted - set(ALL))
    if unknown:
        raise SetupError(_("no pitfall named {names}").format(names=", ".join(unknown)),
                         _('use "default", "all" or names from: {names}').format(names=", ".join(ALL)))
    wanted |= {NEEDS[n] for n in wanted if n in NEEDS}
    return tuple(n for n in ALL if n in wanted)


def may_break(ctx: Any, allowed: Optional[bool] = None) -> bool:
    """Whether 06 may break things here: `allowed` if given, else only on the embedded local stack
    (on a shared cluster the multi-model flag is everyone's, and a learner lacks the rights)."""
    from helpers.clients.target import Local

    if isinstance(allowed, str):  # papermill -p break_things False passes text
        allowed = {"": None, "none": None}.get(allowed.strip().lower(), allowed.strip().lower() in ("1", "true", "yes"))
    return isinstance(ctx.place, Local) if allowed is None else bool(allowed)


def recorded() -> dict:
    """What a local run recorded: {"when": ..., "pitfalls": {name: [blocks]}} ({} when there is none)."""
    return json.loads(RECORDED.read_text()) if RECORDED.is_file() else {}


def _quote(text: str) -> str:
    return shlex.quote(text)


class Lab:
    """The notebook's own server and model, and the ways to break, see, diagnose and mend them."""

    def __init__(self, ctx: Any, names: Any = None, allowed: Optional[bool] = None) -> None:
        self.ctx = ctx
        self.api = ctx.api
        self.group = ctx.group
        self.ns = ctx.namespace
        self.core = client.CoreV1Api(self.api)
        self.pitfalls: dict[str, Pitfall] = {}
        self.wanted = chosen(names)
        self.live = may_break(ctx, allowed)
        self.run = self.wanted if self.live else ()
        self.folder = Path(ctx.output_dir) / "06_troubleshooting"
        self._recorded = {} if self.live else recorded()
        self._current: Optional[Pitfall] = None
        self._model_found: dict = {}

    # --- what is shown ------------------------------------------------------------------------
    def _block(self, block: dict) -> None:
        """Show one block and keep it for the recording."""
        _show_block(block)
        if self._current is not None:
            self._current.blocks.append(block)

    def _shell(self, label: str, command: str) -> None:
        self._block({"kind": "shell", "label": label, "command": command})

    def _lines(self, lines: list[str]) -> None:
        self._block({"kind": "lines", "lines": list(lines)})

    def _say(self, key: str, **args: Any) -> None:
        self._block({"kind": "text", "key": key, "args": args})

    def _yaml(self, docs: list[dict], path: Path) -> None:
        self._block({"kind": "yaml", "path": path.name, "text": manifests.to_yaml(docs)})

    def intro(self) -> None:
        """One line: which pitfalls this run breaks, or that it shows recordings."""
        names = ", ".join(self.wanted)
        print(say("runs", names=names) if self.live else say("looks", names=names))

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

    def secret_commands(self, docs: list[dict]) -> str:
        """The Secret and service account above as kubectl lines that paste and run: the keys copied from
        the learner's own Secret through shell variables, so no file or output ever holds them."""
        secret, account = docs[0]["metadata"], docs[1]["metadata"]
        own = self.ctx.param("secret_name", manifests.DEFAULTS["secret_name"])
        keys = "".join(f"{key}=$(kubectl get secret {own} -n {self.ns} -o jsonpath='{{.data.{key}}}' | base64 -d)\n"
                       for key in docs[0]["stringData"])
        literals = " ".join(f'--from-literal={key}="${key}"' for key in docs[0]["stringData"])
        annotations = " ".join(f"{name}={value}" for name, value in secret["annotations"].items())
        patch = json.dumps({"secrets": [{"name": secret["name"]}]})
        again = "--dry-run=client -o yaml | kubectl apply -f -"  # so that pasting it twice changes nothing
        return (f"{keys}kubectl create secret generic {secret['name']} -n {self.ns} {literals} {again}\n"
                f"kubectl annotate secret {secret['name']} -n {self.ns} --overwrite {annotations}\n"
                f"kubectl create serviceaccount {account['name']} -n {self.ns} {again}\n"
                f"kubectl patch serviceaccount {account['name']} -n {self.ns} -p '{patch}'")

    def _write(self, doc: dict) -> Path:
        """Write one manifest (no secrets) where the shown `kubectl apply -f` finds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{doc['metadata']['name']}.yaml"
        path.write_text(manifests.to_yaml([doc]))
        return path

    def setup(self) -> None:
        """Upload 03's CIFAR-10 model from the cache (as `doctor-cifar`, `doctor-big` and, misnamed, `doctor-named`), apply
        the Secret + service account, start the server and load `doctor-cifar`; each shown first."""
        if not self.live:
            return
        from helpers.steps.models import model_sources

        # 03's CIFAR-10 folder from the model cache (the stand-in written at most once), copied: its
        # config is renamed below
        cached = model_sources.fetch("cifar10", offline=True, progress=False, say=lambda _line: None)
        with tempfile.TemporaryDirectory(prefix="mms-doctor-") as tmp:
            folder = Path(shutil.copytree(cached.path, Path(tmp) / "model"))
            config = (folder / "config.pbtxt").read_text()
            for model, name in ((MODEL, MODEL), ("doctor-big", "doctor-big"), ("doctor-named", "cifar10")):
                (folder / "config.pbtxt").write_text(re.sub(r'^name: ".*"$', f'name: "{name}"', config, flags=re.M))
                storage.upload_folder(self.ctx.s3, folder, self.ctx.bucket, f"{PREFIX}/{model}", progress=False)
        secret_docs = manifests.render("s3_secret", **self._secret_values())
        display_code("# " + _yaml_label(f"{SECRET}.yaml") + "\n" + manifests.to_yaml(secret_docs),
                     "yaml")
        server, model = self.server_manifest(), self.model_manifest()
        for doc in (server, model):
            self._yaml([doc], self._write(doc))
        show_not_in_guide(self.secret_commands(secret_docs)
                          + f"\nkubectl apply -f {self.folder / SERVER}.yaml"
                          + f"\nkubectl wait inferenceservice/{SERVER} -n {self.ns} --for=condition=Ready --timeout=180s"
                          + f"\nkubectl apply -f {self.folder / MODEL}.yaml", _labels()["setup"])
        manifests.apply(self.api, secret_docs)
        self.recreate_server()
        self._report_model(self.add_model())

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

    def _new_server_commands(self, wait: bool = True) -> str:
        lines = [f"kubectl delete inferenceservice {SERVER} -n {self.ns}  # " + _comments()["gone"],
                 f"kubectl apply -f {self.folder / SERVER}.yaml  # " + _comments()["new_pod"]]
        if wait:
            lines.append(f"kubectl wait inferenceservice/{SERVER} -n {self.ns} --for=condition=Ready --timeout=180s")
        return "\n".join(lines)

    def server_condition(self, timeout: float = 60.0) -> tuple[str, str, str]:
        """The server's Ready condition once it is decided: (status, reason, message)."""
        def decided() -> Optional[tuple[str, str, str]]:
            obj = inference.get(self.api, self.group, inference.ISVC, SERVER, self.ns)
            ready = inference.conditions(obj).get("Ready") or {}
            if ready.get("status") == "True" or (ready.get("status") == "False" and ready.get("reason")):
                return ready["status"], ready.get("reason", ""), ready.get("message", "")
            return None
        return poll_until(decided, f"InferenceService {SERVER} to be decided", timeout=timeout)

    # --- the Secret --------------------------------------------------------------------------
    def set_annotations(self, annotations: dict[str, str]) -> None:
        """Replace the Secret's annotations (what the shown `kubectl annotate` does)."""
        secret = self.core.read_namespaced_secret(SECRET, self.ns)
        secret.metadata.annotations = dict(annotations)
        self.core.replace_namespaced_secret(SECRET, self.ns, secret)

    def annotations_without(self, *keys: str) -> dict[str, str]:
        return {k: v for k, v in self.good_annotations().items() if k not in keys}

    def annotations_for_other_group(self) -> dict[str, str]:
        """The right annotations under the other API group's prefix (the guide's KFServing YAML on KServe, or back)."""
        other = next(g for g in ("serving.kubeflow.org", "serving.kserve.io") if g != self.group.group)
        return {k.replace(self.group.group, other, 1): v for k, v in self.good_annotations().items()}

    def _annotate(self, wanted: dict[str, str]) -> str:
        """`kubectl annotate` that turns the Secret's annotations now into `wanted`, and does it."""
        now = self.core.read_namespaced_secret(SECRET, self.ns).metadata.annotations or {}
        now = {k: v for k, v in now.items() if not k.startswith("kubectl.kubernetes.io/")}
        words = [f"{k}={_quote(v)}" for k, v in wanted.items() if now.get(k) != v]
        words += [f"{k}-" for k in now if k not in wanted]
        self.set_annotations(wanted)
        overwrite = " --overwrite" if any(k in now for k, v in wanted.items() if now.get(k) != v) else ""
        return f"kubectl annotate secret {SECRET} -n {self.ns}{overwrite} " + " ".join(words)

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
        _lines, found = agent_log.wait_agent_loaded(self.api, self.ctx.place, self.group, SERVER, self.ns, name,
                                               timeout=timeout, stop=lambda: self.refused_for_memory(name))
        self._model_found[name] = found
        return found

    def refused_for_memory(self, name: str) -> bool:
        """KServe's MemoryResourceAvailable=False: the controller keeps the model out of models.json."""
        found = inference.conditions(self.trained_model(name)).get("MemoryResourceAvailable") or {}
        return found.get("status") == "False"

    def remove_model(self, name: str) -> bool:
        if inference.delete(self.api, self.group, inference.TM, name, self.ns):
            poll_until(lambda: inference.get(self.api, self.group, inference.TM, name, self.ns) is None,
                       f"TrainedModel {name} to be deleted", timeout=60)
            return True
        return False

    def trained_model(self, name: str) -> Optional[dict]:
        return inference.get(self.api, self.group, inference.TM, name, self.ns)

    def model_events(self, name: str) -> list[dict]:
        """The object's Events, oldest first (as `kubectl get events --sort-by=.lastTimestamp`)."""
        found = self.core.list_namespaced_event(self.ns, field_selector=f"involvedObject.name={name}").items
        epoch = datetime.fromtimestamp(0, timezone.utc)
        found = sorted(found, key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp or epoch)
        return [{"type": e.type, "reason": e.reason, "message": e.message} for e in found]

    def _endpoint(self) -> Any:
        isvc = inference.get(self.api, self.group, inference.ISVC, SERVER, self.ns)
        return self.ctx.place.server_endpoint(self.api, isvc)

    def model_ready(self, name: str = MODEL) -> bool:
        """Triton's own answer: GET /v2/models/<name>/ready through the server's endpoint."""
        endpoint = self._endpoint()
        answer = requests.get(f"{endpoint.base_url}/v2/models/{name}/ready", headers=endpoint.headers, timeout=10)
        return answer.status_code == 200

    def wait_model_ready(self, name: str = MODEL, timeout: float = 60.0) -> bool:
        try:
            poll_until(lambda: self.model_ready(name), f"model {name} to be ready in Triton", timeout=timeout)
            return True
        except Exception:  # noqa: BLE001 - "not ready" is the answer
            return False

    def _apply_model(self, name: str = MODEL, uri: Optional[str] = None, memory: str = "256Mi",
                     timeout: float = 60.0) -> str:
        """Apply a TrainedModel (deleting an old one first) and wait for the agent; returns the commands."""
        doc = self.model_manifest(name, uri, memory)
        path = self._write(doc)
        old = self.trained_model(name) is not None
        self.add_model(name, uri, memory, timeout=timeout)
        return ((f"kubectl delete trainedmodel {name} -n {self.ns}\n" if old else "")
                + f"kubectl apply -f {path}")

    def _report_model(self, found: dict, name: str = MODEL) -> bool:
        """One line on the agent's verdict; True when loaded and ready in Triton."""
        if found.get("load_s") is not None:
            ready = self.wait_model_ready(name)
            self._say("loaded", model=name, seconds=round(found["load_s"], 2), ready=ready)
            return ready
        if self.refused_for_memory(name):
            self._say("refused", model=name)
        else:
            self._say("failed" if found.get("failed") else "no_verdict", model=name)
        return False

    # --- raw symptoms --------------------------------------------------------------------------
    def _log_symptom(self, needle: str, container: str = "agent", name: str = MODEL) -> str:
        """Show `kubectl logs ... | grep -E <needle> | tail -1` and the line it prints; returns it."""
        selector = f"{self.group.isvc_label}={SERVER}"
        self._shell("see", f"kubectl logs -n {self.ns} -l {selector} -c {container} --tail=-1 "
                                      f"| grep -E {_quote(needle)} | tail -1")
        reader = agent_log.agent_lines if container == "agent" else agent_log.server_lines
        lines = [line for line in reader(self.api, self.ctx.place, self.group, SERVER, self.ns)
                 if re.search(needle, line)]
        self._lines(lines[-1:])
        return lines[-1] if lines else ""

    def _ready_symptom(self, name: str = MODEL) -> list[str]:
        """The TrainedModel's Ready, which every release sets before the agent tries (no Event says it failed)."""
        self._shell("see", f"kubectl get trainedmodel {name} -n {self.ns} -o jsonpath="
                           "'{.status.conditions[?(@.type==\"Ready\")].status}'")
        conditions = ((self.trained_model(name) or {}).get("status") or {}).get("conditions") or []
        lines = [f"Ready={c.get('status')}" for c in conditions if c.get("type") == "Ready"]
        self._lines(lines)
        return lines

    def _agent_env_symptom(self) -> list[str]:
        selector = f"{self.group.isvc_label}={SERVER}"
        self._shell("see", f"kubectl get pods -n {self.ns} -l {selector} -o jsonpath="
                                      "'{range .items[0].spec.containers[?(@.name==\"agent\")].env[*]}"
                                      "{.name}={.value}{\"\\n\"}{end}'")
        pods = self.core.list_namespaced_pod(self.ns, label_selector=selector).items
        pods = [p for p in pods if not p.metadata.deletion_timestamp]
        env = next((c.env or [] for c in pods[0].spec.containers if c.name == "agent"), []) if pods else []
        lines = [f"{e.name}={e.value or ''}" for e in env]  # a key from the Secret is a reference: no value here
        self._lines(lines)
        return lines

    # --- the multi-model flag (cluster-wide: an admin's) ---------------------------------------
    def multi_model_flag(self) -> Optional[client.V1ConfigMap]:
        """inferenceservice-config when this release has the flag (KFServing 0.5-0.9), else None."""
        from helpers.steps.prep.preflight import find_inferenceservice_config

        cm, _denied = find_inferenceservice_config(self.api)
        if cm is None or "predictors" not in (cm.data or {}):
            return None
        return cm

    def set_multi_model_flag(self, on: bool) -> str:
        """Set predictors.triton.multiModelServer; returns the `kubectl patch` that does the same."""
        cm = self.multi_model_flag()
        if cm is None:
            raise SetupError(_("this release has no multiModelServer flag"), _("skip this section (KServe 0.10+)"))
        predictors = json.loads(cm.data["predictors"])
        predictors.setdefault("triton", {})["multiModelServer"] = on
        patch = {"data": {"predictors": json.dumps(predictors, indent=1)}}
        self.core.patch_namespaced_config_map(INFERENCESERVICE_CONFIG, cm.metadata.namespace, patch)
        edit = ("import json,sys; cm=json.load(sys.stdin); p=json.loads(cm['data']['predictors']); "
                f"p['triton']['multiModelServer']={on}; cm['data']['predictors']=json.dumps(p, indent=1); "
                "json.dump(cm, sys.stdout)")
        return (f"kubectl get configmap {INFERENCESERVICE_CONFIG} -n {cm.metadata.namespace} -o json "
                f"| python3 -c {_quote(edit)} | kubectl replace -f -")

    def infer_raw(self, shape: list[int], name: str = MODEL) -> tuple[int, str, str]:
        """POST /v2/models/<name>/infer with a JSON body of zeros of `shape`, as the guide's curl:
        (status, text, the curl command that sends the same file)."""
        from helpers.steps.serving.endpoint import curl

        endpoint = self._endpoint()
        size = 1
        for n in shape:
            size *= n
        body = {"inputs": [{"name": "INPUT__0", "shape": shape, "datatype": "FP32", "data": [0.0] * size}]}
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"zeros-{'x'.join(map(str, shape))}.json"
        path.write_text(json.dumps(body))
        answer = requests.post(f"{endpoint.base_url}/v2/models/{name}/infer", headers=endpoint.headers,
                               data=path.read_bytes(), timeout=30)
        command = curl(endpoint, f"/v2/models/{name}/infer", method="POST", data_file=str(path), guide=False)
        command = command.replace("curl ", "curl -s ", 1).replace(f"@./{path.name}", f"@{path}")
        return answer.status_code, answer.text, command

    # --- the four steps ------------------------------------------------------------------------
    def start(self, name: str) -> Optional[Pitfall]:
        """The pitfall `name` if this run breaks it (else its recording, or a line saying it is not run)."""
        if name not in self.wanted:
            print(say("not_run"))
            return None
        if not self.live:
            replay(name, self._recorded)
            return None
        self._current = self.pitfalls[name] = Pitfall(name, CHECK[name])
        return self._current

    def break_it(self, p: Optional[Pitfall]) -> None:
        if p is None:
            return
        self._current = p
        good, label = self.good_annotations(), "break"
        if p.name == "wrong_prefix":
            self._shell(label, self._annotate(self.annotations_for_other_group()) + "\n"
                        + self._recreate_shown() + "\n" + self._apply_model())
        elif p.name == "no_region":
            self._shell(label, self._annotate(self.annotations_without(self.group.s3_region)) + "\n"
                        + self._recreate_shown() + "\n" + self._apply_model())
        elif p.name == "fixed_after_start":
            self._shell(label, self._annotate(good) + "  # " + _comments()["old_pod"] + "\n"
                        + self._apply_model())
        elif p.name == "virtual_host":
            self._shell(label, self._annotate(self.annotations_without(self.group.s3_usevirtualbucket)) + "\n"
                        + self._recreate_shown() + "\n" + self._apply_model())
        elif p.name == "multi_model_flag":
            if self.multi_model_flag() is None:
                self._say("no_flag")
                p.named = p.restored = True
                p.seen = "no flag"
                return
            patch = self.set_multi_model_flag(False)
            self.recreate_server(wait=False)
            self._shell(label, patch + "\n" + self._new_server_commands(wait=False))
        elif p.name == "config_name":
            self._shell(label, self._apply_model("doctor-named") + "  # " + _comments()["misnamed"])
        elif p.name == "memory":
            self._shell(label, self._apply_model("doctor-big", memory="4Gi") + "  # " + _comments()["big"])
        elif p.name == "wrong_shape":
            status, text, command = self.infer_raw([1, 3, 16, 16])
            self._shell(label, command)
            self._lines([text.strip()[:300], say("status", status=status)])
            p.seen = f"HTTP {status}: {text[:160]}"
            self._shape_error = text
        elif p.name == "s3_bucket":
            self._shell(label, self._apply_model("doctor-nobucket", uri="s3://doctor-nobucket/doctor/doctor-cifar")
                        + "  # " + _comments()["no_bucket"])

    def _recreate_shown(self) -> str:
        self.recreate_server()
        return self._new_server_commands()

    def symptom(self, p: Optional[Pitfall]) -> None:
        if p is None or p.seen:
            return
        self._current = p
        if p.name in ("no_region", "fixed_after_start"):
            line = self._log_symptom("MissingRegion")
            if p.name == "no_region":
                self._ready_symptom()
            else:
                self._agent_env_symptom()
        elif p.name == "wrong_prefix":
            # KFServing 0.5.1's agent panics without an endpoint (kserve/kserve#1317); KServe's says so.
            line = self._log_symptom("no S3 endpoint|nil pointer dereference")
        elif p.name == "virtual_host":
            line = self._log_symptom("no such host")
        elif p.name == "multi_model_flag":
            self._shell("see", f"kubectl get inferenceservice {SERVER} -n {self.ns} -o jsonpath="
                                          "'{range .status.conditions[?(@.type==\"Ready\")]}"
                                          "{.status} {.reason}: {.message}{\"\\n\"}{end}'")
            status, reason, message = self.server_condition()
            line = f"{status} {reason}: {message}"
            self._lines([line])
            line = f"InferenceService {SERVER}: Ready={line}"
        elif p.name == "config_name":
            line = self._log_symptom("failed to poll from model repository", name="doctor-named")
            self._log_symptom("Poll failed for model directory", container=self.group.server_container)
        elif p.name == "memory":
            self._shell("see", "kubectl get trainedmodel doctor-big -n " + self.ns + " -o jsonpath="
                                          "'{range .status.conditions[*]}{.type}={.status} {.message}{\"\\n\"}{end}'")
            conds = inference.conditions(self.trained_model("doctor-big"))
            self._lines([f"{t}={c.get('status')} {c.get('message', '')}".rstrip() for t, c in conds.items()])
            available = conds.get("MemoryResourceAvailable")
            line = (f"MemoryResourceAvailable={available['status']}: {available.get('message', '')}" if available
                    else f"accepted: {seen_line(self._model_found.get('doctor-big', {}))} "
                         "(this release does not check memory)")
        elif p.name == "s3_bucket":
            line = self._log_symptom("doctor-nobucket")
        else:
            line = ""
        found = self._model_found.get({"config_name": "doctor-named", "memory": "doctor-big",
                                       "s3_bucket": "doctor-nobucket"}.get(p.name, MODEL), {})
        p.seen = line or seen_line(found)
        if p.name in ("no_region", "fixed_after_start") and "MissingRegion" not in p.seen:
            p.seen = seen_line(found)

    def diagnose(self, p: Optional[Pitfall], error: Optional[BaseException] = None, error_text: str = "") -> list:
        """Run the doctor on the notebook's server, show its PROBLEM rows, note whether it named the pitfall."""
        if p is None:
            return []
        self._current = p
        if p.name == "multi_model_flag" and p.seen == "no flag":
            return []
        error_text = error_text or (getattr(self, "_shape_error", "") if p.name == "wrong_shape" else "")
        command = f"python -m helpers.doctor --namespace {self.ns} --server {SERVER} --problems"
        if error_text:
            short = re.match(r".*?got \[[^\]]*\]", error_text.strip())  # Triton's sentence that says it all
            command += f" --error {_quote(short.group(0) if short else error_text.strip()[:300])}"
        self._shell("doctor", command)
        facts = doctor.gather(self.api, self.ctx.place, self.ns, SERVER, self.group.group, bucket=self.ctx.bucket,
                              error=error)
        if error_text:
            facts.error = error_text
        findings = doctor.run_checks(facts)
        self._block({"kind": "doctor", "facts": doctor.facts_for_record(facts)})
        named = [f for f in findings if f.id == p.check and f.result == doctor.PROBLEM]
        p.named = bool(named)
        p.evidence = named[0].evidence if named else ""
        p.findings = [f.as_dict() for f in doctor.problems(findings)]
        title = next((f.check for f in findings if f.id == p.check), p.check)
        self._say("named" if named else "not_named", check=title)
        return findings

    def mend(self, p: Optional[Pitfall]) -> None:
        if p is None:
            return
        self._current = p
        label = "mend"
        if p.name == "no_region":
            self._say("later")
            return
        if p.name == "multi_model_flag" and p.seen == "no flag":
            return
        if p.name in ("wrong_prefix", "virtual_host"):
            self._shell(label, self._annotate(self.good_annotations()) + "\n" + self._recreate_shown() + "\n"
                        + self._apply_model(timeout=120))
            p.restored = self._mended()
        elif p.name == "fixed_after_start":
            self._shell(label, self._recreate_shown() + "\n" + self._apply_model(timeout=120))
            p.restored = self._mended()
            if "no_region" in self.pitfalls:
                self.pitfalls["no_region"].restored = p.restored
        elif p.name == "multi_model_flag":
            patch = self.set_multi_model_flag(True)
            self._shell(label, patch + "\n" + self._recreate_shown() + "\n" + self._apply_model(timeout=120))
            p.restored = self._mended()
        elif p.name in ("config_name", "memory", "s3_bucket"):
            name = {"config_name": "doctor-named", "memory": "doctor-big", "s3_bucket": "doctor-nobucket"}[p.name]
            self.remove_model(name)
            self._shell(label, f"kubectl delete trainedmodel {name} -n {self.ns}")
            still = self.trained_model(name) is None and self.model_ready()
            if p.name == "s3_bucket":
                facts = doctor.gather(self.api, self.ctx.place, self.ns, SERVER, self.group.group, bucket=self.ctx.bucket)
                still = still and doctor.check_s3(facts).result == doctor.OK
            p.restored = still
            self._say("gone" if still else "not_mended", model=name)
        elif p.name == "wrong_shape":
            status, text, command = self.infer_raw([1, 3, 32, 32])
            self._shell(label, command)
            self._lines([text.strip()[:160] + ("…" if len(text.strip()) > 160 else ""), say("status", status=status)])
            p.restored = status == 200

    def _mended(self) -> bool:
        found = self._model_found.get(MODEL, {})
        ok = found.get("load_s") is not None and self.wait_model_ready()
        self._say("mended" if ok else "not_mended", model=MODEL)
        return ok

    # --- the record --------------------------------------------------------------------------
    def record(self) -> dict:
        return {name: p.as_dict() for name, p in self.pitfalls.items()}

    def transcript(self) -> dict:
        """What each pitfall showed (for `recorded.json`)."""
        return {name: p.blocks for name, p in self.pitfalls.items()}

    def cleanup(self) -> None:
        """Delete the server (its TrainedModels go with it), the Secret and service account, and the files."""
        if not self.live:
            return
        self._current = None
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
        for key, _size in storage.list_objects(s3, self.ctx.bucket, f"{PREFIX}/"):
            s3.remove_object(self.ctx.bucket, key)
        show_not_in_guide(f"kubectl delete inferenceservice {SERVER} -n {self.ns}\n"
                          f"kubectl delete secret {SECRET} -n {self.ns}\n"
                          f"kubectl delete serviceaccount {ACCOUNT} -n {self.ns}", _labels()["cleanup"])


def _show_block(block: dict) -> Optional[list]:
    """Show one block, live or from the recording (labels and texts in the current language); for the
    doctor's block, return every finding (titles in the current language)."""
    kind = block["kind"]
    if kind == "shell":
        show_not_in_guide(_said_again(block["command"]),
                          _labels()[block["label"]] if block["label"] in _labels() else block["label"])
    elif kind == "lines":
        show_lines(block["lines"], _labels()["output"])
    elif kind == "text":
        print(say(block["key"], **block.get("args", {})))
    elif kind == "yaml":
        display_code("# " + _yaml_label(block["path"]) + "\n" + block["text"], "yaml")
    elif kind == "doctor":
        found = doctor.run_checks(doctor.Facts(**block["facts"]))
        findings = doctor.problems(found)
        print(doctor.table(findings) if findings else say("no_problem"))
        return found
    return None


def replay(name: str, found: dict) -> None:
    """Show what a local run recorded for pitfall `name`, labelled as recorded."""
    blocks = (found.get("pitfalls") or {}).get(name)
    if not blocks:
        print(say("not_recorded"))
        return
    print(say("recorded", when=found.get("when", "?")))
    titles: dict[str, str] = {}  # check id -> its title, from the doctor's findings just shown
    for block in blocks:
        if block["kind"] == "text" and block["key"] in ("named", "not_named") and CHECK.get(name) in titles:
            # the recording holds the title in its run's language: say the one just shown
            block = {**block, "args": {**block.get("args", {}), "check": titles[CHECK[name]]}}
        titles.update({finding.id: finding.check for finding in _show_block(block) or []})


def seen_line(found: dict) -> str:
    """The agent's verdict on a model, as one line for the results."""
    if found.get("failed"):
        return f"agent: {str(found['failed']).split('; fix:')[0]}"  # the local agent appends its hint
    if found.get("load_s") is not None:
        return f"agent: loaded in {found['load_s']:.2f}s"
    return "agent: no verdict yet"


def write_recording(results: Path, out: Path = RECORDED) -> Path:
    """`recorded.json` from a local run's results JSON (06 with `pitfalls="all"`)."""
    found = json.loads(Path(results).read_text())
    blocks = found.get("transcript") or {}
    if not blocks:
        raise SetupError(f"{results} has no transcript", 'run 06 on the local stack with pitfalls="all" first')
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    text = re.sub(r"(?<![\w.])/[^\s'\"]*/06_troubleshooting/", "06_troubleshooting/", json.dumps(blocks))
    blocks = json.loads(text)  # the run's own build folder says nothing to a reader
    # one line a block: small, and a diff shows which block changed
    lines = [json.dumps({"when": when, "pitfalls": {}})[:-2]]
    for name, shown in blocks.items():
        inner = ",\n".join(json.dumps(b, ensure_ascii=False, separators=(",", ":")) for b in shown)
        lines.append(f"{json.dumps(name)}: [\n{inner}\n]")
    out.write_text(lines[0] + "\n" + ",\n".join(lines[1:]) + "}}\n")
    return out


def main(argv: Optional[list[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] != "record":
        print("usage: python -m helpers.pitfalls record <results JSON of 06 run with pitfalls=\"all\">", file=sys.stderr)
        return 2
    print(write_recording(Path(args[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
