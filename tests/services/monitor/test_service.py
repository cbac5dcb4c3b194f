"""md_recorder's health as the monitor reads it: open while the snapshot table's writer lives;
after, ``closed`` if its status file says it stopped cleanly, ``gone`` if not (a crash, whose
last figures stay readable)."""

from __future__ import annotations

from pathlib import Path

from contracts.status import RecorderStatus, status_path, write_status
from libshm import SnapshotWriter
from services.monitor.service import _Market


def test_md_recorder_is_open_then_closed_after_a_clean_stop_and_gone_after_a_crash(
    tmp_path: Path,
) -> None:
    table, status = tmp_path / "shm" / "snapshot", status_path(tmp_path / "j", "md_recorder")
    market = _Market(table, status)
    assert market.health().state == "absent"  # no table yet
    table.parent.mkdir(parents=True)
    writer = SnapshotWriter(table, capacity=16)
    running = RecorderStatus(1, 0, 20210104, 10, 5.0, {}, 1.0, 1, 0)
    assert write_status(status, running) is None
    health = market.health()
    assert (health.state, health.status) == ("open", running)
    writer.close()
    assert market.health().state == "gone"  # its last figures say it was running: it died
    stopped = RecorderStatus(1, 0, 20210104, 10, 0.0, {}, 1.0, 1, 0, stopped=True)
    assert write_status(status, stopped) is None
    assert (market.health().state, market.health().status) == ("closed", stopped)
