"""Replay of recorded journals: same records, shifted or not, looping forward in time, paced,
and ``hft md-recorder`` ending when a replay is published."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.errors import UserError
from libshm import TICK_LAYOUT, JournalReader, JournalWriter
from services.md_recorder.recorder import Recorder
from services.md_recorder.replay import ReplaySource
from tests.helpers import ROOT, import_market, run_hft
from tests.services.md_recorder.test_normalise import CAL

SECOND = 1_000_000_000


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled IF2101 day and the cu1909 hour, imported as the recorder writes them."""
    out = tmp_path_factory.mktemp("recordings")
    return import_market(out, "IF2101_20210104.csv.gz", "cu1909_20190916.csv.gz")


def records(journal: Path) -> Any:
    reader = JournalReader(journal)
    parts = []
    while len(batch := reader.read_array()):
        parts.append(batch["payload"].copy())
    return np.concatenate(parts)


def replay(source: ReplaySource, live: Path) -> Recorder:
    recorder = Recorder(CAL, live, live / "snapshot")
    source.start()
    deadline = time.monotonic() + 60
    while not source.finished and time.monotonic() < deadline:
        source.poll(0.5, recorder.write_array)
    recorder.close()
    return recorder


def test_max_pace_republishes_every_record_unchanged(recording: Path, tmp_path: Path) -> None:
    source = ReplaySource(recording, pace="max")
    assert [p.name for p in source.journals] == ["20190916", "20210104"]
    recorder = replay(source, tmp_path / "live")
    for day in ("20190916", "20210104"):
        assert records(tmp_path / "live" / day).tobytes() == records(recording / day).tobytes()
    assert source.published == 200 + 27_953
    assert recorder.filters.kept == source.published
    assert sorted(recorder.last) == ["IF2101", "cu1909"]
    assert recorder.last["IF2101"].exchange_time_ns == int(records(recording / "20210104")[-1][4])


def test_shift_to_now_and_loop_keep_time_moving_forward(recording: Path, tmp_path: Path) -> None:
    source = ReplaySource(recording / "20210104", pace="max", shift_to_now=True, loop=True)
    recorder = Recorder(CAL, tmp_path / "live", None)
    source.start()
    before = time.time_ns()
    while source.laps < 2:
        source.poll(0.5, recorder.write_array)
    recorder.close()
    got = records(tmp_path / "live" / "20210104")
    original = records(recording / "20210104")
    assert len(got) >= 2 * len(original)
    times = got["exchange_time_ns"]
    assert abs(int(times[0]) - before) < 5 * SECOND
    assert (np.diff(times) >= 0).all()  # never backwards, across the lap
    lap = len(original)
    assert np.array_equal(
        np.diff(times[:lap]), np.diff(original["exchange_time_ns"])
    )  # spacing kept
    assert int(times[lap]) - int(times[lap - 1]) == SECOND  # the next lap one second later
    assert np.array_equal(got["last"][lap : 2 * lap], original["last"])


def test_paced_replay_takes_the_recording_time_divided_by_pace(
    recording: Path, tmp_path: Path
) -> None:
    """40 ticks 500 ms apart, then a 90-minute break, then 40 more: at pace 20 that is about
    2 s, the break is not waited out."""
    src = tmp_path / "src" / "20210104"
    base = records(recording / "20210104")[:80].copy()
    base["exchange_time_ns"] = [
        1_609_723_800 * SECOND + i * SECOND // 2 + (5400 * SECOND if i >= 40 else 0)
        for i in range(80)
    ]
    with JournalWriter(src, layout=TICK_LAYOUT) as writer:
        writer.append_array(base, base["exchange_time_ns"])
    source = ReplaySource(src, pace=20.0)
    start = time.monotonic()
    replay(source, tmp_path / "live")
    elapsed = time.monotonic() - start
    assert source.published == 80
    assert 1.5 < elapsed < 6.0


def test_instrument_filter(recording: Path, tmp_path: Path) -> None:
    source = ReplaySource(recording, pace="max", instruments=["cu1909"])
    replay(source, tmp_path / "live")
    assert source.published == 200
    assert not (tmp_path / "live" / "20210104").exists()


def test_not_a_recording(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no recorded journal there"):
        ReplaySource(tmp_path / "empty")
    with pytest.raises(UserError, match="no such journal directory"):
        ReplaySource(tmp_path / "missing")


def test_md_recorder_replay_ends_and_closes_the_journal(recording: Path, tmp_path: Path) -> None:
    config = tmp_path / "replay.toml"
    config.write_text(
        (ROOT / "configs/replay.toml").read_text()
        .replace('"../var/replay/journal"', f'"{tmp_path / "journal"}"')
        .replace('"/dev/shm/hft-replay"', f'"{tmp_path / "shm"}"')
        .replace('"../var/recordings/20210104"', f'"{recording / "20210104"}"')
        .replace("pace = 10.0", 'pace = "max"')
    )  # fmt: skip
    done = run_hft("md-recorder", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "md_recorder_replay_finished" in done.stderr
    live = tmp_path / "journal" / "recordings" / "20210104"
    reader = JournalReader(live)
    assert sum(1 for _ in reader.tail()) == 27_953  # tail() ends: the writer closed it
    assert reader.ended
