"""`python -m helpers.local status` in English and in Korean, read from a recorded state folder.

The folder holds what a stack leaves when its processes are gone (their records, the controller's
parts and cgroup findings, one server's Triton), so every row is DOWN and every detail line shows:
the Korean table says the same facts as the English one, lines up in terminal cells, and keeps only
identifiers (component names, PIDs, addresses, commands, reasons) in English.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

from helpers.core import i18n
from helpers.core.show import text_width
from helpers.local import __main__ as cli
from helpers.local.cluster import cgroups, gateway, node
from helpers.local.controller import parts_report
from helpers.local.stack import parts, releases
from helpers.local.stack.process import ProcessRecord
from helpers.local.stack.stack import ORDER

GONE = 2 ** 22 + 12345  # above pid_max's default: no process has it


@pytest.fixture
def language() -> Iterator[callable]:
    yield i18n.set_language
    i18n.set_language(None)


def _record(name: str, pid: int, **extra) -> dict:
    return ProcessRecord(name, pid, ["/nonexistent/mms-test-program"], f"/tmp/{name}.log", **extra).to_json()


@pytest.fixture
def recorded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A state folder whose stack and controller are gone (the profile's node size, no ConfigMap delay)."""
    monkeypatch.delenv(releases.PROFILE_ENV, raising=False)
    processes = {name: _record(name, GONE + i, ports={"main": 40000 + i}) for i, name in enumerate(ORDER)}
    processes["etcd"].update(restarts=2, last_exit="killed by SIGKILL")
    (tmp_path / "stack.json").write_text(json.dumps({"profile": "kfserving-0.5", "processes": processes,
                                                     "ports": {}}))
    (tmp_path / "supervisor.process.json").write_text(json.dumps(_record("supervisor", GONE + 99)))
    controller = processes["controller"]["pid"]
    parts.publish(tmp_path, controller, [parts.Part("kubelet endpoint", 40100, "https"),
                                         parts.Part("gateway routes", 0, "", True, "nginx pid 7: 2 host(s) routed")])
    cgroups.publish(tmp_path, cgroups.Probe(None, "not-root"))
    server = tmp_path / "servers" / "mms.triton-mms"
    server.mkdir(parents=True)
    (server / "processes.json").write_text(json.dumps({"triton": _record("triton", GONE + 50, restarts=1,
                                                                         last_exit="exit code 137")}))
    return tmp_path


def _status(folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> tuple[int, str]:
    monkeypatch.setenv("MMS_STATE_DIR", str(folder))
    code = cli.main(["status"])
    return code, capsys.readouterr().out


def _table(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] in (["COMPONENT"], ["구성"]))
    end = next(i for i, line in enumerate(lines) if "TorchScript" in line)
    return lines[start:end]


def test_status_in_english_names_every_fact(recorded, monkeypatch, capsys) -> None:
    code, out = _status(recorded, monkeypatch, capsys)
    assert code == 1  # nothing runs
    assert "profile:      kfserving-0.5: the guide's cluster: a Kubeflow 1.0.x layout" in out
    assert "node:         32 cpu, 256Gi allocatable (kfserving-0.5 default)" in out
    assert "              memory limits: NOT enforced (not root: only root may make cgroups here)" in out
    assert "configmap:    modelconfig-<isvc>-0 reaches the agent at once" in out
    table = _table(out)
    assert table[0].split() == ["COMPONENT", "STATE", "PID", "RESTARTS", "ADDRESS"]
    etcd = next(line for line in table if line.startswith("etcd "))
    assert etcd.split()[:4] == ["etcd", "DOWN", str(GONE + 1), "2"]
    assert "last exit: killed by SIGKILL" in out
    assert f"not running (was pid {GONE + 1}); `python -m helpers.local up` restarts it" in out
    assert "not running: nothing restarts a component that dies" in out
    assert any(line.startswith("  kubelet endpoint (in controller)") and " stopped " not in line for line in table)
    assert "down with its host, the controller" in out
    assert "last exit: exit code 137" in out and "the controller restarts it" in out


def test_status_in_korean_keeps_only_identifiers_in_english(recorded, monkeypatch, capsys, language) -> None:
    language("ko")
    code, out = _status(recorded, monkeypatch, capsys)
    assert code == 1
    table = _table(out)
    assert table[0].split() == ["구성", "요소", "상태", "PID", "재시작", "주소"]
    etcd = next(line for line in table if line.startswith("etcd "))
    assert etcd.split()[:4] == ["etcd", "중단됨", str(GONE + 1), "2"]  # names, PIDs and counts as they are
    assert "마지막 종료: SIGKILL 신호로 종료됨" in out and "마지막 종료: 종료 코드 137" in out
    assert "  kubelet 엔드포인트 (controller 내부)" in out
    assert "가이드의 클러스터" in out and "메모리 제한: 적용되지 않음" in out and "할당 가능" in out
    assert "`python -m helpers.local up`" in out  # commands stay as typed
    # No English sentence is left: without code spans, paths, names with digits or punctuation, and
    # all-caps words (PID, API, CRD), no three English words follow one another.
    for line in out.splitlines():
        if line.startswith(("TorchScript", "TensorFlow")):
            continue  # the backend lines (torch_backend, tf_backend) name their backends
        plain = re.sub(r"`[^`]*`", " ", line)
        plain = " ".join(word for word in plain.split() if not re.search(r"[/.:\-_=<>0-9]|^[A-Z]+$", word))
        assert not re.search(r"\b[A-Za-z]+,? [A-Za-z]+,? [A-Za-z]+\b", plain), line


