"""The journal and the snapshot table across real processes: crashes, tailing, late joiners."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from libshm import TICK_LAYOUT, JournalReader, JournalWriter, WaitPolicy, WriterGone, encode_tick
from libshm.inspect import inspect_journal
from libshm.process import pid_alive, running
from libshm.seqlock import SLOT_SIZE, SnapshotBusy, SnapshotReader, SnapshotWriter
from tests.helpers import ROOT
from tests.libshm.workers import frame_time, make_tick

TIMEOUT = 120


@contextmanager
def worker(*args: str, pure: bool = False) -> Iterator[subprocess.Popen[str]]:
    """Start ``tests.libshm.workers`` in a child process; kill it on the way out. ``pure``: the
    child runs the pure-Python paths instead of the C fast path."""
    env = {**os.environ, "HFT_PURE_PYTHON": "1" if pure else "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.libshm.workers", *args],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=TIMEOUT)
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


def ready(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("ready"), proc.stderr.read() if proc.stderr else line
    return line


def result(proc: subprocess.Popen[str]) -> dict[str, object]:
    # Read through the same text wrappers as ready(): communicate() reads the raw pipes and
    # would miss a result line already buffered by ready()'s readline (a fast reader prints
    # "ready" and its result in one write).
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]


def committed(path: Path) -> list[int]:
    """Sequence numbers a checked reader finds, each frame's content checked against its seq."""
    reader = JournalReader(path, verify=True)
    seqs = []
    while (frame := reader.read()) is not None:
        assert bytes(frame.payload) == encode_tick(make_tick(frame.seq))
        seqs.append(frame.seq)
    return seqs


def test_sigkill_at_random_moments_loses_no_committed_frame(tmp_path: Path) -> None:
    """50 writers killed mid-write with 8 KiB segments (a rollover every 24 frames): half of
    them prepare the next segment in a background thread, and half of each half run the
    pure-Python paths instead of the C fast path."""
    path = tmp_path / "j"
    rng = random.Random(20210104)
    seen = 0
    for i in range(50):
        args = ("write-forever", str(path), "--segment", "8192")
        ahead = ("--prepare-ahead",) if i % 2 == 0 else ()
        with worker(*args, *ahead, pure=i % 4 >= 2) as proc:
            line = ready(proc)
            assert int(line.split()[1]) >= seen  # the successor goes on after every frame seen
            time.sleep(rng.uniform(0.002, 0.03))
            os.kill(proc.pid, signal.SIGKILL)
        seqs = committed(path)
        assert seqs == list(range(len(seqs)))
        assert len(seqs) >= seen
        seen = len(seqs)
    assert seen > 1000
    with JournalWriter(path, segment_size=8192, layout=TICK_LAYOUT) as writer:
        assert writer.next_seq == seen
    verify = subprocess.run(
        [sys.executable, "-m", "services.cli", "journal", "verify", str(path)],
        capture_output=True, text=True, cwd=ROOT, check=False, timeout=TIMEOUT,
    )  # fmt: skip
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_four_tailing_readers_and_late_joiners_see_the_same_stream(tmp_path: Path) -> None:
    path = tmp_path / "j"
    count = 20_000
    with worker(
        "write", str(path), "--count", str(count), "--segment", str(1 << 16),
        "--pause-every", "500", "--wait-go", "--prepare-ahead",
    ) as writer:  # fmt: skip
        ready(writer)  # the journal exists and is open: readers can attach
        readers = [worker("read", str(path)) for _ in range(4)]
        procs = [r.__enter__() for r in readers]
        late_cms = [
            worker("read", str(path), "--from-seq", "7777"),
            worker("read", str(path), "--from-time", str(frame_time(12_345))),
        ]
        try:
            for proc in procs:
                ready(proc)
            assert writer.stdin is not None
            writer.stdin.write("go\n")
            writer.stdin.flush()
            # the late joiners attach once the writer has begun (not after a guessed sleep)
            watcher = JournalReader(path)
            assert watcher.wait(timeout_s=TIMEOUT) is not None
            late = [cm.__enter__() for cm in late_cms]
            for proc in late:
                ready(proc)
            writer.wait(timeout=TIMEOUT)
            assert writer.returncode == 0
            results = [result(p) for p in procs]
            late_results = [result(p) for p in late]
        finally:
            for cm in [*readers, *late_cms]:
                cm.__exit__(None, None, None)
    assert {r["count"] for r in results} == {count}, results
    assert len({r["sha"] for r in results}) == 1, results
    # the finished journal, replayed, hashes exactly as the live readers saw it
    replay = hashlib.sha256()
    suffix = {7777: hashlib.sha256(), 12_345: hashlib.sha256()}
    reader = JournalReader(path, verify=True)
    while (frame := reader.read()) is not None:
        for digest in (replay, *(d for s, d in suffix.items() if frame.seq >= s)):
            digest.update(frame.seq.to_bytes(8, "little"))
            digest.update(frame.payload)
    assert results[0]["sha"] == replay.hexdigest()
    assert late_results[0]["first"] == 7777, late_results
    assert late_results[0]["sha"] == suffix[7777].hexdigest(), late_results
    assert late_results[1]["first"] == 12_345, late_results
    assert late_results[1]["sha"] == suffix[12_345].hexdigest(), late_results


class FakeTime:
    """A monotonic clock that moves only when the reader sleeps; records each sleep in ns."""

    def __init__(self) -> None:
        self.ns = 0
        self.sleeps: list[int] = []

    def monotonic(self) -> int:
        return self.ns

    def sleep(self, seconds: float) -> None:
        ns = round(seconds * 1e9)
        self.sleeps.append(ns)
        self.ns += ns


