"""tests/support/scheduling.py: which worker gets which test file, driven through xdist's own scheduler."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from support.scheduling import StackAffinityScheduling


class Worker:
    """What the scheduler calls on an xdist worker: the test indices it sends, and shutdown."""

    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.sent: list[int] = []
        self.shutting_down = False

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent.extend(indices)

    def shutdown(self) -> None:
        self.shutting_down = True


def scheduler(tmp_path: Path, files: dict[str, int], workers: int) -> tuple[StackAffinityScheduling, list[Worker]]:
    """Test files of `files[name]` tests each, none asking for a stack, collected in this order."""
    for name in files:
        (tmp_path / name).write_text("def test_it():\n    pass\n")
    config = SimpleNamespace(option=SimpleNamespace(loadscopereorder=True), rootpath=tmp_path,
                             getvalue=lambda name: [f"{workers}*popen"])
    sched = StackAffinityScheduling(config)
    nodes = [Worker(f"gw{i}") for i in range(workers)]
    collection = [f"{name}::test_{i}" for name, count in files.items() for i in range(count)]
    for node in nodes:
        sched.add_node(node)
        sched.add_node_collection(node, collection)
    sched.schedule()
    return sched, nodes


def files_sent(sched: StackAffinityScheduling, node: Worker) -> list[str]:
    files: list[str] = []
    for index in node.sent:
        name = sched.collection[index].split("::")[0]
        if name not in files:
            files.append(name)
    return files


def test_behind_a_one_test_file_waits_the_quickest_file_not_the_next_slow_one(tmp_path: Path) -> None:
    sched, (first, second) = scheduler(
        tmp_path, {"test_six_minutes.py": 1, "test_slow.py": 5, "test_medium.py": 5, "test_quick.py": 3}, workers=2)
    assert files_sent(sched, first) == ["test_six_minutes.py", "test_quick.py"]
    assert files_sent(sched, second) == ["test_slow.py"]


def test_a_file_that_has_finished_a_test_is_followed_by_the_next_in_order(tmp_path: Path) -> None:
    sched, (node,) = scheduler(tmp_path, {"test_a.py": 4, "test_b.py": 3, "test_c.py": 3}, workers=1)
    assert files_sent(sched, node) == ["test_a.py"]
    for index in node.sent[:2]:  # two of test_a's four tests done: two left, the next file is sent
        sched.mark_test_complete(node, index)
    assert files_sent(sched, node) == ["test_a.py", "test_b.py"]
