"""Replay of recorded journals: same records, shifted or not, looping forward in time, paced,
and ``hft md-recorder`` ending when a replay is published."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.errors import UserError
from contracts.status import RecorderStatus, read_status, status_path
from contracts.ticks import TickStore
from libshm import TICK_LAYOUT, JournalReader, JournalWriter, list_segments
from libshm.inspect import inspect_journal
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


class FakeTime:
    """A monotonic clock that moves only when the code under test sleeps."""

    def __init__(self) -> None:
        self.ns = 0

    def monotonic(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        self.ns += round(seconds * 1e9)


def store(root: Path) -> TickStore:
    """Rings in ROOT/ring, recordings in ROOT/live (where the tests read what was published)."""
    return TickStore(root / "ring", root / "live")


def replay(source: ReplaySource, live: Path) -> Recorder:
    recorder = Recorder(CAL, TickStore(live.parent / "ring", live), live.parent / "snapshot")
    source.start()
    deadline = time.monotonic() + 60
    while not source.finished and time.monotonic() < deadline:
        source.poll(0.5, recorder.write_array)
    recorder.close()
    return recorder


def test_max_pace_republishes_every_record_unchanged(recording: Path, tmp_path: Path) -> None:
    source = ReplaySource(recording, pace="max", into=store(tmp_path))
    assert [p.name for p in source.journals] == ["20190916", "20210104"]
    recorder = replay(source, tmp_path / "live")
    for day in ("20190916", "20210104"):
        assert records(tmp_path / "live" / day).tobytes() == records(recording / day).tobytes()
    assert source.published == 200 + 27_954
    assert recorder.filters.kept == source.published
    assert sorted(recorder.last) == ["IF2101", "cu1909"]
    assert recorder.last["IF2101"].exchange_time_ns == int(records(recording / "20210104")[-1][4])


def test_shift_to_now_and_loop_keep_time_moving_forward(recording: Path, tmp_path: Path) -> None:
    now = 1_700_000_000 * SECOND  # "now", as the replay's wall clock says
    source = ReplaySource(
        recording / "20210104", pace="max", shift_to_now=True, loop=True, into=store(tmp_path),
        clock=lambda: now,
    )  # fmt: skip
    recorder = Recorder(CAL, store(tmp_path), None)
    source.start()
    while source.laps < 2:
        source.poll(0.5, recorder.write_array)
    recorder.close()
    got = records(tmp_path / "live" / "20210104")
    original = records(recording / "20210104")
    assert len(got) >= 2 * len(original)
    times = got["exchange_time_ns"]
    assert int(times[0]) == now  # the first tick is stamped now, the rest keep their spacing
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
    fake = FakeTime()
    source = ReplaySource(src, pace=20.0, into=store(tmp_path), monotonic=fake.monotonic,
                          sleep=fake.sleep)  # fmt: skip
    published: list[tuple[int, int]] = []  # (fake time, ticks in the batch)
    recorder = Recorder(CAL, store(tmp_path), None)

    def publish(batch: np.ndarray) -> None:
        recorder.write_array(batch)
        published.append((fake.ns, len(batch)))

    source.start()
    while not source.finished:
        source.poll(0.5, publish)
    recorder.close()
    assert source.published == 80
    # each tick when due: 25 ms apart (500 ms / 20), the 90-minute break skipped, not waited
    times = [t for t, n in published for _ in range(n)]
    due = [i * 25_000_000 for i in range(40)] + [975_000_000 + i * 25_000_000 for i in range(40)]
    assert times == due


def test_instrument_filter(recording: Path, tmp_path: Path) -> None:
    source = ReplaySource(recording, pace="max", instruments=["cu1909"], into=store(tmp_path))
    replay(source, tmp_path / "live")
    assert source.published == 200
    assert not (tmp_path / "live" / "20210104").exists()


def test_not_a_recording(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no recorded journal there"):
        ReplaySource(tmp_path / "empty", into=store(tmp_path))
    with pytest.raises(UserError, match="no such journal directory"):
        ReplaySource(tmp_path / "missing", into=store(tmp_path))


def replay_config(tmp_path: Path, recording: Path, pace: str = '"max"', shift: bool = False,
                  name: str = "replay.toml") -> Path:  # fmt: skip
    config = tmp_path / name
    config.write_text(
        (ROOT / "configs/replay.toml").read_text()
        .replace('"../var/replay/journal"', f'"{tmp_path / "journal"}"')
        .replace('"/dev/shm/hft-replay"', f'"{tmp_path / "shm"}"')
        .replace('"127.0.0.1:9105"', '""').replace('"127.0.0.1:9106"', '""')
        .replace('"../var/recordings/20210104"', f'"{recording}"')
        .replace("pace = 10.0", f"pace = {pace}")
        .replace("shift_to_now = false", f"shift_to_now = {str(shift).lower()}")
    )  # fmt: skip
    return config


def test_md_recorder_replay_ends_and_closes_the_journal(recording: Path, tmp_path: Path) -> None:
    config = replay_config(tmp_path, recording / "20210104")
    done = run_hft("md-recorder", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "md_recorder_replay_finished" in done.stderr
    live = tmp_path / "journal" / "recordings" / "20210104"
    reader = JournalReader(live)
    assert sum(1 for _ in reader.tail()) == 27_954  # tail() ends: the writer closed it
    assert reader.ended
    status = read_status(status_path(tmp_path / "journal", "md_recorder"))
    assert isinstance(status, RecorderStatus)  # its last figures, written as it stopped
    assert (status.kept, status.drops, status.instruments) == (27_954, {}, 1)
    assert status.trading_day == 20210104 and status.pid != os.getpid()


def frames_in(journal: Path) -> int:
    """Frames committed so far: 0 before the directory or its first segment exists."""
    if not journal.exists() or not list_segments(journal):
        return 0
    return inspect_journal(journal, count_instruments=False).frames


@pytest.mark.parametrize("shift", [False, True])
def test_a_killed_replay_resumes_after_the_last_tick_it_published(
    recording: Path, tmp_path: Path, shift: bool
) -> None:
    """SIGKILL a paced replay in the middle of the day, restart it, then restart the finished
    one: the live journal holds the recorded day exactly once, in order, time never going back
    (with shift_to_now, the killed run's offset is kept), and its archive is the recording."""
    ring = tmp_path / "shm" / "ticks" / "20210104"  # the live journal: one segment holds the day
    live = tmp_path / "journal" / "recordings" / "20210104"  # its archive, complete at close
    slow = replay_config(tmp_path, recording / "20210104", pace="300.0", shift=shift)
    with subprocess.Popen(
        [sys.executable, "-m", "services.cli", "md-recorder", "--config", str(slow)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as child:  # fmt: skip
        deadline = time.monotonic() + 60
        while frames_in(ring) < 3_000 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    killed_at = frames_in(ring)
    assert 3_000 <= killed_at < 27_954
    fast = replay_config(tmp_path, recording / "20210104", shift=shift, name="fast.toml")
    for resumed in (killed_at, 27_954):  # the second run finds the replay complete
        done = run_hft("md-recorder", "--config", str(fast))
        assert done.returncode == 0, done.stderr
        events = [json.loads(line) for line in done.stderr.splitlines()]
        assert [(e["day"], e["ticks"]) for e in events
                if e["event"] == "md_recorder_replay_resumed"] == [(20210104, resumed)]  # fmt: skip
    got, original = records(live), records(recording / "20210104")
    assert len(got) == len(original)
    offset = int(got["exchange_time_ns"][0]) - int(original["exchange_time_ns"][0])
    assert (offset != 0) == shift
    for field in ("exchange_time_ns", "local_time_ns"):
        got[field] -= offset
    assert got.tobytes() == original.tobytes()


def test_a_replay_continues_its_laps_across_a_restart(recording: Path, tmp_path: Path) -> None:
    original = records(recording / "20210104")
    lap = len(original)
    first_run = 0
    for run in range(2):
        source = ReplaySource(recording / "20210104", pace="max", shift_to_now=True, loop=True,
                              into=store(tmp_path))  # fmt: skip
        recorder = Recorder(CAL, store(tmp_path), None)
        source.start()
        while source.published < lap // 2 + run * lap:  # stop in the middle of a lap
            source.poll(0.05, recorder.write_array)
        recorder.close()
        if run:
            assert source.resumed == {20210104: first_run}
        else:
            first_run = source.published
    got = records(tmp_path / "live" / "20210104")
    assert len(got) > 2 * lap
    assert (np.diff(got["exchange_time_ns"]) >= 0).all()
    cycled = np.resize(original, len(got)).copy()
    for field in ("exchange_time_ns", "local_time_ns"):
        got[field] = cycled[field] = 0
    assert got.tobytes() == cycled.tobytes()


def test_a_replay_of_its_own_output_is_refused(recording: Path, tmp_path: Path) -> None:
    own = tmp_path / "journal" / "recordings"
    shutil.copytree(recording / "20210104", own / "20210104")
    before = records(own / "20210104").tobytes()
    done = run_hft("md-recorder", "--config", str(replay_config(tmp_path, own / "20210104")))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"hft md-recorder: error: {own / '20210104'}: the replay's recording is in the "
        f"directory it records into ({own}), so it would replay its own output; replay a copy, "
        "or give the replay suite another suite.journal_dir"
    ]
    assert records(own / "20210104").tobytes() == before


def test_a_day_holding_other_ticks_is_not_continued(recording: Path, tmp_path: Path) -> None:
    live = tmp_path / "journal" / "recordings" / "20210104"
    other = records(recording / "20210104")[:50].copy()
    other["last"] += 1.0  # not the replay's ticks
    with JournalWriter(live, layout=TICK_LAYOUT) as writer:
        writer.append_array(other, other["local_time_ns"])
    before = (live / "0000000000.seg").read_bytes()
    done = run_hft("md-recorder", "--config", str(replay_config(tmp_path, recording / "20210104")))
    assert done.returncode == 1
    assert [line for line in done.stderr.splitlines() if not line.startswith("{")] == [
        f"hft md-recorder: error: {live}: this day's journal already holds 50 ticks and its "
        "tick 0 is not the replay's, so the replay would not continue it; move the journal "
        "aside, or give the replay another suite.journal_dir"
    ]
    assert (live / "0000000000.seg").read_bytes() == before
