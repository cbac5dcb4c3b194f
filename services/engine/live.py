"""``hft engine``: the live loop. One thread tails the day's tick journal, feeds the engine core,
handles adapter events and timers, and answers commands on an authenticated ZMQ socket.

Files: ticks are read from the day's live ring ``suite.shm_dir/ticks/YYYYMMDD`` that the
md_recorder writes, going on in its recording ``suite.journal_dir/recordings/YYYYMMDD`` when behind
the ring, or from the recording alone for a day with no ring (``contracts.ticks``). The engine's
journal is ``suite.journal_dir/engine/YYYYMMDD``, one per trading day, opening with ``DayOpened``
and, once the day has rolled, closing with ``DayClosed``. A restarted
engine recovers the day from its journal before it trades (docs/engine.md, "Recovery").

Commands (``hft command``, the monitor) are JSON ``CommandRequest`` objects on a ZMQ REP socket
bound to ``engine.command_endpoint``; each carries the engine token (``HFT_ENGINE_TOKEN`` or
``engine_token`` in the credentials file) and gets one ``CommandReply``.

Watching and reporting are in ``health.py``, interrupting a blocked agent in ``interrupts.py``,
the journal files in ``journals.py``.

Size: over 500 lines, since a day's life in the shell (its set-up, recovery or opening, the
loop with its housekeeping deadlines, the commands, the roll) is one sequence read together.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import importlib.metadata
import math
import os
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, Final

import msgspec
import zmq
from pydantic import ValidationError

from contracts import messages as m
from contracts.calendar import DEFAULT_CALENDAR, Calendar, load_calendar
from contracts.config import DeploymentConfig, format_validation_error
from contracts.credentials import load_credentials
from contracts.errors import JournalProblem, UserError
from contracts.logs import get_logger
from contracts.metrics import Buckets, MetricsEndpoint
from contracts.notify import SystemdNotifier
from contracts.refusals import RefusalLog
from contracts.status import LatencyWindow, StatusFile, status_path
from contracts.stop import StopSignals
from contracts.ticks import TickStore, days_in
from libshm import (
    JournalFull,
    JournalReader,
    JournalWriter,
    NotAJournal,
    Tick,
    WriterLocked,
    acquire_writer_lock,
    decode_tick,
    inspect_journal,
)
from services.engine.adapter import NEVER, Adapter
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine, RecoveryDiverged
from services.engine.ctp_link import ctp_factory, pump
from services.engine.health import STATUS_EVERY_NS, Health
from services.engine.intake import MAX_REQUEST_BYTES, Intake, refusal
from services.engine.interrupts import Interrupts, Watchdog
from services.engine.journals import check_engine_layout, read_journal
from services.engine.ledger import Spec
from services.engine.metrics import families
from services.engine.products import specs_for
from services.engine.risk import Portfolio, RiskLimits
from services.engine.strategy import Factor, Strategy, validate_params

__all__ = ["DAY_END_NS", "assemble", "deliver", "end_of_day", "fire_timer", "load_factor",
           "load_plugin", "load_strategy",
           "prepare", "read_journal", "run_engine", "settlements_of"]  # fmt: skip

SPIN_NS: Final = 2_000_000  # keep spinning this long after the last input, then nap
IDLE_SLEEP_S: Final = 0.00005
HOUSEKEEPING_NS: Final = 1_000_000  # commands are looked at every millisecond of wall time
COMMAND_EVERY_NS: Final = 100_000_000  # and before the engine clock moves 100 ms past the last look
END_CHECK_NS: Final = 500_000_000
DAY_END_NS: Final = 1_000_000_000  # after a finished day's last tick: the simulator's due events
COMMAND_BUDGET_NS: Final = 200_000  # commands' share of each housekeeping pass at most
GC_YOUNG: Final = 2_000  # young objects the idle loop lets pile up before it collects them

AdapterFactory = Callable[[Mapping[str, Spec], Mapping[str, bytes]], Adapter]
"""Builds the day's adapter from the instruments' specs and trading-phase tables."""


def prepare(config: DeploymentConfig, given: Mapping[str, type[Strategy]] | None = None
            ) -> tuple[dict[str, Spec], dict[str, type[Strategy]]]:  # fmt: skip
    """What every engine of a deployment is made of: the instruments' specs (each day's
    session phases are ``day_phases``), and each agent's strategy class, its parameters checked
    (a misspelt parameter stops here, in one line). ``given``: classes by agent name that are
    not imported by their ``strategy`` path (a backtest's ``add_strategy`` with a class defined
    in a notebook)."""
    ec = config.engine
    calendar = _calendar(config.md_recorder.calendar_file or DEFAULT_CALENDAR)
    instruments = list(dict.fromkeys(i for a in ec.agents for i in a.instruments))
    specs, _ = specs_for(instruments, calendar, ec.products)
    for directory in reversed(ec.strategy_paths):
        if str(directory) not in sys.path:
            sys.path.insert(0, str(directory))
    given = given or {}
    classes = {a.name: given.get(a.name) or load_strategy(a.strategy, a.name) for a in ec.agents}
    for i, agent in enumerate(ec.agents):
        cls = classes[agent.name]
        try:
            validate_params(cls, agent.params)
        except ValidationError as exc:
            where = f"engine.agents[{i}].params (agent {agent.name}, {agent.strategy})"
            raise UserError(format_validation_error(exc, where, root=cls.Params)) from None
    for i, factor in enumerate(ec.factors):
        outside = [x for x in factor.instruments if x not in specs]
        if outside:
            raise UserError(f"engine.factors[{i}] ({factor.name}): {outside[0]} is not traded by "
                            "any agent; list only the agents' instruments")  # fmt: skip
        factor_cls = load_factor(factor.factor, factor.name)
        try:
            validate_params(factor_cls, factor.params)
        except ValidationError as exc:
            where = f"engine.factors[{i}].params (factor {factor.name}, {factor.factor})"
            raise UserError(format_validation_error(exc, where, root=factor_cls.Params)) from None
    return dict(specs), classes


def day_phases(config: DeploymentConfig, specs: Mapping[str, Spec], day: int) -> dict[str, bytes]:
    """The instruments' phase tables on trading day ``day``: the hours then in force, without
    a night session if that day had none (contracts/calendar.py)."""
    calendar = _calendar(config.md_recorder.calendar_file or DEFAULT_CALENDAR)
    out = {}
    for instrument in specs:
        product = calendar.product(instrument)
        assert product is not None  # specs_for checked every instrument
        out[instrument] = calendar.phase_table(product, day)
    return out


@functools.lru_cache(maxsize=4)
def _calendar(path: Path) -> Calendar:
    """The calendar, read once a process (``prepare`` and each day's ``day_phases``)."""
    return load_calendar(path)


def assemble(  # noqa: PLR0917 (what an engine is made of)
    config: DeploymentConfig, specs: Mapping[str, Spec], phases: Mapping[str, bytes],
    classes: Mapping[str, type[Strategy]], adapter: Adapter,
    journal: Callable[[bytes, int], object] | None, log: Any,
    observer: Callable[[m.EngineMessage], object] | None = None,
) -> Engine:  # fmt: skip
    """The engine of a deployment with its agents, as the live service and a backtest make it
    for each trading day."""
    ec = config.engine
    calendar = _calendar(config.md_recorder.calendar_file or DEFAULT_CALENDAR)
    engine = Engine(specs=specs, gate_config=ec.risk, adapter=adapter, journal=journal,
                    phases=phases, log=log, callback_budget_ns=int(ec.callback_budget_ms * 1e6),
                    observer=observer, calendar=calendar)  # fmt: skip
    for agent in ec.agents:
        limits = RiskLimits.from_config(ec.risk, agent.risk.model_dump())
        engine.add_agent(agent.name, classes[agent.name], agent.instruments, agent.capital,
                         limits, agent.params)  # fmt: skip
        engine.subscribe_factors(agent.name, agent.factors)
    for p in ec.portfolios:
        engine.add_portfolio(Portfolio(p.name, tuple(p.agents), p.capital, p.max_position,
                                       p.max_net_position, p.max_margin_ratio,
                                       p.max_daily_loss))  # fmt: skip
    read = {name for agent in ec.agents for name in agent.factors}
    for factor in ec.factors:  # in the order listed; one no agent reads is not computed
        if factor.name in read:
            cls = load_factor(factor.factor, factor.name)
            engine.add_factor(factor.name, cls, factor.instruments,
                              validate_params(cls, factor.params))  # fmt: skip
    return engine


def fire_timer(engine: Engine, due_ns: int, step_ns: int, until_ns: int) -> int:
    """The timer's call for the last due time at or before ``until_ns`` (engine time); returns
    the next due time. Due times lie on a grid of ``engine.timer_ms`` from the epoch, so a
    restarted engine keeps the same ones; periods that passed with no chance to call (a backlog,
    a break) are one call, at the last of them. With no agent that has ``on_timer`` nothing is
    called or journaled (what the simulator has due happens at the next tick, at its time)."""
    due = due_ns + (until_ns - due_ns) // step_ns * step_ns
    if engine.wants_timer:  # no agent has on_timer: nothing to call, nothing to journal
        engine.on_timer(max(due, engine.now))
    return due + step_ns


def end_of_day(engine: Engine, last_tick_ns: int, due_ns: int, step_ns: int) -> int:
    """A finished day's recording, every tick handled: what the simulator has due up to
    ``DAY_END_NS`` after the last tick happens, each at its time, the K-lines still open at
    their due times (no tick will close them), and the timer if it is due by then; all by the
    ticks' clock, so a backlog ends its day the same every time. Returns the timer's next due
    time."""
    end = max(last_tick_ns + DAY_END_NS, engine.now, engine.bars.last_due())
    while (due := engine.due_ns) <= end:
        engine.wake(due)
    if end >= due_ns:
        due_ns = fire_timer(engine, due_ns, step_ns, end)
    return due_ns


def settlements_of(engine: Engine) -> dict[str, float]:
    """The prices a day's positions are marked to at the roll: each instrument's settlement,
    else its last price."""
    settlements = {}
    for instrument, tick in engine.latest.items():
        price = tick.settlement if not math.isnan(tick.settlement) else tick.last
        if not math.isnan(price):
            settlements[instrument] = price
    return settlements


def load_strategy(ref: str, agent: str) -> type[Strategy]:
    """``module:Class`` or an entry point of the ``hft.strategies`` group -> the class, or a
    ``UserError`` that says what is wrong."""
    cls = load_plugin(ref, "hft.strategies", f"agent {agent}: cannot import strategy",
                      "engine.agents.strategy")  # fmt: skip
    if not (isinstance(cls, type) and issubclass(cls, Strategy)):
        raise UserError(
            f"agent {agent}: {ref!r} is not a Strategy subclass (services.engine.strategy.Strategy)"
        )
    return cls


def load_factor(ref: str, name: str) -> type[Factor]:
    """A factor class by ``module:Class`` or entry point (``hft.factors``)."""
    cls = load_plugin(ref, "hft.factors", f"factor {name}: cannot import factor",
                      "engine.factors.factor")  # fmt: skip
    if not (isinstance(cls, type) and issubclass(cls, Factor)):
        raise UserError(f"factor {name}: {ref!r} is not a Factor subclass "
                        "(services.engine.strategy.Factor)")  # fmt: skip
    return cls


def load_plugin(ref: str, group: str, failing: str, key: str) -> object:
    """What ``ref`` names: ``module:Class`` imported, or a bare name looked up among the entry
    points of ``group`` that installed packages declare (``[project.entry-points."GROUP"]``).
    ``failing``: the start of the line for a module that cannot be imported."""
    if ":" not in ref:
        found = [e for e in importlib.metadata.entry_points(group=group) if e.name == ref]
        if not found:
            known = sorted(e.name for e in importlib.metadata.entry_points(group=group))
            raise UserError(
                f"{failing} {ref!r}: no installed package declares it in entry point group "
                f"{group!r} (installed: {', '.join(known) or 'none'}); install the package "
                f"that provides it, or write module:Class in {key}"
            )
        ref = found[0].value
    module_name, _, class_name = ref.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise UserError(
            f"{failing} module {module_name!r}: {type(exc).__name__}: {exc}; "
            f"check {key} and PYTHONPATH"
        ) from None
    return getattr(module, class_name, None)


def _collector_off_the_tick_path() -> Callable[[], object]:
    """Take the cyclic garbage collector off the tick path for the day: collect everything,
    freeze what survives (the set-up, the recovered day: never scanned again), stop automatic
    collections, and return the young-generation collection that the idle loop runs instead
    (``GC_YOUNG`` objects at a time, a fraction of a millisecond). Reference counting still
    frees everything that is not in a cycle at once. The next day's call collects the frozen
    objects too (the previous day's engine), and the service turns automatic collection back
    back as it found it when it stops."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    gc.disable()
    return partial(gc.collect, 1)


class EngineService(Health, Interrupts):
    """Wires the engine core to files, the clock and the command socket."""

    def __init__(
        self, config: DeploymentConfig, *, adapter_factory: AdapterFactory | None = None,
        clock: Callable[[], int] = time.monotonic_ns, sleep: Callable[[float], object] = time.sleep,
    ) -> None:  # fmt: skip
        """``clock`` (monotonic ns) and ``sleep`` are the wall clock the loop runs by: the time
        between ticks, the housekeeping deadlines, the engine clock while no tick comes."""
        self.config = config
        self.clock = clock
        self.sleep = sleep
        self.log = get_logger(service="engine")
        ec = config.engine
        self.specs, self.classes = prepare(config)
        self.adapter_factory: AdapterFactory = adapter_factory or (
            lambda specs, phases: PaperBroker(specs, phases, config.engine.paper)
        )
        self.ticks_store = TickStore.of(config.suite.shm_dir, config.suite.journal_dir)
        self.root = config.suite.journal_dir / "engine"
        credentials = load_credentials(config.suite.credentials_file)
        token = credentials.engine_token
        self.token = token.get_secret_value() if token is not None else ""
        self.token_file: Path | None = None
        self.stop = StopSignals()
        self.stop.on_signal = self._interrupt
        self.engine: Engine | None = None
        self._last_tick_wall = clock()
        self._last_tick_time = 0  # the last tick's receive time (engine time)
        self.refusals = RefusalLog()
        self.order_refusals = RefusalLog()  # the gate's refusals, per agent
        self.lag: dict[str, float] = {"ticks": 0, "seconds": 0.0}
        self._behind_since = self._lag_logged = self._next_status = 0
        self.feed: dict[str, object] = {"state": "live"}
        self._feed_timeout_ns = int(ec.feed_timeout_s * 1e9)
        self.tick_to_order = LatencyWindow()
        self.notifier = SystemdNotifier()
        """systemd's readiness, watchdog and status (docs/OPERATIONS.md)."""
        self.status_file = StatusFile(status_path(config.suite.journal_dir, "engine"), self.log)
        self.metrics = MetricsEndpoint(ec.metrics, "engine", config.suite.journal_dir, families,
                                       setting="engine.metrics")  # fmt: skip
        """Prometheus metrics (``engine.metrics``), fed once a second by ``Health``."""
        self.counts: Counter[tuple[str, ...]] = Counter()
        self.tick_to_order_buckets = Buckets()
        self._tick_to_order_seen = 0

    # -- set-up --------------------------------------------------------------------------------

    def _token(self) -> str:
        """The command token; without one configured, a random one in a 0600 file beside the
        journal (for paper trading and demos: ``hft command`` reads it from there)."""
        if self.token:
            return self.token
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "command.token"
        token = uuid.uuid4().hex
        path.touch(mode=0o600)
        path.chmod(0o600)
        path.write_text(token + "\n", encoding="utf-8")
        self.token_file = path
        return token

    def _lock(self) -> int:
        """Hold the engine directory's lock for the process's life, before anything is written
        there: a second engine on the same journal directory stops here, touching nothing."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"{self.root}: cannot create the engine's journal directory ({exc.strerror}); "
                "check suite.journal_dir and its permissions"
            ) from None
        try:
            return acquire_writer_lock(self.root / "engine.lock", str(self.root))
        except WriterLocked as exc:
            holder = f"process {exc.pid}" if exc.pid else "another process"
            raise JournalProblem(
                f"{self.root}: another engine ({holder}) runs on this journal directory; stop "
                "it first (`hft command status` talks to it)"
            ) from None
        except NotAJournal as exc:
            raise UserError(str(exc)) from None

    def _bind(self, ctx: zmq.Context[Any]) -> zmq.Socket[Any]:
        endpoint = self.config.engine.command_endpoint
        # ROUTER, not REP: it has no send/receive state to break, so no message a peer sends
        # can make a reply fail; replies to a peer that does not read are dropped at its HWM.
        sock: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.SNDHWM, 1000)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            raise UserError(
                f"engine.command_endpoint {endpoint}: cannot bind ({exc.strerror}); another "
                "engine may be running, or choose a free port"
            ) from None
        self.endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
        (self.root / "command.endpoint").write_text(self.endpoint + "\n", encoding="utf-8")
        return sock

    def _new_engine(self, writer: JournalWriter, day: int) -> Engine:
        phases = day_phases(self.config, self.specs, day)
        adapter = self.adapter_factory(self.specs, phases)
        return assemble(self.config, self.specs, phases, self.classes, adapter,
                        writer.append, self.log)  # fmt: skip

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        lock = self._lock()
        try:
            return self._run_locked()
        finally:
            os.close(lock)

    def _run_locked(self) -> int:
        # the token file first: a client that finds the endpoint file reads the token next
        intake = Intake(self._token())
        ctx: zmq.Context[Any] = zmq.Context()
        sock = self._bind(ctx)
        try:
            metrics_url = self.metrics.start()
        except BaseException:
            sock.close()
            ctx.term()
            raise
        collecting = gc.isenabled()
        watchdog = Watchdog(self)
        watchdog.start()
        self.log.info("engine_started", command_endpoint=self.endpoint, agents=list(self.classes),
                      token_file=str(self.token_file) if self.token_file else None,
                      metrics=metrics_url or None)  # fmt: skip
        try:
            day, holdings, cash = self._first_day()
            while day is not None and not self.stop.requested:
                day, holdings, cash = self._run_day(day, holdings, cash, sock, intake)
        finally:
            self.notifier.stopping()
            self.notifier.close()
            watchdog.stop()
            self.metrics.close()
            gc.unfreeze()
            if collecting:
                gc.enable()
            sock.close()
            ctx.term()
        self.log.info("engine_stopped")
        return 0

    def _idle_wait(self, seconds: float) -> None:
        """Sleep up to ``seconds`` in steps that keep the watchdog's pings coming."""
        deadline = time.monotonic() + seconds
        while not self.stop.requested and (left := deadline - time.monotonic()) > 0:
            self.notifier.tick(self._notify_status)
            time.sleep(min(left, 0.25))

    def _notify_status(self) -> str:
        engine = self.engine
        if engine is None:
            return "waiting for a recording"
        lag = self.lag.get("ticks", 0)
        return (f"day {engine.trading_day} · feed {self.feed['state']} · {engine.ticks} ticks · "
                f"{engine.order_count} orders · behind {lag:g} ticks")  # fmt: skip

    def _first_day(self) -> tuple[int | None, list[m.Holding], dict[str, float]]:
        """The trading day to run and what it opens with: the newest recording's day, with the
        holdings of the newest engine day before it that closed; or, if that engine day was
        left open and its ticks are still there, that day, which recovers and then rolls."""
        while not self.stop.requested:
            recorded = self.ticks_store.days()
            if recorded:
                break
            self.log.info("waiting_for_recording", directory=str(self.ticks_store.recordings),
                          ring=str(self.ticks_store.live))  # fmt: skip
            self.notifier.ready("waiting for a recording")  # it answers commands meanwhile
            self._idle_wait(1.0)
        else:
            return None, [], {}
        day = recorded[-1]
        for earlier in reversed(days_in(self.root)):
            if earlier >= day:
                continue
            messages = read_journal(self.root / str(earlier))
            if messages and isinstance(messages[-1], m.DayClosed):
                return day, messages[-1].holdings, messages[-1].cash
            if earlier in recorded:  # left open when a newer day began: finish and roll it first
                self.log.info("resuming_unrolled_day", day=earlier, newest=day)
                return earlier, [], {}
            self.log.warning("previous_day_not_closed", day=earlier,
                             hint="its positions are not carried over; roll it first")  # fmt: skip
            break
        return day, [], {}

    def _run_day(
        self, day: int, holdings: list[m.Holding], cash: dict[str, float],
        sock: zmq.Socket[Any], intake: Intake,
    ) -> tuple[int | None, list[m.Holding], dict[str, float]]:  # fmt: skip
        path = self.root / str(day)
        self._check_recording(day)
        if path.is_dir() and any(path.iterdir()):
            check_engine_layout(path, JournalReader(path))  # before a writer attaches
        try:
            writer = JournalWriter(path, layout=m.ENGINE_LAYOUT,
                                   segment_size=self.config.engine.segment_mb << 20)  # fmt: skip
        except WriterLocked:
            raise JournalProblem(
                f"{path}: another engine is writing this journal; stop it first"
            ) from None
        self._journal_writer = writer
        try:
            existing = read_journal(path)
            if existing and isinstance(existing[-1], m.DayClosed):
                self.log.info("day_already_closed", day=day)
                return None, [], {}
            ticks = self._open_ticks(day, existing)
            engine = self.engine = self._new_engine(writer, day)
            self.notifier.ready(f"day {day} · journal open")

            def next_tick() -> tuple[int, Tick]:
                while True:
                    self.notifier.tick(self._notify_status)
                    frame = ticks.wait(timeout_s=0.25)
                    if frame is not None:
                        return frame.seq, decode_tick(frame.payload)
                    if ticks.ended:
                        raise JournalProblem(
                            f"{self.ticks_store.where(day)}: the recording ends before the "
                            "engine journal's last tick; the recording was replaced or cut"
                        )

            if existing:
                t0 = time.perf_counter()
                try:
                    n = engine.recover(existing, next_tick)
                except RecoveryDiverged as exc:
                    raise JournalProblem(f"{path}: recovery stopped: {exc}") from None
                engine.adapter.restore(existing, engine.orders)
                self.log.info("recovered", day=day, messages=n, ticks=engine.ticks,
                              seconds=round(time.perf_counter() - t0, 3))  # fmt: skip
            else:
                start = self._first_tick_time(ticks, day, sock, intake)
                if start is None:
                    return None, [], {}
                engine.open_day(day, start, ticks.next_seq, holdings, cash)
                self.log.info("day_opened", day=day, first_tick=ticks.next_seq,
                              holdings=len(holdings))  # fmt: skip
            return self._loop(engine, ticks, sock, intake, day)
        except JournalFull as exc:
            raise UserError(self._stopped_full(exc), exit_code=1) from None
        finally:
            if self.engine is not None:
                self.engine.adapter.close()
                self.engine.stop()
                self._report(self.engine, self.clock())
                self._log_refusals(self.clock(), flush=True)
            writer.close()

    def _stopped_full(self, exc: JournalFull) -> str:
        """The journal cannot grow: nothing more may happen (every order is journaled before it
        leaves), so the engine stops. What it says: where, and the orders still working at the
        exchange, which no cancel can reach until the engine runs again."""
        engine = self.engine
        working = [o for o in engine.orders.values() if o.active] if engine is not None else []
        for order in working:
            self.log.error("order_left_working", order_id=order.order_id, agent=order.agent,
                           instrument=order.instrument, direction=order.direction,
                           offset=order.offset, price=order.price,
                           remaining=order.remaining, state=order.state.value)  # fmt: skip
        ids = ", ".join(o.order_id for o in working[:10]) + (", ..." if len(working) > 10 else "")
        left = (f"{len(working)} order(s) still working at the exchange ({ids}), listed in the "
                "log as order_left_working" if working else "no order is working")  # fmt: skip
        return (
            f"{exc}; the engine stopped, since nothing may happen that is not journaled; "
            f"{left}; free space and start it again: the day recovers from the journal"
        )

    def _open_ticks(self, day: int, existing: list[m.EngineMessage]) -> JournalReader:
        store = self.ticks_store
        path = store.where(day)
        try:
            if existing and isinstance(existing[0], m.DayOpened):
                reader = store.open(day, from_seq=existing[0].ticks)
            elif self.config.engine.start_at == "live":
                reader = store.open(day, live=True)
            else:
                reader = store.open(day)
        except NotAJournal as exc:
            raise UserError(f"{path}: cannot read the day's ticks: {exc}") from None
        return reader

    def _first_tick_time(
        self, ticks: JournalReader, day: int, sock: zmq.Socket[Any], intake: Intake
    ) -> int | None:
        """The time the day opens at: that of its first tick to handle, in the tick clock (a
        replayed day keeps its recorded times, so the wall clock would be years off and every
        time window wrong). Waits for that tick if it is not recorded yet, answering commands
        meanwhile; None if a stop is requested first."""
        waiting = False
        while not self.stop.requested:
            start = ticks.peek_time()
            if start is not None:
                return start
            if not waiting:
                waiting = True
                self.log.info("waiting_for_first_tick", day=day,
                              recording=str(self.ticks_store.where(day)))  # fmt: skip
            self.notifier.tick(self._notify_status)
            if sock.poll(50):
                self._before_open(sock, intake, day)
        return None

    def _before_open(self, sock: zmq.Socket[Any], intake: Intake, day: int) -> None:
        """Answer requests while the day waits for its first tick: status says so, and other
        commands are refused (there is nothing to act on yet)."""
        while True:
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            envelope, req, why = intake.parse(parts)
            if envelope is None:
                continue
            if req is None:
                self._reply(sock, envelope, refusal(why))
            elif req.action == "status":
                status = {"trading_day": day, "waiting": "for the day's first tick"}
                reply = m.CommandReply(True, "ok", req.command_id, status)
                self._reply(sock, envelope, msgspec.json.encode(reply))
            else:
                text = (f"the trading day {day} has not opened yet (no tick recorded); send it "
                        "again after the first tick")  # fmt: skip
                reply = m.CommandReply(False, text, req.command_id)
                self._reply(sock, envelope, msgspec.json.encode(reply))

    def _check_recording(self, day: int) -> None:
        """A finished recording (its writer closed it, or an imported one) is checked whole
        before the day starts."""
        path = self.ticks_store.where(day)
        try:
            state = self.ticks_store.open(day).writer_state()
        except NotAJournal as exc:
            raise UserError(f"{path}: cannot read the day's ticks: {exc}") from None
        if state == "open":
            return  # the recorder's writer checked it when it attached
        if state == "gone" and self.ticks_store.has_ring(day):
            # a writer attaching this moment (its head not marked open yet), or one that died:
            # it, or the next, checks the ring as it attaches; the feed watch acts meanwhile
            return
        if self.ticks_store.has_ring(day):
            path = self.ticks_store.recording(day)  # a closed ring's recording holds it all
        report = inspect_journal(path, count_instruments=False)
        if not report.intact:
            raise JournalProblem(
                f"{report.problems[0]}; the engine trades intact recordings only: "
                f"`hft journal verify {path}` lists the damage, `hft journal repair {path}` "
                "cuts the recording there after keeping a copy"
            )

    def _loop(  # noqa: PLR0915 (one function: its locals are the tick path's state)
        self, engine: Engine, ticks: JournalReader, sock: zmq.Socket[Any], intake: Intake, day: int
    ) -> tuple[int | None, list[m.Holding], dict[str, float]]:
        """Ticks first: the idle path only reads the journal and the clock. Commands, the status
        line and the end of the day are looked at every ``HOUSEKEEPING_NS`` of wall time; and,
        by engine time, before any tick that would move the engine's clock past a deadline:
        the timer's next due time, or ``COMMAND_EVERY_NS`` after commands were last looked at.
        So a backlog (a replay at full speed, an engine catching up) still answers a command
        within 100 ms of engine time, and its timer calls fall where they would live."""
        clock = self.clock
        self._timer_ns = self.config.engine.timer_ms * 1_000_000
        self._timer_due = (engine.now // self._timer_ns + 1) * self._timer_ns  # on the grid
        # (a backtest runs the same rules: fire_timer, end_of_day)
        self._next_status = clock() + STATUS_EVERY_NS
        next_end_check = clock() + END_CHECK_NS
        young_gc = _collector_off_the_tick_path()
        next_housekeeping = idle_since = clock()
        self._last_tick_time, self._last_tick_wall = engine.now, idle_since  # after a recovery
        warm_ns = self.config.engine.warm_us * 1_000
        next_warm = idle_since + warm_ns if warm_ns else NEVER
        read = ticks.next_tick
        stop = self.stop
        poll = sock.poll
        next_second = idle_since
        on_tick = engine.on_tick
        warm = engine.warm
        sleep = self.sleep
        tick_to_order = self.tick_to_order.add
        notify, status = self.notifier.tick, self._notify_status
        command_by = engine.now + COMMAND_EVERY_NS  # engine time
        due_by = min(command_by, self._timer_due)
        adapter = engine.adapter
        # an adapter on its own thread (CTP): what its session handed over, looked at whenever
        # no tick waits (an empty() is a few tens of ns)
        waiting = getattr(adapter, "waiting", None) if not adapter.deterministic else None
        day_over = False  # the day's end was handled at its ticks' time (_end_day)
        while not stop.requested:
            item = read()
            if item is not None:
                tick_time = item[1].local_time_ns
                if tick_time > due_by:  # the engine clock would pass a deadline: its duties first
                    if tick_time > self._timer_due:
                        self._fire_timer(engine, tick_time - 1)
                    if tick_time > command_by:
                        if poll(0):
                            self._commands(engine, sock, intake, clock() + COMMAND_BUDGET_NS,
                                           ticks.peek_time)  # fmt: skip
                        command_by = engine.now + COMMAND_EVERY_NS
                    due_by = min(command_by, self._timer_due)
                sent, read_at = engine.order_count, clock()
                on_tick(item[1], item[0])
                if waiting is not None and waiting():  # CTP's returns, between ticks too
                    self._pump_adapter(engine)
                if engine.outbox:  # an adapter on its own thread (CTP): hand them over
                    deliver(engine)
                self._last_tick_wall = idle_since = now = clock()
                if engine.order_count != sent:  # the tick caused orders: with the adapter
                    tick_to_order(now - read_at)
                self._last_tick_time = tick_time
                if now < next_housekeeping:
                    continue  # a busy feed still leaves commands their turn
            else:
                if waiting is not None and waiting():
                    self._pump_adapter(engine)
                now = clock()
                if now < next_housekeeping:
                    if now >= next_warm:  # quiet: run the order path dry (Engine.warm)
                        warm()
                        next_warm = now + warm_ns
                    elif now - idle_since > SPIN_NS:
                        sleep(IDLE_SLEEP_S)
                    elif waiting is not None:  # CTP: the session's thread needs the GIL now
                        sleep(0)
                    continue
            next_housekeeping = now + HOUSEKEEPING_NS
            notify(status)  # the watchdog's ping comes from this loop: a stuck loop stops it
            # Wakes and the idle timer only between ticks: they are timed by the tick clock plus
            # the wall time since the last tick, so a replay at full speed must not get them in
            # mid-flood, where the wall time would decide (and two runs of a day would differ).
            if item is None:
                if not day_over and ticks.writer_state() == "closed":
                    if ticks.peek_time() is not None:  # committed just before the close
                        continue
                    # the recording is finished and read to its end (a backlog, a replay at
                    # full speed, a backtest): the day ends at its ticks' time, not the wall's
                    day_over = True
                    self._end_day(engine)
                    if any(d > day for d in self.ticks_store.days()):
                        return self._roll(engine, day, at=engine.now)
                else:
                    self._quiet_duties(engine, young_gc)
            if engine.activity:
                self._report(engine, now)
            if poll(0):
                self._commands(engine, sock, intake, now + COMMAND_BUDGET_NS, ticks.peek_time)
                idle_since = now
            command_by = engine.now + COMMAND_EVERY_NS
            due_by = min(command_by, self._timer_due)
            if now >= next_second:
                next_second = now + 1_000_000_000
                self._each_second(engine, ticks, day, now, caught_up=item is None)
                self._journal_writer.heartbeat()  # the monitor tells a live engine from a dead one
            if engine.outbox:
                deliver(engine)
            if now >= next_end_check:
                next_end_check = now + END_CHECK_NS
                if self._day_ended(ticks, day):
                    item = read()  # what was committed just before the close
                    if item is not None:
                        on_tick(item[1], item[0])
                        continue
                    return self._roll(engine, day)
        self._cancel_on_stop(engine)
        return None, [], {}

    def _cancel_on_stop(self, engine: Engine) -> None:
        """``engine.on_stop = "cancel"``: cancel every working order and wait up to
        ``stop_wait_s`` of wall time for the adapter's answers. All of it is journaled
        commands, so a recovery repeats it where it happened: a halt of the account first (so
        no agent sends a new order meanwhile; only if it was active), the cancel_all, and the
        resume after it (the next start trades as before)."""
        ec = self.config.engine
        working = [o for o in engine.orders.values() if o.active]
        if ec.on_stop != "cancel" or not working:
            return
        engine.now = self._engine_now(engine)
        tag, why = uuid.uuid4().hex[:12], "engine: stopping (engine.on_stop = cancel)"
        active = engine.gate.state("account", "") == "active"
        if active:
            engine.command(m.Halt(0, 0, "account", "", why, f"{tag}-halt"))
        reply = engine.command(m.CancelAll(0, 0, "account", "", why, f"{tag}-cancel"))
        deadline = self.clock() + int(ec.stop_wait_s * 1e9)
        adapter = engine.adapter
        while any(o.active for o in working) and self.clock() < deadline:
            if engine.outbox:
                deliver(engine)
            if not adapter.deterministic:
                self._pump_adapter(engine)
            now = self._engine_now(engine)
            while (due := adapter.due_ns) <= now:  # the answers, when they are due
                engine.wake(due)
            time.sleep(0.001)
        if active:
            engine.now = max(engine.now, self._engine_now(engine))
            engine.command(m.Resume(0, 0, "account", "", why, f"{tag}-resume"))
        left = [o.order_id for o in working if o.active]
        emit = self.log.warning if left else self.log.info
        emit("engine_stop_cancelled", orders=len(working), still_working=left, text=reply.text)

    def _pump_adapter(self, engine: Engine) -> None:
        """Give the engine what the CTP session handed over, at the engine's time for an
        external input, and hand over the orders the agents sent in answer."""
        if pump(engine, engine.adapter, self._engine_now(engine)) and engine.outbox:  # type: ignore[arg-type]
            deliver(engine)

    def _fire_timer(self, engine: Engine, until_ns: int) -> None:
        self._timer_due = fire_timer(engine, self._timer_due, self._timer_ns, until_ns)

    def _quiet_duties(self, engine: Engine, young_gc: Callable[[], object]) -> None:
        """With no tick to handle: wake the engine at each time the simulator has something due
        by now (an order reaching the exchange, an acknowledgement or a fill reaching the
        engine), call the timer if it is due, and collect the young generation if enough
        objects piled up."""
        now = self._engine_now(engine)
        while (due := engine.due_ns) <= now:
            engine.wake(due)
        if now >= self._timer_due:
            self._fire_timer(engine, now)
        if gc.get_count()[0] >= GC_YOUNG:
            young_gc()

    def _end_day(self, engine: Engine) -> None:
        self._timer_due = end_of_day(engine, self._last_tick_time, self._timer_due,
                                     self._timer_ns)  # fmt: skip

    def _day_ended(self, ticks: JournalReader, day: int) -> bool:
        """The day's recording is closed and a newer trading day is being recorded."""
        if ticks.writer_state() != "closed":
            return False
        return any(d > day for d in self.ticks_store.days())

    def _roll(self, engine: Engine, day: int, at: int | None = None
              ) -> tuple[int | None, list[m.Holding], dict[str, float]]:  # fmt: skip
        """Roll to the next recorded day at ``at`` (engine time), or at the engine's time for an
        external input (the wall clock's share) when the day ended while the engine waited."""
        newer = [d for d in self.ticks_store.days() if d > day]
        engine.roll_day(self._engine_now(engine) if at is None else at, newer[0],
                        settlements_of(engine))  # fmt: skip
        holdings, cash = engine.holdings()
        self.log.info("day_rolled", day=day, next_day=newer[0], holdings=len(holdings))
        return newer[0], holdings, cash

    def _engine_now(self, engine: Engine) -> int:
        """Engine time for an external input: the last tick's time plus the wall time since
        (never behind the engine's clock, which a timer or a command may have moved on). Before
        the first tick the last tick's time is the day's opening time."""
        since = self._last_tick_time + self.clock() - self._last_tick_wall
        return since if since > engine.now else engine.now

    def _commands(self, engine: Engine, sock: zmq.Socket[Any], intake: Intake, until: int,
                  tick_waiting: Callable[[], int | None]) -> None:  # fmt: skip
        """Answer what is waiting on the command socket, until ``until`` (monotonic ns) or a
        tick arrives, whichever is first, but at least one request per pass: a flood of requests
        delays a tick by one request's handling at most, and commands still get through while
        ticks never stop."""
        first = True
        while first or (self.clock() < until and tick_waiting() is None):
            first = False
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                peer = str(parts[-1].get("Peer-Address"))
            except zmq.ZMQError:  # ipc and inproc peers have no address
                peer = "local socket"
            envelope, req, why = intake.parse([p.bytes for p in parts])
            if req is None:
                if self.refusals.refused(self.clock(), peer, why):
                    self.log.warning(
                        "command_refused",
                        peer=peer,
                        reason=why,
                        hint="more refusals from this peer: counted for 10 s",
                    )
                if envelope is not None:
                    self._reply(sock, envelope, refusal(why))
                continue
            assert envelope is not None
            self._reply(sock, envelope, self._answer(engine, req))

    @staticmethod
    def _reply(sock: zmq.Socket[Any], envelope: list[bytes], body: bytes) -> None:
        with contextlib.suppress(zmq.ZMQError):  # a peer gone or not reading: answer dropped
            sock.send_multipart([*envelope, body], zmq.NOBLOCK)

    def _answer(self, engine: Engine, req: m.CommandRequest) -> bytes:
        if req.action == "status":
            status = self._status(engine, engine.trading_day)
            return msgspec.json.encode(m.CommandReply(True, "ok", req.command_id, status))
        kinds: dict[str, type[m.Command]] = {
            "halt": m.Halt, "reduce": m.Reduce, "resume": m.Resume, "cancel_all": m.CancelAll,
            "flatten": m.Flatten, "cancel_order": m.CancelOrder,
        }  # fmt: skip
        command_id = req.command_id or uuid.uuid4().hex[:12]
        engine.now = self._engine_now(engine)
        cmd = kinds[req.action](0, 0, req.scope, req.target, req.requester, command_id)
        ack = engine.command(cmd)
        self.log.info("command", action=req.action, scope=req.scope, target=req.target,
                      requester=req.requester, command_id=command_id, ok=ack.ok,
                      text=ack.text)  # fmt: skip
        return msgspec.json.encode(m.CommandReply(ack.ok, ack.text, command_id))


def deliver(engine: Engine) -> None:
    """Hand the core's outbox to its adapter (one that is not deterministic: the core calls a
    deterministic one at once), off the core's stack. Where an order leaves from (CTP's
    OrderRef) is journaled before it is handed over (``OrderRouted``), so a restart never
    reuses the ref and knows the order's returns."""
    adapter = engine.adapter
    for out in engine.data_to_send():
        if out.action == "submit":
            route = adapter.route(out.order)
            if route is not None:
                engine.routed(m.OrderRouted(engine.ticks, engine.now, out.order.order_id, *route))
            adapter.submit(out.order, out.time_ns)
        else:
            adapter.cancel(out.order, out.time_ns)


def run_engine(config: DeploymentConfig) -> int:
    """Run until SIGTERM or SIGINT."""
    if not config.engine.agents:
        raise UserError("engine: no agents; add [[engine.agents]] tables to the deployment file")
    factory = None
    if config.engine.adapter == "ctp":
        factory = ctp_factory(config, get_logger(service="engine"))
    return EngineService(config, adapter_factory=factory).run()
