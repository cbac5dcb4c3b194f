"""The backtest is the live engine: two bundled real days (a roll between them) through
``hft engine`` as a real process on the finished recording, and through ``Backtest`` in-process.
The first day's engine journal is the same, frame for frame (the day's end and the roll at the
ticks' time, never the wall clock's); the second day's live journal begins with every frame of
the backtest's (after it, the live engine waits for a newer day and stops)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from contracts import messages as m
from contracts.config import load_config
from contracts.errors import UserError
from contracts.status import EngineStatus, read_status, status_path
from libshm import JournalReader
from services.engine.backtest import Backtest, scratch_dir
from tests.helpers import import_market, write_config
from tests.services.engine.test_feed import spawn, wait_for
from tests.services.engine.test_live import CONFIG
from tests.services.tools.test_up import replay_config

pytestmark = pytest.mark.timeout(300)
DAYS = (20210104, 20210105)


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz",
                         "IF2101_20210105.csv.gz")  # fmt: skip


def deployment(tmp_path: Path, recordings: Path, more: str = "") -> Path:
    """The live tests' deployment over the bundled days; ``more``: agents to add."""
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    for day in DAYS:  # a link per day: the live test adds the second while the engine runs
        (tmp_path / "journal" / "recordings" / str(day)).symlink_to(recordings / str(day))
    text = CONFIG.replace('timer_ms = 600000', 'timer_ms = 60000\non_feed_loss = "log"\n'
                          'on_stop = "keep"') + more  # fmt: skip
    return write_config(tmp_path, text)


CHANNEL = """
[[engine.agents]]
name = "channel"
strategy = "strategies.channel:Channel"
instruments = ["IF2101"]
capital = 1000000.0
params = { period = "1m", lookback = 5 }
"""
"""An agent that trades on K-lines: orders from bars closed by the engine's own wake-ups."""


def frames(path: Path) -> list[bytes]:
    reader = JournalReader(path)
    try:
        return [bytes(f.payload) for f in iter(reader.read, None)]
    finally:
        reader.close()


def test_a_backtest_writes_the_journal_the_live_engine_writes(
    tmp_path: Path, recordings: Path
) -> None:
    config = deployment(tmp_path, recordings, CHANNEL)
    kept = tmp_path / "backtest"  # the backtest's engine journals, as hft journal cat reads them
    result = Backtest(load_config(config), journal=kept).run(progress=False)
    journals = {day: frames(kept / str(day)) for day in DAYS}
    first = [m.decode(f) for f in journals[DAYS[0]]]
    assert isinstance(first[0], m.DayOpened) and isinstance(first[-1], m.DayClosed)
    assert sum(isinstance(x, m.Trade) for x in first) > 10  # the agents traded
    # the channel agent's orders came from the bars' wake-ups (no tick at xx:xx:00.2)
    wakes = {x.time_ns for x in first if isinstance(x, m.Wake)}
    by_channel = [x for x in first if isinstance(x, m.OrderRequested) and x.agent == "channel"]
    assert len(by_channel) > 3 and {x.time_ns for x in by_channel} <= wakes
    # and the results carry its bars: both days' 240 minutes, the second day's last included
    bars = result.bars
    assert bars.groupby("day").size().to_dict() == {DAYS[0]: 240, DAYS[1]: 240}
    assert set(bars["period"]) == {"1m"} and str(bars["start"].iloc[0]) == (
        "2021-01-04 09:30:00+08:00")  # fmt: skip

    # the live engine starts at the newest day recorded: the second day comes once it runs the
    # first (as md_recorder starts a day), long before it reaches the first's end
    second = tmp_path / "journal" / "recordings" / str(DAYS[1])
    second.unlink()
    log = tmp_path / "engine.log"
    proc = spawn("engine", "--config", str(config), "--log-level", "warning", log=log)
    try:
        wait_for("the engine on the first day",
                 (tmp_path / "journal" / "engine" / str(DAYS[0])).is_dir, proc, log)  # fmt: skip
        second.symlink_to(recordings / str(DAYS[1]))

        def second_day_ended() -> bool:
            status = read_status(status_path(tmp_path / "journal", "engine"))
            return isinstance(status, EngineStatus) and status.trading_day == DAYS[1] \
                and status.feed == "ended"  # fmt: skip

        wait_for("the end of the second day", second_day_ended, proc, log, timeout_s=240)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
    live = {day: frames(tmp_path / "journal" / "engine" / str(day)) for day in DAYS}
    assert live[DAYS[0]] == journals[DAYS[0]]  # the whole day, the roll included
    backtest = journals[DAYS[1]]
    assert live[DAYS[1]][: len(backtest)] == backtest


