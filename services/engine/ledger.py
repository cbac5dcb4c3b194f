"""The position ledger: a core with no I/O (docs/engine.md, "Offsets and ledger").

Per agent and instrument it keeps long and short volume split into today's and yesterday's, the
volume frozen by pending closes, the cost of each bucket, realised PnL and fees; per agent the cash
carried from earlier days. Prices are marked on every tick; at the trading-day roll today's volume
becomes yesterday's and every position is marked to the settlement price (China's daily
mark-to-market: the day's PnL goes to cash and the settlement becomes the position's cost basis).

Invariant (property-tested): equity = capital + the cash flows of every trade - fees + open
positions at the mark price, at every step and across rolls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from contracts.messages import Holding
from services.engine.offsets import (
    CLOSE,
    CLOSE_TODAY,
    CLOSE_TODAY_EXCHANGES,
    CLOSE_YESTERDAY,
    OPEN,
    Position,
)

__all__ = ["Account", "Ledger", "Line", "Rates", "Spec"]


@dataclass(frozen=True)
class Rates:
    """A product's fees and margin, as the broker charges them."""

    margin_rate: float = 0.0  # of the contract value, each side
    open_per_lot: float = 0.0
    open_rate: float = 0.0  # of the turnover (price x volume x multiplier)
    close_per_lot: float = 0.0
    close_rate: float = 0.0
    close_today_per_lot: float = 0.0
    close_today_rate: float = 0.0
    long_margin_rate: float = -1.0  # the long side's rate where it differs (-1: margin_rate)
    short_margin_rate: float = -1.0
    long_margin_per_lot: float = 0.0  # margin by volume: an amount per lot, each side
    short_margin_per_lot: float = 0.0
    margin_price: str = "last"  # what margin is on: "last", "pre_settlement" or "open"


@dataclass(frozen=True)
class Spec:
    """What the ledger and the risk gate need to know of an instrument."""

    instrument: str
    exchange: str
    multiplier: int
    price_tick: float
    rates: Rates = Rates()
    close_today_first: bool = False  # the offset preference: close today's lots before yesterday's
    long_factor: float = field(init=False)  # margin per lot and point of price, of each side
    short_factor: float = field(init=False)
    has_margin: bool = field(init=False)

    def __post_init__(self) -> None:
        r = self.rates
        long_rate = r.margin_rate if r.long_margin_rate < 0 else r.long_margin_rate
        short_rate = r.margin_rate if r.short_margin_rate < 0 else r.short_margin_rate
        object.__setattr__(self, "long_factor", self.multiplier * long_rate)
        object.__setattr__(self, "short_factor", self.multiplier * short_rate)
        object.__setattr__(
            self,
            "has_margin",
            bool(long_rate or short_rate or r.long_margin_per_lot or r.short_margin_per_lot),
        )

    def order_margin(self, buy: bool, price: float, volume: int) -> float:
        """The margin ``volume`` lots opened at ``price`` take (the side's rate by money and its
        amount per lot)."""
        if buy:
            return volume * (price * self.long_factor + self.rates.long_margin_per_lot)
        return volume * (price * self.short_factor + self.rates.short_margin_per_lot)

    @property
    def splits_close_today(self) -> bool:
        return self.exchange in CLOSE_TODAY_EXCHANGES

    def fee(self, offset: str, price: float, volume: int, today_volume: int = 0) -> float:
        """Fee of a fill; ``today_volume`` of a plain close that closes today's lots."""
        r = self.rates
        turnover = price * self.multiplier
        if offset == OPEN:
            return volume * (r.open_per_lot + r.open_rate * turnover)
        if offset == CLOSE_TODAY:
            today_volume = volume
        elif offset == CLOSE_YESTERDAY:
            today_volume = 0
        older = volume - today_volume
        return today_volume * (r.close_today_per_lot + r.close_today_rate * turnover) + older * (
            r.close_per_lot + r.close_rate * turnover
        )


