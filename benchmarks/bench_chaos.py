"""The chaos run (issues 13, 26): every part killed in turn, on every profile, mid-apply and mid-traffic.

For each version profile (`helpers.local.stack.releases`; default: all, one after the other, each on its
own fresh stack in a temporary folder, stopped at the end) the guide's steps 1-4 are applied in the
profile's API group (Profile, S3 Secret + service account, ExternalName, the multi-model
InferenceService, the cifar10 TrainedModel answering through the ingress gateway). Then a client
sends cifar10 requests through the gateway (nginx, with the admin's session where the profile's
gateway asks for one) every 50 ms, and each part is killed in turn (SIGKILL to its process group;
nobody runs `up`) right after a new TrainedModel was applied: the server's Triton and its agent
(while the controller that started them is their parent, so their exit status is known), S3,
etcd, kube-apiserver, kube-controller-manager, the gateway's nginx, the controller, and last the
supervisor. The three times below are polled side by side. For each kill:

- BACK: kill -> a new process answers its health check (restarted by the supervisor, or by the
  controller for Triton and the agent); for the apiserver, until it serves TrainedModels again;
- APPLIED: kill -> the TrainedModel applied just before the kill is Ready and Triton serves it;
- SERVING: kill -> every TrainedModel Ready and both models answer through the gateway;
- GATEWAY: requests of the client that failed after the kill, and the longest run of failures (s);
- LOST: objects (TrainedModels, InferenceServices, Profiles, the namespace's ConfigMaps, Secrets,
  ServiceAccounts, Services), S3 keys and models READY in Triton before the kill that are gone after.

Where the release's own behaviour is to stay down (`helpers.local.stack.recovery`: the supervisor, which
plays the kubelet; models the release's agent does not reload), the row says so and is not counted
as a failure; the supervisor is then started again with `up`, timed.

Usage: python benchmarks/bench_chaos.py [--quick | --smoke] [--profiles P ...] [--parts PART ...]
                                        [--timeout S] [--keep] [--stack-dir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as common
import _server
from kubernetes import client

from helpers.clients import triton
from helpers.core.wait import WaitTimeout, poll_until
from helpers.local.stack import process, recovery
from helpers.local.stack.releases import PROFILES, Profile
from helpers.local.stack.stack import ORDER, Stack

# Triton and the agent first, while the controller that started them is still their parent (only a
# parent learns how a child ended); the supervisor last, as its replacement adopts every part.
PARTS = (*recovery.SERVER_ROLES, *ORDER, recovery.SUPERVISOR)
SMOKE_PARTS = ("gateway", "agent")


# --- the client sending requests through the gateway -------------------------------------------------
class Traffic:
    """Sends one inference request through the gateway every `interval` seconds in a thread; keeps (time, ok)."""

    def __init__(self, server: _server.Server, name: str, model: _server.Model, interval: float = 0.05) -> None:
        self.server, self.name, self.model, self.interval = server, name, model, interval
        self.results: list[tuple[float, bool]] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> "Traffic":
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop_event.set()
        self.thread.join(timeout=10)

    def _run(self) -> None:
        while not self.stop_event.is_set():
            sent = time.monotonic()
            try:
                ok = self.server.infer_through_gateway(self.name, self.model, timeout=2)
            except Exception:  # noqa: BLE001 - refused, reset, timed out: a failed request
                ok = False
            self.results.append((sent, ok))
            self.stop_event.wait(self.interval)

    def since(self, start: float, end: float) -> tuple[int, int, float]:
        """(requests, failed, longest run of failures in seconds) sent between `start` and `end`."""
        window = [(t, ok) for t, ok in list(self.results) if start <= t <= end]
        failed = sum(not ok for _t, ok in window)
        longest, first_bad = 0.0, None
        for t, ok in window + [(end, True)]:
            if not ok and first_bad is None:
                first_bad = t
            elif ok and first_bad is not None:
                longest, first_bad = max(longest, t - first_bad), None
        return len(window), failed, longest


# --- what there is -----------------------------------------------------------------------------------
def inventory(server: _server.Server) -> set[str]:
    """Names of everything the walkthrough made, as `kind/name`, and `s3/key`."""
    kube = server.new_client()
    custom, core, group = client.CustomObjectsApi(kube), client.CoreV1Api(kube), server.group
    found = set()
    for plural, version in (("trainedmodels", group.tm_version), ("inferenceservices", group.isvc_version)):
        for obj in custom.list_namespaced_custom_object(group.group, version, _server.NS, plural)["items"]:
            found.add(f"{plural}/{obj['metadata']['name']}")
    for obj in custom.list_cluster_custom_object("kubeflow.org", "v1", "profiles")["items"]:
        found.add(f"profiles/{obj['metadata']['name']}")
    for kind, lister in (("configmaps", core.list_namespaced_config_map), ("secrets", core.list_namespaced_secret),
                         ("serviceaccounts", core.list_namespaced_service_account),
                         ("services", core.list_namespaced_service)):
        found |= {f"{kind}/{item.metadata.name}" for item in lister(_server.NS).items
                  if not item.metadata.name.startswith(("default-token", "kube-root-ca"))}
    found |= {f"s3/{o.object_name}" for o in server.s3().list_objects(_server.BUCKET, recursive=True)}
    return found


def _roles(stack: Stack) -> dict:
    return json.loads((stack.servers_dir / f"{_server.NS}.{_server.SERVER}" / "processes.json").read_text())


def record_of(stack: Stack, part: str) -> dict:
    """The part's process record (its JSON form): restarts and last exit as `status` shows them."""
    if part in recovery.SERVER_ROLES:
        return _roles(stack)[part]
    if part == recovery.SUPERVISOR:
        sup = stack.supervisor_record()
        return sup.to_json() if sup else {}
    return stack.records()[part].to_json()


