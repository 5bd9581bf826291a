"""06 on a cluster shows what a local run recorded (`recorded.json`): in Korean, the comments 06 wrote
after its commands and the doctor's check names are Korean; commands, log lines and kubectl's output stay
exactly as recorded, and the recording itself is not rewritten (it holds the run's English)."""
from __future__ import annotations

import json
import re
from typing import Iterator

import pytest

from helpers.core import i18n
from helpers.steps.troubleshoot import pitfalls

HANGUL = re.compile("[가-힣]")


@pytest.fixture
def language() -> Iterator[callable]:
    yield i18n.set_language
    i18n.set_language(None)


def _replayed(found: dict, capsys: pytest.CaptureFixture) -> str:
    for name in pitfalls.ALL:
        pitfalls.replay(name, found)
    return capsys.readouterr().out


def _commands_and_comments(out: str) -> tuple[list[str], list[str]]:
    """The shown command lines without their comments, and the comments (after `$ ...  # ` or alone on a
    continuation line)."""
    commands, comments, going_on = [], [], False
    for line in out.splitlines():
        if line.startswith("$ ") or going_on:  # a command, or the rest of one wrapped with a backslash
            going_on = line.endswith("\\")
            alone = line.lstrip().startswith("# ")
            command, _sep, comment = ("", "", line.lstrip()[2:]) if alone else line.partition(" # ")
            commands.append(command.rstrip(" \\"))
            if comment:
                comments.append(comment)
    return [c for c in commands if c], comments


def test_the_recorded_comments_and_check_names_are_said_in_korean(capsys, language) -> None:
    english = _replayed(pitfalls.recorded(), capsys)
    language("ko")
    korean = _replayed(pitfalls.recorded(), capsys)
    en_commands, en_comments = _commands_and_comments(english)
    ko_commands, ko_comments = _commands_and_comments(korean)
    assert set(en_comments) == set(pitfalls._comments(str).values())  # every comment 06 writes is recorded
    assert ko_comments and all(HANGUL.search(comment) for comment in ko_comments), ko_comments
    assert "".join(ko_commands).replace(" ", "") == "".join(en_commands).replace(" ", "")  # the commands as recorded
    named = [line for line in korean.splitlines() if line.startswith("doctor(진단 도구)가 찾아냈습니다:")]
    assert len(named) == len(pitfalls.ALL) and all(HANGUL.search(line.split(":", 1)[1]) for line in named), named
    assert "doctor(진단 도구)가 찾아냈습니다: S3 리전 (s3-region)" in named
    assert "Failed to download model doctor-cifar" in korean and "Ready=True" in korean  # log lines, kubectl output
    assert not HANGUL.search(pitfalls.RECORDED.read_text())  # the recording keeps the run's own words


def test_a_recording_made_in_korean_reads_in_english(capsys, language) -> None:
    language("ko")
    korean = {key: text for key, text in pitfalls._comments().items()}
    found = json.loads(json.dumps(pitfalls.recorded()))
    english = pitfalls._comments(str)
    for blocks in found["pitfalls"].values():
        for block in blocks:
            if block["kind"] == "shell":
                for key, text in english.items():
                    block["command"] = block["command"].replace(f"  # {text}", f"  # {korean[key]}")
    assert any(korean["gone"] in b.get("command", "") for blocks in found["pitfalls"].values() for b in blocks)
    language("en")
    _commands, comments = _commands_and_comments(_replayed(found, capsys))
    assert set(comments) == set(english.values())


def test_a_comment_06_did_not_write_stays_as_recorded(language) -> None:
    language("ko")
    command = "kubectl get pods  # something else\n# a bucket that does not exist\nkubectl apply -f x.yaml"
    assert pitfalls._said_again(command) == "kubectl get pods  # something else\n# 없는 버킷\nkubectl apply -f x.yaml"
