"""Every part of the stack comes back by itself (issue 26): the gateway's nginx supervised like the
others, what a dead process leaves behind cleaned up, the parts inside the controller listed.

The unit tests start only small Python processes; the others use the session's stack and leave it
as they found it (every part healthy).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import pytest
import requests

from helpers.core.wait import poll_until
from helpers.local.stack import gateway_process, leftovers, parts, process
from helpers.local.stack.stack import ORDER, Stack

# A leader that starts a child in its own session and then waits: the child outlives a SIGKILL of the leader.
LEADER = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); time.sleep(60)"


def test_leftovers_of_a_dead_leader_are_killed_and_a_live_leader_is_left_alone(tmp_path: Path) -> None:
    leader = process.start("leader", [sys.executable, "-c", LEADER], tmp_path / "leader.log", lambda: True)
    children = poll_until(lambda: leftovers.session_members(leader.pid), "the leader's child", timeout=10)
    assert leftovers.kill_leftovers(leader.pid) == []  # the leader runs: its children are its own business
    os.kill(leader.pid, signal.SIGKILL)
    poll_until(lambda: process.exit_reason(leader), "the leader to be reaped", timeout=10)
    assert all(leftovers.leader_alive(pid) for pid in children)  # orphaned, still running
    assert leftovers.clean(leader.pid, "leader") == children
    assert not any(leftovers.leader_alive(pid) for pid in children)
    assert leftovers.session_members(leader.pid) == []


def _host(tmp_path: Path) -> process.ProcessRecord:
    host = process.start("host", [sys.executable, "-c", "import time; time.sleep(60)"], tmp_path / "host.log",
                         lambda: True)
    poll_until(host.alive, "the host to run its program (after fork, before exec it is not)", timeout=10)
    return host


def test_parts_are_healthy_only_with_their_host_running_a_fresh_report_and_an_open_port(tmp_path: Path) -> None:
    import socket

    host = _host(tmp_path)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        parts.publish(tmp_path, host.pid, [parts.Part("kubelet endpoint", port, "https"),
                                           parts.Part("gateway routes", 0, "", False, "nginx -s reload failed: x"),
                                           parts.Part("webhooks", process.free_port(), "https")])
        rows = {row.name: row for row in parts.read(tmp_path, host)}
        assert rows["kubelet endpoint"].healthy and rows["kubelet endpoint"].address == f"https://127.0.0.1:{port}"
        assert not rows["gateway routes"].healthy and "reload failed" in rows["gateway routes"].detail
        assert not rows["webhooks"].healthy and "does not accept" in rows["webhooks"].detail
        stale = parts.read(tmp_path, host, now=time.time() + parts.STALE_AFTER + 1)
        assert not any(row.healthy for row in stale) and "may be stuck" in stale[0].detail
    process.stop(host)
    down = parts.read(tmp_path, host)
    assert not any(row.running for row in down) and all("down with its host" in row.detail for row in down)
    assert all(row.inside == "controller" for row in down)


def test_a_restarted_gateway_keeps_its_port_and_a_fresh_one_prefers_80(tmp_path: Path) -> None:
    port = process.free_port()
    assert gateway_process.choose_port(port, restarting=True, wait=1) == port
    fresh = gateway_process.choose_port(None, restarting=False)
    from helpers.local.cluster.gateway import PREFERRED_PORT, bindable

    assert fresh == PREFERRED_PORT if bindable(PREFERRED_PORT) else fresh != PREFERRED_PORT


# --- on the session's stack -------------------------------------------------------------------------------
def _status(stack: Stack) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "helpers.local", "status"], capture_output=True, text=True,
                          env={**os.environ, "MMS_STATE_DIR": str(stack.root)}, timeout=60)


def _gateway_answers(stack: Stack) -> Optional[str]:
    url = stack.env().get("MMS_INGRESS_URL")
    try:
        return url if url and requests.get(f"{url}/", headers={"Host": "nobody.invalid"}, timeout=2).status_code == 404 \
            else None
    except requests.RequestException:
        return None


def _all_healthy(stack: Stack) -> bool:
    return all(row.healthy for row in stack.status()[:len(ORDER)])


@pytest.mark.stack
def test_status_lists_every_part_with_restarts_and_the_parts_inside_the_controller(stack: Stack) -> None:
    poll_until(lambda: _all_healthy(stack) and len(parts.read(stack.root, stack.records()["controller"])) >= 3,
               "every part healthy and reported", timeout=60)
    out = _status(stack)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = out.stdout.splitlines()
    for name in (*ORDER, "supervisor"):
        row = next(line for line in lines if line.split()[:1] == [name])
        assert " healthy " in row, row
    inside = ["kubelet endpoint", "admission webhooks", "gateway routes"]
    if stack.profile().gateway_auth:
        inside.append("gateway authorizer")
    for name in inside:
        row = next((line for line in lines if line.startswith(f"  {name} (in controller)")), None)
        assert row and " healthy " in row, out.stdout


@pytest.mark.stack
def test_killing_nginx_master_the_gateway_answers_again_within_seconds(stack: Stack) -> None:
    before = stack.records()["gateway"]
    workers = leftovers.session_members(before.pid)
    assert workers, "nginx runs no worker?"
    os.kill(before.pid, signal.SIGKILL)  # the master only: its worker lives on, as on a real machine
    killed = time.monotonic()

    def back() -> Optional[process.ProcessRecord]:
        now = stack.records()["gateway"]
        return now if now.pid != before.pid and _gateway_answers(stack) else None

    after = poll_until(back, "the gateway to answer again", timeout=30, interval=0.05)
    assert time.monotonic() - killed < 10
    assert after.restarts == before.restarts + 1 and after.last_exit == "killed by SIGKILL"
    assert after.ports == before.ports  # the old worker was stopped, so the port was free again
    assert not any(leftovers.leader_alive(pid) for pid in workers)
    assert json.loads(gateway_process.record_file(stack.root).read_text())["pid"] == after.pid
    log = (stack.logs / "supervisor.log").read_text()
    assert f"gateway (pid {before.pid}) ended: killed by SIGKILL" in log


@pytest.mark.stack
def test_up_repairs_a_killed_gateway_when_no_supervisor_runs(stack: Stack) -> None:
    sup = stack.supervisor_record()
    process.stop(sup)  # nothing restarts a dead part now
    gateway = stack.records()["gateway"]
    os.killpg(gateway.pid, signal.SIGKILL)
    poll_until(lambda: not gateway.alive(), "nginx to be gone", timeout=10)
    assert _gateway_answers(stack) is None
    stack.up(say=lambda _m: None)
    assert stack.supervisor_record().alive() and stack.records()["gateway"].pid != gateway.pid
    assert _gateway_answers(stack)
    poll_until(lambda: _all_healthy(stack), "every part healthy", timeout=60)
    # The new supervisor adopted the running parts: only their parent learns how they end. Hand the
    # session's stack back as it was, every part a child of its supervisor (tests read exit reasons).
    stack.down(say=lambda _m: None)
    stack.up(say=lambda _m: None)
