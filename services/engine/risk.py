"""The pre-trade risk gate: a core with no I/O (docs/engine.md, "Risk gate").

Every order and every cancel is checked before it leaves the engine. A check returns ``None``
(let through) or a ``(code, text)`` refusal. The gate's counters (order rate, cancels per
instrument, orders and cancels per agent, recent orders for the duplicate guard) move only through
:meth:`RiskGate.order_sent` and :meth:`RiskGate.cancel_sent`, which the engine calls when it
applies the journaled ``OrderRequested`` and ``CancelRequested``: so recovery rebuilds them exactly.
States (active, reducing, halted) are kept per agent, instrument, account and globally.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from contracts.calendar import CHINA_OFFSET_S, DAY_SECONDS
from contracts.config import RiskConfig
from services.engine.ledger import Ledger, Spec
from services.engine.orders import TERMINAL, Order

_INF: Final = math.inf

__all__ = ["ACTIVE", "HALTED", "REDUCING", "Portfolio", "Quote", "Refusal", "RiskGate",
           "RiskLimits"]  # fmt: skip

ACTIVE: Final = "active"
REDUCING: Final = "reducing"
HALTED: Final = "halted"
_RANK: Final = {ACTIVE: 0, REDUCING: 1, HALTED: 2}

Refusal = tuple[str, str]
NS: Final = 1_000_000_000


class Quote(Protocol):
    """What the gate reads of an instrument's market: the latest tick (a ``libshm.Tick``)."""

    @property
    def last(self) -> float: ...
    @property
    def upper_limit(self) -> float: ...
    @property
    def lower_limit(self) -> float: ...
    @property
    def exchange_time_ns(self) -> int: ...
    @property
    def local_time_ns(self) -> int: ...


@dataclass(frozen=True)
class RiskLimits:
    """An agent's limits: the config's, with the agent's overrides applied."""

    max_order_volume: int
    max_orders_per_second: int
    max_position: int
    max_net_position: int
    max_margin_ratio: float
    max_daily_loss: float

    @classmethod
    def from_config(
        cls, risk: RiskConfig, overrides: dict[str, object] | None = None
    ) -> RiskLimits:
        values = {name: getattr(risk, name) for name in cls.__dataclass_fields__}
        values.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return cls(**values)


@dataclass(frozen=True)
class Portfolio:
    """Agents under one capital with limits on their sum (None: not checked)."""

    name: str
    agents: tuple[str, ...]
    capital: float
    max_position: int | None = None
    max_net_position: int | None = None
    max_margin_ratio: float | None = None
    max_daily_loss: float | None = None


class _AgentCounters:
    """One agent's limits and counters: what every check reads, one lookup away."""

    __slots__ = ("cancels", "limits", "orders", "recent", "sent")

    def __init__(self, limits: RiskLimits) -> None:
        self.limits = limits
        self.sent: deque[int] = deque()  # times of orders in the last second
        self.orders = 0  # today
        self.cancels = 0  # today, not protective
        self.recent: dict[tuple[str, str, str, float, int], int] = {}


