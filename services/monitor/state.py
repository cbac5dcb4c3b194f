"""An account's state rebuilt from its engine journal: a core with no I/O (docs/monitor.md).

:meth:`AccountState.apply` takes the engine's messages of one trading day in journal order (the
day's journal, from its ``DayOpened``, which carries what earlier days left: positions and cash)
and returns the deltas each one causes, numbered 1, 2, 3 ... from that first message, so a
monitor started late or restarted has the same state under the same numbers. A ``DayOpened``
starts a new day: the state is the new day's alone, numbered from 1 again.

Positions and PnL are computed here from the trades, independently of the engine's ledger, by
the same rules: a plain close takes yesterday's lots first; realised PnL is measured against
each bucket's basis; at the roll the day's PnL goes to cash and the settlement becomes the
basis. A test holds them against the engine's own ``DayClosed``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeVar

import msgspec

from contracts import messages as m
from contracts.monitor import (
    AccountSnapshot,
    AgentView,
    ConditionalView,
    Day,
    Delta,
    OrderView,
    PnlView,
    PortfolioView,
    PositionView,
    Refusal,
    RiskView,
    TradeView,
    Value,
)

__all__ = ["REFUSALS_KEPT", "AccountState"]

_V = TypeVar("_V", OrderView, Day)

REFUSALS_KEPT = 200
"""Refusals the state holds (the newest); the oldest leaves with a delta of its own."""


@dataclass
class _Side:
    """One side (long or short) of a position: lots and basis per day, and the open cost."""

    today: int = 0
    yesterday: int = 0
    today_basis: float = 0.0
    yesterday_basis: float = 0.0
    open_cost: float = 0.0  # sum of open prices, for the average open price

    @property
    def lots(self) -> int:
        return self.today + self.yesterday

    @property
    def basis(self) -> float:
        return self.today_basis + self.yesterday_basis

    def open(self, price: float, volume: int) -> None:
        self.today += volume
        self.today_basis += price * volume
        self.open_cost += price * volume

    def close(self, offset: str, volume: int) -> float:
        """Take ``volume`` lots off; the basis they carried. A plain close takes yesterday's
        lots first."""
        if offset == "close_today":
            today, yesterday = volume, 0
        elif offset == "close_yesterday":
            today, yesterday = 0, volume
        else:
            yesterday = min(volume, max(self.yesterday, 0))
            today = volume - yesterday
        from_today = _take(self.today_basis, self.today, today)
        from_yesterday = _take(self.yesterday_basis, self.yesterday, yesterday)
        self.today_basis -= from_today
        self.yesterday_basis -= from_yesterday
        self.open_cost -= _take(self.open_cost, self.lots, volume)
        self.today -= today
        self.yesterday -= yesterday
        if not self.lots:
            self.open_cost = self.today_basis = self.yesterday_basis = 0.0
        return from_today + from_yesterday

    def roll(self, price: float) -> float:
        """Mark to ``price`` (NaN: no settlement known, the basis is kept); today's lots become
        yesterday's. The points the mark moved the basis by, times the lots (positive for a
        gain of a long side)."""
        moved = 0.0
        if math.isnan(price):
            self.yesterday_basis += self.today_basis
        else:
            moved = self.lots * price - self.basis
            self.yesterday_basis = self.lots * price
        self.yesterday += self.today
        self.today, self.today_basis = 0, 0.0
        return moved


@dataclass
class _Position:
    long: _Side
    short: _Side


@dataclass
class _Money:
    opening_cash: float = 0.0
    realised: float = 0.0
    fees: float = 0.0


EXTERNAL: Final = "external"
"""The agent the monitor shows another terminal's orders and fills under (docs/ctp-trading.md)."""


def _take(basis: float, held: int, lots: int) -> float:
    """The share of a bucket's basis that ``lots`` of its ``held`` lots carry."""
    return basis * lots / held if held else 0.0