def test_korean_status_lines_up_with_hangul_names(recorded, monkeypatch, capsys, language) -> None:
    """Columns are counted in terminal cells (a Hangul syllable takes two), as the English ones line up."""
    language("ko")
    _code, out = _status(recorded, monkeypatch, capsys)
    table = _table(out)
    cells = re.compile(r"^(?P<name>.*?) +(?P<state>상태|정상|실행 중|중단됨|멈춤) +(?P<pid>PID|\d+|-) "
                       r"+(?P<restarts>재시작|\d+|-)  ")
    rows = [cells.match(line) for line in table if not line.startswith(" " * 20)]
    assert all(rows) and len(rows) == len(ORDER) + 1 + 1 + 2 + 1, table  # header, supervisor, 2 parts, triton
    for group in ("state", "pid", "restarts"):
        edge = "start" if group == "state" else "end"
        found = {text_width(row.string[:getattr(row, edge)(group)]) for row in rows}
        assert len(found) == 1, (group, table)
    head = out.splitlines()[:5]
    starts = {text_width(line) - text_width(line.split(": ", 1)[1].lstrip()) for line in head if ": " in line[:8]}
    starts.add(text_width(head[3]) - text_width(head[3].lstrip()))  # the memory line, under the values
    assert len(starts) == 1, head


def test_logs_and_describe_stay_english_while_status_speaks_korean(language) -> None:
    language("ko")
    profile = releases.get("kfserving-0.5")
    assert profile.describe == "kfserving-0.5: " + releases.summaries(str)["kfserving-0.5"]
    assert profile.describe.startswith("kfserving-0.5: the guide's cluster")  # the controller's log keeps it
    assert profile.shown.startswith("kfserving-0.5: 가이드의 클러스터")
    assert set(releases.summaries()) == set(releases.PROFILES)
    assert node.shown_source("cpu from kfserving-0.5 default, memory from --node-memory") == \
        "cpu는 kfserving-0.5 기본값, 메모리는 --node-memory에서"
    assert node.shown_source("MMS_NODE_CPU") == "MMS_NODE_CPU"


def test_what_the_controller_publishes_in_english_is_shown_in_korean(tmp_path, language) -> None:
    """The part details come from the controller (`parts_report`, the gateway's `health`), in English:
    each is found by `parts.shown`, so a changed message there shows up here as untranslated."""
    stopped = parts_report.collect(tmp_path, 1, 2, lambda: (True, ""), metrics_port=3)  # no thread runs here
    gw = gateway.Gateway(tmp_path, tmp_path)
    texts = [p.detail for p in stopped if p.detail]
    gw.binary = None
    texts.append(gw.health()[1])
    gw.binary = Path("/usr/sbin/nginx")
    texts.append(gw.health()[1])  # no nginx runs
    gw.record = ProcessRecord("gateway", os.getpid(), [Path(f"/proc/{os.getpid()}/cmdline").read_bytes()
                                                      .split(b"\0")[0].decode()], "", {"http": 80}, time.time())
    gw.routes = {"a.example.com": "127.0.0.1:1"}
    texts.append(gw.health()[1])
    gw.error = "nginx -s reload failed: nginx: [emerg] unexpected end of file"
    texts.append(gw.health()[1])
    assert len(texts) >= 6 and "1 host(s) routed" in texts[-2], texts
    language("ko")
    for text in texts:
        shown = parts.shown(text, parts._details)
        assert shown != text and re.search("[가-힣]", shown), text
    assert parts.shown(texts[-1], parts._details).endswith("nginx: [emerg] unexpected end of file")  # nginx's words
    assert [parts.shown_name(p.name) for p in stopped] == ["kubelet 엔드포인트", "어드미션 웹훅", "메트릭 API",
                                                           "게이트웨이 인가 서버", "게이트웨이 라우트"]


def test_the_memory_limits_line_is_said_again_in_the_readers_language(tmp_path, language) -> None:
    cgroups.publish(tmp_path, cgroups.Probe(cgroups.Hierarchy("v2", Path("/sys/fs/cgroup/x"))))
    language("ko")
    found = cgroups.published_probe(tmp_path)
    assert found.line().startswith("메모리 제한: 적용됨 (/sys/fs/cgroup/x 아래의 cgroup v2)")
    language("en")
    assert found.line().startswith("memory limits: enforced (cgroup v2 under /sys/fs/cgroup/x)")
    assert cgroups.published(tmp_path)["line"].startswith("메모리 제한") is False  # written in English here
    (tmp_path / cgroups.RECORD).write_text(json.dumps({"line": "memory limits: enforced (old)", "usable": True}))
    assert cgroups.published_probe(tmp_path) is None  # a controller of an older version: its own line is shown


if sys.platform != "linux":  # the recorded PIDs are checked in /proc
    pytestmark = pytest.mark.skip("reads /proc")
