"""When the feed dies: a real ``hft engine`` reading a tick journal written by a real
``hft md-recorder`` that is SIGKILLed, by a writer that falls silent, and by a recording that ends.
The engine logs it at once, acts as ``engine.on_feed_loss`` says (journaled, so recovery repeats
it), shows it in ``status``, and says so when a writer comes back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from contracts import messages as m
from contracts.config import load_config
from libshm import TICK_LAYOUT, JournalReader, JournalWriter, NotAJournal, decode_tick
from services.engine.journals import read_journal
from services.tools.command import send_command
from tests.helpers import ROOT, import_market, log_lines, write_config
from tests.services.engine.test_live import CONFIG, DAY, deployment

pytestmark = pytest.mark.timeout(240)
COMMANDS = (m.Halt, m.Reduce, m.Resume, m.CancelAll, m.Flatten)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


def spawn(*args: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.cli", *args],
                                cwd=ROOT, stdout=out, stderr=out, env=env)  # fmt: skip


def events(log: Path, name: str) -> list[dict[str, Any]]:
    return [event for event in log_lines(log) if event["event"] == name]


def wait_for(what: str, check: Callable[[], Any], proc: subprocess.Popen[bytes], log: Path,
             timeout_s: float = 60.0) -> Any:  # fmt: skip
    """Poll ``check`` until it returns something true (the engine must stay up meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the engine exited: {log.read_text()[-2000:]}"
        found = check()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}: {log.read_text()[-2000:]}")


def status(config: Path) -> dict[str, Any]:
    reply = send_command(load_config(config), {"action": "status"}, timeout_s=10.0)
    assert reply.ok and reply.status is not None
    return reply.status


@contextmanager
def engine(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn("engine", "--config", str(config), "--log-level", "info", log=log)
    root = load_config(config).suite.journal_dir / "engine"
    try:
        wait_for("the command socket", (root / "command.endpoint").exists, proc, log)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]


def engine_commands(journal: list[m.EngineMessage]) -> list[tuple[str, str, str]]:
    return [(type(x).__name__, x.scope, x.requester) for x in journal
            if isinstance(x, COMMANDS) and x.requester.startswith("engine:")]  # fmt: skip


def test_a_killed_md_recorder_halts_the_account_at_once_and_its_return_is_logged(
    tmp_path: Path, recording: Path
) -> None:
    text = CONFIG.replace('"journal/recordings/20210104"', f'"{recording / str(DAY)}"')
    text = text.replace("[md_recorder.replay]\n", "[md_recorder.replay]\npace = 100.0\n")
    config = write_config(tmp_path, text)
    md_log, engine_log = tmp_path / "md.log", tmp_path / "engine.log"
    md = spawn("md-recorder", "--config", str(config), log=md_log)
    try:
        with engine(config, engine_log) as proc:
            wait_for("200 ticks", lambda: status(config).get("ticks", 0) >= 200, proc, engine_log)
            assert status(config)["feed"]["state"] == "live"
            md.send_signal(signal.SIGKILL)
            md.wait(timeout=30)
            lost = wait_for("feed_lost", lambda: events(engine_log, "feed_lost"), proc, engine_log)
            assert len(lost) == 1 and lost[0]["level"] == "error" and lost[0]["action"] == "halt"
            assert "is gone" in lost[0]["text"] and str(DAY) in lost[0]["text"]
            now = status(config)
            assert now["feed"]["state"] == "lost" and now["states"]["account"] == "halted"
            assert now["feed"]["since"].startswith("2021-01-04T")  # the tick clock, China time
            assert {a["state"] for a in now["agents"].values()} == {"halted"}
            # md-recorder comes back: the replay resumes on the same journal
            md = spawn("md-recorder", "--config", str(config), log=md_log)
            wait_for("feed_restored", lambda: events(engine_log, "feed_restored"), proc,
                     engine_log)  # fmt: skip
            restored = events(engine_log, "feed_restored")[0]
            assert restored["after"] == "lost" and "resume --account" in restored["hint"]
            now = status(config)
            assert now["feed"]["state"] == "live" and now["states"]["account"] == "halted"
    finally:
        md.send_signal(signal.SIGKILL)
        md.wait(timeout=30)
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    assert engine_commands(journal) == [("CancelAll", "account", "engine: feed lost"),
                                        ("Halt", "account", "engine: feed lost")]  # fmt: skip
    halted = [x for x in journal if isinstance(x, m.StateChanged) and x.scope == "account"]
    assert [x.state for x in halted] == ["halted"]
    after = journal.index(halted[0])
    sent = [x for x in journal[after:] if isinstance(x, m.OrderRequested)]
    assert not sent  # nothing left the engine once the account was halted