def healthy_again(server: _server.Server, part: str, old_pid: int) -> Callable[[], bool]:
    stack = server.stack

    def check() -> bool:
        if part in recovery.SERVER_ROLES:
            record = _roles(stack)[part]
            if record["pid"] == old_pid or not process.ProcessRecord.from_json(record).alive():
                return False
            return part != "triton" or triton.server_ready(f"http://127.0.0.1:{record['ports']['http']}")
        if part == recovery.SUPERVISOR:
            sup = stack.supervisor_record()
            return bool(sup and sup.pid != old_pid and sup.alive())
        row = next(r for r in stack.status() if r.name == part)
        if row.pid == old_pid or not row.healthy:
            return False
        if part == "kube-apiserver":  # /readyz says ok before the CRDs are served again
            server.trained_models(server.new_client())
        return True
    return check


def settled(server: _server.Server, names: list[str], models: dict[str, _server.Model]) -> bool:
    """Every part healthy, every TrainedModel Ready, and the named models answer through the gateway."""
    stack = server.stack
    if not all(row.healthy for row in stack.status()[:len(ORDER)]) or not all(
            process.ProcessRecord.from_json(r).alive() for r in _roles(stack).values() if isinstance(r, dict)):
        return False
    kube = server.new_client()
    items = server.trained_models(kube)
    if not items or not all(server.ready("trainedmodels", tm["metadata"]["name"], kube) for tm in items):
        return False
    return all(server.infer_through_gateway(name, models[name]) for name in names)


# --- one kill ------------------------------------------------------------------------------------------
@dataclass
class Outcome:
    profile: str
    part: str
    expected: recovery.Expected
    back: Optional[float] = None
    applied: Optional[float] = None
    serving: Optional[float] = None
    requests: int = 0
    failed: int = 0
    longest: float = 0.0
    lost: list[str] = field(default_factory=list)
    restarts: int = 0
    last_exit: str = ""
    repaired_by_up: Optional[float] = None
    repaired_by_pod_delete: Optional[float] = None  # models the release leaves unloaded: the doctor's fix
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        back_ok = self.back is not None or not self.expected.comes_back
        by_design = not self.expected.models_come_back
        lost = [x for x in self.lost if not (x.startswith("model/") and by_design)]
        served = self.serving is not None or (by_design and self.repaired_by_pod_delete is not None)
        return back_ok and (self.applied is not None or by_design) and served and not lost

    def verdict(self) -> str:
        if not self.expected.comes_back and self.back is None:
            return "stays down (by design)"
        if not self.expected.models_come_back and any(x.startswith("model/") for x in self.lost):
            return "models stay unloaded (as the release)"
        return "ok" if self.ok else "FAILED"


def replace_pod(server: _server.Server, names: list[str], models: dict[str, _server.Model],
                timeout: float) -> Optional[float]:
    """What the doctor tells a user whose models a restarted Triton lost: delete the pod; seconds until all serve."""
    start = time.monotonic()
    core = client.CoreV1Api(server.kube)
    for pod in core.list_namespaced_pod(_server.NS, label_selector=f"{server.group.isvc_label}={_server.SERVER}").items:
        core.delete_namespaced_pod(pod.metadata.name, _server.NS)
    try:
        poll_until(lambda: settled(server, names, models), "every model served after the pod was replaced", timeout, 0.2,
                   paced=False)
    except WaitTimeout:
        return None
    return time.monotonic() - start


