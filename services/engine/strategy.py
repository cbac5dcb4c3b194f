"""The strategy API: what a user's agent subclasses (docs/strategies.md).

An agent reacts to ``on_tick``, ``on_order``, ``on_trade`` and ``on_timer`` and acts through
``buy`` / ``sell`` / ``short`` / ``cover`` / ``send_order`` / ``cancel`` / ``cancel_all``. It sees
only its own position, account and orders, plus the latest tick of any instrument. Every order goes
through the engine's risk gate; a refused order still gets an id and comes back to ``on_order`` as
``rejected`` with the gate's code in ``reason``.

Agents must be deterministic functions of what the engine gives them (ticks, order updates,
trades, timer calls and ``now``): after a crash the engine rebuilds an agent by running it again
over the day's journal, and refuses to trade if the agent then decides differently. Use
``self.now``, never the wall clock, and seed any randomness from ``self.params``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

import msgspec
from pydantic import BaseModel, ConfigDict

from libshm import Tick

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger

__all__ = [
    "AccountView", "Bar", "ConditionalView", "Factor", "OrderView", "PositionView", "Strategy",
    "StrategyContext", "StrategyParams", "TradeView", "validate_params",
]  # fmt: skip

OrderType = Literal["limit", "market", "fak", "fok"]
Trigger = Literal["last", "bid", "ask", "mid"]
Offset = Literal["auto", "open", "close"]


class OrderView(msgspec.Struct, frozen=True, gc=False):
    """An order as the agent sees it: a snapshot taken when the update happened."""

    order_id: str
    instrument: str
    direction: str  # "buy" | "sell"
    offset: str  # "open" | "close" | "close_today" | "close_yesterday"
    price: float
    volume: int
    kind: str
    state: str  # see services.engine.orders.State
    filled: int
    average_price: float
    reason: str  # refusal or rejection: "CODE: text"

    @property
    def active(self) -> bool:
        return self.state not in ("filled", "cancelled", "rejected")


class TradeView(msgspec.Struct, frozen=True, gc=False):
    order_id: str
    trade_id: str
    instrument: str
    direction: str
    offset: str
    price: float
    volume: int
    fee: float
    time_ns: int


class PositionView(msgspec.Struct, frozen=True, gc=False):
    instrument: str
    long: int
    short: int
    long_today: int
    long_yesterday: int
    short_today: int
    short_yesterday: int
    long_average: float
    short_average: float
    realised: float
    unrealised: float
    fees: float
    margin: float

    @property
    def net(self) -> int:
        return self.long - self.short


class AccountView(msgspec.Struct, frozen=True, gc=False):
    capital: float
    cash: float  # at the start of the trading day
    realised: float
    unrealised: float
    fees: float
    margin: float
    equity: float
    available: float
    state: str  # "active", "reducing" or "halted": strictest of global, account and agent

    @property
    def day_pnl(self) -> float:
        return self.realised + self.unrealised - self.fees


class Bar(msgspec.Struct, frozen=True, gc=False):
    """One K-line. ``start_ns`` and ``end_ns`` are the exchange times where its trading time
    starts and ends (a bar across a break ends after it); ``volume`` and ``turnover`` are what
    traded in it (differences of the day's cumulative fields), ``open_interest`` is at its last
    tick, ``ticks`` how many ticks it holds."""

    instrument: str
    period: str
    trading_day: int
    start_ns: int
    end_ns: int
    open: float
    high: float
    low: float
    close: float
    volume: int
    turnover: float
    open_interest: float
    ticks: int


class ConditionalView(msgspec.Struct, frozen=True, gc=False):
    """A conditional order held by the engine, as its agent sees it (docs/toolkit.md).
    ``state``: waiting (not triggered), working (its orders are out), done, cancelled, expired
    or refused; ``orders``: the ids of its working orders."""

    cond_id: str
    kind: str
    instrument: str
    direction: str
    volume: int
    filled: int
    state: str
    trigger: float
    price: float
    text: str
    orders: tuple[str, ...]

    @property
    def active(self) -> bool:
        return self.state in ("waiting", "working")


class StrategyContext(Protocol):
    """What an agent is given instead of the engine: its name and instruments, its log, and
    the calls below, bound to this agent (the engine gives a ``core.Context``)."""

    name: str
    instruments: tuple[str, ...]
    log: Any
    send: Callable[[str, str, float, int, str, str], list[str]]
    """send(instrument, direction, price, volume, offset, kind) -> order ids"""
    cancel: Callable[[str], None]
    cancel_all: Callable[[str | None], None]
    now: Callable[[], int]
    position: Callable[[str], PositionView]
    account: Callable[[], AccountView]
    open_orders: Callable[[str | None], list[OrderView]]
    snapshot: Callable[[str], Tick | None]
    price_tick: Callable[[str], float]
    subscribe_bars: Callable[[str, str], None]
    place: Callable[[str, str, str, int, dict[str, Any]], str]
    cancel_conditional: Callable[[str], None]
    modify_conditional: Callable[[str, float | None, float | None, int | None], None]
    conditionals: Callable[[], list[ConditionalView]]
    factor: Callable[[str, str], float]


class StrategyParams(BaseModel):
    """Base of a strategy's declared parameters: unknown keys, wrong types and NaN are refused
    when the deployment loads, in the same one-line form as a wrong config key."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


def validate_params(cls: type[Strategy] | type[Factor], params: dict[str, Any]) -> dict[str, Any]:
    """``params`` checked against ``cls.Params`` with its defaults filled in (as given when the
    class declares none); raises ``pydantic.ValidationError``."""
    if cls.Params is None:
        return dict(params)
    return cls.Params.model_validate(params).model_dump()


class Factor:
    """Base class of a factor: a number computed from each tick of an instrument, once, and
    shared by every agent that names it in its ``factors`` (docs/toolkit.md, "Plugins"). One
    instance per instrument; ``update`` is called with each of its ticks, in the order the
    factors are listed, before any agent sees the tick, and returns the value agents read with
    ``Strategy.factor``. It must be a deterministic function of the ticks (a recovery computes
    it again). Declare ``Params`` as a strategy does."""

    Params: ClassVar[type[StrategyParams] | None] = None

    def __init__(self, instrument: str, params: dict[str, Any]) -> None:
        self.instrument = instrument
        self.params = params

    def update(self, tick: Tick) -> float:
        raise NotImplementedError


class Strategy:
    """Base class of an agent. Override the ``on_*`` methods you need. Declare ``Params`` (a
    ``StrategyParams`` subclass) to have the engine check ``params`` at start-up; ``params`` is
    then the validated dict, defaults included."""

    Params: ClassVar[type[StrategyParams] | None] = None

    def __init__(self, context: StrategyContext, params: dict[str, Any]) -> None:
        self._h = context
        self._send = context.send
        self.name: str = context.name
        self.instruments: tuple[str, ...] = context.instruments
        self.params = params
        self.log: FilteringBoundLogger = context.log

    # -- callbacks -----------------------------------------------------------------------------

    def on_start(self) -> None:
        """Called once before the first tick (and again after a restart, during recovery)."""

    def on_tick(self, tick: Tick) -> None:
        """A tick of one of this agent's instruments."""

    def on_order(self, order: OrderView) -> None:
        """An order of this agent changed state (including a refusal by the risk gate)."""

    def on_trade(self, trade: TradeView) -> None:
        """A fill of one of this agent's orders (after ``on_order`` of the same update)."""

    def on_timer(self, now_ns: int) -> None:
        """Called every ``engine.timer_ms``."""

    def on_conditional(self, conditional: ConditionalView) -> None:
        """One of this agent's conditional orders changed: placed, triggered, modified, ended."""

    def on_bar(self, bar: Bar) -> None:
        """A K-line closed, of a subscription (:meth:`subscribe_bars`); before the ``on_tick``
        of the tick that closed it, if a tick did."""

    def on_stop(self) -> None:
        """Called when the agent stops (the engine stops, or the agent raised)."""

    # -- actions -------------------------------------------------------------------------------

    def buy(
        self, instrument: str, price: float, volume: int, type: OrderType = "limit"
    ) -> list[str]:
        """Open long."""
        return self._send(instrument, "buy", price, volume, "open", type)

    def sell(
        self, instrument: str, price: float, volume: int, type: OrderType = "limit"
    ) -> list[str]:
        """Close long (close-today and close-yesterday chosen for SHFE and INE)."""
        return self._send(instrument, "sell", price, volume, "close", type)

    def short(
        self, instrument: str, price: float, volume: int, type: OrderType = "limit"
    ) -> list[str]:
        """Open short."""
        return self._send(instrument, "sell", price, volume, "open", type)

    def cover(
        self, instrument: str, price: float, volume: int, type: OrderType = "limit"
    ) -> list[str]:
        """Close short."""
        return self._send(instrument, "buy", price, volume, "close", type)

    def send_order(  # noqa: PLR0917 (positional like vn.py's, for users)
        self,
        instrument: str,
        direction: Literal["buy", "sell"],
        price: float,
        volume: int,
        offset: Literal["auto", "open", "close"] = "auto",
        type: OrderType = "limit",
    ) -> list[str]:
        """Send an order; ``offset="auto"`` closes the opposite side first and opens the rest.
        Returns the ids of the orders it became (one per open/close leg)."""
        return self._send(instrument, direction, price, volume, offset, type)

    def cancel(self, order_id: str) -> None:
        self._h.cancel(order_id)

    # -- conditional orders, held by the engine (docs/toolkit.md) --------------------------------

    def stop(  # noqa: PLR0917
        self, instrument: str, direction: Literal["buy", "sell"], volume: int, trigger: float,
        price: float | None = None, trigger_on: Trigger = "last", offset: Offset = "auto",
        slip_ticks: int = 5, oco: str = "",
    ) -> str:  # fmt: skip
        """A stop: when the ``trigger_on`` price reaches ``trigger`` (a buy stop at or above, a
        sell stop at or below), the engine sends ``volume`` lots: a limit at ``price`` (a
        stop-limit), or, without one, ``slip_ticks`` through the opposite best. Its id."""
        kind = "stop" if price is None else "stop_limit"
        return self._h.place(kind, instrument, direction, volume, {
            "trigger": trigger, "price": price, "trigger_on": trigger_on, "offset": offset,
            "slip_ticks": slip_ticks, "oco": oco})  # fmt: skip

    def take_profit(  # noqa: PLR0917
        self, instrument: str, direction: Literal["buy", "sell"], volume: int, trigger: float,
        price: float | None = None, trigger_on: Trigger = "last", offset: Offset = "auto",
        slip_ticks: int = 5, oco: str = "",
    ) -> str:  # fmt: skip
        """A take-profit (limit if touched): a sell when the price rises to ``trigger`` or above,
        a buy when it falls to it or below; then as :meth:`stop`."""
        return self._h.place("take_profit", instrument, direction, volume, {
            "trigger": trigger, "price": price, "trigger_on": trigger_on, "offset": offset,
            "slip_ticks": slip_ticks, "oco": oco})  # fmt: skip

    def trailing_stop(  # noqa: PLR0917
        self, instrument: str, direction: Literal["buy", "sell"], volume: int,
        trail: float | None = None, trail_ticks: int | None = None, trigger_on: Trigger = "last",
        offset: Offset = "auto", slip_ticks: int = 5, oco: str = "",
    ) -> str:  # fmt: skip
        """A trailing stop: a sell triggers when the price falls ``trail`` (or ``trail_ticks``
        price steps) below its highest since it was placed, a buy when it rises that far above
        its lowest; then ``slip_ticks`` through the opposite best."""
        return self._h.place("trailing", instrument, direction, volume, {
            "trail": trail, "trail_ticks": trail_ticks, "trigger_on": trigger_on,
            "offset": offset, "slip_ticks": slip_ticks, "oco": oco})  # fmt: skip

    def bracket(  # noqa: PLR0917
        self, instrument: str, direction: Literal["buy", "sell"], volume: int, price: float,
        take_profit: float, stop: float, trigger_on: Trigger = "last", slip_ticks: int = 5,
    ) -> str:  # fmt: skip
        """An entry limit order at ``price`` with two exits, an OCO pair that closes what the
        entry filled (following its partial fills): a take-profit at ``take_profit`` and a stop
        at ``stop``. When an exit triggers, the entry's unfilled rest is cancelled. Its id; the
        exits' are in :meth:`conditionals`."""
        return self._h.place("bracket", instrument, direction, volume, {
            "price": price, "take_profit": take_profit, "stop": stop, "trigger_on": trigger_on,
            "offset": "open", "slip_ticks": slip_ticks})  # fmt: skip

    def iceberg(  # noqa: PLR0917
        self, instrument: str, direction: Literal["buy", "sell"], volume: int, price: float,
        show: int, offset: Offset = "auto",
    ) -> str:  # fmt: skip
        """``volume`` lots at ``price``, ``show`` lots at a time: the next slice is sent when one
        fills."""
        return self._h.place("iceberg", instrument, direction, volume, {
            "price": price, "show": show, "offset": offset})  # fmt: skip

    def twap(  # noqa: PLR0917
        self, instrument: str, direction: Literal["buy", "sell"], volume: int, window_s: float,
        slices: int = 10, price: float | None = None, offset: Offset = "auto",
        slip_ticks: int = 0,
    ) -> str:  # fmt: skip
        """``volume`` lots over ``window_s`` seconds in ``slices`` equal slices, the first at
        once: each a FAK ``slip_ticks`` through the opposite best (no worse than ``price`` if
        given); what a slice leaves unfilled joins the next."""
        return self._h.place("twap", instrument, direction, volume, {
            "window_ns": round(window_s * 1e9), "slices": slices, "price": price,
            "offset": offset, "slip_ticks": slip_ticks})  # fmt: skip

    def cancel_conditional(self, cond_id: str) -> None:
        """Cancel a conditional order and its working orders (a bracket: its entry and exits
        not yet triggered)."""
        self._h.cancel_conditional(cond_id)

    def modify_conditional(
        self, cond_id: str, trigger: float | None = None, price: float | None = None,
        volume: int | None = None,
    ) -> None:  # fmt: skip
        """Change a waiting order's trigger, or its price or total volume (an iceberg's working
        slice, or a bracket's working entry, is sent again at the new price)."""
        self._h.modify_conditional(cond_id, trigger, price, volume)

    def conditionals(self) -> list[ConditionalView]:
        """This agent's conditional orders that have not ended."""
        return self._h.conditionals()

    def factor(self, name: str, instrument: str) -> float:
        """The value of factor ``name`` (one this agent lists in its ``factors``) at the latest
        tick of ``instrument``; NaN before its first tick."""
        return self._h.factor(name, instrument)

    def subscribe_bars(self, instrument: str, period: str) -> None:
        """Get ``instrument``'s bars of ``period`` in :meth:`on_bar` from now on: ``"30s"``,
        ``"1m"``, ``"5m"``, ``"1h"`` (trading time, per session; breaks make no empty bars) or
        ``"1d"`` (the trading day, its night session included); docs/toolkit.md. Usually called
        in ``on_start``; a period that is not one raises ``ValueError``."""
        self._h.subscribe_bars(instrument, period)

    def cancel_all(self, instrument: str | None = None) -> None:
        self._h.cancel_all(instrument)

    # -- views ---------------------------------------------------------------------------------

    @property
    def now(self) -> int:
        """The engine's time (ns since the epoch): the time of what is being handled."""
        return self._h.now()

    def position(self, instrument: str) -> PositionView:
        return self._h.position(instrument)

    @property
    def account(self) -> AccountView:
        return self._h.account()

    def open_orders(self, instrument: str | None = None) -> list[OrderView]:
        return self._h.open_orders(instrument)

    def snapshot(self, instrument: str) -> Tick | None:
        """The latest tick of any instrument the engine has seen today."""
        return self._h.snapshot(instrument)

    def price_tick(self, instrument: str) -> float:
        """The instrument's minimum price step (configs/calendar.toml)."""
        return self._h.price_tick(instrument)
