"""The embedded stack as a user drives it: up, status, env, logs, down, and what survives."""
from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import sys
from typing import Optional

import psutil
import pytest
import requests
from kubernetes import client

from helpers.clients import storage
from helpers.core.errors import SetupError
from helpers.core.wait import poll_until
from helpers.local.cluster import gateway
from helpers.local.cluster.gateway import OPEN_ADDRESS
from helpers.local.stack import leftovers, process
from helpers.local.stack.process import free_port
from helpers.local.stack.stack import ORDER, Component, Stack

pytestmark = pytest.mark.stack


def s3_client(stack: Stack, **override) -> "storage.Minio":
    creds = stack.s3_credentials()
    settings = storage.S3Settings(stack.env()["MMS_S3_ENDPOINT"], override.get("access_key", creds.access_key),
                                  override.get("secret_key", creds.secret_key))
    return storage.connect(settings)


def test_every_component_healthy(stack: Stack) -> None:
    rows = {row.name: row for row in stack.status()}
    for name in ORDER:
        assert rows[name].running and rows[name].healthy, rows[name]


def test_up_on_running_stack_changes_nothing(stack: Stack) -> None:
    before = {name: rec.pid for name, rec in stack.records().items()}
    stack.up(say=lambda _m: None)
    assert {name: rec.pid for name, rec in stack.records().items()} == before


def test_listeners_bind_loopback_only(stack: Stack) -> None:
    pids = {rec.pid for rec in stack.records().values()} | {rec.pid for rec in stack.server_records().values()}
    procs = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]
    procs += [child for proc in list(procs) for child in proc.children(recursive=True)]
    listening = [(proc.name(), conn.laddr) for proc in procs
                 for conn in proc.net_connections(kind="inet") if conn.status == psutil.CONN_LISTEN]
    assert listening, "the stack listens on nothing?"
    def ipv4(ip: str) -> str:  # gRPC reports an IPv4-mapped IPv6 address (::ffff:127.0.0.1)
        parsed = ipaddress.ip_address(ip)
        return str(getattr(parsed, "ipv4_mapped", None) or parsed)

    # Everything on 127.0.0.1, but the guide's unguarded kfserving-ingressgateway: a second gateway on
    # port 80 needs an address of its own, 127.0.0.2 (loopback too, so nothing outside reaches it).
    allowed = {"127.0.0.1", OPEN_ADDRESS} if stack.profile().kfserving_gateway else {"127.0.0.1"}
    assert all(ipv4(addr.ip) in allowed for _name, addr in listening), listening


def test_apiserver_refuses_anonymous_requests(stack: Stack) -> None:
    port = stack.records()["kube-apiserver"].ports["https"]
    answer = requests.get(f"https://127.0.0.1:{port}/api/v1/namespaces", verify=str(stack.cp.cert), timeout=5)
    assert answer.status_code == 401


def test_secrets_stay_in_files_with_mode_0600(stack: Stack) -> None:
    creds = stack.s3_credentials()
    assert stack.s3_credentials_file.stat().st_mode & 0o777 == 0o600
    assert stack.cp.tokens.stat().st_mode & 0o777 == 0o600
    assert stack.kubeconfig.stat().st_mode & 0o777 == 0o600
    shown = "\n".join(stack.env().values())
    assert creds.secret_key not in shown and creds.access_key not in shown
    for log in stack.logs.glob("*.log"):
        assert creds.secret_key not in log.read_text(errors="replace"), log


def test_cli_status_env_logs(stack: Stack) -> None:
    env = {**os.environ, "MMS_STATE_DIR": str(stack.root)}
    run = lambda *args: subprocess.run([sys.executable, "-m", "helpers.local", *args], env=env,
                                       capture_output=True, text=True, timeout=60)
    status = run("status")
    assert status.returncode == 0, status.stdout + status.stderr
    for name in ORDER:
        assert name in status.stdout
    exports = run("env").stdout
    assert f"export KUBECONFIG={stack.kubeconfig}" in exports
    logs = run("logs", "s3").stdout
    assert f"==> {stack.logs / 's3.log'} <==" in logs and len(logs.splitlines()) > 1


