"""The kubelet endpoint's log reading, without any process: runs in one log file, query options."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from helpers.core.constants import KFSERVING_GROUP, KSERVE_GROUP, api_group
from helpers.local.cluster import kubelet
from helpers.local.cluster.gateway import render_config
from helpers.local.controller.pods import pod_name, revision

LOG = (
    "\n=== 2026-12-01T03:51:57 starting triton-mms.triton-mms: /bin/tritonserver\n"
    "I1201 03:51:57.865968 100 http_server.cc:4713] \"Started HTTPService at 127.0.0.1:8000\"\n"
    "I1201 03:51:58.000001 100 model_lifecycle.cc:839] \"successfully loaded 'cifar10'\"\n"
    "\n=== 2026-12-01T03:52:29 starting triton-mms.triton-mms: /bin/tritonserver\n"
    "I1201 03:52:30.100000 200 http_server.cc:4713] \"Started HTTPService at 127.0.0.1:8000\"\n"
)


def read(path: Path, run: int = -1, query: str = "") -> str:
    source = kubelet.ContainerLog(path, run, lambda: False)
    return b"".join(kubelet.read_log(source, kubelet.Options.parse(query))).decode()


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "triton.log"
    path.write_text(LOG)
    return path


def test_each_start_header_opens_a_run_and_stays_out_of_the_log(log: Path) -> None:
    assert len(kubelet.runs(log)) == 2
    current = read(log)
    assert current.splitlines() == ['I1201 03:52:30.100000 200 http_server.cc:4713] "Started HTTPService at 127.0.0.1:8000"']
    previous = read(log, -2)
    assert " 100 " in previous and "successfully loaded 'cifar10'" in previous and "===" not in previous
    assert previous.endswith("\"\n")


def test_tail_lines_timestamps_and_since(log: Path) -> None:
    assert read(log, -2, "tailLines=1").count("\n") == 1
    stamped = read(log, -2, "timestamps=true").splitlines()
    local = datetime(2026, 12, 1, 3, 51, 57, 865968).astimezone(timezone.utc)
    assert stamped[0].startswith(local.strftime("%Y-%m-%dT%H:%M:%S.%f"))
    assert read(log, -2, "sinceTime=2100-01-01T00:00:00Z") == ""


def test_a_json_line_carries_its_own_time() -> None:
    moment = kubelet.line_time('{"level":"info","ts":1796097118.5,"msg":"x"}', datetime.now(timezone.utc))
    assert moment == datetime.fromtimestamp(1796097118.5, timezone.utc)
    fallback = datetime(2020, 1, 1, tzinfo=timezone.utc)
    assert kubelet.line_time("no time here", fallback) == fallback


def test_previous_without_a_second_run_is_a_bad_request(tmp_path: Path) -> None:
    path = tmp_path / "agent.log"
    path.write_text("\n=== 2026-12-01T03:51:57 starting agent: /bin/python\nline\n")
    with pytest.raises(kubelet.LogError) as refused:
        read(path, -2)
    assert refused.value.status == 400


def test_follow_streams_new_lines_and_ends_at_a_restart(log: Path) -> None:
    source = kubelet.ContainerLog(log, -1, lambda: True)
    stream = kubelet.read_log(source, kubelet.Options.parse("follow=true&tailLines=0"), threading.Event())
    with open(log, "a") as out:
        out.write("I1201 03:52:31.000000 200 x.cc:1] \"new line\"\n")
        out.write("\n=== 2026-12-01T03:53:00 starting triton-mms.triton-mms: /bin/tritonserver\nnext run\n")
    assert b"".join(stream).decode() == 'I1201 03:52:31.000000 200 x.cc:1] "new line"\n'


def test_gateway_config_routes_hosts_and_404s_the_rest(tmp_path: Path) -> None:
    text = render_config(tmp_path, 80, {"a.ns.example.com": "127.0.0.1:9001", "b.ns.example.com": "127.0.0.1:9002"},
                         tmp_path / "access.log")
    assert "listen 127.0.0.1:80 default_server;" in text and "return 404;" in text
    assert "server_name a.ns.example.com;" in text and "proxy_pass http://127.0.0.1:9002;" in text
    assert "proxy_set_header Host $host;" in text and "daemon off;" in text


def test_pod_names_as_knative_names_them() -> None:
    kfs, kserve = api_group(KFSERVING_GROUP), api_group(KSERVE_GROUP)
    assert revision(kfs, "triton-mms") == "triton-mms-predictor-default-00001"
    assert pod_name(kfs, "triton-mms", "uid/1").startswith("triton-mms-predictor-default-00001-deployment-")
    assert revision(kserve, "tri-b") == "tri-b-predictor-00001"
    one, two = pod_name(kfs, "x", "uid/1"), pod_name(kfs, "x", "uid/1")
    assert one.rsplit("-", 1)[0] == two.rsplit("-", 1)[0] and len(one.rsplit("-", 1)[1]) == 5


def test_since_seconds_counts_back_from_now() -> None:
    options = kubelet.Options.parse("sinceSeconds=60")
    assert abs((datetime.now(timezone.utc) - options.since) - timedelta(seconds=60)) < timedelta(seconds=5)
