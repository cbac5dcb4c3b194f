"""``hft engine`` as a real process on the real IF2101 day: commands over ZMQ, SIGKILL recovery."""

from __future__ import annotations

import gc
import itertools
import os
import random
import signal
import subprocess
import sys
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from contracts import messages as m
from contracts.calendar import Phase, load_calendar
from contracts.config import ProductRates, load_config
from contracts.errors import UserError
from libshm import (
    FREE_FORM,
    JournalReader,
    JournalWriter,
    NotAJournal,
    Tick,
    decode_tick,
    list_segments,
)
from services.engine.journals import read_journal
from services.engine.live import EngineService, _collector_off_the_tick_path, day_phases
from services.engine.products import specs_for
from services.tools.command import _endpoint_and_token, send_command
from tests.helpers import ROOT, import_market, live_tick_journal, run_hft, write_config

DAY = 20210104
TICKS_IN_DAY = 27_954  # rows of the bundled file kept: 27,953 in hours and the settlement record

CONFIG = """\
[suite]
name = "engine-test"
mode = "replay"
journal_dir = "journal"
shm_dir = "shm"

[md_recorder]
source = "replay"

[md_recorder.replay]
recording = "journal/recordings/20210104"

[engine]
adapter = "paper"
command_endpoint = "tcp://127.0.0.1:0"
timer_ms = 600000

[engine.risk]
max_daily_loss = 1e9
cancel_limit = 20000
max_cancel_ratio = 5.0
duplicate_window_ms = 0
max_position = 5
max_net_position = 5

[engine.products.default]
margin_rate = 0.12
open_rate = 0.000023
close_rate = 0.000023
close_today_rate = 0.000345

[[engine.agents]]
name = "mm"
strategy = "strategies.quoter:Quoter"
instruments = ["IF2101"]
capital = 1000000.0
params = { spread_ticks = 1, max_position = 3 }

[[engine.agents]]
name = "trend"
strategy = "strategies.follower:Follower"
instruments = ["IF2101"]
capital = 1000000.0
params = { fast = 10, slow = 60, size = 2 }
"""


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


def deployment(tmp_path: Path, recording: Path) -> Path:
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "recordings").symlink_to(recording)
    return write_config(tmp_path, CONFIG)


def start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.cli", "engine", "--config", str(config),
             "--log-level", "warning"],
            cwd=ROOT, stdout=out, stderr=out, env=env,
        )  # fmt: skip


def frames(path: Path) -> int:
    try:
        reader = JournalReader(path)
    except NotAJournal:
        return 0
    n = 0
    while reader.read() is not None:
        n += 1
    return n