@dataclass
class Line:
    """One agent's position in one instrument."""

    spec: Spec
    position: Position = field(default_factory=Position)
    # cost basis of each bucket: sum of price x volume (open price, or the settlement after a roll)
    long_today_cost: float = 0.0
    long_yesterday_cost: float = 0.0
    short_today_cost: float = 0.0
    short_yesterday_cost: float = 0.0
    long_open_cost: float = 0.0  # sum of open prices x volume, for the average open price
    short_open_cost: float = 0.0
    realised: float = 0.0  # today's, against the cost basis
    fees: float = 0.0  # today's
    mark: float = math.nan  # last price seen
    pre_settlement: float = math.nan  # the instrument's previous settlement (margin's basis)

    @property
    def long_average(self) -> float:
        return self.long_open_cost / self.position.long if self.position.long else 0.0

    @property
    def short_average(self) -> float:
        return self.short_open_cost / self.position.short if self.position.short else 0.0

    def unrealised(self, price: float | None = None) -> float:
        """Mark-to-market PnL of the open position against its cost basis, at the mark (or at
        ``price``)."""
        p = self.position
        mark = self.mark if price is None else price
        if (p.long == 0 and p.short == 0) or math.isnan(mark):
            return 0.0
        m = self.spec.multiplier
        value_long = p.long * mark - self.long_today_cost - self.long_yesterday_cost
        value_short = self.short_today_cost + self.short_yesterday_cost - p.short * mark
        return (value_long + value_short) * m

    def margin(self) -> float:
        """Margin of the position, each side at its rate by money and its amount per lot, on
        the price ``rates.margin_price`` names: the last price, the previous settlement, or each
        lot's open price (yesterday's at the settlement they were carried at); on the open
        prices too while there is no other price."""
        p = self.position
        longs = p.long_today + p.long_yesterday
        shorts = p.short_today + p.short_yesterday
        if not longs and not shorts:
            return 0.0
        spec = self.spec
        basis = spec.rates.margin_price
        price = self.pre_settlement if basis == "pre_settlement" else self.mark
        if basis == "open" or math.isnan(price):
            long_value = self.long_today_cost + self.long_yesterday_cost
            short_value = self.short_today_cost + self.short_yesterday_cost
        else:
            long_value, short_value = longs * price, shorts * price
        r = spec.rates
        return (long_value * spec.long_factor + longs * r.long_margin_per_lot
                + short_value * spec.short_factor + shorts * r.short_margin_per_lot)  # fmt: skip


@dataclass
class Account:
    """One agent's money: cash carried in from earlier days, and its lines."""

    capital: float
    cash: float  # at the start of the trading day
    lines: dict[str, Line] = field(default_factory=dict)

    def realised(self) -> float:
        return sum(line.realised for line in self.lines.values())

    def fees(self) -> float:
        return sum(line.fees for line in self.lines.values())

    def unrealised(self) -> float:
        return sum(line.unrealised() for line in self.lines.values())

    def margin(self) -> float:
        return sum(line.margin() for line in self.lines.values())

    def day_pnl(self) -> float:
        """Today's PnL: realised plus mark-to-market minus fees (the daily-loss rule's number)."""
        return self.realised() + self.unrealised() - self.fees()

    def equity(self) -> float:
        return self.cash + self.day_pnl()

    def available(self) -> float:
        return self.equity() - self.margin()

    def closing_equity(self, settlements: dict[str, float]) -> float:
        """The cash the roll would leave at these settlement prices (a line with none: its
        mark), without rolling: the day's close of the last day of a backtest."""
        total = self.cash
        for instrument, line in self.lines.items():
            price = settlements.get(instrument, line.mark)
            total += line.realised + line.unrealised(price) - line.fees
        return total