class AccountState:
    """One account (one engine) and all its agents. ``multiplier(instrument)`` gives the
    contract multiplier (from the calendar)."""

    def __init__(self, account: str, multiplier: Callable[[str], int]) -> None:
        self.account = account
        self._table_multiplier = multiplier
        self._reset(0)

    def _multiplier(self, instrument: str) -> int:
        """The broker's for the day where the engine journaled one (``InstrumentSet``), else
        the calendar's."""
        found = self._broker_multipliers.get(instrument)
        return found if found is not None else self._table_multiplier(instrument)

    def _instrument(self, msg: m.InstrumentSet) -> None:
        self._broker_multipliers[msg.instrument] = msg.multiplier

    def _reset(self, trading_day: int) -> None:
        self.trading_day = trading_day
        self._broker_multipliers: dict[str, int] = {}
        self.seq = 0
        self._values: dict[str, dict[str, Value]] = {}
        self._refusal_keys: deque[str] = deque()
        self._positions: dict[tuple[str, str], _Position] = {}
        self._money: dict[str, _Money] = {}
        self._requests: dict[str, m.OrderRequested] = {}
        self._orders: dict[str, OrderView] = {}
        self._out: list[Delta] = []

    # -- reading -------------------------------------------------------------------------------

    def snapshot(self) -> AccountSnapshot:
        topics = {t: dict(v) for t, v in self._values.items()}
        return AccountSnapshot(self.account, self.trading_day, self.seq, topics)

    def value(self, topic: str, key: str) -> Value | None:
        return self._values.get(topic, {}).get(key)

    # -- applying ------------------------------------------------------------------------------

    def apply(self, msg: m.EngineMessage) -> list[Delta]:
        """Apply one engine message; the deltas it caused (often none)."""
        self._out = []
        handler = _HANDLERS.get(type(msg))
        if handler is not None:
            handler(self, msg)
        return self._out

    def _set(self, topic: str, key: str, value: Value | None) -> None:
        self.seq += 1
        values = self._values.setdefault(topic, {})
        if value is None:
            values.pop(key, None)
        else:
            values[key] = value
        delta = Delta(self.account, self.trading_day, self.seq, topic, key, value)  # type: ignore[arg-type]
        self._out.append(delta)

    def _day_opened(self, msg: m.DayOpened) -> None:
        self._reset(msg.trading_day)
        self._set("day", "day", Day(msg.trading_day, "open", msg.time_ns))
        for agent, cash in sorted(msg.cash.items()):
            self._money[agent] = _Money(opening_cash=cash)
            self._pnl(agent)
        for h in msg.holdings:
            p = self._position_of(h.agent, h.instrument)
            p.long = _Side(0, h.long, 0.0, h.long * h.settlement, h.long_cost)
            p.short = _Side(0, h.short, 0.0, h.short * h.settlement, h.short_cost)
            self._position(h.agent, h.instrument)

    def _agent_started(self, msg: m.AgentStarted) -> None:
        self._set("agents", msg.agent, AgentView(msg.agent, True))

    def _agent_stopped(self, msg: m.AgentStopped) -> None:
        self._set("agents", msg.agent, AgentView(msg.agent, False, msg.error))

    def _requested(self, msg: m.OrderRequested) -> None:
        self._requests[msg.order_id] = msg
        self._order(OrderView(
            msg.order_id, msg.agent, msg.instrument, msg.direction, msg.offset, msg.price,
            msg.volume, msg.kind, "submitted", 0, msg.time_ns,
        ))  # fmt: skip

    def _order(self, order: OrderView | None, order_id: str = "") -> None:
        if order is None:
            self._orders.pop(order_id, None)
            self._set("orders", order_id, None)
        else:
            self._orders[order.order_id] = order
            self._set("orders", order.order_id, order)

    def _change(self, order_id: str, **fields: object) -> None:
        order = self._orders.get(order_id)
        if order is not None:
            self._order(msgspec_replace(order, **fields))

    def _external_order(self, msg: m.ExternalOrder) -> None:
        """Another terminal's order: shown under the agent ``external`` while it works."""
        if msg.order_id not in self._requests:
            self._requests[msg.order_id] = m.OrderRequested(
                msg.ticks, msg.time_ns, msg.order_id, EXTERNAL, msg.instrument, msg.exchange,
                msg.direction, msg.offset, msg.price, msg.volume, "limit")  # fmt: skip
        if msg.status != "working":
            self._ended(msg.order_id)
            return
        order = self._orders.get(msg.order_id)
        self._order(OrderView(
            msg.order_id, EXTERNAL, msg.instrument, msg.direction, msg.offset, msg.price,
            msg.volume, "limit", "accepted", msg.traded,
            order.requested_ns if order is not None else msg.time_ns,
            msg.order_id.removeprefix("ext:"),
        ))  # fmt: skip

    def _external_trade(self, msg: m.ExternalTrade) -> None:
        """Its fill: in the agent ``external``'s trades and positions (not any agent's)."""
        if msg.order_id not in self._requests:
            self._requests[msg.order_id] = m.OrderRequested(
                msg.ticks, msg.time_ns, msg.order_id, EXTERNAL, msg.instrument, "",
                msg.direction, msg.offset, msg.price, msg.volume, "limit")  # fmt: skip
        self._trade(m.Trade(msg.ticks, msg.time_ns, msg.order_id, msg.trade_id, msg.price,
                            msg.volume, 0.0))  # fmt: skip

    def _accepted(self, msg: m.OrderAccepted) -> None:
        order = self._orders.get(msg.order_id)
        if order is not None:
            state = order.state if order.state == "cancelling" else "accepted"
            self._order(msgspec_replace(order, state=state,
                                        exchange_order_id=msg.exchange_order_id))  # fmt: skip

    def _cancel_requested(self, msg: m.CancelRequested) -> None:
        self._change(msg.order_id, state="cancelling")

    def _cancel_refused(self, msg: m.CancelRefused) -> None:
        order = self._orders.get(msg.order_id)
        if order is not None:
            self._order(msgspec_replace(order, state="accepted"))
        self._refusal(Refusal(msg.time_ns, msg.agent, msg.order_id, msg.code, msg.text, "cancel"))

    def _ended(self, order_id: str) -> None:
        if order_id in self._orders:
            self._order(None, order_id)

    def _rejected(self, msg: m.OrderRejected) -> None:
        request = self._requests.get(msg.order_id)
        agent = request.agent if request is not None else ""
        self._refusal(Refusal(msg.time_ns, agent, msg.order_id, msg.code, msg.text, "exchange"))
        self._ended(msg.order_id)

    def _cancelled(self, msg: m.OrderCancelled) -> None:
        self._ended(msg.order_id)

    def _risk_refused(self, msg: m.RiskRefused) -> None:
        self._refusal(Refusal(msg.time_ns, msg.agent, msg.order_id, msg.code, msg.text, "risk"))

    def _refusal(self, refusal: Refusal) -> None:
        key = f"{self.seq + 1:012d}"  # the delta's own number: unique and in order
        self._refusal_keys.append(key)
        self._set("refusals", key, refusal)
        if len(self._refusal_keys) > REFUSALS_KEPT:  # the oldest leaves: a delta too
            self._set("refusals", self._refusal_keys.popleft(), None)

    def _portfolio(self, msg: m.PortfolioSet) -> None:
        self._set("portfolios", msg.name, PortfolioView(
            msg.name, list(msg.agents), msg.capital, msg.max_position, msg.max_net_position,
            msg.max_margin_ratio, msg.max_daily_loss))  # fmt: skip

    def _cond_placed(self, msg: m.ConditionalPlaced) -> None:
        self._set("conditionals", msg.cond_id, ConditionalView(
            msg.cond_id, msg.agent, msg.instrument, msg.kind, msg.direction, msg.volume,
            msg.trigger, msg.price, "working" if msg.kind in ("iceberg", "twap", "bracket")
            else "waiting", "", msg.time_ns))  # fmt: skip

    def _cond_changed(self, msg: m.ConditionalTriggered | m.ConditionalModified) -> None:
        view = self.value("conditionals", msg.cond_id)
        if not isinstance(view, ConditionalView):
            return
        if isinstance(msg, m.ConditionalTriggered):
            view = msgspec.structs.replace(view, state="working",
                                           text=f"triggered at {msg.price:g}")  # fmt: skip
        else:
            view = msgspec.structs.replace(view, trigger=msg.trigger or view.trigger,
                                           price=msg.price or view.price,
                                           volume=msg.volume or view.volume)  # fmt: skip
        self._set("conditionals", msg.cond_id, view)

    def _cond_ended(self, msg: m.ConditionalEnded) -> None:
        if self.value("conditionals", msg.cond_id) is not None:
            self._set("conditionals", msg.cond_id, None)

    def _state_changed(self, msg: m.StateChanged) -> None:
        key = f"{msg.scope}/{msg.target}"
        self._set("risk", key, RiskView(msg.scope, msg.target, msg.state, msg.reason, msg.time_ns))

    def _trade(self, msg: m.Trade) -> None:
        request = self._requests.get(msg.order_id)
        if request is None:
            return  # not an order of this day's journal: nothing to attribute it to
        agent, instrument = request.agent, request.instrument
        p = self._position_of(agent, instrument)
        realised = self._fill(p, request, msg.price, msg.volume) * self._multiplier(instrument)
        money = self._money.setdefault(agent, _Money())
        money.realised += realised
        money.fees += msg.fee
        self._set("trades", msg.trade_id, TradeView(
            msg.trade_id, msg.order_id, agent, instrument, request.direction, request.offset,
            msg.price, msg.volume, msg.fee, realised, msg.time_ns,
        ))  # fmt: skip
        self._position(agent, instrument)
        self._pnl(agent)
        order = self._orders.get(msg.order_id)
        if order is not None:
            filled = order.filled + msg.volume
            if filled >= order.volume:
                self._order(None, msg.order_id)
            else:
                self._order(msgspec_replace(order, filled=filled))

    @staticmethod
    def _fill(p: _Position, request: m.OrderRequested, price: float, volume: int) -> float:
        """Apply a fill to the position; the points it realised (times the lots)."""
        buy = request.direction == "buy"
        if request.offset == "open":
            (p.long if buy else p.short).open(price, volume)
            return 0.0
        if buy:  # a buy closes the short side, a sell the long side
            return p.short.close(request.offset, volume) - price * volume
        return price * volume - p.long.close(request.offset, volume)

    def _day_rolled(self, msg: m.DayRolled) -> None:
        """Mark to settlement: the day's PnL goes to cash, today's lots become yesterday's at
        the settlement, realised PnL and fees start again from zero."""
        for (agent, instrument), p in sorted(self._positions.items()):
            price = msg.settlements.get(instrument, math.nan)
            money = self._money.setdefault(agent, _Money())
            mult = self._multiplier(instrument)
            money.opening_cash += (p.long.roll(price) - p.short.roll(price)) * mult
            self._position(agent, instrument)
        for agent, money in sorted(self._money.items()):
            money.opening_cash += money.realised - money.fees
            money.realised = money.fees = 0.0
            self._pnl(agent)
        day = self._values.get("day", {}).get("day")
        opened = day.opened_ns if isinstance(day, Day) else msg.time_ns
        self._set("day", "day", Day(msg.trading_day, "rolled", opened, msg.next_day))

    def _day_closed(self, msg: m.DayClosed) -> None:
        day = self._values.get("day", {}).get("day")
        if isinstance(day, Day):
            self._set("day", "day", msgspec_replace(day, status="closed"))

    # -- views ---------------------------------------------------------------------------------

    def _position_of(self, agent: str, instrument: str) -> _Position:
        key = (agent, instrument)
        if key not in self._positions:
            self._positions[key] = _Position(_Side(), _Side())
        return self._positions[key]

    def _position(self, agent: str, instrument: str) -> None:
        p = self._positions[(agent, instrument)]
        long, short = p.long, p.short
        key = f"{agent}/{instrument}"
        if not long.lots and not short.lots:
            if key in self._values.get("positions", {}):
                self._set("positions", key, None)
            return
        self._set("positions", key, PositionView(
            agent, instrument, long.today, long.yesterday, short.today, short.yesterday,
            long.basis, short.basis,
            long.open_cost / long.lots if long.lots else 0.0,
            short.open_cost / short.lots if short.lots else 0.0,
        ))  # fmt: skip

    def _pnl(self, agent: str) -> None:
        money = self._money[agent]
        cash = money.opening_cash + money.realised - money.fees
        self._set("pnl", agent,
                  PnlView(agent, money.opening_cash, money.realised, money.fees, cash))  # fmt: skip

    def holdings(self) -> list[tuple[str, str, int, int, float, float]]:
        """(agent, instrument, long, short, long open cost, short open cost) of every open
        position, sorted: what the engine's ``DayClosed`` holdings should say."""
        return [
            (agent, instrument, p.long.lots, p.short.lots, p.long.open_cost, p.short.open_cost)
            for (agent, instrument), p in sorted(self._positions.items())
            if p.long.lots or p.short.lots
        ]

    def instruments(self) -> list[str]:
        """The instruments of the open positions, sorted."""
        return sorted({i for (_, i), p in self._positions.items() if p.long.lots or p.short.lots})

    def watched(self) -> list[str]:
        """The instruments of the day so far (positions, working orders, trades), sorted: those
        the dashboard charts."""
        seen = {i for (_, i) in self._positions}
        for topic in ("orders", "trades"):
            for value in self._values.get(topic, {}).values():
                if isinstance(value, OrderView | TradeView):
                    seen.add(value.instrument)
        return sorted(seen)

    def unrealised(self, prices: Mapping[str, float]) -> dict[str, float]:
        """Each agent's mark-to-market PnL at ``prices`` against its positions' basis (an
        instrument without a price counts nothing); agents without an open position: 0."""
        out = dict.fromkeys(sorted(self._money), 0.0)
        for (agent, instrument), p in sorted(self._positions.items()):
            price = prices.get(instrument)
            if price is None or math.isnan(price) or not (p.long.lots or p.short.lots):
                continue
            points = (p.long.lots * price - p.long.basis) + (p.short.basis - p.short.lots * price)
            out[agent] = out.get(agent, 0.0) + points * self._multiplier(instrument)
        return out

    def cash(self) -> dict[str, float]:
        """Each agent's cash as the next day opens with it (after a roll)."""
        return {a: x.opening_cash + x.realised - x.fees for a, x in sorted(self._money.items())}


