"""The kubelet-like ConfigMap delay: when `models.json` reaches the agent's folder, with a fake clock."""
from __future__ import annotations

import pytest

from helpers.core.errors import SetupError
from helpers.core.wait import poll_until
from helpers.local.cluster import projection


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup(tmp_path):
    clock, delay = Clock(), {"s": 60.0}
    projector = projection.Projector(lambda: delay["s"], clock)
    path = tmp_path / "ns.server" / "configs" / "models.json"
    path.parent.mkdir(parents=True)
    path.write_text("[]")
    yield projector, path, clock, delay
    projector.stop()


def test_a_change_reaches_the_file_only_after_the_delay(setup):
    projector, path, clock, _ = setup
    projector.project(path, '["a"]')
    clock.now += 59.0
    assert projector.flush_due() == [] and path.read_text() == "[]"
    assert projector.waiting(path) == pytest.approx(1.0)
    clock.now += 1.0
    # The projector's own thread may flush it first: either way the file holds it now, and nothing waits.
    assert projector.flush_due() in ([path], []) and path.read_text() == '["a"]'
    assert projector.waiting(path) is None


def test_later_changes_ride_with_the_first_and_an_undone_one_is_never_written(setup):
    projector, path, clock, _ = setup
    projector.project(path, '["a"]')
    clock.now += 30.0
    projector.project(path, '["a", "b"]')  # the sync writes what the ConfigMap holds by then
    clock.now += 30.0
    projector.flush_due()
    assert path.read_text() == '["a", "b"]'
    projector.project(path, "[]")
    projector.project(path, '["a", "b"]')  # back to what the file holds: nothing waits
    assert projector.waiting(path) is None


def test_no_delay_writes_at_once(setup):
    projector, path, _, delay = setup
    delay["s"] = 0.0
    projector.project(path, '["a"]')
    assert path.read_text() == '["a"]' and projector.waiting(path) is None


def test_a_deleted_servers_file_is_not_written_again(setup):
    projector, path, clock, _ = setup
    projector.project(path, '["a"]')
    path.unlink()
    path.parent.rmdir()
    clock.now += 61.0
    assert projector.flush_due() == [] and not path.parent.exists()


def test_the_background_sync_writes_on_time(tmp_path):
    projector = projection.Projector(lambda: 0.2)
    path = tmp_path / "models.json"
    path.write_text("[]")
    try:
        projector.project(path, '["a"]')
        assert path.read_text() == "[]"
        poll_until(lambda: path.read_text() == '["a"]', "the projection", timeout=5, interval=0.02)
    finally:
        projector.stop()


def test_the_delay_is_kept_by_the_state_folder_and_set_by_flag_or_env(tmp_path, monkeypatch):
    assert projection.read_delay(tmp_path) == 0.0
    monkeypatch.delenv(projection.DELAY_ENV, raising=False)
    assert projection.chosen_delay(None) is None  # keep the folder's
    monkeypatch.setenv(projection.DELAY_ENV, "75")
    assert projection.chosen_delay(None) == 75.0 and projection.chosen_delay(5.0) == 5.0
    projection.write_delay(tmp_path, 75.0)
    assert projection.read_delay(tmp_path) == 75.0
    monkeypatch.setenv(projection.DELAY_ENV, "soon")
    with pytest.raises(SetupError, match="MMS_CONFIGMAP_DELAY='soon'"):
        projection.chosen_delay(None)
    with pytest.raises(SetupError):
        projection.parse_delay("-1", "--configmap-delay")
