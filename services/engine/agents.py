"""Agents in the engine: the handle the engine keeps of each, the small ``Context`` a strategy is
given instead of the engine (``strategy.StrategyContext``), and running an agent's callbacks
(``AgentRunner``, a part of ``core.Engine``): an exception stops that agent and the others go on,
a slow callback is logged, a blocked one can be interrupted at a stop."""

from __future__ import annotations

import sys
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Final, Protocol

from mypy_extensions import trait

from contracts import messages as m
from contracts.logs import redact
from libshm import Tick
from services.engine.adapter import NEVER
from services.engine.calling import call_agent
from services.engine.errors import RecoveryDiverged
from services.engine.ledger import Ledger, Spec
from services.engine.orders import Order
from services.engine.risk import RiskGate, RiskLimits
from services.engine.strategy import (
    AccountView,
    ConditionalView,
    OrderView,
    PositionView,
    Strategy,
    StrategyContext,
)

__all__ = [
    "INTERRUPTED", "AgentHandle", "AgentInterrupted", "AgentRunner", "Context", "RecoveryDiverged",
]  # fmt: skip

INTERRUPTED: Final = "interrupted: "
SLOW_LOG_NS: Final = 10_000_000_000  # a slow agent's callbacks: one line per 10 s at most


def text_arg(name: str, value: object) -> str:
    """An agent's argument that must be a str, or a ``TypeError`` that names it. The engine's
    calls from agents take ``object`` and check here: a compiled function typed ``str`` would
    raise its own error instead (native.py), so both run the same."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__}")
    return value


def text_or_none(name: str, value: object) -> str | None:
    return None if value is None else text_arg(name, value)


class AgentInterrupted(BaseException):
    """Raised into an agent's callback that blocks (by the shell, from a signal handler): the
    agent is stopped with ``text`` (which starts with ``INTERRUPTED``) as its journaled error,
    and the engine goes on or stops."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Host(Protocol):
    """What an agent's handle reads of its engine (``core.Engine``)."""

    now: int
    ledger: Ledger
    gate: RiskGate
    latest: dict[str, Tick]
    specs: dict[str, Spec]

    def send(  # noqa: PLR0917
        self, handle: AgentHandle, instrument: object, direction: object, price: object,
        volume: object, offset: object, kind: object,
    ) -> list[str]: ...  # fmt: skip

    def cancel(self, handle: AgentHandle | None, order_id: str, protective: bool = False
               ) -> None: ...  # fmt: skip

    def subscribe_bars(self, handle: AgentHandle, instrument: object, period: object
                       ) -> None: ...  # fmt: skip

    def place(self, handle: AgentHandle, kind: str, instrument: object, direction: object,  # noqa: PLR0917
              volume: object, p: dict[str, Any]) -> str: ...  # fmt: skip

    def cancel_conditional(self, handle: AgentHandle, cond_id: object) -> None: ...

    def modify_conditional(self, handle: AgentHandle, cond_id: object, trigger: object,
                           price: object, volume: object) -> None: ...  # fmt: skip

    def conditional_views(self, handle: AgentHandle) -> list[ConditionalView]: ...

    def factor_value(self, handle: AgentHandle, name: object, instrument: object) -> float: ...


def _no_tick(tick: Tick) -> None:
    """An agent's ``tick_fn`` before its strategy exists."""


