"""The local stack's controller: plays Kubeflow's profile controller, KServe's controller and the kubelet.

Level-triggered: every pass lists Profiles, InferenceServices and TrainedModels (in the API group
of the stack's version profile) and makes the world match; watches only wake the loop early. It
also serves the release's admission webhooks, the node's kubelet endpoint (container logs), the
metrics API (`kubectl top`, from the processes' /proc) and the ingress gateway's routes (nginx
itself is a supervised part of the stack), guarded by its authorizer (`authz`) on Kubeflow-style
profiles; `parts_report` publishes how each is. One short function wires it.

Three kinds of wake-up: a watch event on a Profile or InferenceService, a pod being deleted, or the
resync timer (every second while anything moves, every 5 s at rest, see RESYNC_AT_REST_S) runs the
full pass; a TrainedModel event for a server that is up runs only that server's part
(models.json and TrainedModel status); a change of an agent's status file (inotify, `fsevents`)
runs only that server's TrainedModel status and Events. So the ConfigMap follows an apply within
milliseconds, and models.json too unless the stack has a ConfigMap delay (`projection`: the kubelet's
sync, 60-90 s on a cluster). `passes` counts each kind.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from helpers.clients import k8s
from helpers.core.constants import (
    MODEL_CONFIG_FILE,
    PROFILE_GROUP,
    PROFILE_PLURAL,
    PROFILE_VERSION,
    api_group,
    model_config_map_name,
)
from helpers.core.wait import WaitTimeout, poll_until
from helpers.local.agent.status import read_status
from helpers.local.cluster import cgroups, identity, metrics, node
from helpers.local.cluster.authz import Authorizer
from helpers.local.cluster.fsevents import FolderEvents
from helpers.local.cluster.gateway import Gateway
from helpers.local.cluster.kubelet import KubeletServer
from helpers.local.cluster.projection import Projector, read_delay
from helpers.local.controller import parts_report
from helpers.local.controller import trainedmodels as tms
from helpers.local.controller.kube import Kube
from helpers.local.controller.kubeflow_profiles import reconcile_profile
from helpers.local.controller.pods import Pods
from helpers.local.controller.servers import (
    AgentEnv,
    CheckFailed,
    Servers,
    describe,
    server_key,
    status_url,
    storage_uri,
    waiting_for_revision,
)
from helpers.local.controller.webhooks import Webhooks
from helpers.local.stack import controlplane, process
from helpers.local.stack.releases import Profile
from helpers.local.stack.releases import get as get_profile

log = logging.getLogger("controller")
# The full pass's pace: every RESYNC_S while anything is in motion, every RESYNC_AT_REST_S once every server is
# served and nothing has moved for SETTLE_S (watches, the agents' status files and a look at the servers'
# processes each second still wake it at once). A pass lists and reads every object the controller owns;
# at one a second, a stack with a few servers spent most of its CPU, and its apiserver's, on passes that
# changed nothing.
RESYNC_S = 1.0
RESYNC_AT_REST_S = 5.0
SETTLE_S = 10.0
# A Profile that has not changed since a pass found its namespace, accounts, bindings and learner identity
# in place is looked at again only this often (Kubeflow's profile controller acts on events; its
# objects are rarely touched by anyone else).
PROFILE_RESYNC_S = 30.0


def _pod_going(event: dict) -> Optional[tuple]:
    """A full pass for a pod deleted or being deleted, nothing for any other pod event."""
    going = event.get("type") == "DELETED" or ((event.get("object") or {}).get("metadata") or {}).get("deletionTimestamp")
    return () if going else None


def env_spec(env: Optional[AgentEnv]) -> list[dict]:
    return env.spec() if env else []


class Controller:
    def __init__(self, api: client.ApiClient, state_root: Path, profile: Optional[Profile] = None) -> None:
        self.kube = Kube(api)
        self.profile = profile or get_profile()
        # The kubelet's part: can containers' memory limits be enforced here (root, writable cgroups)?
        self.cgroups = cgroups.probe()
        cgroups.publish(state_root, self.cgroups)
        self.servers = Servers(self.kube, state_root, state_root / "logs", state_root / "triton" / "backends",
                               self.profile, self.cgroups.hierarchy)
        self.webhooks = Webhooks(api, self.profile, state_root)
        self.wake = threading.Event()
        self.state_root = state_root
        from helpers.local.stack.stack import Stack  # the stack's S3 keys, which Kubeflow Pipelines copies into each profile

        self.minio = Stack(state_root).s3_credentials()
        self.pods = Pods(self.kube, state_root, state_root / "logs", self.profile.scheduler_preemption_message,
                         self.profile.kubeflow)
        self.gateway = Gateway(state_root, state_root / "logs", open_gateway=self.profile.kfserving_gateway)
        # Kubeflow-style profiles guard the gateway: a session or token, and the namespace's RBAC.
        self.authorizer = Authorizer(api, self.profile, state_root) if self.profile.gateway_auth else None
        self.routes: dict[str, tuple[str, str]] = {}  # host -> (server key, upstream)
        # server key -> nginx's port for its cluster-local address, where the mesh guards the predictor
        self.mesh_ports: dict[str, int] = self._load_mesh_ports()
        self._mesh_seeded = False
        self.status_events = FolderEvents(names={self.servers.dir("x", "y").agent_status.name})
        self.passes = {"full": 0, "server": 0}
        self._lock = threading.Lock()
        self._full_wanted = True
        self._changed: dict[str, bool] = {}  # server key -> also project models.json (else status only)
        self._serving: dict[str, tuple] = {}  # server key -> (api group, isvc) of the last full pass
        self._config_written: dict[str, str] = {}  # server folder -> models.json last put in its ConfigMap
        # The kubelet's ConfigMap sync: models.json reaches the agent after the stack's delay (0: at once).
        self.projector = Projector(lambda: read_delay(state_root))
        self._moved = time.monotonic()  # when the last event, write or failed pass was (see RESYNC_AT_REST_S)
        self._settled = False  # whether the last full pass found every InferenceService served
        self._profiles_done: dict[str, Optional[tuple]] = {}  # Profile -> (resourceVersion, when) once complete
        self._loop: Optional[threading.Thread] = None  # the thread that runs the passes
        self._note_writes(api)
        self._metrics_port = 0  # where the metrics API serves, once it does
        self._metrics_routed = 0  # the port the APIService was last pointed at by this process

    def _namespace_key(self, namespace: str):
        """Kubeflow 1.11's Pipelines sync: a SeaweedFS key of the namespace's own (None elsewhere)."""
        from helpers.local.stack import seaweedfs
        from helpers.local.stack.stack import Stack

        ports = {k.split(".", 1)[1]: v for k, v in Stack(self.state_root)._load()["ports"].items() if k.startswith("s3.")}
        return seaweedfs.grant_namespace(seaweedfs.master_address(ports), namespace)

    def _note_writes(self, api: client.ApiClient) -> None:
        """Every write the loop's thread makes counts as motion: what it changed may move again."""
        request = api.rest_client.request

        def noting(method: str, *args, **kwargs):
            if method != "GET":
                self.kube.forget()
                if threading.current_thread() is self._loop:
                    self._moved = time.monotonic()
            return request(method, *args, **kwargs)

        api.rest_client.request = noting

    def _at_rest(self) -> bool:
        return self._settled and time.monotonic() - self._moved > SETTLE_S

    def _process_ended(self) -> bool:
        """Whether a process of a server has ended (a look at /proc, no API call): the kubelet's part then
        restarts it, as at once as a kubelet sees its container exit."""
        for key in self.servers.running():
            records = self.servers.records(*key.split(".", 1))  # one read of the server's processes.json
            if any(isinstance(records.get(role), process.ProcessRecord) and not records[role].alive()
                   for role in ("triton", "agent")):
                return True
        return False

    def request(self, server: str = "", project: bool = False) -> None:
        """Ask the loop for a pass: the full one, or (with `server`) that server's TrainedModels:
        their status, and with `project` also the model config the agent reads."""
        with self._lock:
            if server:
                self._changed[server] = self._changed.get(server, False) or project
            else:
                self._full_wanted = True
            self._moved = time.monotonic()
        self.wake.set()

    def reconcile_all(self) -> None:
        """One level-triggered pass over every object the controller owns."""
        if self.profile.mesh and not self._mesh_seeded:  # Istio's install: global-deny-all in istio-system
            self._mesh_seeded = bool(self._guard("the mesh's global-deny-all", self._seed_mesh))
        self._guard("the node's size", self.pods.resize, node.current(self.state_root, self.profile))
        profiles = self.kube.list_profiles()
        for profile in profiles:
            if self._profile_current(profile):
                continue
            done = self._guard(f"profile {profile['metadata']['name']}", reconcile_profile, self.kube, profile,
                               self.minio, self.state_root, self.profile,
                               self._namespace_key if self.profile.seaweedfs else None)
            self._profiles_done[profile["metadata"]["name"]] = (
                profile["metadata"].get("resourceVersion"), time.monotonic()) if done else None
        for namespace in identity.forget_learners(self.state_root, {p["metadata"]["name"] for p in profiles}):
            log.info("profile %s is gone: its learner identity is withdrawn", namespace)
        wanted: set[str] = set()
        group = api_group(self.profile.group)
        isvcs = self.kube.list_custom(group.group, group.isvc_version, "inferenceservices")
        models = self.kube.list_custom(group.group, group.tm_version, "trainedmodels")
        ready = {}
        for isvc in isvcs:
            key = server_key(isvc["metadata"]["namespace"], isvc["metadata"]["name"])
            wanted.add(key)
            ready[key] = self._guard(f"inferenceservice {key}", self._reconcile_isvc, group, isvc)
        by_key = {server_key(i["metadata"]["namespace"], i["metadata"]["name"]): i for i in isvcs}
        self._serving = {key: (group, by_key[key]) for key, rec in ready.items() if rec is not None}
        self._settled = len(self._serving) == len(ready)
        self._reconcile_models(group, models, by_key, ready)
        for key in self.servers.known():
            if key not in wanted:
                log.info("inferenceservice %s is gone: stopping its server", key)
                self.servers.stop(key, remove=True)
        self._guard("pods", self.pods.cleanup, wanted, lambda key: self.servers.stop(key, pod_gone=True))
        self._guard("the metrics API's APIService", self._route_metrics_api)
        self._guard("gateway", self._route, wanted)

    def _profile_current(self, profile: dict) -> bool:
        """Whether the profile is unchanged since a pass found all of it in place, less than
        PROFILE_RESYNC_S ago: its objects are then only read again at that pace, not every pass."""
        done = self._profiles_done.get(profile["metadata"]["name"])
        return done is not None and done[0] == profile["metadata"].get("resourceVersion") \
            and time.monotonic() - done[1] < PROFILE_RESYNC_S

    def _route(self, wanted: set[str]) -> None:
        """The gateway routes each served InferenceService's `status.url` host to its Triton."""
        for host, (key, _upstream) in list(self.routes.items()):
            if key not in wanted:
                del self.routes[host]
        if any(key not in wanted for key in self.mesh_ports):
            self.mesh_ports = {key: port for key, port in self.mesh_ports.items() if key in wanted}
            self._save_mesh_ports()
        self._route_known()
        self.gateway.ensure_services(self.kube.api)

    def _route_known(self) -> None:
        mesh_on = self._mesh_guarded()
        self.gateway.route({host: upstream for host, (_key, upstream) in self.routes.items()},
                           {host: key.split(".", 1)[0] for host, (key, _upstream) in self.routes.items()},
                           {host: key.split(".", 1)[1] for host, (key, _upstream) in self.routes.items()} if mesh_on else {},
                           {upstream: self.mesh_ports[key] for key, upstream in self.routes.values()
                            if key in self.mesh_ports} if mesh_on else {})

    # --- the mesh (Kubeflow 1.10+): AuthorizationPolicies at the predictor ----------------------
    def _mesh_guarded(self) -> bool:
        return bool(self.profile.mesh and self.authorizer and self.gateway.binary)

    def _seed_mesh(self) -> bool:
        from helpers.local.cluster import mesh

        body = mesh.global_deny_all()
        args = (mesh.GROUP, mesh.VERSION, mesh.ROOT_NAMESPACE, mesh.PLURAL)
        try:
            self.kube.custom.get_namespaced_custom_object(*args, mesh.GLOBAL_DENY)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.kube.custom.create_namespaced_custom_object(*args, body)
            log.info("mesh: made AuthorizationPolicy %s/%s", mesh.ROOT_NAMESPACE, mesh.GLOBAL_DENY)
        return True

    def _mesh_ports_file(self) -> Path:
        return self.state_root / "gateway" / "mesh-ports.json"

    def _load_mesh_ports(self) -> dict[str, int]:
        """Kept across controller restarts: nginx, which outlives the controller, still listens on them."""
        try:
            return {k: int(v) for k, v in json.loads(self._mesh_ports_file().read_text()).items()}
        except (OSError, ValueError):
            return {}

    def _save_mesh_ports(self) -> None:
        self._mesh_ports_file().parent.mkdir(parents=True, exist_ok=True)
        self._mesh_ports_file().write_text(json.dumps(self.mesh_ports, indent=2) + "\n")

    def _cluster_local_address(self, key: str) -> Optional[str]:
        """Where the cluster-local address leads where the mesh guards it (nginx's port for the server), else None."""
        if not self._mesh_guarded():
            return None
        if key not in self.mesh_ports:
            self.mesh_ports[key] = process.free_port()
            self._save_mesh_ports()
        return f"127.0.0.1:{self.mesh_ports[key]}"

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
        key = server_key(meta["namespace"], meta["name"])
        ns, name, generation = meta["namespace"], meta["name"], meta.get("generation", 1)
        uri = storage_uri(isvc)
        try:
            self.servers.check(group, isvc)
            self.pods.observe(key, self.servers.records(ns, name))
            env = self.servers.prepare(ns, name, generation, lambda: self._pod_env(group, isvc), model_config=not uri)
            placed = self.pods.place(group, isvc, env_spec(env))
            if not placed.bound:  # Pending: no processes until the scheduler binds the pod
                raise CheckFailed("Unschedulable", placed.message)
            if uri:
                records = self._run_repository_pod(group, isvc, uri, placed.memory_limit)
            else:
                records = self.servers.ensure_running(ns, name, generation, lambda: self._pod_env(group, isvc),
                                                      memory_limit=placed.memory_limit,
                                                      outbound_delay=placed.outbound_delay)
                self.status_events.add(self.servers.dir(ns, name).root)
            self.servers.ensure_objects(isvc, records["triton"], self._cluster_local_address(key), model_config=not uri)
            self.pods.sync(group, isvc, records)
            if not self.pods.proxy_ready(key):  # Knative waits for every container, the Istio proxy too
                raise waiting_for_revision(group, name, "Pending")
            self._note_route(key, isvc, records["triton"])
            # Before Ready is written: a client that saw Ready must find the route there.
            self._route_known()
        except CheckFailed as problem:
            self.servers.write_status(group, isvc, problem)
            return None
        except Exception as exc:
            self.servers.write_status(group, isvc, CheckFailed("ServerFailed", describe(exc)))
            raise
        self.servers.write_status(group, isvc, None)
        return records["triton"]

    def _run_repository_pod(self, group, isvc: dict, uri: str, memory_limit) -> dict:
        """A storageUri server's pod: its storage initializer, then Triton; the Pod's status follows each
        step (Init:0/1, Init:Error, Init:CrashLoopBackOff, then Running once Triton answers ready)."""
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        generation = isvc["metadata"].get("generation", 1)
        try:
            return self.servers.ensure_repository(ns, name, generation, lambda: self._pod_env(group, isvc), uri,
                                                  memory_limit=memory_limit)
        except CheckFailed:
            self.pods.sync(group, isvc, self.servers._records(self.servers.dir(ns, name)), unready=("triton",))
            raise

    def _pod_env(self, group, isvc: dict) -> AgentEnv:
        """The new pod's agent env; what only its downloads would reveal on a cluster becomes Events."""
        env = self.servers.agent_env(group, isvc)
        for warning in env.warnings:
            self.kube.event(isvc, "Warning", "S3CredentialsProblem", warning)
        return env

    def _note_route(self, key: str, isvc: dict, triton: process.ProcessRecord) -> None:
        url = status_url(isvc["metadata"]["name"], isvc["metadata"]["namespace"])  # what write_status writes
        for host, (owner, _) in list(self.routes.items()):
            if owner == key:
                del self.routes[host]
        host = url.split("://", 1)[-1].split("/", 1)[0]
        self.routes[host] = (key, f"127.0.0.1:{triton.ports['http']}")

    def _reconcile_models(self, group, models: list[dict], isvcs: dict, ready: dict) -> None:
        by_server: dict[str, list[dict]] = defaultdict(list)
        for tm in models:
            ns = tm["metadata"]["namespace"]
            by_server[server_key(ns, (tm.get("spec") or {}).get("inferenceService", ""))].append(tm)
        for key in isvcs:
            by_server.setdefault(key, [])
        for key, items in by_server.items():
            self._guard(f"trainedmodels of {key}", self._reconcile_server_models,
                        group, key, items, isvcs.get(key), ready.get(key))

    def _no_model_config(self, isvc: dict, items: list[dict]) -> None:
        """Log the TrainedModel controller's error once per TrainedModel generation (it retries with back-off)."""
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        for tm in items:
            meta = tm["metadata"]
            seen = f"{ns}/{meta['name']}#no-model-config"
            stamp = f"{meta.get('uid')}/{meta.get('generation')}/{bool(meta.get('deletionTimestamp'))}"
            if self._config_written.get(seen) != stamp:
                self._config_written[seen] = stamp
                log.error('Reconciler error: trainedmodel %s/%s: configmaps "%s" not found', ns, meta["name"],
                          model_config_map_name(name))

    def _drop_deleted(self, isvc: dict, deleting: list[dict]) -> None:
        """While the server is not up, a TrainedModel being deleted still leaves the model config (KServe's
        ModelConfigReconciler removes it before the finalizer goes, whatever the InferenceService's state);
        the other entries stay as they are."""
        if not deleting:
            return
        ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
        cm = self.kube.read(self.kube.core.read_namespaced_config_map, model_config_map_name(name), ns)
        if cm is None:
            return
        gone = {tm["metadata"]["name"] for tm in deleting}
        try:
            entries = json.loads((cm.data or {}).get(MODEL_CONFIG_FILE) or "[]")
        except ValueError:
            return
        kept = [e for e in entries if e.get("modelName") not in gone]
        if len(kept) != len(entries):
            tms.write_model_config(self.kube, ns, name, kept, self.servers.dir(ns, name), self._config_written,
                                   project=self.projector.project)

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
        via = "trainedmodel event" if project else "agent status"
        log.info("server %s: TrainedModels reconciled (via %s)", key, via)
        self._reconcile_server_models(group, key, items, isvc, triton, project=project, via=via)
        return True

    def _reconcile_server_models(self, group, key: str, items: list[dict], isvc, triton,
                                 project: bool = True, via: str = "full pass") -> None:
        """KServe's TrainedModel reconcile for one server's models, then the model config for the agent."""
        if isvc is None:
            for tm in items:  # as KServe: a TrainedModel without its InferenceService is deleted
                log.info("InferenceService of trainedmodel %s/%s does not exist: deleting the trainedmodel",
                         tm["metadata"]["namespace"], tm["metadata"]["name"])
                self.kube.delete_custom(group.group, group.tm_version, "trainedmodels", tm)
                self.kube.remove_finalizer(group.group, group.tm_version, "trainedmodels", tm, tms.FINALIZER)
            return
        live = [tm for tm in items if not tm["metadata"].get("deletionTimestamp")]
        too_big = tms.fit_memory(live, tms.isvc_memory_limit(isvc)) \
            if "MemoryResourceAvailable" in self.profile.tm_conditions else set()
        parts = {tm["metadata"]["name"]: tms.conditions_for(self.profile, tm, isvc, triton is not None,
                                                             tm["metadata"]["name"] not in too_big)
                 for tm in live}
        served = [tm for tm in live if all(p["status"] == "True" for p in parts[tm["metadata"]["name"]])]
        agent = {}
        if not tms.is_mms_predictor(isvc):
            # A storageUri server has no model-config ConfigMap (KServe creates it only for IsMMSPredictor): the
            # TrainedModel controller's ModelConfigReconciler fails to find it, so nothing is loaded and a
            # deleted TrainedModel keeps its finalizer (kf v0.5.1, ks v0.15.2 `modelconfig_reconciler.go`).
            self._no_model_config(isvc, items)
            triton, project = None, False
        if triton is not None:
            ns, name = isvc["metadata"]["namespace"], isvc["metadata"]["name"]
            where = self.servers.dir(ns, name)
            if project:
                tms.write_model_config(self.kube, ns, name, [tms.model_entry(tm) for tm in served], where,
                                       self._config_written, trust=via != "full pass", project=self.projector.project)
            agent = read_status(where.agent_status)
        elif project and tms.is_mms_predictor(isvc):
            self._drop_deleted(isvc, [tm for tm in items if tm["metadata"].get("deletionTimestamp")])
        for tm in items:
            if tm["metadata"].get("deletionTimestamp"):
                if project:  # it has left models.json above (or never was in it): let the deletion finish
                    self.kube.remove_finalizer(group.group, group.tm_version, "trainedmodels", tm, tms.FINALIZER)
                continue
            self.kube.adopt(group.group, group.tm_version, "trainedmodels", tm, tms.FINALIZER,
                            {tms.PARENT_LABEL: isvc["metadata"]["name"]})
            tms.write_status(self.kube, group, tm, parts[tm["metadata"]["name"]], via)
            # No release records what its agent did (the TrainedModel controller's only Event is UpdateFailed):
            # these Events come with the friendly agent alone.
            event = tms.agent_event(tm, agent) if tm in served and self.profile.agent_friendly else None
            if event:
                self.kube.event(tm, *event)

    def watch_forever(self, stop: threading.Event) -> list[threading.Thread]:
        """Watches that wake the loop when anything it owns changes, and inotify on the agents' status."""
        group = api_group(self.profile.group)
        sources = [(PROFILE_GROUP, PROFILE_VERSION, PROFILE_PLURAL),
                   (group.group, group.isvc_version, "inferenceservices"),
                   (group.group, group.tm_version, "trainedmodels")]
        threads = [threading.Thread(target=self._watch, args=(source, stop), daemon=True) for source in sources]
        # The kubelet's part: a pod being deleted (`kubectl delete pod`) gets its processes stopped and a new
        # pod made at once, not at the next resync.
        threads.append(threading.Thread(target=self._watch, args=((), stop, self.kube.core.list_pod_for_all_namespaces,
                                                                  _pod_going), daemon=True))
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

    def _watch(self, source: tuple, stop: threading.Event, list_call=None, wants=None) -> None:
        """One watch, re-opened at once when it ends and within a second while the apiserver is away.

        A restarted apiserver takes seconds to come back: retrying every 0.1-1 s (not a fixed
        2 s) means the watch resumes within a second of `/readyz`. A watch that resumes after a
        failure asks for a full pass, so nothing missed meanwhile is lost.
        `_request_timeout` bounds a connection that went silent without being closed.
        `list_call` is the list to watch (a custom resource's by default) and `wants(event)` the pass
        it asks for: () the full one, (server key, True) one server's, None none.
        """
        list_call = list_call or self.kube.custom.list_cluster_custom_object
        wants = wants or (lambda event: self._server_of(source, event))
        delay, failed, version = 0.1, False, None
        while not stop.is_set():
            # From the last event seen, as an informer resumes: opened without one, a watch first
            # replays every object as ADDED, which would ask for a full pass every 20 s.
            since = {"resource_version": version} if version else {}
            try:
                for event in watch.Watch().stream(list_call, *source, timeout_seconds=20, _request_timeout=(3, 30),
                                                  deserialize=False, **since):
                    version = ((event.get("object") or {}).get("metadata") or {}).get("resourceVersion") or version
                    if failed:
                        log.info("watch of %s resumed", source[-1] if source else "pods")
                        delay, failed = 0.1, False
                        self.request()  # anything may have changed while the watch was down
                    wanted = wants(event)
                    if wanted is not None:
                        self.request(*wanted)
                    if stop.is_set():
                        return
            except Exception as exc:  # noqa: BLE001 - CRD not there yet, apiserver restarting: retry
                if getattr(exc, "status", None) == 410:  # too old to resume from: list afresh
                    version = None
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

    def run(self, stop: threading.Event, ready_file: Path, interval: float = RESYNC_S) -> None:
        """Reconcile until `stop` is set, then stop every server this controller started."""
        self._loop = threading.current_thread()
        self.webhooks.start()
        paths = controlplane.Paths(self.state_root)
        kubelet = KubeletServer(self._kubelet_port(), paths.kubelet_cert, paths.kubelet_key, paths.kubelet_ca,
                                self.pods.container_log, self.pods.port_address).start()
        self.pods.ensure_node(kubelet.port, node.current(self.state_root, self.profile))
        metrics_api = self._metrics_api()
        if self.authorizer:  # on its last port: nginx's config still names it after a controller restart
            self.gateway.auth_port = self.authorizer.start(self._last_port("authz.port"))
            (self.state_root / "authz.port").write_text(f"{self.gateway.auth_port}\n")
        self.pods.run_seed_pods()
        self.gateway.start()
        parts_report.publish_forever(self.state_root, stop, lambda: parts_report.collect(
            self.state_root, kubelet.port, self.gateway.auth_port, self.gateway.health, metrics_api.port))
        self.watch_forever(stop)
        self.reconcile_all()
        self._wait_metrics_available()
        ready_file.write_text("ready\n")
        stop_wake = threading.Thread(target=lambda: (stop.wait(), self.wake.set(), self.status_events.interrupt()),
                                     daemon=True)
        stop_wake.start()
        last_full = time.monotonic()
        while not stop.is_set():
            due = last_full + (RESYNC_AT_REST_S if self._at_rest() else interval)
            self.wake.wait(max(min(due, time.monotonic() + interval) - time.monotonic(), 0))
            self.wake.clear()
            # The resync runs when due even while server passes keep waking the loop; at rest, also
            # as soon as a server's process has ended.
            timer = time.monotonic() >= due or (self._at_rest() and self._process_ended())
            with self._lock:
                full, changed = self._full_wanted or timer, self._changed
                self._full_wanted, self._changed = False, {}
            if full:
                last_full = time.monotonic()
            try:
                for key, project in sorted(changed.items()):
                    if full:
                        break
                    with self.kube.one_view():
                        full = not self.reconcile_server(key, project)  # not up: the full pass handles it
                    self.passes["server"] += 1
                if full:
                    self.passes["full"] += 1
                    with self.kube.one_view():
                        self.reconcile_all()
            except Exception as exc:  # noqa: BLE001 - the apiserver may be away for a moment
                self._moved = time.monotonic()
                log.warning("reconcile pass failed: %s", describe(exc))
        self.projector.stop()
        for key in self.servers.running():
            self.servers.stop(key)
        self.webhooks.stop()
        self.gateway.stop()  # lets go of nginx, which the stack runs: it keeps serving
        if self.authorizer:
            self.authorizer.stop()
        kubelet.stop()
        metrics_api.stop()

    def _metrics_api(self) -> metrics.MetricsServer:
        """The metrics API on its last port, and the Service and APIService that route the apiserver to it."""
        pki = self.state_root / "pki" / "metrics"
        controlplane.self_signed_cert(pki / "tls.crt", pki / "tls.key", metrics.SERVICE)
        sampler = metrics.Sampler(self._pod_processes, controlplane.NODE_NAME)
        server = metrics.MetricsServer(self._last_port("metrics.port"), pki / "tls.crt", pki / "tls.key", sampler).start()
        (self.state_root / "metrics.port").write_text(f"{server.port}\n")
        self._metrics_port = server.port
        self._guard("the metrics API's APIService", self._route_metrics_api)
        return server

    def _route_metrics_api(self) -> None:
        """Point the Service and APIService at the metrics API: once a start (each pass until it succeeds)."""
        if self._metrics_port and self._metrics_routed != self._metrics_port:
            k8s.apply_all(self.kube.api, metrics.api_manifests(self._metrics_port))
            self._metrics_routed = self._metrics_port

    def _wait_metrics_available(self, timeout: float = 30.0) -> None:
        """Until the apiserver serves the metrics API's discovery: before that, discovery (`kubectl
        api-resources`, any client listing the groups) fails with "unable to retrieve the complete list of
        server APIs", for a moment even after the APIService says Available."""
        def served() -> bool:  # through the aggregator's proxy, as `kubectl top node` asks
            self.kube.custom.list_cluster_custom_object(metrics.GROUP, metrics.VERSION, "nodes", _request_timeout=5)
            return True
        try:
            poll_until(served, "the apiserver to serve the metrics API", timeout=timeout, interval=0.2)
        except WaitTimeout as exc:
            log.warning("%s; `kubectl top` and discovery may fail until it is", exc)

    def _pod_processes(self) -> list[metrics.PodProcesses]:
        from helpers.local.stack.stack import Stack  # the S3 server is the seed's object store pod

        s3 = Stack(self.state_root).records().get("s3")
        return self.pods.processes(s3.pid if s3 and s3.alive() else None)

    def _last_port(self, file: str) -> int:
        """The port saved in `file` of the state folder if it is free now, else 0 (a free one)."""
        saved = self.state_root / file
        last = int(saved.read_text()) if saved.exists() else 0
        return last if last and process.port_free(last) else 0

    def _kubelet_port(self) -> int:
        """The kubelet endpoint's port: the last one if it is free, else a free one (kept in the state folder)."""
        saved = self.state_root / "kubelet.port"
        last = int(saved.read_text()) if saved.exists() else 0
        port = last if last and process.port_free(last) else process.free_port()
        saved.write_text(f"{port}\n")
        return port