def msgspec_replace(value: _V, **fields: object) -> _V:
    return msgspec.structs.replace(value, **fields)


_HANDLERS: dict[type, Callable[[AccountState, object], None]] = {
    m.DayOpened: AccountState._day_opened,  # type: ignore[dict-item]
    m.AgentStarted: AccountState._agent_started,  # type: ignore[dict-item]
    m.AgentStopped: AccountState._agent_stopped,  # type: ignore[dict-item]
    m.OrderRequested: AccountState._requested,  # type: ignore[dict-item]
    m.OrderAccepted: AccountState._accepted,  # type: ignore[dict-item]
    m.CancelRequested: AccountState._cancel_requested,  # type: ignore[dict-item]
    m.CancelRefused: AccountState._cancel_refused,  # type: ignore[dict-item]
    m.OrderRejected: AccountState._rejected,  # type: ignore[dict-item]
    m.OrderCancelled: AccountState._cancelled,  # type: ignore[dict-item]
    m.RiskRefused: AccountState._risk_refused,  # type: ignore[dict-item]
    m.StateChanged: AccountState._state_changed,  # type: ignore[dict-item]
    m.PortfolioSet: AccountState._portfolio,  # type: ignore[dict-item]
    m.InstrumentSet: AccountState._instrument,  # type: ignore[dict-item]
    m.ExternalOrder: AccountState._external_order,  # type: ignore[dict-item]
    m.ExternalTrade: AccountState._external_trade,  # type: ignore[dict-item]
    m.ConditionalPlaced: AccountState._cond_placed,  # type: ignore[dict-item]
    m.ConditionalTriggered: AccountState._cond_changed,  # type: ignore[dict-item]
    m.ConditionalModified: AccountState._cond_changed,  # type: ignore[dict-item]
    m.ConditionalEnded: AccountState._cond_ended,  # type: ignore[dict-item]
    m.Trade: AccountState._trade,  # type: ignore[dict-item]
    m.DayRolled: AccountState._day_rolled,  # type: ignore[dict-item]
    m.DayClosed: AccountState._day_closed,  # type: ignore[dict-item]
}