@dataclass
class AgentHandle:
    """The engine side of one agent: what its ``Strategy`` calls into."""

    engine: Host
    name: str
    instruments: tuple[str, ...]
    capital: float
    limits: RiskLimits
    params: dict[str, Any]
    factory: Callable[[StrategyContext, dict[str, Any]], Strategy]
    log: Any
    strategy: Strategy | None = None
    running: bool = False
    wants_orders: bool = True  # the strategy overrides on_order (else no views are built)
    wants_trades: bool = True
    wants_timer: bool = True
    wants_conditionals: bool = False
    factors: frozenset[str] = frozenset()  # the factors it reads
    orders: dict[str, Order] = field(default_factory=dict)  # working orders
    tick_fn: Callable[[Tick], object] = _no_tick  # the strategy's on_tick, bound once

    def __post_init__(self) -> None:
        # send(instrument, direction, price, volume, offset, kind): the engine's, bound to this
        # agent (one call from the strategy to the engine on the order path)
        self.send: Callable[[str, str, float, int, str, str], list[str]] = partial(
            self.engine.send, self
        )

    @property
    def now(self) -> int:
        return self.engine.now

    def cancel(self, order_id: object) -> None:
        self.engine.cancel(self, text_arg("order_id", order_id))

    def subscribe_bars(self, instrument: object, period: object) -> None:
        self.engine.subscribe_bars(self, instrument, period)

    def place(self, kind: str, instrument: object, direction: object, volume: object,
              p: dict[str, Any]) -> str:  # fmt: skip
        return self.engine.place(self, kind, instrument, direction, volume, p)

    def cancel_conditional(self, cond_id: object) -> None:
        self.engine.cancel_conditional(self, cond_id)

    def modify_conditional(self, cond_id: object, trigger: object, price: object,
                           volume: object) -> None:  # fmt: skip
        self.engine.modify_conditional(self, cond_id, trigger, price, volume)

    def conditionals(self) -> list[ConditionalView]:
        return self.engine.conditional_views(self)

    def factor(self, name: object, instrument: object) -> float:
        return self.engine.factor_value(self, name, instrument)

    def cancel_all(self, instrument: object = None) -> None:
        instrument = text_or_none("instrument", instrument)
        for order in list(self.orders.values()):
            if instrument is None or order.instrument == instrument:
                self.engine.cancel(self, order.order_id)

    def position(self, instrument: object) -> PositionView:
        instrument = text_arg("instrument", instrument)
        account = self.engine.ledger.accounts[self.name]
        line = account.lines.get(instrument)
        if line is None:
            return PositionView(instrument, 0, 0, 0, 0, 0, 0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)
        p = line.position
        return PositionView(
            instrument, p.long, p.short, p.long_today, p.long_yesterday, p.short_today,
            p.short_yesterday, line.long_average, line.short_average, line.realised,
            line.unrealised(), line.fees, line.margin(),
        )  # fmt: skip

    def account(self) -> AccountView:
        a = self.engine.ledger.accounts[self.name]
        margin = a.margin()
        equity = a.equity()
        state = self.engine.gate.effective(self.name, "")  # the global, account and agent scopes
        return AccountView(a.capital, a.cash, a.realised(), a.unrealised(), a.fees(), margin,
                           equity, equity - margin, state)  # fmt: skip

    def open_orders(self, instrument: object = None) -> list[OrderView]:
        instrument = text_or_none("instrument", instrument)
        return [
            view(o)
            for o in self.orders.values()
            if instrument is None or o.instrument == instrument
        ]

    def snapshot(self, instrument: object) -> Tick | None:
        return self.engine.latest.get(text_arg("instrument", instrument))


class Context:
    """What a strategy holds (``strategy.StrategyContext``): its agent's calls into the engine,
    bound, and nothing else of the engine."""

    __slots__ = (
        "account",
        "cancel",
        "cancel_all",
        "cancel_conditional",
        "conditionals",
        "factor",
        "instruments",
        "log",
        "modify_conditional",
        "name",
        "now",
        "open_orders",
        "place",
        "position",
        "price_tick",
        "send",
        "snapshot",
        "subscribe_bars",
    )  # fmt: skip

    def __init__(self, handle: AgentHandle) -> None:
        engine = handle.engine
        self.name: str = handle.name
        self.instruments: tuple[str, ...] = handle.instruments
        self.log: Any = handle.log
        self.send: Callable[[str, str, float, int, str, str], list[str]] = handle.send
        self.cancel: Callable[[str], None] = handle.cancel
        self.cancel_all: Callable[[str | None], None] = handle.cancel_all
        self.position: Callable[[str], PositionView] = handle.position
        self.account: Callable[[], AccountView] = handle.account
        self.open_orders: Callable[[str | None], list[OrderView]] = handle.open_orders
        self.snapshot: Callable[[str], Tick | None] = handle.snapshot
        self.subscribe_bars: Callable[[str, str], None] = handle.subscribe_bars
        self.place: Callable[[str, str, str, int, dict[str, Any]], str] = handle.place
        self.cancel_conditional: Callable[[str], None] = handle.cancel_conditional
        self.modify_conditional: Callable[..., None] = handle.modify_conditional
        self.conditionals: Callable[[], list[ConditionalView]] = handle.conditionals
        self.factor: Callable[[str, str], float] = handle.factor
        self.now: Callable[[], int] = lambda: engine.now
        self.price_tick: Callable[[str], float] = lambda i: (
            engine.specs[text_arg("instrument", i)].price_tick
        )


