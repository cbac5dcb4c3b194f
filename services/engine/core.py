"""The engine core: agents, risk gate, order book, ledger and adapter wired by messages.

No I/O of its own: the live loop (``services/engine/live.py``), a backtest or a test feeds it
ticks (:meth:`Engine.on_tick`), adapter events (:meth:`Engine.adapter_event`), timer calls and
commands, and gives it a ``journal`` function to append encoded messages to. Every state change is
a message from ``contracts.messages`` that is journaled *before* it is applied, and applying a
message is the only way state changes. Orders leave through the adapter port
(``services/engine/adapter.py``): at once to a deterministic adapter, through the outbox
(:meth:`Engine.data_to_send`) to the others. A settlement record (``FLAG_SETTLEMENT``) only
updates the instrument's latest tick, whose settlement price the day's roll marks positions to.

This module is the order path and the application of messages; the engine's other parts are
mixed in from ``agents.py`` (running agents), ``commands.py`` (operator commands) and
``recovery.py`` (rebuilding the day from its journal).

Size: over 500 lines, since the order path stays in one module: an agent's ``send`` through the
gate, the journal and the adapter, and the application of each message it leads to, are the
tick-to-order path that docs/engine.md measures, read together when it changes.
"""

from __future__ import annotations

import math
import numbers
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import structlog

from contracts import messages as m
from contracts.calendar import Calendar
from libshm import FLAG_SETTLEMENT, Tick
from services.engine.adapter import (
    NEVER,
    Accepted,
    Adapter,
    AdapterEvent,
    Cancelled,
    CancelRefused,
    Outgoing,
    Rejected,
    Traded,
)  # fmt: skip
from services.engine.agents import (
    INTERRUPTED,
    AgentHandle,
    AgentInterrupted,
    AgentRunner,
    RecoveryDiverged,
)
from services.engine.bars import Bar, BarBook, BarBuilder
from services.engine.commands import RECENT_COMMANDS, Commands
from services.engine.conditional import Cond, Conditionals
from services.engine.ledger import Ledger, Rates, Spec
from services.engine.offsets import plan
from services.engine.orders import Event, InvalidTransition, Order, OrderIds, Overfill, State
from services.engine.recovery import Recovery
from services.engine.risk import ACTIVE, REDUCING, Portfolio, RiskGate, RiskLimits
from services.engine.strategy import (
    OrderView,
    Strategy,
    StrategyContext,
    TradeView,
    validate_params,
)

__all__ = ["INTERRUPTED", "AgentHandle", "AgentInterrupted", "Engine", "RecoveryDiverged"]


def _normalise(instrument: object, price: object, volume: object) -> tuple[str, float, int]:
    """An agent's instrument, price and volume as str, float and int, or a ``TypeError`` or
    ``ValueError`` that names the argument: numpy scalars and ints for prices are taken, bools
    and other types are not (``True`` is not one lot). Called only off the common path (a str,
    a float and an int)."""
    if not isinstance(instrument, str):
        raise TypeError(f"instrument must be a str, not {type(instrument).__name__}")
    if isinstance(price, bool) or not isinstance(price, numbers.Real):
        raise TypeError(f"price must be a number, not {type(price).__name__}")
    if isinstance(volume, bool) or not isinstance(volume, numbers.Integral):
        raise TypeError(f"volume must be a whole number of lots (int), not {volume!r}")
    try:
        return str(instrument), float(price), int(volume)
    except OverflowError:
        raise ValueError(f"price must be a finite number, not {price!r}") from None


_encode = m.ENCODER.encode
MAX_VOLUME: Final = 2**31 - 1  # CTP's volume fields are 32-bit
MAX_NAME: Final = 64
_DIRECTIONS: Final = frozenset({"buy", "sell"})
_KINDS: Final = frozenset({"limit", "market", "fak", "fok"})
_REPORTED: Final = frozenset(
    {m.OrderRequested, m.RiskRefused, m.OrderRejected, m.Trade, m.CancelRequested}
)
ACTIVITY: Final = 10_000  # reported messages kept for the shell to log, newest last
FINISHED_KEEP_NS: Final = 60_000_000_000
"""A finished order stays in ``Engine.orders`` this long (engine time) for late events about it
(a cancel refused after the fill), then leaves memory; the journal keeps it."""