def kill_one(server: _server.Server, profile: Profile, part: str, tiny: _server.Model, traffic: Traffic,
             models: dict[str, _server.Model], timeout: float) -> Outcome:
    stack = server.stack
    expected = recovery.after_kill(profile, part)
    out = Outcome(profile.name, part, expected)
    try:
        poll_until(lambda: settled(server, list(models), models), f"the stack settled before killing {part}",
                   timeout, 0.2, paced=False)
    except WaitTimeout as exc:
        out.notes.append(f"not settled before the kill: {exc}")
    before = inventory(server)
    before_models = server.ready_models(server.triton_url())
    old = record_of(stack, part)
    name = f"during-{part.replace('_', '-')}"
    server.apply(name, tiny)
    t0 = time.monotonic()
    os.killpg(old["pid"], signal.SIGKILL)  # its process group: what a kubelet's container kill reaches

    stays_down = not expected.comes_back
    times = first_true(t0, {
        "back": (healthy_again(server, part, old["pid"]), 10.0 if stays_down else timeout),
        "applied": (lambda: server.ready("trainedmodels", name, server.new_client())
                    and server.served(server.triton_url(), name), timeout),
        "serving": (lambda: settled(server, [*models, name], {**models, name: tiny}),
                    timeout if expected.models_come_back else 20.0)}, out.notes)
    out.back, out.applied, out.serving = times["back"], times["applied"], times["serving"]
    if stays_down and out.back is None:
        out.notes = [f"stays down, as designed: {expected.why}"]
    end = time.monotonic()
    out.requests, out.failed, out.longest = traffic.since(t0, end)
    after_models = server.ready_models(server.triton_url())
    out.lost = sorted(before - inventory(server)) + [f"model/{m}" for m in sorted(before_models - after_models)]
    if out.lost and not expected.models_come_back:
        out.notes.append(f"as the release: {expected.why}")
        out.repaired_by_pod_delete = replace_pod(server, [*models, name], {**models, name: tiny}, timeout)
    record = record_of(stack, part)
    out.restarts, out.last_exit = record.get("restarts", 0), record.get("last_exit", "")
    if stays_down:
        start = time.monotonic()
        stack.up(say=lambda _m: None)  # what the user does: `python -m helpers.local up`
        out.repaired_by_up = time.monotonic() - start
    server.delete(name)
    try:
        poll_until(lambda: not server.exists(name), f"{name} deleted", timeout, 0.1, paced=False)
    except WaitTimeout as exc:
        out.notes.append(str(exc))
    print(f"  {profile.name} {part}: {out.verdict()}; back {_s(out.back)}, applied {_s(out.applied)}, "
          f"serving {_s(out.serving)}, gateway {out.failed}/{out.requests} failed, lost {out.lost or 'nothing'}"
          + (f", every model served {_s(out.repaired_by_pod_delete)} after the pod was deleted"
             if out.repaired_by_pod_delete is not None else "")
          + "".join(f"\n    {note}" for note in out.notes), flush=True)
    return out


def first_true(t0: float, checks: dict[str, tuple[Callable[[], object], float]], notes: list[str],
               interval: float = 0.05) -> dict[str, Optional[float]]:
    """Seconds from `t0` until each check first holds, all polled side by side (one waiting does not delay
    another's time); None for one that did not hold within its own limit (a note says what it last raised)."""
    found: dict[str, Optional[float]] = {}
    errors: dict[str, str] = {}
    while len(found) < len(checks):
        for label, (check, limit) in checks.items():
            if label in found:
                continue
            try:
                if check():
                    found[label] = time.monotonic() - t0
                    continue
            except Exception as exc:  # noqa: BLE001 - a part still away: not yet
                errors[label] = f"{type(exc).__name__}: {exc}"
            if time.monotonic() - t0 > limit:
                found[label] = None
                notes.append(f"{label}: not within {limit:.0f} s" + (f" (last error: {errors[label]})"
                                                                       if label in errors else ""))
        time.sleep(interval)
    return found


def _s(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f} s"