def view(order: Order) -> OrderView:
    """An order as its agent sees it, now."""
    return OrderView(
        order.order_id, order.instrument, order.direction, order.offset, order.price,
        order.volume, order.kind, order.state.value, order.filled, order.average_fill_price,
        order.reason,
    )  # fmt: skip


@trait
class AgentRunner:
    """The part of ``core.Engine`` that starts, calls and stops agents."""

    # the engine's state this part reads and sets (``core.Engine.__init__`` makes it)
    agents: dict[str, AgentHandle]
    log: Any
    now: int
    ticks: int
    _expect: deque[m.EngineMessage]
    calling: AgentHandle | None
    calling_fn: Callable[..., object] | None
    call_started: int
    callback_budget_ns: int
    clock: Callable[[], int]
    shell_calls: bool
    pending_interrupt: str | None
    journal_failed: BaseException | None
    _slow: dict[str, list[int]]

    def _emit(self, msg: m.EngineMessage) -> bool:
        raise NotImplementedError

    def cancel(self, handle: AgentHandle | None, order_id: str, protective: bool = False) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Stop every agent (``on_stop``), without cancelling: orders stay at the exchange."""
        for handle in self.agents.values():
            if handle.running and handle.strategy is not None:
                try:
                    handle.strategy.on_stop()
                except BaseException:
                    handle.log.exception("agent_on_stop_failed")
                handle.running = False

    def _apply_agent_started(self, msg: m.AgentStarted) -> None:
        handle = self.agents[msg.agent]
        try:
            handle.strategy = handle.factory(Context(handle), handle.params)
        except RecoveryDiverged:
            raise
        except BaseException:
            handle.log.exception("agent_create_failed")
            error = redact(traceback.format_exc())
            self._emit(m.AgentStopped(self.ticks, self.now, handle.name, error))
            return
        cls = type(handle.strategy)
        handle.wants_orders = cls.on_order is not Strategy.on_order
        handle.wants_trades = cls.on_trade is not Strategy.on_trade
        handle.wants_timer = cls.on_timer is not Strategy.on_timer
        handle.wants_conditionals = cls.on_conditional is not Strategy.on_conditional
        handle.tick_fn = handle.strategy.on_tick
        handle.running = True
        self._call(handle, handle.strategy.on_start)

    def _apply_agent_stopped(self, msg: m.AgentStopped) -> None:
        handle = self.agents[msg.agent]
        was_running = handle.running
        handle.running = False
        if was_running and handle.strategy is not None:
            try:
                handle.strategy.on_stop()
            except RecoveryDiverged:
                raise
            except BaseException:
                handle.log.exception("agent_on_stop_failed")
        for order_id in list(handle.orders):
            self.cancel(None, order_id, protective=True)

    def _apply_timer(self, msg: m.TimerFired) -> None:
        for handle in self.agents.values():
            if handle.running and handle.wants_timer:
                self._call(handle, handle.strategy.on_timer, msg.time_ns)  # type: ignore[union-attr]

    def _notify(self, handle: AgentHandle, order: Order) -> None:
        if handle.running and handle.wants_orders:
            self._call(handle, handle.strategy.on_order, view(order))  # type: ignore[union-attr]

    def _call(self, handle: AgentHandle, fn: Callable[..., object], *args: object) -> None:
        """Run an agent's callback; an exception stops that agent (its orders are cancelled)
        and the others go on."""
        outer = self.calling
        if outer is not None:  # from inside another agent's callback (send -> fill -> on_trade)
            self._call_nested(outer, handle, fn, args)
            return
        shell = self.shell_calls  # False in a backtest: nothing interrupts or times the agent
        started = 0
        if shell:
            self.calling_fn = fn
            started = self.call_started = self.clock()
        self.calling = handle
        try:
            if shell:
                call_agent(fn, args)
            else:
                fn(*args)
        except RecoveryDiverged:
            self.calling = None
            raise
        except BaseException:  # SystemExit, KeyboardInterrupt too (signals only set a flag)
            self.calling = None
            if self.journal_failed is None:  # else the engine's failure, not the agent's
                self._failed(handle)
        self.calling = None
        if self.journal_failed is not None:  # raised, or caught by the agent: it stops the engine
            raise self.journal_failed
        if shell:
            elapsed = self.clock() - started
            if elapsed > self.callback_budget_ns:
                self._slow_call(handle, fn, elapsed)

    def _call_nested(self, outer: AgentHandle, handle: AgentHandle, fn: Callable[..., object],
                     args: tuple[object, ...]) -> None:  # fmt: skip
        """``_call`` from inside another callback: the outer one's record is put back after."""
        outer_fn, outer_started = self.calling_fn, self.call_started
        self.calling = None
        try:
            self._call(handle, fn, *args)
        finally:
            self.calling, self.calling_fn, self.call_started = outer, outer_fn, outer_started

    def journaled_interrupt(self) -> str | None:
        """In a recovery, with an agent's callback running: if the journal's next message is
        that agent's stop by an interrupt (it blocked there before, and was stopped), the error
        to stop it with again, so the recovery does not block where the day did."""
        handle = self.calling
        if handle is None or not self._expect:
            return None
        want = self._expect[0]
        if (isinstance(want, m.AgentStopped) and want.agent == handle.name
                and want.error.startswith(INTERRUPTED)):  # fmt: skip
            return want.error
        return None

    def _slow_call(self, handle: AgentHandle, fn: Callable[..., object], elapsed: int) -> None:
        """A callback over the budget: logged with the agent's name, then counted, one line per
        ``SLOW_LOG_NS`` per agent (a recovery logs none: they were logged when they happened)."""
        if self._expect:
            return
        now = self.clock()
        slow = self._slow.setdefault(handle.name, [0, -NEVER])  # never logged yet
        slow[0] += 1
        if now - slow[1] < SLOW_LOG_NS:
            return
        handle.log.warning(
            "agent_callback_slow", callback=getattr(fn, "__name__", "?"),
            ms=round(elapsed / 1e6, 3), budget_ms=self.callback_budget_ns / 1e6,
            over_budget=slow[0],
            text=f"{handle.name}.{getattr(fn, '__name__', '?')} took {elapsed / 1e6:.1f} ms "
            f"(budget {self.callback_budget_ns / 1e6:g} ms); {slow[0]} callback(s) over budget "
            "since the last such line; every agent waits while one runs",
        )  # fmt: skip
        slow[0], slow[1] = 0, now

    def _failed(self, handle: AgentHandle) -> None:
        """The agent raised (called from inside the ``except``): log it and stop it."""
        self.pending_interrupt = None
        exc = sys.exc_info()[1]
        # journaled: no secret may reach the file
        error = exc.text if isinstance(exc, AgentInterrupted) else redact(traceback.format_exc())
        if not self._expect:  # recovering, the journal already holds it: logged back then
            handle.log.error("agent_failed", error=error)
        if handle.running:
            self._emit(m.AgentStopped(self.ticks, self.now, handle.name, error))