def test_reader_sees_the_writer_die_instead_of_waiting(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with worker("write-forever", str(path)) as proc:
        ready(proc)
        reader = JournalReader(path, live=True, wait=WaitPolicy(check_writer_ns=20_000_000))
        assert reader.wait(timeout_s=5) is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
    fake = FakeTime()  # from here the reader's waits run on a clock that moves as it sleeps
    reader.policy = WaitPolicy(spin_ns=0, check_writer_ns=20_000_000, monotonic=fake.monotonic,
                               sleep=fake.sleep)  # fmt: skip
    with pytest.raises(WriterGone, match="died without closing"):
        while reader.wait(timeout_s=10) is not None:
            pass
    # found dead at the first check of the writer, 20 ms in (plus one sleep of at most 2 ms),
    # not at the 10 s timeout
    assert 20_000_000 <= fake.ns <= 22_000_000, fake.ns
    reader.policy = WaitPolicy()
    # a successor recovers the journal and the same reader goes on from where it was
    position = reader.next_seq
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=8192) as writer:
        assert writer.next_seq == position
        writer.append_tick(make_tick(position), frame_time(position))
    frame = reader.wait(timeout_s=5)
    assert frame is not None
    assert frame.seq == position


def test_idle_reader_times_out_and_sees_a_live_writer(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with JournalWriter(path, layout=TICK_LAYOUT):
        fake = FakeTime()
        policy = WaitPolicy(spin_ns=0, monotonic=fake.monotonic, sleep=fake.sleep)
        reader = JournalReader(path, live=True, wait=policy)
        assert reader.wait(timeout_s=0.3) is None
        # it gave up at its timeout (after the sleep that crossed it), having slept with back-off
        assert 300_000_000 <= fake.ns <= 302_000_000, fake.ns
        assert fake.sleeps[:3] == [20_000, 40_000, 80_000] and max(fake.sleeps) == 2_000_000
        assert reader.writer_state() == "open"
        assert not reader.ended
    assert reader.writer_state() == "closed"


@pytest.mark.parametrize("checked", [True, False], ids=["seqlock", "control-no-check"])
def test_snapshot_stress_finds_no_torn_read_and_the_control_does(
    tmp_path: Path, checked: bool
) -> None:
    path = tmp_path / "snap"
    with worker("snap-write", str(path), "--seconds", "3") as writer:
        ready(writer)
        with worker("snap-read", str(path), "--seconds", "2", "--checked", str(int(checked))) as r:
            stats = result(r)
    assert int(stats["reads"]) > 10_000  # type: ignore[call-overload]
    if checked:
        assert stats["torn"] == 0
    else:
        assert int(stats["torn"]) > 0  # type: ignore[call-overload]


def _tear(path: Path, instrument: str) -> None:
    """Leave the slot of ``instrument`` odd, as a writer stopped mid-write does."""
    table = SnapshotReader(path)
    slot = table.slot_of(instrument)
    assert slot is not None
    offset = table._slots + slot * SLOT_SIZE
    table.close()
    with open(path, "r+b") as f:
        f.seek(offset)
        seq = int.from_bytes(f.read(8), "little")
        f.seek(offset)
        f.write((seq | 1).to_bytes(8, "little"))


def test_snapshot_reader_tells_a_dead_writer_from_a_busy_one(tmp_path: Path) -> None:
    path = tmp_path / "snap"
    with worker("snap-write", str(path), "--seconds", "30") as proc:
        ready(proc)
        os.kill(proc.pid, signal.SIGSTOP)
        _tear(path, "IF2101")  # mid-write, and its writer lives
        table = SnapshotReader(path, busy_timeout_s=0.05)
        assert table.writer_alive()
        with pytest.raises(SnapshotBusy):
            table.read("IF2101")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
    assert not table.writer_alive()
    with pytest.raises(WriterGone, match="left mid-write by a writer that died"):
        table.read("IF2101")
    # a successor makes every slot readable again, then rebuilds or overwrites it
    with SnapshotWriter(path) as successor:
        assert table.read("IF2101") is not None
        successor.write(make_tick(3))
        tick = table.read("IF2101")
        assert tick is not None
        assert tick.volume == 3


def test_bulk_reads_and_checks_of_a_journal_being_written_see_no_damage(tmp_path: Path) -> None:
    """``read_array`` (what ``hft journal info`` and the batch API use) and the whole-journal
    check, run again and again while another process appends and rolls segments over: every
    read is a clean prefix of the stream, and no check reports damage."""
    path = tmp_path / "j"
    with worker("write-forever", str(path), "--segment", "16384") as proc:
        ready(proc)
        deadline = time.monotonic() + 3.0
        reads = 0
        while time.monotonic() < deadline:
            reader = JournalReader(path)
            expected = 0
            while len(batch := reader.read_array(2)):
                assert batch["seq"].tolist() == list(range(expected, expected + len(batch)))
                expected += len(batch)
            report = inspect_journal(path, count_instruments=False)
            assert report.problems == [], report.problems
            assert report.frames >= expected
            reads += 1
        assert proc.poll() is None
    assert reads > 20


def test_a_process_reaped_while_its_stat_is_read_is_not_running() -> None:
    """``pid_alive`` opens ``/proc/PID/stat`` and then reads it; a process that ends and is
    reaped in between makes the read fail with ESRCH (an engine once died of it). Here the
    file of a real child is opened, the child killed and reaped, then read."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(f"/proc/{child.pid}/stat", "rb") as stat:
        child.kill()
        child.wait()
        assert not running(stat)
    assert not pid_alive(child.pid)