def test_a_day_not_recorded_is_one_clear_error(tmp_path: Path, recordings: Path) -> None:
    config = load_config(deployment(tmp_path, recordings))
    with pytest.raises(UserError, match=r"no recording of 20210107 in .*; recorded: "
                       r"20210104, 20210105"):  # fmt: skip
        Backtest(config, days=[20210104, 20210107])


def test_a_backtest_writes_the_journal_of_the_live_services_at_full_pace(
    tmp_path: Path, recordings: Path
) -> None:
    """md_recorder replaying the first bundled day at full pace into its live ring and the
    engine tailing that ring as it is written (started first, waiting for the day), as real
    processes; then a backtest of what md_recorder recorded: the same engine journal."""
    config = replay_config(tmp_path, recordings)
    text = (
        config.read_text()
        .replace("pace = 10.0", 'pace = "max"')
        .replace('adapter = "paper"', 'adapter = "paper"\non_feed_loss = "log"\non_stop = "keep"')
    )
    config.write_text(text)
    log = tmp_path / "services.log"
    engine = spawn("engine", "--config", str(config), "--log-level", "info", log=log)
    try:
        wait_for("the engine waiting for a recording",
                 lambda: "waiting_for_recording" in log.read_text(), engine, log)  # fmt: skip
        recorder = spawn("md-recorder", "--config", str(config), "--log-level", "warning", log=log)

        def ended() -> bool:
            status = read_status(status_path(tmp_path / "journal", "engine"))
            return isinstance(status, EngineStatus) and status.feed == "ended"

        wait_for("the engine at the end of the day", ended, engine, log, timeout_s=240)
        recorder.send_signal(signal.SIGTERM)
        assert recorder.wait(timeout=60) == 0, log.read_text()[-2000:]
    finally:
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(timeout=60) == 0, log.read_text()[-2000:]
    live = frames(tmp_path / "journal" / "engine" / str(DAYS[0]))
    kept = tmp_path / "backtest"
    Backtest(load_config(config), journal=kept).run(progress=False)
    backtest = frames(kept / str(DAYS[0]))
    assert sum(isinstance(m.decode(f), m.Trade) for f in backtest) > 10
    assert live == backtest


SCRATCH = """
import os, signal, sys
from services.engine.backtest import scratch_dir
print(scratch_dir("hft-backtest"), flush=True)
if sys.argv[1] == "kill":
    os.kill(os.getpid(), signal.SIGKILL)  # as the OOM killer would: no finalizer runs
sys.stdin.read()
"""


def test_scratch_left_by_a_killed_backtest_is_removed_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    running = subprocess.Popen([sys.executable, "-c", SCRATCH, "wait"], env=env, text=True,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert running.stdout is not None
        kept = Path(running.stdout.readline().strip())
        killed = subprocess.run([sys.executable, "-c", SCRATCH, "kill"], env=env,
                                stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                check=False)  # fmt: skip
        assert killed.returncode == -signal.SIGKILL
        left = Path(killed.stdout.strip())
        other = tmp_path / "hft-backtest-notes"  # not one of ours: untouched
        other.mkdir()
        assert left.is_dir() and kept.is_dir() and left.parent == tmp_path
        monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
        made = scratch_dir("hft-backtest")
        assert not left.exists()
        assert kept.is_dir() and other.is_dir() and made.is_dir()
        assert made.name.startswith(f"hft-backtest-{os.getpid()}-")
    finally:
        running.communicate("")


def test_scratch_in_a_directory_that_cannot_take_it_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "missing"))
    with pytest.raises(UserError, match="set TMPDIR to a directory with room"):
        scratch_dir("hft-backtest")
