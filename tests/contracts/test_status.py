"""Status files: whole or not at all, unknown when unreadable, a failing write logged once a
minute and never raised; the latency window's percentiles by nearest rank over its newest
samples."""

from __future__ import annotations

import math
import random
from pathlib import Path
from typing import Any

from contracts.status import (
    EngineStatus,
    Latency,
    LatencyWindow,
    RecorderStatus,
    StatusFile,
    read_status,
    status_path,
    write_status,
)


def nearest_rank(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[math.ceil(q * len(ordered)) - 1] / 1000, 1)


def test_the_window_gives_nearest_rank_percentiles_of_its_newest_samples() -> None:
    rng = random.Random(7)
    window = LatencyWindow(size=1000)
    assert window.summary() == Latency()
    old = [rng.randrange(10_000_000, 20_000_000) for _ in range(1500)]  # slower than any newer
    values = old + [rng.randrange(1_000, 5_000_000) for _ in range(1000)]
    for v in values:
        window.add(v)
    newest = values[-1000:]  # the ring holds the last 1000
    got = window.summary()
    assert (got.count, got.samples) == (2500, 1000)
    assert got.p50_us == nearest_rank(newest, 0.5)
    assert got.p99_us == nearest_rank(newest, 0.99)
    assert got.max_us == round(max(newest) / 1000, 1)
    assert got.max_us < min(old) / 1000  # the older samples left the ring
    few = LatencyWindow()
    for v in (3_000, 1_000, 2_000):
        few.add(v)
    assert (few.summary().p50_us, few.summary().p99_us) == (2.0, 3.0)


ENGINE = EngineStatus(41, 1_700_000_000_000_000_000, 20210104, 500, 12, 3, 0.25, "live",
                      Latency(12, 12, 30.5, 80.0, 95.1))  # fmt: skip
RECORDER = RecorderStatus(40, 1_700_000_000_000_000_000, 20210104, 27_953, 120.5,
                          {"duplicate": 2}, 3.5, 1, 1_609_722_000_000_000_000)  # fmt: skip


def test_a_status_file_reads_back_and_anything_else_is_unknown(tmp_path: Path) -> None:
    path = status_path(tmp_path, "engine")
    assert read_status(path) is None  # not written yet
    assert write_status(path, ENGINE) is None
    assert read_status(path) == ENGINE
    assert write_status(path, RECORDER) is None
    assert read_status(path) == RECORDER
    assert [p.name for p in path.parent.iterdir()] == ["engine.json"]  # no temporary left
    for junk in (b"", b'{"service": "engine", "pid"', b'{"service": "other"}', b"\xff\x00"):
        path.write_bytes(junk)
        assert read_status(path) is None
    newer = write_status(path, RECORDER.__class__(**{**_fields(RECORDER), "version": 2}))
    assert newer is None and read_status(path) is None  # another version: not trusted


def _fields(status: Any) -> dict[str, Any]:
    return {f: getattr(status, f) for f in status.__struct_fields__}


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.lines.append(("warning", event, kw))

    def info(self, event: str, **kw: Any) -> None:
        self.lines.append(("info", event, kw))


def test_a_file_that_cannot_be_written_is_logged_once_a_minute_and_never_raised(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "status"
    blocker.write_text("a file where the directory should be")
    now = [0]
    log = Log()
    status = StatusFile(status_path(tmp_path, "engine"), log, clock=lambda: now[0])
    for second in range(121):
        now[0] = second * 1_000_000_000
        status.publish(ENGINE)
    warnings = [kw for level, event, kw in log.lines if event == "status_file_failing"]
    assert len(warnings) == 3  # at 0, 60 and 120 s
    assert str(blocker) in warnings[0]["error"]
    blocker.unlink()
    status.publish(ENGINE)
    assert log.lines[-1][:2] == ("info", "status_file_restored")
    assert read_status(status_path(tmp_path, "engine")) == ENGINE