def run_profile(profile: Profile, parts: list[str], timeout: float, keep: bool,
                stack_dir: Optional[Path]) -> tuple[list[Outcome], Optional[float]]:
    """A stack of `profile`, the guide's steps, then each part killed in turn."""
    print(f"\n{profile.name}: {profile.summary}", flush=True)
    with common.scratch_env(f"mms-bench-chaos-{profile.name}-", keep=keep) as root:
        with common.stack_for(root, stack_dir, profile.name) as (stack, up_s):
            if stack.profile().name != profile.name:
                raise SystemExit(f"the stack at {stack_dir} is a {stack.profile().name} stack, not {profile.name}")
            server = _server.Server(stack)
            server.start(timeout)
            cifar, tiny = server.upload_cifar10(), server.upload("auto")
            server.apply("cifar10", cifar)
            models = {"cifar10": cifar}
            poll_until(lambda: settled(server, ["cifar10"], models), "cifar10 answering through the gateway",
                       timeout, 0.2, paced=False)
            with Traffic(server, "cifar10", cifar) as traffic:
                outcomes = [kill_one(server, profile, part, tiny, traffic, models, timeout) for part in parts]
            server.delete("cifar10")
            triton.forget_clients()
    return outcomes, up_s


def report(results: dict[str, list[Outcome]]) -> None:
    profiles = list(results)
    parts = [o.part for o in next(iter(results.values()))]
    common.heading("Chaos: each part killed in turn (SIGKILL), mid-apply and mid-traffic, per profile")

    def cell(o: Outcome) -> str:
        if not o.expected.comes_back and o.back is None:
            return f"stays down; `up` {_s(o.repaired_by_up)}"
        lost = len(o.lost)
        return (f"{_s(o.back)} / {_s(o.applied)} / {_s(o.serving)} / {o.failed} ({o.longest:.1f} s) / {lost}"
                + ("" if o.ok else " FAILED"))

    rows = [(part, *(cell(next(o for o in results[p] if o.part == part)) for p in profiles)) for part in parts]
    common.table(["KILLED", *profiles], rows,
                 note="Each cell: BACK / APPLIED / SERVING (seconds after the kill) / GATEWAY failed requests "
                      "(longest failing stretch) / LOST.\nBACK: a new process answers its health check. APPLIED: "
                      "the TrainedModel applied at the kill is Ready and loaded.\nSERVING: every TrainedModel Ready "
                      "and both models answer through the gateway. LOST: objects, S3 keys and loaded models\nthat "
                      "were there before the kill and are not after it.")
    for profile in profiles:
        common.heading(f"{profile}: restarts and exits as `status` shows them")
        common.table(["KILLED", "RESTARTS", "LAST EXIT", "REQUESTS", "VERDICT"],
                     [(o.part, o.restarts, o.last_exit or "-", o.requests, o.verdict()) for o in results[profile]])
        for o in results[profile]:
            for note in o.notes:
                print(f"  {o.part}: {note}")
    for profile, outcomes in results.items():
        for o in outcomes:
            common.figure(f"chaos {profile} {o.part}: back / applied / serving",
                          " / ".join(_s(v) for v in (o.back, o.applied, o.serving))
                          + f"; gateway {o.failed} failed; lost {len(o.lost)}; {o.verdict()}", width=56)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the same run (every part, every profile)")
    parser.add_argument("--smoke", action="store_true",
                        help=f"one profile, {' and '.join(SMOKE_PARTS)} killed (the test's run)")
    parser.add_argument("--profiles", nargs="+", choices=sorted(PROFILES), default=None,
                        help="profiles to run (default: all; smoke: the stack's, else the default)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=None, help="parts to kill (default: all)")
    parser.add_argument("--timeout", type=float, default=180, help="seconds to wait for each recovery step")
    parser.add_argument("--keep", action="store_true", help="keep the temporary state folders (logs)")
    parser.add_argument("--stack-dir", type=Path, default=None,
                        help="run on the stack of this state folder (one profile: its own; left running)")
    args = parser.parse_args(argv)
    if args.stack_dir:
        profiles = [Stack(args.stack_dir).profile().name]
    else:
        profiles = args.profiles or ([os.environ.get("MMS_PROFILE") or "kfserving-0.5"] if args.smoke
                                     else sorted(PROFILES))
    parts = args.parts or list(SMOKE_PARTS if args.smoke else PARTS)

    mode = " [smoke]" if args.smoke else " [quick]" if args.quick else ""
    print(f"bench_chaos: {len(parts)} parts killed in turn on {', '.join(profiles)} (issues 13, 26){mode}")
    common.print_machine()
    started = time.monotonic()
    results: dict[str, list[Outcome]] = {}
    for name in profiles:
        results[name], up_s = run_profile(PROFILES[name], parts, args.timeout, args.keep, args.stack_dir)
        if up_s is not None:
            common.figure(f"chaos {name}: stack cold start", f"{up_s:.1f} s", width=56)
    report(results)
    common.figure("bench_chaos wall time", f"{time.monotonic() - started:.1f} s", width=56)
    return 0 if all(o.ok or o.verdict() != "FAILED" for outcomes in results.values() for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
