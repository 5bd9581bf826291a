"""`walkthrough.run_notebook` starts a second kernel only when the first never answered."""
from __future__ import annotations

from pathlib import Path

import pytest

from helpers.tools import walkthrough


def _run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failures: list[Exception]) -> tuple[walkthrough.Run, int]:
    calls = []

    def execute(*_args, **_kwargs) -> None:
        calls.append(1)
        if failures:
            raise failures.pop(0)

    monkeypatch.setattr("papermill.execute_notebook", execute)  # imported here, not at collection
    run = walkthrough.run_notebook(tmp_path / "00_x.ipynb", tmp_path / "out", {})
    return run, len(calls)


def test_a_kernel_that_died_before_answering_is_started_once_more(monkeypatch, tmp_path) -> None:
    run, calls = _run(monkeypatch, tmp_path, [RuntimeError("Kernel died before replying to kernel_info")])
    assert run.ok and calls == 2
    assert "starting a new kernel (2/2)" in (tmp_path / "out" / "kernels.log").read_text()


def test_a_second_dead_kernel_is_reported(monkeypatch, tmp_path) -> None:
    dead = RuntimeError("Kernel died before replying to kernel_info")
    run, calls = _run(monkeypatch, tmp_path, [dead, dead])
    assert not run.ok and calls == 2 and "Kernel died" in run.error


def test_a_failing_cell_is_not_run_again(monkeypatch, tmp_path) -> None:
    run, calls = _run(monkeypatch, tmp_path, [ValueError("bucket mms does not exist")])
    assert not run.ok and calls == 1 and run.error == "bucket mms does not exist"


def test_the_executed_notebook_is_written_at_its_start_at_most_every_two_seconds_and_at_its_end(monkeypatch,
                                                                                                 tmp_path) -> None:
    import datetime

    import nbformat

    from helpers.tools import paced_engine

    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    clock = [start]
    writes: list[float] = []
    monkeypatch.setattr("papermill.engines.write_ipynb",
                        lambda _nb, _path: writes.append((clock[0] - start).total_seconds()))
    monkeypatch.setattr(paced_engine.PacedManager, "now", lambda _self: clock[0])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1", metadata={"papermill": {}})],
                                  metadata={"papermill": {}})  # as papermill's parameterising leaves it
    manager = paced_engine.PacedManager(nb, output_path=str(tmp_path / "out.ipynb"), progress_bar=False)
    manager.notebook_start()
    for step in (0.5, 0.5, 0.5, 1.0, 0.1):  # cells starting and ending: a save asked each time
        clock[0] += datetime.timedelta(seconds=step)
        manager.save()
    manager.notebook_complete()
    assert writes == [0.0, 2.5, 2.6]  # the start, the first ask 2 s after it, the end however soon