class RiskGate:
    """Checks orders and cancels; keeps the counters and the states of every scope."""

    def __init__(self, config: RiskConfig, ledger: Ledger) -> None:
        self.config = config
        self.ledger = ledger
        self.limits: dict[str, RiskLimits] = {}
        self.states: dict[tuple[str, str], str] = {}
        self._agents: dict[str, _AgentCounters] = {}
        self._account_sent: deque[int] = deque()
        self._cancels: dict[str, int] = {}  # per instrument, today, the account's
        self._window = config.duplicate_window_ms * 1_000_000
        # the config's values as plain attributes: read on every check
        self._trading_hours = config.trading_hours
        self._band = config.price_band
        self._account_rate = config.account_orders_per_second
        self._self_trade = config.self_trade
        self._account_margin = config.account_max_margin
        self.portfolios: dict[str, Portfolio] = {}
        self.portfolio_of: dict[str, Portfolio] = {}

    def add_agent(self, agent: str, limits: RiskLimits) -> None:
        self.limits[agent] = limits
        self._agents[agent] = _AgentCounters(limits)

    def add_portfolio(self, portfolio: Portfolio) -> None:
        self.portfolios[portfolio.name] = portfolio
        for agent in portfolio.agents:
            self.portfolio_of[agent] = portfolio

    # -- states --------------------------------------------------------------------------------

    def state(self, scope: str, target: str) -> str:
        return self.states.get((scope, target), ACTIVE)

    def set_state(self, scope: str, target: str, state: str) -> bool:
        """Set a scope's state; True if it changed."""
        key = (scope, target)
        if self.states.get(key, ACTIVE) == state:
            return False
        if state == ACTIVE:
            del self.states[key]
        else:
            self.states[key] = state
        return True

    def effective(self, agent: str, instrument: str) -> str:
        """The strictest state of the global, account, agent and instrument scopes."""
        states = self.states
        if not states:
            return ACTIVE
        worst = ACTIVE
        for key in (("global", ""), ("account", ""), ("agent", agent), ("instrument", instrument)):
            found = states.get(key)
            if found is not None and _RANK[found] > _RANK[worst]:
                worst = found
        portfolio = self.portfolio_of.get(agent)
        if portfolio is not None:
            found = states.get(("portfolio", portfolio.name))
            if found is not None and _RANK[found] > _RANK[worst]:
                worst = found
        return worst

    # -- orders --------------------------------------------------------------------------------

    def check_order(  # noqa: PLR0915 (one straight path: every check of an order)
        self,
        order: Order,
        spec: Spec,
        quote: Quote | None,
        *,
        pending_open: tuple[int, int],
        working: Iterable[Order],
        now_ns: int,
        phases: bytes = b"",
    ) -> Refusal | None:
        """``pending_open``: lots of (buy, sell) opening orders of this agent and instrument still
        working; ``working``: the account's working orders in this instrument (every agent)."""
        agent = order.agent
        instrument = order.instrument
        direction = order.direction
        volume = order.volume
        price = order.price
        counters = self._agents[agent]
        limits = counters.limits
        opening = order.offset == "open"

        if self.states:
            state = self.effective(agent, instrument)
            if state == HALTED:
                return "HALTED", f"{agent}/{instrument}: trading is halted"
            if state == REDUCING and opening:
                return "REDUCING_ONLY", f"{agent}/{instrument}: only reducing orders are allowed"

        if volume > limits.max_order_volume:
            return "MAX_ORDER_VOLUME", (
                f"{volume} lots exceeds the limit of {limits.max_order_volume} per order"
            )

        if quote is not None and phases and self._trading_hours and quote.exchange_time_ns:
            # the exchange's clock: the last tick's exchange time plus the time since it arrived
            elapsed = now_ns - quote.local_time_ns
            exchange_now = quote.exchange_time_ns + (elapsed if elapsed > 0 else 0)
            if not phases[(exchange_now // NS + CHINA_OFFSET_S) % DAY_SECONDS]:  # china_second
                return "TRADING_HOURS", f"{instrument} is not trading now"

        market = order.kind == "market"
        if not market:
            ticks = price / spec.price_tick
            if not 0.0 < price < _INF or abs(ticks - round(ticks)) > 1e-6:  # NaN fails too
                return "PRICE_TICK", f"price {price} is not on the {spec.price_tick} tick grid"
            if quote is not None:
                if price > quote.upper_limit or price < quote.lower_limit:
                    return "PRICE_LIMIT", (
                        f"price {price} is outside today's limits "
                        f"{quote.lower_limit}..{quote.upper_limit}"
                    )
                last = quote.last
                if abs(price - last) > self._band * last:  # False while last is NaN
                    return "PRICE_BAND", (
                        f"price {price} is more than {self._band:.1%} away from the last "
                        f"price {last}"
                    )

        horizon = now_ns - NS
        sent = counters.sent
        while sent and sent[0] <= horizon:
            sent.popleft()
        if len(sent) >= limits.max_orders_per_second:
            return "ORDER_RATE", (
                f"{agent} sent {len(sent)} orders in the last second "
                f"(limit {limits.max_orders_per_second})"
            )
        account_sent = self._account_sent
        while account_sent and account_sent[0] <= horizon:
            account_sent.popleft()
        if len(account_sent) >= self._account_rate:
            return "ORDER_RATE", (
                f"the account sent {len(account_sent)} orders in the last second "
                f"(limit {self._account_rate})"
            )

        if self._window:
            before = counters.recent.get((instrument, direction, order.offset, price, volume))
            if before is not None and now_ns - before < self._window:
                return "DUPLICATE", (
                    f"the same order ({direction} {order.offset} {volume} {instrument} @ {price}) "
                    f"was sent {(now_ns - before) / 1e6:.0f} ms ago"
                )

        buy = direction == "buy"
        if opening:  # position and margin (inline: this is on every opening order)
            account = self.ledger.accounts[agent]
            line = account.lines.get(instrument)
            long, short = pending_open
            if line is not None:
                p = line.position
                long += p.long_today + p.long_yesterday
                short += p.short_today + p.short_yesterday
            if buy:
                long += volume
            else:
                short += volume
            after = long if buy else short
            if after > limits.max_position:
                side = "long" if buy else "short"
                return "MAX_POSITION", (
                    f"{side} {instrument} would reach {after} lots (limit {limits.max_position})"
                )
            if abs(long - short) > limits.max_net_position:
                return "MAX_POSITION", (
                    f"net {instrument} would reach {long - short} lots "
                    f"(limit {limits.max_net_position})"
                )
            if spec.has_margin:
                if market and quote is not None:
                    price = quote.upper_limit if buy else quote.lower_limit
                extra = spec.order_margin(buy, price, volume)
                used = extra
                for held in account.lines.values():
                    used += held.margin()
                if used > account.capital * limits.max_margin_ratio:
                    return "MAX_MARGIN", (
                        f"margin would reach {used:,.0f} ({used / account.capital:.0%} of "
                        f"capital; limit {limits.max_margin_ratio:.0%})"
                    )
                limit = self._account_margin
                if limit is not None:
                    total = sum(a.margin() for a in self.ledger.accounts.values()) + extra
                    if total > limit:
                        return "MAX_MARGIN", (
                            f"the account's margin would reach {total:,.0f} (limit {limit:,.0f})"
                        )
            else:
                extra = 0.0
            portfolio = self.portfolio_of.get(agent)
            if portfolio is not None:
                refusal = self._check_portfolio(portfolio, order, working, extra)
                if refusal is not None:
                    return refusal

        if working and self._self_trade:
            price = order.price
            for other in working:
                if other.direction == direction or other.state in TERMINAL:
                    continue
                if market or (price >= other.price if buy else price <= other.price):
                    return "SELF_TRADE", (
                        f"would cross the account's own resting order {other.order_id} "
                        f"({other.direction} @ {other.price})"
                    )
        return None

    def _check_portfolio(self, portfolio: Portfolio, order: Order, working: Iterable[Order],
                         extra_margin: float) -> Refusal | None:  # fmt: skip
        """An opening order against its agent's portfolio's limits: the members' positions and
        pending opens in the instrument together, and their margin with the order's."""
        instrument, buy, name = order.instrument, order.direction == "buy", portfolio.name
        members = portfolio.agents
        long = short = 0
        for member in members:
            line = self.ledger.accounts[member].lines.get(instrument)
            if line is not None:
                p = line.position
                long += p.long_today + p.long_yesterday
                short += p.short_today + p.short_yesterday
        for other in working:
            if other.agent in members and other.offset == "open" and other.state not in TERMINAL:
                if other.direction == "buy":
                    long += other.remaining
                else:
                    short += other.remaining
        if buy:
            long += order.volume
        else:
            short += order.volume
        limit = portfolio.max_position
        after = long if buy else short
        if limit is not None and after > limit:
            side = "long" if buy else "short"
            return "PORTFOLIO_POSITION", (
                f"portfolio {name}: {side} {instrument} would reach {after} lots across its "
                f"agents (limit {limit})"
            )
        limit = portfolio.max_net_position
        if limit is not None and abs(long - short) > limit:
            return "PORTFOLIO_POSITION", (
                f"portfolio {name}: net {instrument} would reach {long - short} lots across its "
                f"agents (limit {limit})"
            )
        ratio = portfolio.max_margin_ratio
        if ratio is not None:
            used = extra_margin + sum(self.ledger.accounts[a].margin() for a in members)
            if used > ratio * portfolio.capital:
                return "PORTFOLIO_MARGIN", (
                    f"portfolio {name}: margin would reach {used:,.0f} "
                    f"({used / portfolio.capital:.0%} of its capital; limit {ratio:.0%})"
                )
        return None

    def portfolio_loss_breached(self, portfolio: Portfolio) -> bool:
        limit = portfolio.max_daily_loss
        if limit is None:
            return False
        return sum(self.ledger.accounts[a].day_pnl() for a in portfolio.agents) < -limit

    def loss_breached(self, agent: str) -> bool:
        """The agent's day PnL is below its daily-loss limit (it must move to reducing)."""
        return self.ledger.accounts[agent].day_pnl() < -self.limits[agent].max_daily_loss

    def account_loss_breached(self) -> bool:
        limit = self.config.account_max_daily_loss
        if limit is None:
            return False
        return sum(a.day_pnl() for a in self.ledger.accounts.values()) < -limit

    def order_sent(self, order: Order, now_ns: int) -> None:
        """Count an order that left (applied from the journaled ``OrderRequested``)."""
        counters = self._agents[order.agent]
        counters.sent.append(now_ns)
        counters.orders += 1
        self._account_sent.append(now_ns)
        if self._window:
            recent = counters.recent
            if len(recent) > 256:  # forget what is out of the window
                horizon = now_ns - self._window
                for key in [k for k, t in recent.items() if t < horizon]:
                    del recent[key]
            key = (order.instrument, order.direction, order.offset, order.price, order.volume)
            recent[key] = now_ns

    # -- cancels -------------------------------------------------------------------------------

    def check_cancel(self, order: Order, protective: bool) -> Refusal | None:
        """A cancel of ``order``; ``protective`` (halt, flatten, a stopped agent) may use the
        reserve and is never refused for the ratio or a halted state."""
        cfg = self.config
        if not protective and self.effective(order.agent, order.instrument) == HALTED:
            return "HALTED", f"{order.agent}/{order.instrument}: trading is halted"
        used = self._cancels.get(order.instrument, 0)
        limit = cfg.cancel_limit if protective else cfg.cancel_limit - cfg.cancel_reserve
        if used >= limit:
            kept = "" if protective else f", {cfg.cancel_reserve} kept for protective cancels"
            return "CANCEL_BUDGET", (
                f"{used} cancels on {order.instrument} today (limit {cfg.cancel_limit}{kept})"
            )
        if not protective:
            counters = self._agents[order.agent]
            if (
                counters.orders >= cfg.cancel_ratio_min_orders
                and counters.cancels + 1 > cfg.max_cancel_ratio * counters.orders
            ):
                return "ORDER_CANCEL_RATIO", (
                    f"{order.agent} would cancel {counters.cancels + 1} of {counters.orders} "
                    f"orders today (limit {cfg.max_cancel_ratio:.0%})"
                )
        return None

    def cancel_sent(self, order: Order, protective: bool) -> None:
        """Count a cancel that left; FAK and FOK orders are never counted."""
        if order.kind in ("fak", "fok"):
            return
        self._cancels[order.instrument] = self._cancels.get(order.instrument, 0) + 1
        if not protective:
            self._agents[order.agent].cancels += 1

    def cancels_used(self, instrument: str) -> int:
        return self._cancels.get(instrument, 0)

    # -- the trading day -----------------------------------------------------------------------

    def new_day(self) -> None:
        """Daily counters start again (rate windows and states carry on)."""
        self._cancels.clear()
        for counters in self._agents.values():
            counters.orders = counters.cancels = 0
            counters.recent.clear()