def test_kubectl_reaches_the_stack(stack: Stack) -> None:
    out = subprocess.run(["kubectl", "--kubeconfig", str(stack.kubeconfig), "get", "svc", "-l", "app=minio",
                          "-o", "name", "-n", "kubeflow"], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "service/minio-service", out.stderr


def test_data_and_manifests_survive_down_and_up(stack: Stack, kube) -> None:
    s3 = s3_client(stack)
    storage.ensure_bucket(s3, "survivor")
    s3.put_object("survivor", "kept.txt", __import__("io").BytesIO(b"still here"), 10)
    core = client.CoreV1Api(kube)
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="survivor"), data={"k": "v"})
    core.create_namespaced_config_map("default", body)
    creds = stack.s3_credentials()
    nginx = stack.records()["gateway"]

    stopped = stack.down(say=lambda _m: None)
    assert stopped[0] == "supervisor" and set(ORDER) <= set(stopped)  # nothing restarts while stopping
    assert not any(rec.alive() for rec in stack.records().values())
    # nginx too, with its workers: its port is free for the next stack (issue 26)
    assert not nginx.alive() and not leftovers.session_members(nginx.pid)
    assert gateway.bindable(nginx.ports["http"]) or nginx.ports["http"] == gateway.PREFERRED_PORT
    stack.up(say=lambda _m: None)

    assert stack.s3_credentials() == creds
    assert s3_client(stack).get_object("survivor", "kept.txt").read() == b"still here"
    from kubernetes import config as kconfig

    fresh = client.CoreV1Api(kconfig.new_client_from_config(config_file=str(stack.kubeconfig)))
    assert fresh.read_namespaced_config_map("survivor", "default").data == {"k": "v"}


@pytest.mark.parametrize("name", ORDER)
def test_a_killed_component_comes_back_by_itself_with_a_higher_restart_count(stack: Stack, name: str) -> None:
    before = stack.records()[name]
    os.killpg(before.pid, signal.SIGKILL)

    def back() -> Optional[process.ProcessRecord]:
        now = stack.records()[name]
        return now if now.pid != before.pid and now.alive() else None

    after = poll_until(back, f"the supervisor to restart {name}", timeout=120, interval=0.1)
    assert after.restarts == before.restarts + 1
    assert after.last_exit == "killed by SIGKILL"
    assert after.ports == before.ports  # the old address is waited for, so clients keep working
    poll_until(lambda: all(r.healthy for r in stack.status()[:len(ORDER)]), "every component healthy", timeout=120)
    row = next(r for r in stack.status() if r.name == name)
    assert row.restarts == after.restarts and row.last_exit == "killed by SIGKILL"
    log = (stack.logs / "supervisor.log").read_text()
    assert f"{name} (pid {before.pid}) ended: killed by SIGKILL" in log  # the supervisor did it, not `up`
    if name == "s3":
        assert storage.bucket_exists(s3_client(stack), "survivor")


def test_up_with_a_supervisor_running_changes_nothing_and_status_shows_it(stack: Stack) -> None:
    sup = stack.supervisor_record()
    assert sup is not None and sup.alive()
    stack.up(say=lambda _m: None)
    assert stack.supervisor_record().pid == sup.pid
    assert next(r for r in stack.status() if r.name == "supervisor").running


def test_start_waits_for_a_component_that_is_still_shutting_down(stack: Stack, tmp_path) -> None:
    # A process that takes a moment to exit after SIGTERM, as etcd or the apiserver do.
    slow = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.5), sys.exit(0))); time.sleep(60)"
    started = process.start("slow", [sys.executable, "-c", slow], tmp_path / "slow.log", lambda: True)
    os.kill(started.pid, signal.SIGTERM)
    component = Component("slow", lambda *_: started, lambda _stack, _rec: False)
    assert stack._settled(component, started) is False  # not healthy: it must be started anew ...
    assert not started.alive()  # ... and only once the old one is gone
    process.stop(started)


def test_port_in_use_names_the_port_and_the_setting(stack: Stack, tmp_path, monkeypatch) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        monkeypatch.setenv("MMS_S3_PORT", str(port))
        other = Stack(tmp_path / "other")
        with pytest.raises(SetupError) as err:
            other.up(say=lambda _m: None)
    assert str(port) in str(err.value) and "MMS_S3_PORT" in str(err.value)
    assert not any(rec.alive() for rec in other.records().values())
    assert all(r.healthy for r in stack.status()[:len(ORDER)])  # the running stack is untouched


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