def test_a_silent_writer_counts_as_gone_and_log_only_does_nothing_else(
    tmp_path: Path, recording: Path
) -> None:
    """A writer that is alive but stops heartbeating is lost after ``feed_timeout_s``; with
    ``on_feed_loss = "log"`` that is logged and shown, and nothing is journaled; heartbeats
    again: restored."""
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    text = CONFIG.replace("[engine]\n", '[engine]\non_feed_loss = "log"\nfeed_timeout_s = 1.0\n')
    config = write_config(tmp_path, text)
    log = tmp_path / "engine.log"
    source = JournalReader(recording / str(DAY))
    with JournalWriter(tmp_path / "journal" / "recordings" / str(DAY), layout=TICK_LAYOUT) as w:
        for _ in range(40):
            frame = source.read()
            assert frame is not None
            w.append_tick(decode_tick(frame.payload), frame.time_ns)
        w.heartbeat()
        with engine(config, log) as proc:
            lost = wait_for("feed_lost", lambda: events(log, "feed_lost"), proc, log)
            assert lost[0]["action"] == "log" and "silent for 1 s" in lost[0]["text"]
            assert lost[0]["done"] == "nothing (on_feed_loss = log)"
            now = status(config)
            assert now["feed"]["state"] == "lost" and now["states"]["account"] == "active"
            w.heartbeat()
            wait_for("feed_restored", lambda: events(log, "feed_restored"), proc, log)
            assert status(config)["feed"]["state"] == "live"
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    assert engine_commands(journal) == []


def test_a_recording_that_ends_cancels_working_orders_when_configured(
    tmp_path: Path, recording: Path
) -> None:
    """A finished recording (closed, no newer day) ends the feed once every tick is handled:
    with ``on_feed_loss = "cancel"`` the working orders are cancelled and trading stays on."""
    config = deployment(tmp_path, recording)
    config.write_text(
        config.read_text().replace("[engine]\n", '[engine]\non_feed_loss = "cancel"\n')
    )
    log = tmp_path / "engine.log"
    with engine(config, log) as proc:
        ended = wait_for("feed_ended", lambda: events(log, "feed_ended"), proc, log, 120.0)
        now = status(config)
    assert ended[0]["level"] == "warning" and "has ended" in ended[0]["text"]
    assert ended[0]["ticks"] == now["ticks"] == 27_954  # only once every tick was handled
    assert now["feed"]["state"] == "ended" and now["states"]["account"] == "active"
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    assert engine_commands(journal) == [("CancelAll", "account", "engine: feed ended")]
    cancel = next(x for x in journal if isinstance(x, m.CancelAll))
    working = {x.order_id for x in journal[: journal.index(cancel)]
               if isinstance(x, m.OrderAccepted)}  # fmt: skip
    finished = {x.order_id for x in journal if isinstance(x, (m.OrderCancelled, m.OrderRejected))}
    filled: dict[str, int] = {}
    for x in journal:
        if isinstance(x, m.Trade):
            filled[x.order_id] = filled.get(x.order_id, 0) + x.volume
    volume = {x.order_id: x.volume for x in journal if isinstance(x, m.OrderRequested)}
    left = {o for o in working if o not in finished and filled.get(o, 0) < volume[o]}
    assert not left  # every order is filled, cancelled or rejected: none left working


def test_an_engine_started_after_md_recorder_died_mid_segment_reads_the_ring(
    tmp_path: Path, recording: Path
) -> None:
    """md_recorder SIGKILLed before its ring's first segment was archived (the recording is not
    there yet): an engine started then reads the ticks from the ring and says the feed is lost;
    it used to stop at start with "no such journal directory"."""
    text = CONFIG.replace('"journal/recordings/20210104"', f'"{recording / str(DAY)}"')
    text = text.replace("[md_recorder.replay]\n", "[md_recorder.replay]\npace = 100.0\n")
    config = write_config(tmp_path, text)
    md_log, engine_log = tmp_path / "md.log", tmp_path / "engine.log"
    md = spawn("md-recorder", "--config", str(config), log=md_log)
    ring = tmp_path / "shm" / "ticks" / str(DAY)

    def written() -> int:
        if not (ring / "head").exists():
            return 0
        try:
            reader = JournalReader(ring)
        except NotAJournal:  # the head is written before the first segment
            return 0
        try:
            return reader.backlog()[0]
        finally:
            reader.close()

    deadline = time.monotonic() + 60
    while written() < 100:
        assert md.poll() is None and time.monotonic() < deadline, md_log.read_text()[-2000:]
        time.sleep(0.05)
    md.send_signal(signal.SIGKILL)
    md.wait(timeout=30)
    recorded = tmp_path / "journal" / "recordings" / str(DAY)
    assert not recorded.exists() or not any(recorded.glob("*.seg"))  # nothing archived yet
    with engine(config, engine_log) as proc:
        lost = wait_for("feed_lost", lambda: events(engine_log, "feed_lost"), proc, engine_log)
        assert "is gone" in lost[0]["text"]
        wait_for("the ring's ticks handled", lambda: status(config)["ticks"] >= 100, proc,
                 engine_log)  # fmt: skip