def wait_day_done(config: Path, proc: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    cfg = load_config(config)
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the engine exited"
        try:
            reply = send_command(cfg, {"action": "status"}, timeout_s=2.0)
        except UserError:  # no token file yet, or no answer yet
            time.sleep(0.2)
            continue
        if reply.status and reply.status["ticks"] == TICKS_IN_DAY:
            return
        time.sleep(0.2)
    raise AssertionError("the engine did not reach the end of the day")


def run_to_end_of_day(config: Path, log: Path) -> None:
    """Start ``hft engine``, let it trade the whole day, stop it with SIGTERM (exit 0)."""
    proc = start(config, log)
    try:
        wait_day_done(config, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def outcome(journal: list[m.EngineMessage]) -> dict[str, Any]:
    """Positions, orders and PnL as the journal tells them."""
    requests = {x.order_id: x for x in journal if isinstance(x, m.OrderRequested)}
    final: dict[str, str] = {}
    for x in journal:
        if isinstance(x, (m.OrderAccepted, m.OrderRejected, m.OrderCancelled, m.Trade)):
            final[x.order_id] = type(x).__name__
    net: Counter[str] = Counter()
    cash: dict[str, float] = {}
    for t in (x for x in journal if isinstance(x, m.Trade)):
        r = requests[t.order_id]
        sign = 1 if r.direction == "buy" else -1
        net[r.agent] += sign * t.volume
        cash[r.agent] = round(cash.get(r.agent, 0.0) - sign * t.price * t.volume * 300 - t.fee, 6)
    return {
        "orders": sorted(
            (r.order_id, r.direction, r.offset, r.price, r.volume) for r in requests.values()
        ),
        "final": final,
        "trades": sorted(
            (x.order_id, x.trade_id, x.price, x.volume, x.fee)
            for x in journal
            if isinstance(x, m.Trade)
        ),
        "net": dict(net),
        "cash": dict(cash),
        "refused": sorted((x.order_id, x.code) for x in journal if isinstance(x, m.RiskRefused)),
    }


def test_commands_over_zmq_need_the_token(tmp_path: Path, recording: Path) -> None:
    config = deployment(tmp_path, recording)
    proc = start(config, tmp_path / "engine.log")
    try:
        wait_day_done(config, proc)
        halt = run_hft("command", "--config", str(config), "halt", "--agent", "mm")
        assert halt.returncode == 0 and halt.stdout.strip() == "ok: agent mm is halted"
        unknown = run_hft("command", "--config", str(config), "resume", "--agent", "ghost")
        assert unknown.returncode == 1 and "no agent named 'ghost'" in unknown.stdout
        bad = run_hft("command", "--config", str(config), "halt", env={"HFT_ENGINE_TOKEN": "x"})
        assert bad.returncode == 1 and bad.stdout.strip() == "refused: bad token"
        flat = run_hft("command", "--config", str(config), "flatten", "--instrument", "IF2101")
        assert flat.returncode == 0 and "closing order" in flat.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    commands = (m.Halt, m.Reduce, m.Resume, m.CancelAll, m.Flatten)
    by = {x.command_id: x.requester for x in journal if isinstance(x, commands)}
    # the recording ended: the engine cancelled and halted on its own (before or after these)
    assert list(by.values()).count("engine: feed ended") == 2
    acks = [x for x in journal if isinstance(x, m.CommandAck)]
    operator = [a.ok for a in acks if not by[a.command_id].startswith("engine:")]
    assert operator == [True, False, True]  # the bad token never reached the engine
    changed = [(x.scope, x.target, x.state) for x in journal if isinstance(x, m.StateChanged)]
    assert ("agent", "mm", "halted") in changed and ("instrument", "IF2101", "reducing") in changed


@pytest.fixture(scope="module")
def calm(tmp_path_factory: pytest.TempPathFactory, recording: Path) -> list[m.EngineMessage]:
    """The engine journal of the whole day, run once without interruption on the recording."""
    root = tmp_path_factory.mktemp("calm")
    run_to_end_of_day(deployment(root, recording), root / "engine.log")
    return read_journal(root / "journal" / "engine" / str(DAY))


def test_an_engine_killed_and_restarted_ends_like_an_uninterrupted_run(
    tmp_path: Path, recording: Path, calm: list[m.EngineMessage]
) -> None:
    calm_journal = calm
    expected = outcome(calm_journal)
    assert len(expected["trades"]) > 50

    crashy = tmp_path / "crashy"
    crashy.mkdir()
    config = deployment(crashy, recording)
    journal = crashy / "journal" / "engine" / str(DAY)
    rng = random.Random(5)
    kills = []
    total = len(calm_journal)
    for _ in range(3):
        target = frames(journal) + rng.randrange(200, max(201, total // 4))
        proc = start(config, crashy / "engine.log")
        deadline = time.monotonic() + 60
        while frames(journal) < target and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        kills.append(frames(journal))
    assert kills == sorted(kills) and kills[-1] < total  # each kill landed inside the day
    run_to_end_of_day(config, crashy / "engine.log")
    messages = read_journal(journal)
    got = outcome(messages)
    assert got == expected
    ids = [x.order_id for x in messages if isinstance(x, m.OrderRequested)]
    assert len(ids) == len(set(ids))  # no order was sent twice
    assert "Traceback" not in (crashy / "engine.log").read_text()


def test_an_engine_behind_a_small_ring_goes_on_in_the_recording_without_a_gap(
    tmp_path: Path, recording: Path, calm: list[m.EngineMessage]
) -> None:
    """A real md_recorder replays the day at full speed into a ring of two 1 MiB segments while
    a real engine trades it from the start, far slower: the segments it has not reached leave
    the ring (archived into the day's recording first), and it ends exactly as on the recording."""
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    text = CONFIG.replace('recording = "journal/recordings/20210104"',
                          f'recording = "{recording / str(DAY)}"\npace = "max"')  # fmt: skip
    text = text.replace(
        'source = "replay"\n', 'source = "replay"\nsegment_mb = 1\nring_segments = 2\n'
    )
    config = write_config(tmp_path, text)
    engine = start(config, tmp_path / "engine.log")
    try:
        recorder = run_hft("md-recorder", "--config", str(config), "--log-level", "warning")
        assert recorder.returncode == 0, recorder.stderr
        wait_day_done(config, engine)
    finally:
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(timeout=30) == 0
    ring = tmp_path / "shm" / "ticks" / str(DAY)
    archive = tmp_path / "journal" / "recordings" / str(DAY)
    held = list_segments(archive)
    assert len(held) >= 5 and list_segments(ring) == held[-2:]  # the ring dropped the rest
    assert outcome(read_journal(tmp_path / "journal" / "engine" / str(DAY))) == outcome(calm)
    assert "Traceback" not in (tmp_path / "engine.log").read_text()


def wait_status(
    config: Path, proc: subprocess.Popen[bytes], done: Callable[[dict[str, Any]], bool]
) -> None:
    """Ask the engine for its status until ``done(status)`` holds (up to 120 s)."""
    deadline = time.monotonic() + 120.0
    cfg = load_config(config)
    while True:
        assert proc.poll() is None, "the engine exited"
        assert time.monotonic() < deadline, "the engine never reached the state waited for"
        try:
            reply = send_command(cfg, {"action": "status"}, timeout_s=2.0)
        except UserError:  # no token file yet, or no answer yet
            reply = None
        if reply is not None and reply.status and done(reply.status):
            return
        time.sleep(0.2)


def test_the_engine_trades_day_after_day_and_a_restart_rolls_the_day_it_left_open(
    tmp_path: Path,
) -> None:
    """Three real IF2101 days, each replayed by a real md_recorder after the one before. The
    engine trades day one, and when day two is recorded rolls into it with its positions; it is
    stopped in day two. Day three is recorded, and the restarted engine recovers day two, rolls
    it (its recording closed, a newer day there) and opens day three with day two's positions."""
    days = import_market(tmp_path / "days", "IF2101_20210104.csv.gz", "IF2101_20210105.csv.gz",
                         "IF2101_20210106.csv.gz")  # fmt: skip
    text = CONFIG.replace("[engine]\n", '[engine]\non_feed_loss = "log"\n')
    mm = text.index('[[engine.agents]]\nname = "mm"')
    text = text[:mm] + text[text.index("[[engine.agents]]", mm + 1) :]  # the follower alone
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    config, replays = write_config(tmp_path, text), {}
    for day in (20210104, 20210105, 20210106):
        replays[day] = write_config(tmp_path, text.replace(
            'recording = "journal/recordings/20210104"',
            f'recording = "{days / str(day)}"\npace = "max"'), f"{day}.toml")  # fmt: skip

    def record(day: int) -> int:
        """md_recorder replays the day into its ring and closes it; the day's tick count."""
        assert run_hft("md-recorder", "--config", str(replays[day])).returncode == 0
        return frames(days / str(day))

    def handled(day: int, ticks: int) -> Callable[[dict[str, Any]], bool]:
        return lambda s: s.get("trading_day") == day and s.get("ticks") == ticks

    log = tmp_path / "engine.log"
    first = record(20210104)
    engine = start(config, log)
    try:
        wait_status(config, engine, handled(20210104, first))
        wait_status(config, engine, handled(20210105, record(20210105)))
    finally:
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(timeout=30) == 0
    root = tmp_path / "journal" / "engine"
    one, two = read_journal(root / "20210104"), read_journal(root / "20210105")
    assert isinstance(one[-1], m.DayClosed) and one[-1].trading_day == 20210104
    assert isinstance(one[-2], m.DayRolled) and one[-2].next_day == 20210105
    assert isinstance(two[0], m.DayOpened) and two[0].holdings == one[-1].holdings
    assert two[0].cash == one[-1].cash
    assert not isinstance(two[-1], m.DayClosed)  # left open: no newer day yet
    last = record(20210106)
    engine = start(config, log)
    try:
        wait_status(config, engine, handled(20210106, last))
    finally:
        engine.send_signal(signal.SIGTERM)
        assert engine.wait(timeout=30) == 0
    two, three = read_journal(root / "20210105"), read_journal(root / "20210106")
    assert isinstance(two[-1], m.DayClosed) and two[-1].trading_day == 20210105
    assert isinstance(two[-2], m.DayRolled) and two[-2].next_day == 20210106
    assert isinstance(three[0], m.DayOpened) and three[0].holdings == two[-1].holdings
    assert three[0].cash == two[-1].cash
    assert three[0].holdings  # day two ended with a position, and day three opened with it
    assert sum(isinstance(x, m.Trade) for x in three) > 0
    assert "Traceback" not in log.read_text()


def test_start_at_live_skips_the_ticks_recorded_before_the_engine_started(
    tmp_path: Path, recording: Path
) -> None:
    """With ``start_at = "live"`` a fresh engine opens the day at the live end of the ring:
    100 ticks recorded before it started are not traded, the 200 after are."""
    text = CONFIG.replace("[engine]\n", '[engine]\nstart_at = "live"\n')
    config = write_config(tmp_path, text)
    ring = tmp_path / "shm" / "ticks" / str(DAY)
    with live_tick_journal(ring) as writer:
        source = JournalReader(recording / str(DAY))
        for _ in range(100):
            frame = source.read()
            assert frame is not None
            writer.append(frame.payload, frame.time_ns)
        engine = start(config, tmp_path / "engine.log")
        try:
            wait_status(config, engine, lambda s: s.get("waiting") == "for the day's first tick")
            for _ in range(200):
                frame = source.read()
                assert frame is not None
                writer.append(frame.payload, frame.time_ns)
            wait_status(config, engine, lambda s: s.get("ticks") == 300)  # the next tick's seq
        finally:
            engine.send_signal(signal.SIGTERM)
            assert engine.wait(timeout=30) == 0
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    assert isinstance(journal[0], m.DayOpened) and journal[0].ticks == 100


def first_ticks(recording: Path, writer: JournalWriter, count: int) -> int:
    """Copy the day's first ``count`` ticks into ``writer``; returns the last one's receive time."""
    source = JournalReader(recording / str(DAY))
    for _ in range(count):
        frame = source.read()
        assert frame is not None
        tick = decode_tick(frame.payload)
        writer.append_tick(tick, frame.time_ns)
    return tick.local_time_ns


def with_a_silent_feed(
    tmp_path: Path, recording: Path, config_text: str,
    done: Callable[[list[m.EngineMessage]], bool], *, settle: bool = False,
) -> tuple[int, list[m.EngineMessage]]:  # fmt: skip
    """Run ``hft engine`` on the day's first 40 ticks, after which the feed stays silent, until
    ``done(journal)`` holds (and, with ``settle``, the journal stopped growing after the last
    tick for three polls in a row). Returns the last tick's receive time and the journal."""
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    config = write_config(tmp_path, config_text)
    journal = tmp_path / "journal" / "engine" / str(DAY)
    live = tmp_path / "journal" / "recordings" / str(DAY)
    with live_tick_journal(live) as writer:
        last_time = first_ticks(recording, writer, 40)
        proc = start(config, tmp_path / "engine.log")
        try:
            deadline = time.monotonic() + 30
            messages: list[m.EngineMessage] = []
            quiet = 0  # polls in a row that found the journal as it was, after the last tick
            while time.monotonic() < deadline and not (
                done(messages) and (quiet >= 3 or not settle)
            ):
                assert proc.poll() is None, "the engine exited"
                time.sleep(0.1)
                before = len(messages)
                messages = read_journal(journal) if journal.exists() else []
                at_last_tick = any(x.ticks == 40 for x in messages)
                quiet = quiet + 1 if at_last_tick and len(messages) == before else 0
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    return last_time, messages


@pytest.mark.usefixtures("in_process")
def test_with_the_feed_silent_the_timer_follows_the_engine_clock(
    tmp_path: Path, recording: Path
) -> None:
    """With no tick after the day's 40th, the engine clock is the last tick's time plus the wall
    time since (here an injected clock that moves 50 us at each reading, and a sleep that does
    not wait), and a 100 ms timer is called at each 100 ms of it: exactly 100 ms apart, on the
    timer's grid, not further and further apart (the clock once ran ahead after each call)."""
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    config = load_config(
        write_config(tmp_path, CONFIG.replace("timer_ms = 600000", "timer_ms = 100"))
    )
    fake = [time.monotonic_ns()]
    holder: list[EngineService] = []
    fired: list[int] = []  # every timer call's time, as journaled
    last = [0]  # the 40th tick's time

    def clock() -> int:
        fake[0] += 50_000
        if sum(t > last[0] for t in fired) >= 12:  # twelve calls after the last tick: enough
            holder[0].stop.requested = True
        return fake[0]

    with live_tick_journal(tmp_path / "journal" / "recordings" / str(DAY)) as writer:
        last[0] = first_ticks(recording, writer, 40)
        service = EngineService(config, clock=clock, sleep=lambda _s: None)
        holder.append(service)
        new_engine = service._new_engine

        def engine_that_records_timers(journal_writer: JournalWriter, day: int) -> Any:
            engine = new_engine(journal_writer, day)
            engine.wants_timer = True  # its agents have no on_timer: fire it all the same

            def observe(msg: m.EngineMessage) -> None:  # each message as it is journaled
                if isinstance(msg, m.TimerFired):
                    fired.append(msg.time_ns)

            engine._observer = observe
            return engine

        service._new_engine = engine_that_records_timers  # type: ignore[method-assign,assignment]
        assert service.run() == 0
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    calls = [x.time_ns for x in journal if isinstance(x, m.TimerFired) and x.ticks == 40]
    # a call due at the last tick's own time (on the grid) comes after that tick: at its time,
    # or later if a wake moved the engine's clock first (how many readings of the injected
    # clock pass before the idle loop's first look decides which)
    assert len(calls) >= 12 and calls == [t for t in fired if t >= last[0]]
    assert calls[0] >= last[0] and calls[0] - last[0] <= 100_000_000
    # the first is late if the engine's clock had moved past its due time (a wake for the
    # simulator's 1 ms entry latency): never back in time; the rest lie on the grid, the same
    # after a restart
    assert calls[1] - calls[0] <= 100_000_000
    assert all(t % 100_000_000 == 0 for t in calls[1:])
    assert {b - a for a, b in itertools.pairwise(calls[1:])} == {100_000_000}


ADAPTER_EVENTS = (m.OrderAccepted, m.OrderRejected, m.OrderCancelled, m.Trade, m.CancelRefused)


def test_live_paper_acknowledgements_come_when_due_without_another_tick(
    tmp_path: Path, recording: Path
) -> None:
    """The simulator's 1 ms entry and 0.5 ms acknowledgement latencies (the defaults), with no tick
    after the orders and the timer ten minutes away: the engine wakes itself for them."""

    def sent_and_acks(
        messages: list[m.EngineMessage],
    ) -> tuple[dict[str, int], list[m.OrderAccepted | m.OrderRejected]]:
        sent = {x.order_id: x.time_ns for x in messages if isinstance(x, m.OrderRequested)}
        return sent, [x for x in messages if isinstance(x, (m.OrderAccepted, m.OrderRejected))]

    def all_acknowledged(messages: list[m.EngineMessage]) -> bool:
        sent, acks = sent_and_acks(messages)
        return bool(sent) and len(acks) >= len(sent)

    last_time, messages = with_a_silent_feed(
        tmp_path, recording, CONFIG, all_acknowledged, settle=True
    )
    sent, acks = sent_and_acks(messages)
    assert sent, "no agent ordered on the first 40 ticks"
    assert {x.order_id for x in acks} == set(sent)  # every order acknowledged, no tick needed
    assert {x.time_ns - sent[x.order_id] for x in acks} == {1_500_000}
    # what the last tick's orders and fills caused came after it, the engine waking on its own
    late = [x for x in messages if x.ticks == 40 and x.time_ns > last_time]
    assert late and all(isinstance(x, (m.Wake, *ADAPTER_EVENTS)) for x in late)
    assert any(isinstance(x, ADAPTER_EVENTS) for x in late)


def test_the_collector_is_off_the_tick_path_and_the_idle_loop_still_frees_cycles() -> None:
    class Node:
        other: Any = None

    was = gc.isenabled()
    try:
        young = _collector_off_the_tick_path()
        assert not gc.isenabled()  # no collection can start in the middle of a tick
        a, b = Node(), Node()
        a.other, b.other = b, a  # a cycle: reference counting alone never frees it
        gone = weakref.ref(a)
        del a, b
        assert gone() is not None
        young()  # what the idle loop runs
        assert gone() is None
    finally:
        gc.unfreeze()
        if was:
            gc.enable()


def test_a_replayed_day_opens_in_the_tick_clock(tmp_path: Path, recording: Path) -> None:
    """An order sent from ``on_start`` of a replayed 2021 day is stamped with the day's first
    tick time (not the wall clock of today), is answered, and no order-rate window jams."""
    config = deployment(tmp_path, recording)
    text = config.read_text()
    head, _, _ = text.partition("[[engine.agents]]")
    config.write_text(
        head
        + """[[engine.agents]]
name = "early"
strategy = "tests.services.engine.agents:OpensAtStart"
instruments = ["IF2101"]
capital = 1000000.0
params = { ticks = 3 }
"""
    )
    run_to_end_of_day(config, tmp_path / "engine.log")
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    first_tick = JournalReader(recording / str(DAY)).read_tick()
    assert first_tick is not None
    opened = journal[0]
    assert isinstance(opened, m.DayOpened) and opened.time_ns == first_tick.local_time_ns
    times = [x.time_ns for x in journal]
    assert times == sorted(times)  # the journal's time never runs backwards
    requests = [x for x in journal if isinstance(x, m.OrderRequested)]
    assert requests[0].kind == "market" and requests[0].time_ns == first_tick.local_time_ns
    answered = {x.order_id for x in journal
                if isinstance(x, (m.OrderAccepted, m.OrderRejected, m.Trade))}  # fmt: skip
    assert {r.order_id for r in requests} <= answered
    refused = [x for x in journal if isinstance(x, m.RiskRefused)]
    assert not [x for x in refused if x.code == "ORDER_RATE"], refused[:3]


@pytest.fixture
def in_process() -> Iterator[None]:
    """An ``EngineService`` run in this process installs its signal handlers: put pytest's
    back after."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.mark.usefixtures("in_process")
def test_a_halt_sent_during_a_backlog_is_applied_within_100_ms_of_engine_time(  # noqa: PLR0915
    tmp_path: Path, recording: Path
) -> None:
    """The whole day is in the recording, so the engine works through it as fast as it can. As
    the engine reads tick K, a halt reaches its command socket (the reader below sends it and
    waits until the socket holds it before it hands tick K over, a wait the loop's clock does
    not see); the halt is applied before the engine clock moves 100 ms past tick K, though the
    wall-clock housekeeping would come only dozens of ticks (many seconds of the day) later,
    and no order of the halted agent follows it."""
    k = 5_000
    config = load_config(deployment(tmp_path, recording))
    paused = [0]  # wall time the test spent waiting inside the reader: hidden from the loop

    def clock() -> int:
        """The loop's wall clock, a thousand times slow: as if this machine handled ticks a
        thousand times faster, so its millisecond housekeeping comes only every thousand
        milliseconds here, and only the deadlines in engine time can answer the halt in time
        (with this machine's own clock every tick of this test takes about a millisecond)."""
        return (time.monotonic_ns() - paused[0]) // 1000

    service = EngineService(config, clock=clock)
    sockets: list[Any] = []
    bind, open_ticks = service._bind, service._open_ticks
    seen: dict[str, int] = {}
    ctx = zmq.Context()
    client = ctx.socket(zmq.REQ)
    client.setsockopt(zmq.LINGER, 0)

    def bind_and_keep(context: Any) -> Any:
        sockets.append(bind(context))
        return sockets[-1]

    def ticks_that_send_the_halt(day: int, existing: list[m.EngineMessage]) -> JournalReader:
        reader = open_ticks(day, existing)
        plain = reader.next_tick

        def next_tick() -> tuple[int, Tick] | None:
            item = plain()
            if item is not None and item[0] == k:
                endpoint, token = _endpoint_and_token(config)
                client.connect(endpoint)
                client.send(msgspec.json.encode({
                    "token": token, "action": "halt", "scope": "agent", "target": "mm",
                    "requester": "test", "command_id": "halt-in-backlog"}))  # fmt: skip
                waited = time.monotonic_ns()
                assert sockets[0].poll(10_000), "the halt never reached the engine's socket"
                paused[0] += time.monotonic_ns() - waited
                seen["tick_time"] = item[1].local_time_ns
            elif item is not None and item[0] == k + 3_000:
                service.stop.requested = True
            return item

        reader.next_tick = next_tick  # type: ignore[method-assign]
        return reader

    service._bind = bind_and_keep  # type: ignore[method-assign,assignment]
    service._open_ticks = ticks_that_send_the_halt  # type: ignore[method-assign]
    try:
        assert service.run() == 0
        assert client.poll(5_000)
        reply = msgspec.json.decode(client.recv(), type=m.CommandReply)
    finally:
        client.close()
        ctx.term()
    assert reply.ok and reply.command_id == "halt-in-backlog", reply
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    (halt,) = [
        x
        for x in journal
        if isinstance(x, m.Halt) and not x.requester.startswith("engine: stopping")
    ]  # not its own at the stop
    # looked at before tick K or the one after it: before either moved the clock past the
    # deadline
    assert halt.ticks in (k, k + 1), (halt, seen)
    assert halt.time_ns - seen["tick_time"] <= 100_000_000
    (ack,) = [x for x in journal if isinstance(x, m.CommandAck) and x.command_id == halt.command_id]
    assert ack.ok and ack.ticks == halt.ticks and ack.time_ns - seen["tick_time"] <= 100_000_000
    after = journal[journal.index(halt) :]
    assert any(isinstance(x, m.OrderRequested) and x.agent == "trend" for x in after)
    assert not [x for x in after if isinstance(x, m.OrderRequested) and x.agent == "mm"]
    own = {x.command_id for x in journal if isinstance(x, m.Command)
           and x.requester.startswith("engine: stopping")}  # fmt: skip
    recent = [c["command_id"] for c in service.engine.recent_commands]  # type: ignore[union-attr]
    assert [c for c in recent if c not in own] == ["halt-in-backlog"]


def test_an_engine_journal_of_another_layout_is_refused_in_one_line(
    tmp_path: Path, recording: Path
) -> None:
    """A day journal written before engine journals had their own layout (free-form frames of
    the same messages) is refused, named, and left as it is."""
    config = deployment(tmp_path, recording)
    old = tmp_path / "journal" / "engine" / str(DAY)
    first = JournalReader(recording / str(DAY)).read_tick()
    assert first is not None
    opened = m.DayOpened(0, first.local_time_ns, DAY, [], {})
    with JournalWriter(old, layout=FREE_FORM) as writer:
        writer.append(m.encode(opened), opened.time_ns)
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    done = run_hft("engine", "--config", str(config))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"hft engine: error: {old}: a journal of free-form payloads, not an engine journal of "
        "this version: layout 0 v0, this engine reads layout 2 v1; move the directory aside (the "
        "suite that wrote it can still read it) and start the day afresh"
    )
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before
    info = run_hft("journal", "info", str(old))
    assert "free-form payloads" in info.stdout


def test_a_sigterm_during_start_up_stops_the_engine_cleanly(
    tmp_path: Path, recording: Path
) -> None:
    """SIGTERM while the engine still imports its strategies (a module that takes its time) is
    remembered, not fatal: the engine starts no day and exits 0."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "slow_start.py").write_text(
        "import time\nfrom pathlib import Path\nfrom services.engine import Strategy\n"
        f"Path({str(tmp_path / 'importing')!r}).touch()\n"
        f"while not Path({str(tmp_path / 'go')!r}).exists():\n    time.sleep(0.01)\n"
        "class Slow(Strategy):\n    pass\n"
    )
    config = deployment(tmp_path, recording)
    head, _, _ = config.read_text().partition("[[engine.agents]]")
    config.write_text(
        head.replace("[engine]\n", f"[engine]\nstrategy_paths = [{str(mine)!r}]\n")
        + '[[engine.agents]]\nname = "slow"\nstrategy = "slow_start:Slow"\n'
        'instruments = ["IF2101"]\ncapital = 1000000.0\n'
    )
    log = tmp_path / "engine.log"
    proc = start(config, log)
    deadline = time.monotonic() + 60
    while not (tmp_path / "importing").exists():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)  # in the middle of the strategy's import
    (tmp_path / "go").touch()
    assert proc.wait(timeout=30) == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    assert not (tmp_path / "journal" / "engine" / str(DAY)).exists()  # no day was started


def test_a_misspelt_strategy_parameter_stops_start_up_in_one_line(
    tmp_path: Path, recording: Path
) -> None:
    config = deployment(tmp_path, recording)
    config.write_text(config.read_text().replace(
        "params = { spread_ticks = 1, max_position = 3 }",
        "params = { spred_ticks = 1, max_position = 3 }"))  # fmt: skip
    done = run_hft("engine", "--config", str(config))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hft engine: error: engine.agents[0].params (agent mm, strategies.quoter:Quoter): "
        "spred_ticks: unknown key; did you mean 'spread_ticks'? expected one of: max_position, "
        "requote_ticks, size, spread_ticks"
    ]
    assert not (tmp_path / "journal" / "engine").exists()  # nothing was started


def test_each_day_runs_on_the_hours_of_that_day() -> None:
    """The engine's phase tables (its paper exchange's hours, the risk gate's) are those in
    force on the trading day: a 2017 CZCE night to 23:30, a 2024 one to 23:00, none on the
    Friday before Labour Day 2017."""
    config = load_config(ROOT / "configs" / "paper.toml")
    specs, _ = specs_for(["SR709"], load_calendar(), {"default": ProductRates(margin_rate=0.1)})
    at_2315, at_2130 = 23 * 3600 + 15 * 60, 21 * 3600 + 30 * 60
    assert day_phases(config, specs, 20170414)["SR709"][at_2315] == Phase.OPEN
    assert day_phases(config, specs, 20240416)["SR709"][at_2315] == Phase.CLOSED
    assert day_phases(config, specs, 20240416)["SR709"][at_2130] == Phase.OPEN
    assert day_phases(config, specs, 20170502)["SR709"][at_2130] == Phase.CLOSED