class Engine(AgentRunner, Commands, Recovery, Conditionals):
    """One trading day of one account's agents."""

    def __init__(
        self,
        *,
        specs: Mapping[str, Spec],
        gate_config: Any,
        adapter: Adapter,
        journal: Callable[[bytes, int], object] | None = None,
        phases: Mapping[str, bytes] | None = None,
        log: Any = None,
        callback_budget_ns: int = 10_000_000,
        clock: Callable[[], int] = time.monotonic_ns,
        observer: Callable[[m.EngineMessage], object] | None = None,
        calendar: Calendar | None = None,
    ) -> None:
        """``clock``: what times an agent's callbacks against ``callback_budget_ns`` (wall time,
        never journaled: the engine's own time is the ticks'). ``observer``: called with each
        message journaled, after the journal (a backtest's results). ``calendar``: the sessions
        the K-lines count trading time by (none: an agent's ``subscribe_bars`` is refused)."""
        self.specs = dict(specs)
        self.phases = dict(phases or {})
        self.calendar = calendar
        self.bars = BarBook(0, self._sections)  # the day's K-lines (a new book each day)
        self._toolkit()
        self.adapter = adapter
        self.ledger = Ledger()
        self.gate = RiskGate(gate_config, self.ledger)
        self.ids = OrderIds()
        self.log = log or structlog.get_logger("engine")
        self.agents: dict[str, AgentHandle] = {}
        self.by_instrument: dict[str, list[AgentHandle]] = {}
        self.orders: dict[str, Order] = {}
        """The day's orders that left the gate: the working ones, and those finished less than
        ``FINISHED_KEEP_NS`` ago."""
        self.order_count = 0  # orders of the day that left the gate
        self._finished: deque[tuple[int, str]] = deque()  # (finish time, id), oldest first
        self.working: dict[str, dict[str, Order]] = {}  # per instrument, every agent's
        self.latest: dict[str, Tick] = {}
        self.trading_day = 0
        self.now = 0
        self.wants_timer = False
        """Whether an agent has ``on_timer``: the timer is not fired (nor journaled) if none."""
        self.ticks = 0  # sequence number of the next tick to dispatch
        self.sent = 0  # orders handed to the adapter by this process
        # submits and cancels for an adapter that is not deterministic, for the shell to hand
        # over (data_to_send); a deterministic one is called at once
        self.outbox: list[Outgoing] = []
        self._direct = adapter.deterministic
        self._dry = False  # warm(): the order path runs up to the journal and stops there
        self._journal = journal
        self._observer = observer
        self._expect: deque[m.EngineMessage] = deque()
        self.recent_commands: deque[dict[str, object]] = deque(maxlen=RECENT_COMMANDS)
        self._last_refusal = ""  # code and text of the gate's last refusal (for flatten)
        # orders, refusals, rejections and fills journaled now (never those a recovery repeats),
        # for the shell to log off the tick path; bounded, so an engine without a shell is too
        self.activity: deque[m.EngineMessage] = deque(maxlen=ACTIVITY)
        self._fresh = True  # the message being applied was journaled now, not recovered
        # the agent callback running now, since when (monotonic ns), and the budget: read by
        # the shell's watchdog and stop signal (a callback that blocks), and logged here
        self.calling: AgentHandle | None = None
        # an agent's callback through calling.call_agent, whose frame tells the live shell's
        # interrupts where the agent's code begins, and timed against its budget; a backtest,
        # which interrupts nothing and whose wall time is no deadline, calls it directly
        # (agents.AgentRunner._call)
        self.shell_calls = True
        self.calling_fn: Callable[..., object] | None = None
        self.call_started = 0
        self.callback_budget_ns = callback_budget_ns
        self.clock = clock
        # an interrupt that arrived while the agent was inside the engine (send, cancel): it is
        # raised at the agent's next call into the engine, never in the middle of engine code
        self.pending_interrupt: str | None = None
        # the journal's write failed (a full disk), or the observer's (a backtest's results):
        # nothing may happen after it, so the error goes on up even through an agent's callback
        # that caught it (AgentRunner._call)
        self.journal_failed: BaseException | None = None
        self._slow: dict[str, list[int]] = {}  # agent -> [over budget since the line, last line]
        self._ack = m.CommandAck(0, 0, "", False, "")
        self._apply_of: dict[type, Callable[[Any], None]] = {
            m.DayOpened: self._apply_day_opened, m.DayRolled: self._apply_day_rolled,
            m.DayClosed: _ignore,
            m.AgentStarted: self._apply_agent_started, m.AgentStopped: self._apply_stopped,
            m.TimerFired: self._apply_timer, m.Wake: _ignore,
            m.OrderRequested: self._apply_requested,
            m.RiskRefused: self._apply_refused, m.CancelRequested: self._apply_cancel_requested,
            m.CancelRefused: self._apply_cancel_refused, m.OrderAccepted: self._apply_accepted,
            m.OrderRejected: self._apply_rejected, m.OrderCancelled: self._apply_cancelled,
            m.Trade: self._apply_trade, m.Halt: self._apply_command, m.Reduce: self._apply_command,
            m.Resume: self._apply_command, m.CancelAll: self._apply_command,
            m.Flatten: self._apply_command, m.CancelOrder: self._apply_command,
            m.CommandAck: _ignore,
            m.StateChanged: self._apply_state,
            m.ConditionalPlaced: self._apply_cond_placed,
            m.ConditionalTriggered: self._apply_cond_triggered,
            m.ConditionalModified: self._apply_cond_modified,
            m.ConditionalEnded: self._apply_cond_ended,
            m.PortfolioSet: self._apply_portfolio,
            m.OrderRouted: _ignore,  # the CTP adapter's; read back by it (Adapter.restore)
            m.InstrumentSet: self._apply_instrument,
            m.ExternalOrder: _ignore,  # another terminal's: shown by the monitor, never booked
            m.ExternalTrade: _ignore,
        }  # fmt: skip

    def _toolkit(self) -> None:
        """The strategy toolkit's state (docs/toolkit.md)."""
        # conditional orders (conditional.py): all of the day's, the open ones by instrument,
        # the one each released order belongs to, the next TWAP slice's time, ids issued
        self.conds: dict[str, Cond] = {}
        self.cond_by_instrument: dict[str, list[Cond]] = {}
        self.cond_of_order: dict[str, Cond] = {}
        self.cond_due = NEVER
        self.cond_count = 0
        # factors: per instrument, (name, update) in the order they were added; their latest
        # values by (name, instrument)
        self.factor_fns: dict[str, list[tuple[str, Callable[[Tick], float]]]] = {}
        self.factor_values: dict[tuple[str, str], float] = {}
        self.portfolios: list[Portfolio] = []  # journaled at the day's open

    # -- set-up --------------------------------------------------------------------------------

    def add_agent(  # noqa: PLR0917
        self,
        name: str,
        factory: Callable[[StrategyContext, dict[str, Any]], Strategy],
        instruments: Iterable[str],
        capital: float,
        limits: RiskLimits,
        params: dict[str, Any] | None = None,
    ) -> AgentHandle:
        instruments = tuple(instruments)
        unknown = [i for i in instruments if i not in self.specs]
        if unknown:
            raise ValueError(f"agent {name}: no product facts for {', '.join(unknown)}")
        if isinstance(factory, type) and issubclass(factory, Strategy):
            params = validate_params(factory, params or {})
            self.wants_timer |= factory.on_timer is not Strategy.on_timer
        else:  # a factory: its strategy's class is known only once it is made
            self.wants_timer = True
        handle = AgentHandle(self, name, instruments, capital, limits, dict(params or {}), factory,
                             self.log.bind(agent=name))  # fmt: skip
        self.agents[name] = handle
        self.gate.add_agent(name, limits)
        for instrument in instruments:
            self.by_instrument.setdefault(instrument, []).append(handle)
        return handle

    def open_day(
        self, trading_day: int, now_ns: int, first_tick: int = 0,
        holdings: Iterable[m.Holding] = (), cash: Mapping[str, float] | None = None,
    ) -> None:  # fmt: skip
        """Start the trading day: the previous day's holdings and cash, then every agent."""
        self.now = now_ns
        self.ticks = first_tick
        cash = dict(cash or {})
        for name, handle in self.agents.items():
            cash.setdefault(name, handle.capital)
        self._emit(m.DayOpened(self.ticks, now_ns, trading_day, list(holdings), cash))
        for p in self.portfolios:
            self._emit(
                m.PortfolioSet(
                    self.ticks,
                    now_ns,
                    p.name,
                    list(p.agents),
                    p.capital,
                    _or(p.max_position, -1),
                    _or(p.max_net_position, -1),
                    p.max_margin_ratio or 0.0,
                    p.max_daily_loss or 0.0,
                )
            )
        for name in self.agents:
            self._emit(m.AgentStarted(self.ticks, now_ns, name))
        self._pump()

    # -- inputs --------------------------------------------------------------------------------

    def on_tick(self, tick: Tick, seq: int) -> None:
        """A tick committed to the day's tick journal at ``seq``."""
        now = tick.local_time_ns
        if self.adapter.due_ns < now or self.bars.due_ns < now or self.cond_due < now:
            self._wake_until(now)
        self.ticks = seq + 1
        self.now = now
        finished = self._finished
        if finished and finished[0][0] < now - FINISHED_KEEP_NS:
            self._forget(now - FINISHED_KEEP_NS)
        instrument = tick.instrument
        if instrument not in self.latest:  # its first tick: the previous settlement
            self.ledger.pre_settle(instrument, tick.pre_settlement)
        self.latest[instrument] = tick  # also the risk gate's quote
        if tick.flags & FLAG_SETTLEMENT:  # the day's settlement price, for the roll's mark:
            return  # not market activity, so neither the adapter, the bars nor the agents see it
        held = self.ledger.mark(instrument, tick.last)
        self.adapter.on_tick(tick, now)
        self._pump()
        if instrument in self.cond_by_instrument:  # conditional orders this tick triggers
            self._cond_tick(tick)
            self._pump()
        fns = self.factor_fns.get(instrument)
        if fns is not None:  # factors: once a tick, before any agent reads them
            self._factors(tick, fns)
        handles = self.by_instrument.get(instrument)
        if handles is None:
            return
        if held:  # someone's mark-to-market moved
            for handle in handles:
                line = self.ledger.accounts[handle.name].lines.get(instrument)
                if line is not None and (line.position.long or line.position.short):
                    self._check_loss(handle)
        if instrument in self.bars.by_instrument:  # a later bar's tick closes a bar first
            self._deliver(self.bars.on_tick(tick))
        for handle in handles:
            if handle.running:
                self._call(handle, handle.tick_fn, tick)
        self._pump()

    @property
    def due_ns(self) -> int:
        """The engine time of the next thing due with no input: the adapter's (the paper
        simulator's) or a bar's close. The shell wakes the engine then (:meth:`wake`)."""
        due = self.adapter.due_ns
        bars = self.bars.due_ns
        due = min(due, bars)
        return self.cond_due if self.cond_due < due else due

    def on_timer(self, now_ns: int) -> None:
        self._wake_until(now_ns)  # what fell due before it, each at its time
        self.now = now_ns
        self._emit(m.TimerFired(self.ticks, now_ns))
        self._pump()

    def wake(self, now_ns: int) -> None:
        """The clock reached ``now_ns`` (:attr:`due_ns`) with no tick: what the adapter had due
        by then happens now, then the bars due by then close. Journaled (``Wake``) only if the
        engine hears of something then: a wake in which only the simulator moves (an order
        reaching its exchange) changes nothing of the engine's, and the simulator does the
        same later, at the same times, whenever it is next called (docs/engine.md, "Wakes"); a
        bar's close is journaled, so a recovery closes it at the same point."""
        self.now = now_ns
        adapter = self.adapter
        events = adapter.events(now_ns) if adapter.due_ns <= now_ns else []
        closing = self.bars.due_ns <= now_ns
        slicing = self.cond_due <= now_ns
        if not events and not closing and not slicing:
            return
        self._emit(m.Wake(self.ticks, now_ns))
        for event in events:
            self._event(event)
        if closing:
            self._pump()
            self._deliver(self.bars.close_due(now_ns))
        if slicing:  # a TWAP's slices
            self._pump()
            self._cond_wake(now_ns)
        self._pump()

    def _wake_until(self, end_ns: int) -> None:
        """Wake at each time something is due before ``end_ns`` (what it does may make more
        due: an order's acknowledgement after it reaches the exchange)."""
        while (due := self.due_ns) < end_ns:
            self.wake(due)

    # -- factors -------------------------------------------------------------------------------

    def add_factor(self, name: str, factory: Callable[[str, dict[str, Any]], Any],
                   instruments: Iterable[str], params: dict[str, Any]) -> None:  # fmt: skip
        """A factor computed on each tick of ``instruments``, after those added before it."""
        for instrument in instruments:
            if instrument not in self.specs:
                raise ValueError(f"factor {name}: no product facts for {instrument}")
            update = factory(instrument, dict(params)).update
            self.factor_fns.setdefault(instrument, []).append((name, update))
            self.factor_values[name, instrument] = math.nan

    def subscribe_factors(self, agent: str, names: Iterable[str]) -> None:
        self.agents[agent].factors = frozenset(names)

    def factor_value(self, handle: AgentHandle, name: object, instrument: object) -> float:
        if not isinstance(name, str) or name not in handle.factors:
            raise ValueError(f"factor {name!r} is not among agent {handle.name}'s factors "
                             f"({', '.join(sorted(handle.factors)) or 'none'}); add it to its "
                             "factors in the deployment file")  # fmt: skip
        value = self.factor_values.get((name, instrument))  # type: ignore[arg-type]
        if value is None:
            raise ValueError(f"factor {name} is not computed for {instrument!r}")
        return value

    def _factors(self, tick: Tick, fns: list[tuple[str, Callable[[Tick], float]]]) -> None:
        """Each factor of the tick's instrument, in order. One that raises is logged and reads
        NaN from then on (the same in a recovery)."""
        values, instrument = self.factor_values, tick.instrument
        for i, (name, update) in enumerate(fns):
            try:
                values[name, instrument] = float(update(tick))
            except Exception:
                if not self._expect:
                    self.log.exception("factor_failed", factor=name, instrument=instrument,
                                       text=f"factor {name} raised on a tick of {instrument}; "
                                       "it reads NaN for the rest of the day")  # fmt: skip
                values[name, instrument] = math.nan
                fns[i] = (name, _nan)

    # -- K-lines -------------------------------------------------------------------------------

    def subscribe_bars(self, handle: AgentHandle, instrument: object, period: object) -> None:
        """An agent's subscription to the bars of ``instrument`` (one the engine trades)."""
        if not isinstance(instrument, str):
            raise TypeError(f"instrument must be a str, not {type(instrument).__name__}")
        if instrument not in self.specs:
            raise ValueError(f"subscribe_bars: {instrument} is not traded by this engine; its "
                             f"instruments: {', '.join(sorted(self.specs))}")  # fmt: skip
        if self.calendar is None:
            raise ValueError("subscribe_bars: this engine was built without a calendar")
        self.bars.subscribe(instrument, period, handle, self.latest.get(instrument))

    def _sections(self, instrument: str) -> tuple[tuple[int, int, bool], ...]:
        calendar = self.calendar
        product = calendar.product(instrument) if calendar is not None else None
        if product is None:
            raise ValueError(f"subscribe_bars: the calendar does not know {instrument}")
        return calendar.day_sections(product, self.trading_day)  # type: ignore[union-attr]

    def _deliver(self, closed: list[tuple[BarBuilder, Bar]]) -> None:
        """Closed bars to their subscribers' ``on_bar``, in order."""
        for builder, bar in closed:
            for handle in builder.subscribers:
                if handle.running:
                    self._call(handle, handle.strategy.on_bar, bar)

    def adapter_event(self, event: AdapterEvent, now_ns: int) -> None:
        """An event of an adapter that runs on its own (CTP), with the time it arrived."""
        self.now = now_ns
        self._event(event)
        self._pump()

    def routed(self, msg: m.OrderRouted) -> None:
        """The adapter's ref for an order, journaled before the order leaves (the shell's
        hand-over, ``live.deliver``); no engine state changes."""
        self.now = max(self.now, msg.time_ns)
        self._emit(msg)

    def external(self, msg: m.ExternalOrder | m.ExternalTrade) -> None:
        """An order or fill of another terminal of the account (the CTP adapter's), journaled
        for the monitor; no agent sees it, no ledger books it."""
        self.now = max(self.now, msg.time_ns)
        self._emit(msg)

    def set_instrument(self, msg: m.InstrumentSet) -> None:
        """The broker's facts of an instrument, from now on (the CTP adapter's login)."""
        self.now = max(self.now, msg.time_ns)
        self._emit(msg)

    def _apply_instrument(self, msg: m.InstrumentSet) -> None:
        old = self.specs.get(msg.instrument)
        if old is None:
            return
        rates = Rates(
            msg.long_margin_rate, msg.open_per_lot, msg.open_rate, msg.close_per_lot,
            msg.close_rate, msg.close_today_per_lot, msg.close_today_rate, msg.long_margin_rate,
            msg.short_margin_rate, msg.long_margin_per_lot, msg.short_margin_per_lot,
            old.rates.margin_price,
        )  # fmt: skip
        spec = Spec(msg.instrument, old.exchange, msg.multiplier, msg.price_tick, rates,
                    old.close_today_first)  # fmt: skip
        self.specs[msg.instrument] = spec
        self.ledger.respec(spec)

    def roll_day(self, now_ns: int, next_day: int, settlements: Mapping[str, float]) -> None:
        """End of the trading day: working orders expire, positions are marked to settlement."""
        self.now = now_ns
        self._deliver(self.bars.close_all())  # the day's open bars, before its orders expire
        self._pump()
        self._end_all("expired at the end of the trading day")
        for order in list(self.orders.values()):
            if order.active:
                self._emit(m.OrderCancelled(self.ticks, now_ns, order.order_id,
                                            "expired at the end of the trading day"))  # fmt: skip
        self._emit(m.DayRolled(self.ticks, now_ns, self.trading_day, next_day, dict(settlements)))
        holdings, cash = self.holdings()
        self._emit(m.DayClosed(self.ticks, now_ns, self.trading_day, holdings, cash))

    def holdings(self) -> tuple[list[m.Holding], dict[str, float]]:
        """What this day hands to the next (after :meth:`roll_day`)."""
        out = []
        for name, account in self.ledger.accounts.items():
            for instrument, line in account.lines.items():
                p = line.position
                if p.long or p.short:
                    out.append(m.Holding(name, instrument, p.long, p.short, line.long_open_cost,
                                         line.short_open_cost, line.mark))  # fmt: skip
        cash = {name: a.cash for name, a in self.ledger.accounts.items()}
        return out, cash

    # -- agents' actions -----------------------------------------------------------------------

    def send(  # noqa: PLR0917 (an agent's order, positional: on the order path)
        self, handle: AgentHandle, instrument_: object, direction: object, price_: object,
        volume_: object, offset: object, kind: object,
    ) -> list[str]:  # fmt: skip
        """An agent's order. Its arguments are checked here, so they are typed ``object``: a
        compiled function typed ``float`` or ``str`` would convert or refuse them itself
        (native.py), and the two must run the same."""
        if not handle.running:
            return []
        if self.pending_interrupt is not None:  # a stop waits for the agent: here is safe
            raise AgentInterrupted(self.pending_interrupt)
        if type(price_) is float and type(volume_) is int and type(instrument_) is str:
            instrument, price, volume = instrument_, price_, volume_
        else:
            instrument, price, volume = _normalise(instrument_, price_, volume_)
        if price - price != 0.0:  # NaN or infinite: never journaled (it would not compare)
            raise ValueError(f"price must be a finite number, not {price!r}")
        if not 0 < volume <= MAX_VOLUME:
            raise ValueError(
                f"volume must be a whole number of lots from 1 to {MAX_VOLUME}, not {volume!r}"
            )
        if type(direction) is not str or direction not in _DIRECTIONS:
            raise ValueError(f"direction must be 'buy' or 'sell', not {direction!r}")
        if type(kind) is not str or kind not in _KINDS:
            raise ValueError(f"type must be limit, market, fak or fok, not {kind!r}")
        if type(offset) is not str:
            raise ValueError(f"offset must be auto, open or close, not {offset!r}")
        spec = self.specs.get(instrument)
        if spec is None:
            if len(instrument) > MAX_NAME:
                raise ValueError(f"instrument must be at most {MAX_NAME} characters")
            text = f"no product facts for {instrument}"
            return [self._refuse(handle, instrument, direction, "open", price, volume, kind,
                                 "UNKNOWN_INSTRUMENT", text)]  # fmt: skip
        if offset == "open":
            return [self._send_leg(handle, spec, direction, price, "open", volume, kind)]
        if offset in ("auto", "close"):
            legs = plan(self.ledger.position(handle.name, instrument), direction, volume,
                        spec.exchange, today_first=spec.close_today_first,
                        open_rest=offset == "auto")  # fmt: skip
            if not legs:
                text = f"no {instrument} position to close"
                return [self._refuse(handle, instrument, direction, "close", price, volume, kind,
                                     "NOTHING_TO_CLOSE", text)]  # fmt: skip
        else:
            raise ValueError(f"offset must be auto, open or close, not {offset!r}")
        return [
            self._send_leg(handle, spec, direction, price, leg.text, leg.volume, kind)
            for leg in legs
        ]

    def _send_leg(  # noqa: PLR0917
        self, handle: AgentHandle, spec: Spec, direction: str, price: float, offset: str,
        volume: int, kind: str,
    ) -> str:  # fmt: skip
        dry = self._dry
        order_id = self.ids.issue(handle.name, self.trading_day, dry)
        order = Order(order_id, handle.name, spec.instrument, direction, offset, price, volume,
                      kind)  # fmt: skip
        msg = self._check(order, handle, spec)
        if dry:  # warm(): as far as the journal, no further
            _encode(msg)
            return order_id
        if type(msg) is m.RiskRefused:
            self._last_refusal = f"{msg.code}: {msg.text}"
            self._emit(msg)
            return order_id
        now = self.now
        fresh = self._record(msg)
        # journaled: now it may leave (the book-keeping below is what applying it means)
        if self._direct:  # the simulator: fed again in a recovery, which rebuilds it
            self.sent += fresh
            self.adapter.submit(order, now)
        elif fresh:  # never again to a real exchange
            self.sent += 1
            self.outbox.append(Outgoing("submit", order, now))
        self._register(order, handle, spec, now)
        self._notify(handle, order)
        return order_id

    def _check(
        self, order: Order, handle: AgentHandle, spec: Spec
    ) -> m.OrderRequested | m.RiskRefused:
        """The risk gate's verdict on a new order, as the message to journal: the order path up
        to the journal (``warm`` runs it dry)."""
        instrument = order.instrument
        working = self.working.get(instrument)
        refusal = self.gate.check_order(
            order, spec, self.latest.get(instrument),
            pending_open=_pending_opens(handle.orders.values(), instrument),
            working=working.values() if working else (), now_ns=self.now,
            phases=self.phases.get(instrument, b""),
        )  # fmt: skip
        if refusal is not None:
            return m.RiskRefused(self.ticks, self.now, order.order_id, handle.name, instrument,
                                 order.direction, order.offset, order.price, order.volume,
                                 order.kind, *refusal)  # fmt: skip
        return m.OrderRequested(
            self.ticks, self.now, order.order_id, handle.name, instrument, spec.exchange,
            order.direction, order.offset, order.price, order.volume,  # type: ignore[arg-type]
            order.kind,  # type: ignore[arg-type]
        )  # fmt: skip

    def warm(self) -> bool:
        """Run one agent's order path dry: the agent's ``send`` as a strategy calls it (checks,
        order id, the order, the risk gate, the encoded ``OrderRequested``), stopping before the
        journal. Nothing is sent, journaled, counted or issued (the gate's check only reads,
        besides forgetting order times that are out of its window). Called while the market is
        quiet, it keeps the path's code and data in the CPU caches (docs/engine.md, "Keeping
        the order path warm"). Returns False if there is nothing to warm yet (no running agent
        with a priced instrument)."""
        for handle in self.agents.values():
            if not handle.running:
                continue
            for instrument in handle.instruments:
                tick = self.latest.get(instrument)
                if tick is None or math.isnan(tick.last):
                    continue
                self._dry = True
                try:
                    handle.send(instrument, "buy", tick.last, 1, "open", "fak")
                finally:
                    self._dry = False
                return True
        return False

    def _refuse(  # noqa: PLR0917 (the fields of RiskRefused)
        self, handle: AgentHandle, instrument: str, direction: str, offset: str, price: float,
        volume: int, kind: str, code: str, text: str,
    ) -> str:  # fmt: skip
        order_id = self.ids.issue(handle.name, self.trading_day)
        self._emit(m.RiskRefused(self.ticks, self.now, order_id, handle.name, instrument,
                                 direction, offset, price, volume, kind, code, text))  # fmt: skip
        return order_id

    def cancel(self, handle: AgentHandle | None, order_id: str, protective: bool = False) -> None:
        if handle is not None and self.pending_interrupt is not None:
            raise AgentInterrupted(self.pending_interrupt)
        order = self.orders.get(order_id)
        if order is None or (handle is not None and order.agent != handle.name):
            self.log.warning("cancel_unknown_order", order_id=order_id)
            return
        if not order.active or order.state is State.PENDING_CANCEL:
            return
        refusal = self.gate.check_cancel(order, protective)
        if refusal is not None:
            self._emit(m.CancelRefused(self.ticks, self.now, order_id, order.agent, *refusal))
            return
        fresh = self._emit(m.CancelRequested(self.ticks, self.now, order_id, order.agent,
                                             protective))  # fmt: skip
        if self._direct:
            self.adapter.cancel(order, self.now)
        elif fresh:
            self.outbox.append(Outgoing("cancel", order, self.now))

    def data_to_send(self) -> list[Outgoing]:
        """The submits and cancels decided since the last call, oldest first, for the shell to
        hand to an adapter that is not deterministic (always empty for a deterministic one,
        which the core calls at once). Each is journaled already."""
        out = self.outbox
        if out:
            self.outbox = []
        return out

    # -- journal -------------------------------------------------------------------------------

    def _emit(self, msg: m.EngineMessage) -> bool:
        """Journal ``msg`` (or, in recovery, check it against the journal), then apply it.
        Returns True if it was journaled now (False: it was already in the journal)."""
        fresh = self._fresh = self._record(msg)
        self._apply_of[type(msg)](msg)
        return fresh

    def _record(self, msg: m.EngineMessage) -> bool:
        """The journal half of :meth:`_emit`."""
        expect = self._expect
        if expect:
            want = expect.popleft()
            if want != msg and _encode(want) != _encode(msg):  # NaN fields: the same bytes
                raise RecoveryDiverged(
                    f"at tick {self.ticks} the journal holds {want!r} but the engine produced "
                    f"{msg!r}; an agent is not deterministic, or the tick journal or the "
                    "configuration changed since the journal was written"
                )
            fresh = False
        else:
            try:
                if self._journal is not None:
                    self._journal(_encode(msg), msg.time_ns)
                if self._observer is not None:
                    self._observer(msg)
            except BaseException as exc:  # the engine's, even inside an agent's send
                self.journal_failed = exc
                raise
            if type(msg) in _REPORTED:
                self.activity.append(msg)
            fresh = True
        return fresh

    def _pump(self) -> None:
        """Handle what the adapter produced (it may produce more as orders go out). Nothing
        is due before the adapter's ``due_ns``: it is not asked then (the adapter port)."""
        adapter = self.adapter
        if adapter.due_ns > self.now:
            return
        events = adapter.events(self.now)
        while events:
            for event in events:
                self._event(event)
            events = self.adapter.events(self.now)

    def _event(self, event: AdapterEvent) -> None:
        """An adapter event, journaled as the message of its kind at the engine's time."""
        order_id = event.order_id
        order = self.orders.get(order_id)
        if order is None:
            self.log.warning("adapter_event_for_unknown_order", kind=type(event).__name__,
                             order_id=order_id)  # fmt: skip
            return
        t, now = self.ticks, self.now
        kind = type(event)
        if kind is Traded:
            trade_id, price, volume = event.trade_id, event.price, event.volume  # type: ignore[union-attr]
            if trade_id in order.trade_ids:
                self.log.info("duplicate_trade_ignored", order_id=order_id, trade_id=trade_id)
                return
            if volume > order.remaining:
                self.log.error("overfill_refused", order_id=order_id, trade_id=trade_id,
                               volume=volume, remaining=order.remaining)  # fmt: skip
                return
            line = self.ledger.line(order.agent, self.specs[order.instrument])
            fee = self.ledger.fee(line, order.direction, order.offset, price, volume)
            self._emit(m.Trade(t, now, order_id, trade_id, price, volume, fee))
        elif kind is Accepted:
            self._emit(m.OrderAccepted(t, now, order_id, event.exchange_order_id))  # type: ignore[union-attr]
        elif kind is Rejected:
            self._emit(m.OrderRejected(t, now, order_id, event.code, event.text))  # type: ignore[union-attr]
        elif kind is Cancelled:
            self._emit(m.OrderCancelled(t, now, order_id, event.text))  # type: ignore[union-attr]
        elif kind is CancelRefused:
            self._emit(m.CancelRefused(t, now, order_id, order.agent, "EXCHANGE", event.text))  # type: ignore[union-attr]
        else:
            raise TypeError(f"not an adapter event: {event!r}")

    # -- applying messages ---------------------------------------------------------------------

    def _apply_day_opened(self, msg: m.DayOpened) -> None:
        self.trading_day = msg.trading_day
        self.bars = BarBook(msg.trading_day, self._sections)
        self.gate.new_day()
        for name, handle in self.agents.items():
            self.ledger.open_account(name, handle.capital, msg.cash.get(name, handle.capital))
        self.adapter.open_day(msg.trading_day, msg.holdings, sum(msg.cash.values()))
        for h in msg.holdings:
            spec = self.specs.get(h.instrument)
            if spec is None or h.agent not in self.ledger.accounts:
                self.log.warning("holding_without_agent_or_product", agent=h.agent,
                                 instrument=h.instrument)  # fmt: skip
                continue
            self.ledger.carry(h.agent, spec, h)

    def add_portfolio(self, portfolio: Portfolio) -> None:
        """A portfolio of agents added before: journaled when the day opens (``PortfolioSet``),
        which is when the risk gate takes it."""
        unknown = [a for a in portfolio.agents if a not in self.agents]
        if unknown:
            raise ValueError(f"portfolio {portfolio.name}: no agent named {unknown[0]}")
        self.portfolios.append(portfolio)

    def _apply_portfolio(self, msg: m.PortfolioSet) -> None:
        self.gate.add_portfolio(Portfolio(
            msg.name, tuple(msg.agents), msg.capital,
            None if msg.max_position < 0 else msg.max_position,
            None if msg.max_net_position < 0 else msg.max_net_position,
            msg.max_margin_ratio or None, msg.max_daily_loss or None,
        ))  # fmt: skip

    def _apply_stopped(self, msg: m.AgentStopped) -> None:
        self._apply_agent_stopped(msg)  # its orders cancelled, then its conditional orders
        self._end_all("cancelled: the agent stopped", msg.agent)

    def _apply_day_rolled(self, msg: m.DayRolled) -> None:
        self.ledger.roll(msg.settlements)

    def _apply_requested(self, msg: m.OrderRequested) -> None:
        order = Order(msg.order_id, msg.agent, msg.instrument, msg.direction, msg.offset,
                      msg.price, msg.volume, msg.kind)  # fmt: skip
        self.ids.seen(msg.order_id)
        self._register(order, self.agents[msg.agent], self.specs[msg.instrument], msg.time_ns)

    def _register(self, order: Order, handle: AgentHandle, spec: Spec, now_ns: int) -> None:
        """Applying an ``OrderRequested``: the order is pending submit, its closes frozen, and
        the gate counts it."""
        order.apply(Event.SUBMIT)
        order_id = order.order_id
        self.orders[order_id] = order
        self.order_count += 1
        working = self.working.get(order.instrument)
        if working is None:
            working = self.working[order.instrument] = {}
        working[order_id] = order
        handle.orders[order_id] = order
        if order.offset != "open":
            line = self.ledger.line(order.agent, spec)
            self.ledger.freeze(line, order.direction, order.offset, order.volume)
        self.gate.order_sent(order, now_ns)

    def _apply_refused(self, msg: m.RiskRefused) -> None:
        self.ids.seen(msg.order_id)
        handle = self.agents[msg.agent]
        view = OrderView(msg.order_id, msg.instrument, msg.direction, msg.offset, msg.price,
                         msg.volume, msg.kind, State.REJECTED.value, 0, 0.0,
                         f"{msg.code}: {msg.text}")  # fmt: skip
        if handle.running:
            self._call(handle, handle.strategy.on_order, view)  # type: ignore[union-attr]

    def _apply_cancel_requested(self, msg: m.CancelRequested) -> None:
        order = self.orders[msg.order_id]
        self.gate.cancel_sent(order, msg.protective)
        if self._move(order, Event.CANCEL_REQUEST):
            self._notify(self.agents[order.agent], order)

    def _apply_cancel_refused(self, msg: m.CancelRefused) -> None:
        order = self.orders.get(msg.order_id)
        if order is None:
            return
        if msg.code == "EXCHANGE":
            if order.state is State.PENDING_CANCEL:
                self._move(order, Event.CANCEL_REFUSED, reason=f"cancel refused: {msg.text}")
        else:
            order.reason = f"cancel refused: {msg.code}: {msg.text}"
        self._notify(self.agents[order.agent], order)

    def _apply_accepted(self, msg: m.OrderAccepted) -> None:
        order = self.orders[msg.order_id]
        if self._move(order, Event.ACCEPT):
            self._notify(self.agents[order.agent], order)

    def _apply_rejected(self, msg: m.OrderRejected) -> None:
        order = self.orders[msg.order_id]
        if self._move(order, Event.REJECT, reason=f"{msg.code}: {msg.text}"):
            self._finish(order)

    def _apply_cancelled(self, msg: m.OrderCancelled) -> None:
        order = self.orders[msg.order_id]
        if self._move(order, Event.CANCELLED, reason=msg.text):
            self._finish(order)

    def _apply_trade(self, msg: m.Trade) -> None:
        order = self.orders[msg.order_id]
        try:
            order.apply(Event.FILL, trade_id=msg.trade_id, volume=msg.volume, price=msg.price)
        except (InvalidTransition, Overfill) as exc:
            self.log.error("trade_not_applied", order_id=order.order_id, error=str(exc))
            return
        spec = self.specs[order.instrument]
        line = self.ledger.line(order.agent, spec)
        self.ledger.fill(line, order.direction, order.offset, msg.price, msg.volume, fee=msg.fee)
        if order.order_id in self.cond_of_order:  # released by a conditional order
            self._cond_fill(order, msg.volume)
        handle = self.agents[order.agent]
        if not order.active:
            self._finish(order)
        else:
            self._notify(handle, order)
        if handle.running and handle.wants_trades:
            trade = TradeView(
                order.order_id, msg.trade_id, order.instrument, order.direction, order.offset,
                msg.price, msg.volume, msg.fee, msg.time_ns,
            )  # fmt: skip
            self._call(handle, handle.strategy.on_trade, trade)  # type: ignore[union-attr]
        self._check_loss(handle)

    # -- helpers -------------------------------------------------------------------------------

    def _move(self, order: Order, event: Event, reason: str = "") -> bool:
        try:
            return order.apply(event, reason=reason)
        except InvalidTransition as exc:
            self.log.error("order_event_not_applied", order_id=order.order_id, error=str(exc))
            return False

    def _finish(self, order: Order) -> None:
        """A terminal state: release what it froze and forget it from the working sets."""
        if order.offset != "open" and order.remaining:
            line = self.ledger.line(order.agent, self.specs[order.instrument])
            self.ledger.freeze(line, order.direction, order.offset, order.remaining, sign=-1)
        working = self.working.get(order.instrument)
        if working is not None:
            working.pop(order.order_id, None)
        handle = self.agents[order.agent]
        handle.orders.pop(order.order_id, None)
        self._finished.append((self.now, order.order_id))
        self._notify(handle, order)
        if order.order_id in self.cond_of_order:
            self._cond_order_ended(order)

    def _forget(self, before_ns: int) -> None:
        """Finished orders leave memory once they finished before ``before_ns``."""
        finished, orders = self._finished, self.orders
        while finished and finished[0][0] < before_ns:
            orders.pop(finished.popleft()[1], None)

    def _check_loss(self, handle: AgentHandle) -> None:
        gate = self.gate
        portfolio = gate.portfolio_of.get(handle.name)
        if (portfolio is not None and gate.state("portfolio", portfolio.name) == ACTIVE
                and gate.portfolio_loss_breached(portfolio)):  # fmt: skip
            self._emit(m.StateChanged(self.ticks, self.now, "portfolio", portfolio.name, REDUCING,
                                      f"PORTFOLIO_LOSS: the day PnL of portfolio "
                                      f"{portfolio.name} is below -"
                                      f"{portfolio.max_daily_loss:,.0f}"))  # fmt: skip
        if gate.state("agent", handle.name) == ACTIVE and gate.loss_breached(handle.name):
            pnl = self.ledger.accounts[handle.name].day_pnl()
            self._emit(m.StateChanged(self.ticks, self.now, "agent", handle.name, REDUCING,
                                      f"DAILY_LOSS: day PnL {pnl:,.0f} below "
                                      f"-{handle.limits.max_daily_loss:,.0f}"))  # fmt: skip
        if gate.state("account", "") == ACTIVE and gate.account_loss_breached():
            text = "DAILY_LOSS: the account's day PnL is below its limit"
            self._emit(m.StateChanged(self.ticks, self.now, "account", "", REDUCING, text))


def _pending_opens(orders: Iterable[Order], instrument: str) -> tuple[int, int]:
    buy = sell = 0
    for o in orders:
        if o.instrument == instrument and o.offset == "open":
            if o.direction == "buy":
                buy += o.remaining
            else:
                sell += o.remaining
    return buy, sell


def _ignore(_: object) -> None:
    pass


def _nan(_: Tick) -> float:
    return math.nan


def _or(value: int | None, none: int) -> int:
    return none if value is None else value
