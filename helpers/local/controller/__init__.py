"""The local stack's controller: plays Kubeflow's profile controller, KServe's controller and the kubelet.

Level-triggered: every pass lists Profiles, InferenceServices and TrainedModels (both API groups)
and makes the world match; watches only wake the loop early. One short function wires it.

Three kinds of wake-up: a watch event on a Profile or InferenceService (or the 1 s resync timer)
runs the full pass; a TrainedModel event for a server that is up runs only that server's part
(models.json and TrainedModel status); a change of an agent's status file (inotify, `fsevents`)
runs only that server's TrainedModel status. So models.json follows an apply, and Ready follows
Triton's load, within milliseconds. `passes` counts each kind.
"""
from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from pathlib import Path

from kubernetes import client, watch

from ...constants import API_GROUPS, PROFILE_GROUP, PROFILE_PLURAL, PROFILE_VERSION, api_group
from ..fsevents import FolderEvents
from .kube import Kube
from .profiles import reconcile_profile
from .servers import CheckFailed, Servers, describe, server_key
from . import trainedmodels as tms

log = logging.getLogger("controller")


class Controller:
    def __init__(self, api: client.ApiClient, state_root: Path) -> None:
        self.kube = Kube(api)
        self.servers = Servers(self.kube, state_root, state_root / "logs", state_root / "triton" / "backends")
        self.wake = threading.Event()
        self.status_events = FolderEvents(names={self.servers.dir("x", "y").agent_status.name})
        self.passes = {"full": 0, "server": 0}
        self._lock = threading.Lock()
        self._full_wanted = True
        self._changed: dict[str, bool] = {}  # server key -> also project models.json (else status only)
        self._serving: dict[str, tuple] = {}  # server key -> (api group, isvc) of the last full pass
        self._config_written: dict[str, str] = {}  # server folder -> models.json last put in its ConfigMap

    def request(self, server: str = "", project: bool = False) -> None:
        """Ask the loop for a pass: the full one, or (with `server`) that server's TrainedModels:
        their status, and with `project` also the model config the agent reads."""
        with self._lock:
            if server:
                self._changed[server] = self._changed.get(server, False) or project
            else:
                self._full_wanted = True
        self.wake.set()

    def reconcile_all(self) -> None:
        """One level-triggered pass over every object the controller owns."""
        for profile in self.kube.list_profiles():
            self._guard(f"profile {profile['metadata']['name']}", reconcile_profile, self.kube, profile)
        wanted: set[str] = set()
        serving: dict[str, tuple] = {}
        for name in API_GROUPS:
            group = api_group(name)
            isvcs = self.kube.list_custom(group.group, group.isvc_version, "inferenceservices")
            models = self.kube.list_custom(group.group, group.tm_version, "trainedmodels")
            ready = {}
            for isvc in isvcs:
                key = server_key(isvc["metadata"]["namespace"], isvc["metadata"]["name"])
                if key in wanted:
                    continue  # the same name in the other API group: first one wins
                wanted.add(key)
                ready[key] = self._guard(f"inferenceservice {key}", self._reconcile_isvc, group, isvc)
            by_key = {server_key(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in isvcs}
            serving.update({key: (group, by_key[key]) for key, rec in ready.items() if rec is not None})
            self._reconcile_models(group, models, by_key, ready)
        self._serving = serving
        for key in self.servers.running():
            if key not in wanted:
                log.info("inferenceservice %s is gone: stopping its server", key)
                self.servers.stop(key, remove=True)

    def _guard(self, what: str, fn, *args):
        try:
            return fn(*args)
        except Exception as exc:  # noqa: BLE001 - one bad object must not stop the others
            log.warning("reconciling %s failed: %s", what, describe(exc))
            return None

    def _reconcile_isvc(self, group, isvc: dict):
        """Returns Triton's process record when the server is up, else None."""
        meta = isvc["metadata"]
        if meta.get("deletionTimestamp"):
            return None
        try:
            access = self.servers.check(group, isvc)
            records = self.servers.ensure_running(meta["namespace"], meta["name"], access)
            self.status_events.add(self.servers.dir(meta["namespace"], meta["name"]).root)
            self.servers.ensure_objects(isvc, records["triton"])
        except CheckFailed as problem:
            self.servers.write_status(group, isvc, problem)
            return None
        except Exception as exc:  # noqa: BLE001 - a process that will not start is a status, too
            self.servers.write_status(group, isvc, CheckFailed("ServerFailed", describe(exc)))
            raise
        self.servers.write_status(group, isvc, None)
        return records["triton"]

    def _reconcile_models(self, group, models: list[dict], isvcs: dict, ready: dict) -> None:
        by_server: dict[str, list[dict]] = defaultdict(list)
        for tm in models:
            ns = tm["metadata"]["namespace"]
            by_server[server_key(ns, (tm.get("spec") or {}).get("inferenceService", ""))].append(tm)
        for key, isvc in isvcs.items():
            by_server.setdefault(key, [])
        for key, items in by_server.items():
            self._guard(f"trainedmodels of {key}", self._reconcile_server_models,
                        group, key, items, isvcs.get(key), ready.get(key))

    def reconcile_server(self, key: str, project: bool) -> bool:
        """One server's TrainedModels (config with `project`, and status); False if the server is not up."""
        seen = self._serving.get(key)
        if seen is None:
            return False
        group, isvc = seen
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        triton = self.servers.record(ns, name, "triton")
        if triton is None or not triton.alive():
            return False
        items = [tm for tm in self.kube.custom.list_namespaced_custom_object(
                     group.group, group.tm_version, ns, "trainedmodels")["items"]
                 if (tm.get("spec") or {}).get("inferenceService") == name]
        self._reconcile_server_models(group, key, items, isvc, triton, project=project,
                                      via="trainedmodel event" if project else "agent status")
        return True

    def _reconcile_server_models(self, group, key: str, items: list[dict], isvc, triton,
                                 project: bool = True, via: str = "full pass") -> None:
        parts = {tm["metadata"]["name"]: tms.validate(tm, isvc, triton is not None) for tm in items}
        valid = [tm for tm in items if all(p["status"] == "True" or p["type"] == "InferenceServiceReady"
                                            for p in parts[tm["metadata"]["name"]])]
        too_big = tms.fit_memory(valid, tms.isvc_memory_limit(isvc) if isvc else None)
        entries = [tms.model_entry(tm) for tm in valid if tm["metadata"]["name"] not in too_big]
        if isvc is not None and triton is not None:
            ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
            where = self.servers.dir(ns, name)
            if project:
                tms.write_model_config(self.kube, ns, name, entries, where, self._config_written,
                                       trust=via != "full pass")
            agent = tms.read_agent_status(where)
        else:
            agent = {}
        for tm in items:
            name = tm["metadata"]["name"]
            conds = parts[name]
            if name in too_big:
                conds = [c for c in conds if c["type"] != "MemoryResourceAvailable"] + [tms.condition(
                    "MemoryResourceAvailable", False, "MemoryResourceNotAvailable",
                    "the TrainedModels of this server need more memory than its limit: raise "
                    "spec.predictor.triton.resources.limits.memory or lower spec.model.memory")]
            elif all(c["status"] == "True" for c in conds):
                conds = conds + [tms.serving_condition(tm, agent, triton.ports.get("http") if triton else None)]
            tms.write_status(self.kube, group, tm, conds, via)

    def watch_forever(self, stop: threading.Event) -> list[threading.Thread]:
        """Watches that wake the loop when anything it owns changes."""
        sources = [(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL)]
        for name in API_GROUPS:
            group = api_group(name)
            sources += [(group.group, group.isvc_version, "inferenceservices"),
                        (group.group, group.tm_version, "trainedmodels")]
        threads = [threading.Thread(target=self._watch, args=(source, stop), daemon=True) for source in sources]
        threads.append(threading.Thread(target=self._watch_agent_status, args=(stop,), daemon=True))
        for thread in threads:
            thread.start()
        return threads

    def _watch_agent_status(self, stop: threading.Event) -> None:
        """inotify on every server folder: a new agent status asks for that server's status pass."""
        servers = self.servers.state_root / "servers"
        while not stop.is_set():
            present = {p for p in servers.glob("*/") if p.is_dir()}
            for folder in self.status_events.folders() - present:
                self.status_events.forget(folder)
            for folder in present:
                self.status_events.add(folder)
            for folder in self.status_events.wait(1.0):
                self.request(server=folder.name)

    def _watch(self, source: tuple, stop: threading.Event) -> None:
        """One watch, re-opened at once when it ends and within a second while the apiserver is away.

        A restarted apiserver takes seconds to come back: retrying every 0.1-1 s (not a fixed
        2 s) means the watch resumes within a second of `/readyz`. A watch that resumes after a
        failure asks for a full pass, so nothing missed meanwhile is lost.
        `_request_timeout` bounds a connection that went silent without being closed.
        """
        delay, failed = 0.1, False
        while not stop.is_set():
            try:
                for event in watch.Watch().stream(self.kube.custom.list_cluster_custom_object, *source,
                                                  timeout_seconds=20, _request_timeout=(3, 30)):
                    if failed:
                        log.info("watch of %s resumed", source[-1])
                        delay, failed = 0.1, False
                        self.request()  # anything may have changed while the watch was down
                    self.request(*self._server_of(source, event))
                    if stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - CRD not there yet, apiserver restarting: retry
                failed = True
                stop.wait(delay)
                delay = min(delay * 2, 1.0)

    def _server_of(self, source: tuple, event: dict) -> tuple:
        """(server key, True) for a TrainedModel of a server that is up, else () (the full pass)."""
        obj = event.get("object") or {}
        if source[-1] != "trainedmodels" or event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
            return ()
        key = server_key(obj["metadata"]["namespace"], (obj.get("spec") or {}).get("inferenceService", ""))
        seen = self._serving.get(key)
        if seen is None or seen[0].group != source[0]:
            return ()
        return key, True

    def run(self, stop: threading.Event, ready_file: Path, interval: float = 1.0) -> None:
        """Reconcile until `stop` is set, then stop every server this controller started."""
        self.watch_forever(stop)
        self.reconcile_all()
        ready_file.write_text("ready\n")
        stop_wake = threading.Thread(target=lambda: (stop.wait(), self.wake.set(), self.status_events.interrupt()),
                                     daemon=True)
        stop_wake.start()
        last_full = time.monotonic()
        while not stop.is_set():
            self.wake.wait(max(last_full + interval - time.monotonic(), 0))
            self.wake.clear()
            # The resync runs every `interval` even while server passes keep waking the loop.
            timer = time.monotonic() - last_full >= interval
            with self._lock:
                full, changed = self._full_wanted or timer, self._changed
                self._full_wanted, self._changed = False, {}
            if full:
                last_full = time.monotonic()
            try:
                for key, project in sorted(changed.items()):
                    if full:
                        break
                    full = not self.reconcile_server(key, project)  # not up: the full pass handles it
                    self.passes["server"] += 1
                if full:
                    self.passes["full"] += 1
                    self.reconcile_all()
            except Exception as exc:  # noqa: BLE001 - the apiserver may be away for a moment
                log.warning("reconcile pass failed: %s", describe(exc))
        for key in self.servers.running():
            self.servers.stop(key)