class Ledger:
    """Positions and money of every agent; the account's are their sums."""

    def __init__(self) -> None:
        self.accounts: dict[str, Account] = {}
        self.specs: dict[str, Spec] = {}
        self.marks: dict[str, float] = {}
        self.pre_settlements: dict[str, float] = {}
        self._holders: dict[str, list[Line]] = {}  # every agent's line of an instrument

    def open_account(self, agent: str, capital: float, cash: float | None = None) -> Account:
        old = self.accounts.get(agent)
        if old is not None:  # a reopened account: forget its old lines
            for instrument, line in old.lines.items():
                self._holders[instrument].remove(line)
        account = Account(capital, capital if cash is None else cash)
        self.accounts[agent] = account
        return account

    def line(self, agent: str, spec: Spec) -> Line:
        lines = self.accounts[agent].lines
        found = lines.get(spec.instrument)
        if found is None:
            found = lines[spec.instrument] = Line(
                spec, mark=self.marks.get(spec.instrument, math.nan),
                pre_settlement=self.pre_settlements.get(spec.instrument, math.nan),
            )  # fmt: skip
            self.specs[spec.instrument] = spec
            self._holders.setdefault(spec.instrument, []).append(found)
        return found

    def respec(self, spec: Spec) -> None:
        """An instrument's facts changed (the broker's, for the day): every line of it takes
        them, so its margin and the fees of its next fills follow."""
        if spec.instrument in self.specs:
            self.specs[spec.instrument] = spec
        for line in self._holders.get(spec.instrument, []):
            line.spec = spec

    def carry(self, agent: str, spec: Spec, holding: Holding) -> Line:
        """Add a position carried in from the previous day (all of it yesterday's, marked to the
        settlement it was rolled at) to ``agent``'s line."""
        line = self.line(agent, spec)
        p = line.position
        p.long_yesterday += holding.long
        p.short_yesterday += holding.short
        line.long_open_cost += holding.long_cost
        line.short_open_cost += holding.short_cost
        line.long_yesterday_cost += holding.long * holding.settlement
        line.short_yesterday_cost += holding.short * holding.settlement
        line.mark = holding.settlement
        return line

    def position(self, agent: str, instrument: str) -> Position:
        line = self.accounts[agent].lines.get(instrument)
        return line.position if line is not None else Position()

    def pre_settle(self, instrument: str, price: float) -> None:
        """The instrument's previous settlement (its first tick of the day carries it)."""
        if math.isnan(price) or price <= 0 or price >= 1e300:  # unset (0, NaN, DBL_MAX)
            return
        self.pre_settlements[instrument] = price
        for line in self._holders.get(instrument, ()):
            line.pre_settlement = price

    def mark(self, instrument: str, price: float) -> bool:
        """Mark ``instrument``'s lines to ``price``; True if one of them holds a position (its
        mark-to-market moved)."""
        if math.isnan(price):  # no price
            return False
        self.marks[instrument] = price
        held = False
        for line in self._holders.get(instrument, ()):
            line.mark = price
            if not held:
                p = line.position
                held = bool(p.long_today or p.long_yesterday or p.short_today or p.short_yesterday)
        return held

    # -- pending closes ------------------------------------------------------------------------

    def freeze(self, line: Line, direction: str, offset: str, volume: int, sign: int = 1) -> None:
        """Freeze (``sign=1``) or release (``-1``) the volume a pending close will take."""
        if offset == OPEN:
            return
        p = line.position
        side = "short" if direction == "buy" else "long"
        if sign < 0 and offset == CLOSE:  # release what was frozen: yesterday's first
            held = p.frozen_long_yesterday if side == "long" else p.frozen_short_yesterday
            yesterday = min(volume, held)
            today = volume - yesterday
        else:
            today, yesterday = _split(p, side, offset, volume, frozen=True)
        if side == "long":
            p.frozen_long_today += sign * today
            p.frozen_long_yesterday += sign * yesterday
        else:
            p.frozen_short_today += sign * today
            p.frozen_short_yesterday += sign * yesterday

    # -- fills ---------------------------------------------------------------------------------

    def fee(self, line: Line, direction: str, offset: str, price: float, volume: int) -> float:
        today = 0
        if offset == CLOSE:
            today = _split(line.position, "short" if direction == "buy" else "long", offset,
                           volume, frozen=False)[0]  # fmt: skip
        return line.spec.fee(offset, price, volume, today)

    def fill(
        self, line: Line, direction: str, offset: str, price: float, volume: int, *,
        fee: float = 0.0, frozen: bool = True,
    ) -> float:  # fmt: skip
        """Apply a fill; returns the PnL it realised. ``frozen``: a close's volume was frozen
        when its order was sent (released here)."""
        p = line.position
        line.fees += fee
        if offset == OPEN:
            if direction == "buy":
                p.long_today += volume
                line.long_today_cost += price * volume
                line.long_open_cost += price * volume
            else:
                p.short_today += volume
                line.short_today_cost += price * volume
                line.short_open_cost += price * volume
            return 0.0
        side = "short" if direction == "buy" else "long"
        today, yesterday = _split(p, side, offset, volume, frozen=False)
        if frozen:
            self.freeze(line, direction, offset, volume, sign=-1)
        m = line.spec.multiplier
        if side == "long":
            basis = _take(line, "long_today_cost", p.long_today, today) + _take(
                line, "long_yesterday_cost", p.long_yesterday, yesterday
            )
            average_open = line.long_average
            p.long_today -= today
            p.long_yesterday -= yesterday
            line.long_open_cost -= average_open * volume
            realised = (price * volume - basis) * m
        else:
            basis = _take(line, "short_today_cost", p.short_today, today) + _take(
                line, "short_yesterday_cost", p.short_yesterday, yesterday
            )
            average_open = line.short_average
            p.short_today -= today
            p.short_yesterday -= yesterday
            line.short_open_cost -= average_open * volume
            realised = (basis - price * volume) * m
        if p.long == 0:
            line.long_open_cost = 0.0
        if p.short == 0:
            line.short_open_cost = 0.0
        line.realised += realised
        return realised

    # -- the trading-day roll ------------------------------------------------------------------

    def roll(self, settlements: dict[str, float]) -> None:
        """End of the trading day: mark to settlement (or the last price), move today's PnL into
        cash, and make today's volume yesterday's with the settlement as its cost basis."""
        for account in self.accounts.values():
            for instrument, line in account.lines.items():
                price = settlements.get(instrument, line.mark)
                if not math.isnan(price):
                    line.mark = self.marks[instrument] = price
                account.cash += line.realised + line.unrealised() - line.fees
                line.realised = line.fees = 0.0
                p = line.position
                p.roll()
                price = 0.0 if math.isnan(line.mark) else line.mark
                if p.long and not math.isnan(line.mark):
                    line.long_yesterday_cost = p.long * price
                if p.short and not math.isnan(line.mark):
                    line.short_yesterday_cost = p.short * price
                line.long_today_cost = line.short_today_cost = 0.0


def _split(p: Position, side: str, offset: str, volume: int, *, frozen: bool) -> tuple[int, int]:
    """(today, yesterday) lots a close of ``volume`` takes from ``side``. A plain close takes
    yesterday's lots first (the exchanges' rule); ``frozen`` counts only lots not yet frozen."""
    if offset == CLOSE_TODAY:
        return volume, 0
    if offset == CLOSE_YESTERDAY:
        return 0, volume
    if side == "long":
        yesterday = p.long_yesterday - (p.frozen_long_yesterday if frozen else 0)
    else:
        yesterday = p.short_yesterday - (p.frozen_short_yesterday if frozen else 0)
    from_yesterday = min(volume, max(yesterday, 0))
    return volume - from_yesterday, from_yesterday


def _take(line: Line, bucket: str, held: int, volume: int) -> float:
    """Remove ``volume`` lots' share of a bucket's cost; returns that share."""
    if volume == 0:
        return 0.0
    cost: float = getattr(line, bucket)
    share = cost * volume / held if held else 0.0
    setattr(line, bucket, cost - share)
    return share
