"""The recorder's files: each day a ring in memory archived into its recording, the snapshot
table rebuilt from the newest day at start, and rings of older days dropped once archived."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.ticks import TickStore
from libshm import JournalReader, SnapshotReader, encode_tick, list_segments, tick_from_row
from services.md_recorder.normalise import Drop
from services.md_recorder.recorder import Recorder
from tests.helpers import import_market
from tests.services.md_recorder.test_normalise import CAL, IF_ROWS, make

DAYS = (20210104, 20210105, 20210106)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three real IF2101 days, imported."""
    return import_market(
        tmp_path_factory.mktemp("rec"),
        "IF2101_20210104.csv.gz", "IF2101_20210105.csv.gz", "IF2101_20210106.csv.gz",
    )  # fmt: skip


def records(journal: Path, **kwargs: Any) -> Any:
    return all_of(JournalReader(journal, **kwargs))


def all_of(reader: JournalReader) -> Any:
    """Every record ``reader`` has left, as one array."""
    parts = []
    while len(batch := reader.read_array()):
        parts.append(batch["payload"].copy())
    return np.concatenate(parts)


def publish(recorder: Recorder, day: Any, end: int | None = None) -> None:
    for start in range(0, len(day[:end]), 1000):
        recorder.write_array(day[start : (end if end is not None else len(day))][:1000])


def test_a_restarted_recorder_rebuilds_the_snapshot_table_from_the_day(
    recording: Path, tmp_path: Path
) -> None:
    store = TickStore(tmp_path / "shm" / "ticks", tmp_path / "recordings")
    day = records(recording / str(DAYS[0]))
    half = len(day) // 2
    recorder = Recorder(CAL, store, tmp_path / "shm" / "snapshot", segment_mb=1, ring_segments=2)
    assert recorder.rebuilt is None  # nothing recorded yet
    publish(recorder, day, half)
    recorder.close()
    (tmp_path / "shm" / "snapshot").unlink()  # the table is lost, the ring and recording kept
    recorder = Recorder(CAL, store, tmp_path / "shm" / "snapshot", segment_mb=1, ring_segments=2)
    assert recorder.rebuilt == (DAYS[0], 1)
    table = SnapshotReader(tmp_path / "shm" / "snapshot")
    kept = table.read("IF2101")
    assert kept is not None  # before any new tick came: the last one recorded
    assert encode_tick(kept) == encode_tick(tick_from_row(day[half - 1]))
    table.close()
    recorder.close()


def rings_of_two(recording: Path, tmp_path: Path) -> tuple[TickStore, Recorder, list[Any]]:
    """A store, a recorder writing rings of two 1 MiB segments into it, the three days' records."""
    store = TickStore(tmp_path / "shm" / "ticks", tmp_path / "recordings")
    recorder = Recorder(CAL, store, None, segment_mb=1, ring_segments=2)
    return store, recorder, [records(recording / str(d)) for d in DAYS]


def test_each_day_is_a_ring_archived_whole_and_older_rings_are_dropped(
    recording: Path, tmp_path: Path
) -> None:
    store, recorder, days = rings_of_two(recording, tmp_path)
    publish(recorder, days[0])
    assert len(list_segments(store.ring(DAYS[0]))) == 2  # bounded while the day is written
    publish(recorder, days[1])
    assert store.has_ring(DAYS[0])  # kept: the day before, which readers may still finish
    publish(recorder, days[2])
    recorder.close()
    assert not store.has_ring(DAYS[0]) and store.has_ring(DAYS[1]) and store.has_ring(DAYS[2])
    assert store.days() == list(DAYS)
    for d, original in zip(DAYS, days, strict=True):  # every recording whole, ring or not
        assert records(store.recording(d), verify=True).tobytes() == original.tobytes()
        assert all_of(store.open(d)).tobytes() == original.tobytes()


def test_a_ring_whose_recording_lacks_a_segment_is_not_dropped(
    recording: Path, tmp_path: Path
) -> None:
    store, recorder, days = rings_of_two(recording, tmp_path)
    publish(recorder, days[0])
    publish(recorder, days[1])
    recorder.close()
    newest = list_segments(store.ring(DAYS[0]))[-1]
    (store.recording(DAYS[0]) / f"{newest:010d}.seg").unlink()  # an archive copy went missing
    recorder = Recorder(CAL, store, None, segment_mb=1, ring_segments=2)
    publish(recorder, days[2])
    recorder.close()
    assert store.has_ring(DAYS[0])  # its ring holds what the recording lacks
    shutil.rmtree(store.ring(DAYS[1]))
    assert store.days() == list(DAYS)


def test_the_status_counts_kept_and_dropped_ticks_by_reason_and_the_rate_since_last_asked(
    tmp_path: Path,
) -> None:
    now = [1_609_722_000_000_000_000]
    store = TickStore(tmp_path / "shm" / "ticks", tmp_path / "recordings")
    recorder = Recorder(CAL, store, None, check_local_time=False, clock=lambda: now[0])
    first = recorder.status()
    assert (first.kept, first.ticks_per_s, first.drops, first.instruments) == (0, 0.0, {}, 0)
    assert first.lag_ms_median == -1.0 and first.last_tick_ns == 0  # nothing seen yet
    kept = [recorder.record(row, 0) for row in IF_ROWS[:100]]
    ticks = [t for t in kept if not isinstance(t, Drop)]
    recorder.record(IF_ROWS[99], 0)  # the last one again
    recorder.record(make(IF_ROWS[60], LastPrice="abc"), 0)
    recorder.record(make(IF_ROWS[61], UpdateTime="25:00:00"), 0)
    now[0] += 2_000_000_000
    status = recorder.status()
    assert status.kept == len(ticks) > 50
    assert status.drops == {**_counted(kept), "duplicate": _counted(kept).get("duplicate", 0) + 1,
                            "malformed": 1, "impossible_time": 1}  # fmt: skip
    assert status.ticks_per_s == round(len(ticks) / 2, 1)
    assert status.instruments == 1 and status.trading_day == DAYS[0]
    assert status.last_tick_ns == max(t.exchange_time_ns for t in ticks)
    now[0] += 1_000_000_000
    assert recorder.status().ticks_per_s == 0.0  # none since the last call
    recorder.close()


def _counted(results: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in results:
        if isinstance(r, Drop):
            out[str(r)] = out.get(str(r), 0) + 1
    return out
