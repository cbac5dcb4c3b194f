"""One instrument at the simulated exchange: the market as its snapshots show it, and the
simulated orders matched against it (docs/paper.md). A core with no I/O.

Outputs are plain tuples, in the order they happen:
``("fill", order_id, price, volume)``, ``("cancelled", order_id, text)``,
``("rejected", order_id, code, text)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from contracts.calendar import china_second
from libshm import Tick
from services.engine.adapters.paper.queues import QueueModel
from services.engine.ledger import Spec
from services.engine.orders import Order

__all__ = ["REFUSALS", "Exchange", "Resting"]

Output = tuple[object, ...]
_NOTHING: list[Output] = []  # shared and never appended to: what a quiet tick returns

EPS = 1e-9

# CTP's ErrorID and ErrorMsg for what the simulated front and exchange refuse (docs/paper.md)
REFUSALS: dict[str, tuple[str, str]] = {
    "position": ("30", "CTP:平仓量超过持仓量"),
    "funds": ("31", "CTP:资金不足"),
    "close_today": ("50", "CTP:平今仓位不足"),
    "close_yesterday": ("51", "CTP:平昨仓位不足"),
    "tick": ("15", "CTP:报单字段有误"),
    "limits": ("91", "CTP:交易所返回错误: 价格超出涨跌停板"),
    "hours": ("91", "CTP:交易所返回错误: 非交易时段"),
    "cancel": ("26", "CTP:报单已全成交或已撤销，不能再撤"),
    "cancel_unknown": ("25", "CTP:撤单找不到相应报单"),
}


@dataclass(slots=True, init=False)  # its own __init__: compiled (a dataclass's is interpreted)
class Resting:
    """A simulated order working at the exchange."""

    order: Order
    left: int
    ahead: float | None  # market volume in front of it; None until its level has been seen

    def __init__(self, order: Order, left: int, ahead: float | None) -> None:
        self.order = order
        self.left = left
        self.ahead = ahead


class _Books:
    """The displayed levels of the last two snapshots looked at (the previous and the current
    one of an update), so that each is unpacked once however many orders look at it."""

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: list[tuple[Tick, list[tuple[float, int]], list[tuple[float, int]]]] = []

    def get(self, tick: Tick, side: str) -> list[tuple[float, int]]:
        for cached, bids, asks in self._slots:
            if cached is tick:
                return bids if side == "bid" else asks
        entry = (tick, *_levels(tick))
        self._slots = [*self._slots[-1:], entry]
        return entry[1] if side == "bid" else entry[2]


def _levels(t: Tick) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    """``t.bids`` and ``t.asks`` (the present levels, best first), read field by field: the
    same lists without the interpreted properties' slices (this runs compiled, native.py)."""
    bids: list[tuple[float, int]] = []
    asks: list[tuple[float, int]] = []
    for p, v in ((t.bid_price1, t.bid_volume1), (t.bid_price2, t.bid_volume2),
                 (t.bid_price3, t.bid_volume3), (t.bid_price4, t.bid_volume4),
                 (t.bid_price5, t.bid_volume5)):  # fmt: skip
        if v > 0 and not math.isnan(p):  # shown
            bids.append((p, v))
    for p, v in ((t.ask_price1, t.ask_volume1), (t.ask_price2, t.ask_volume2),
                 (t.ask_price3, t.ask_volume3), (t.ask_price4, t.ask_volume4),
                 (t.ask_price5, t.ask_volume5)):  # fmt: skip
        if v > 0 and not math.isnan(p):
            asks.append((p, v))
    return bids, asks


def _shown(levels: list[tuple[float, int]], side: str, price: float) -> int | None:
    """Volume displayed at ``price`` on ``side``: 0 if the price is within the displayed depth
    but not a level (or better than the best), None if it is beyond the displayed depth."""
    for level, volume in levels:
        if abs(level - price) < EPS:
            return volume
    if not levels:
        return None
    worst = levels[-1][0]
    beyond = price > worst + EPS if side == "ask" else price < worst - EPS
    return None if beyond else 0


@dataclass
class Exchange:
    """The exchange's view of one instrument: the latest snapshot, what simulated orders took
    from it since, and the simulated orders resting, in time priority."""

    spec: Spec
    queue: QueueModel
    phases: bytes = b""  # the calendar's per-second table; empty: no hours check
    tick: Tick | None = None
    resting: dict[str, Resting] = field(default_factory=dict)
    taken: dict[tuple[str, float], int] = field(default_factory=dict)  # since the snapshot
    _books: _Books = field(default_factory=_Books)

    # -- orders --------------------------------------------------------------------------------

    def check(self, order: Order, now_ns: int) -> tuple[str, str] | None:
        """The exchange's refusal of an arriving order: (code, text), or None."""
        tick = self.tick
        if self.phases and tick is not None:
            elapsed = max(0, now_ns - tick.local_time_ns)
            if not self.phases[china_second(tick.exchange_time_ns + elapsed)]:
                return REFUSALS["hours"]
        if order.kind == "market":
            return None
        ticks = order.price / self.spec.price_tick
        if not 0.0 < order.price < math.inf or abs(ticks - round(ticks)) > 1e-6:
            return REFUSALS["tick"]
        if tick is not None and (order.price > tick.upper_limit + EPS
                                 or order.price < tick.lower_limit - EPS):  # fmt: skip
            return REFUSALS["limits"]
        return None

    def match(self, order: Order) -> list[Output]:
        """Match an order that passed :meth:`check` (and the front's check): against the book, its
        rest resting, cancelled (FAK, market) or the whole order cancelled (FOK)."""
        out: list[Output] = []
        buy = order.direction == "buy"
        tick = self.tick
        limit = order.price
        if order.kind == "market":
            limit = math.inf if buy else -math.inf
            if tick is not None:
                limit = tick.upper_limit if buy else tick.lower_limit
        left = order.volume
        if tick is not None:
            side = "ask" if buy else "bid"
            takes: list[tuple[float, int]] = []
            total = 0
            for price, shown in self._books.get(tick, side):
                if total >= left or ((price > limit + EPS) if buy else (price < limit - EPS)):
                    break
                free = shown - self.taken.get((side, price), 0)
                if free > 0:
                    take = min(free, left - total)
                    takes.append((price, take))
                    total += take
            if order.kind == "fok" and total < order.volume:
                return [("cancelled", order.order_id, "FOK: not filled whole")]
            for price, volume in takes:
                self.taken[(side, price)] = self.taken.get((side, price), 0) + volume
                out.append(("fill", order.order_id, price, volume))
                left -= volume
        if not left:
            return out
        if order.kind != "limit":
            out.append(("cancelled", order.order_id, f"{order.kind.upper()}: rest cancelled"))
            return out
        ahead = None
        if tick is not None:
            side = "bid" if buy else "ask"
            queued = _shown(self._books.get(tick, side), side, order.price)
            ahead = None if queued is None else float(queued)
        self.resting[order.order_id] = Resting(order, left, ahead)
        return out

    def cancel(self, order_id: str) -> list[Output]:
        resting = self.resting.pop(order_id, None)
        if resting is None:
            return []
        return [("cancelled", order_id, "cancelled")]

    # -- the market ----------------------------------------------------------------------------

    def on_tick(self, tick: Tick) -> list[Output]:
        """A new snapshot: what traded and what was cancelled since the last one moves the
        resting orders in their queues and fills them (docs/paper.md)."""
        prev, self.tick = self.tick, tick
        if self.taken:
            self.taken.clear()
        if not self.resting:
            return _NOTHING
        if prev is None:
            self._place(tick, -math.inf, math.inf)
            return _NOTHING
        traded = tick.volume - prev.volume
        if traded < 0 or tick.trading_day != prev.trading_day:
            traded = 0  # a new day's cumulative volume
        multiplier = self.spec.multiplier
        vwap = (tick.turnover - prev.turnover) / (traded * multiplier) if traded else math.nan
        budget = traded  # lots the interval's trades can fill, across the simulated orders
        out: list[Output] = []
        own_filled: dict[tuple[str, float], int] = {}  # by our earlier orders at a price
        low_bid, high_ask = self._reach(prev, tick, vwap)
        for order_id, resting in list(self.resting.items()):
            order = resting.order
            buy = order.direction == "buy"
            price = order.price
            if (price < low_bid) if buy else (price > high_ask):
                continue  # out of this update's reach: it neither fills nor moves
            side = "bid" if buy else "ask"
            fill = 0
            # traded or quoted through the order: everything at its price went
            through_trades = traded > 0 and (
                (tick.last < price - EPS or vwap < price - EPS) if buy
                else (tick.last > price + EPS or vwap > price + EPS)
            )  # fmt: skip
            if through_trades:
                fill = min(resting.left, budget)
                budget -= fill
            crossing = self._crossing(tick, buy, price)
            if fill < resting.left and crossing:
                more = min(resting.left - fill, crossing)
                self._take(tick, buy, price, more)
                fill += more
            if not fill and not through_trades:
                fill = self._queue(resting, prev, tick, traded, vwap, own_filled, budget)
                budget -= fill
                own_filled[(side, price)] = own_filled.get((side, price), 0) + fill
            if fill:
                out.append(("fill", order_id, price, fill))
                resting.left -= fill
                if not resting.left:
                    del self.resting[order_id]
        self._place(tick, low_bid, high_ask)
        return out

    def _reach(self, prev: Tick, tick: Tick, vwap: float) -> tuple[float, float]:
        """The lowest buy price and the highest sell price this update can touch. A buy order
        below the first is beyond the displayed bids in both snapshots, below every ask, and
        below every price that traded (both last prices and the average), so it neither fills
        nor moves in its queue; likewise a sell order above the second."""
        low, high = math.inf, -math.inf
        for price in (prev.last, tick.last, vwap):
            if not math.isnan(price):
                low, high = min(low, price), max(high, price)
        books = self._books
        for snapshot in (prev, tick):
            bids, asks = books.get(snapshot, "bid"), books.get(snapshot, "ask")
            if bids:
                low, high = min(low, bids[-1][0]), max(high, bids[0][0])
            if asks:
                low, high = min(low, asks[0][0]), max(high, asks[-1][0])
        return low - EPS, high + EPS

    def _crossing(self, tick: Tick, buy: bool, price: float) -> int:
        """Volume of the opposite side displayed at or through the order's price (the market
        would have traded with the order)."""
        side = "ask" if buy else "bid"
        total = 0
        for level, shown in self._books.get(tick, side):
            if (level > price + EPS) if buy else (level < price - EPS):
                break
            total += shown - self.taken.get((side, level), 0)
        return max(0, total)

    def _take(self, tick: Tick, buy: bool, price: float, volume: int) -> None:
        side = "ask" if buy else "bid"
        for level, shown in self._books.get(tick, side):
            if volume <= 0 or ((level > price + EPS) if buy else (level < price - EPS)):
                break
            free = shown - self.taken.get((side, level), 0)
            use = min(free, volume)
            if use > 0:
                self.taken[(side, level)] = self.taken.get((side, level), 0) + use
                volume -= use

    def _queue(  # noqa: PLR0917
        self, resting: Resting, prev: Tick, tick: Tick, traded: int, vwap: float,
        own_filled: dict[tuple[str, float], int], budget: int,
    ) -> int:  # fmt: skip
        """Advance ``resting`` by the volume traded and cancelled at its price; the lots that
        reach it fill it."""
        if resting.ahead is None:
            return 0  # its level has not been seen yet: its place in the queue is unknown
        order = resting.order
        buy = order.direction == "buy"
        price = order.price
        at_price = _traded_at(price, prev.last, tick.last, traded, vwap)
        ahead_before = resting.ahead
        used = min(at_price, ahead_before)
        side = "bid" if buy else "ask"
        reached = at_price - used - own_filled.get((side, price), 0)
        fill = max(0, min(resting.left, int(reached + EPS), budget))
        ahead = ahead_before - used
        before = _shown(self._books.get(prev, side), side, price)
        after = _shown(self._books.get(tick, side), side, price)
        if before is not None and after is not None:
            cancelled = before - after - at_price
            if cancelled > 0 and ahead > 0:
                behind = max(0.0, before - ahead_before)
                ahead -= self.queue.cancelled_ahead(ahead, behind, cancelled)
        if after is not None:
            ahead = min(ahead, float(after))  # never more in front than is displayed there
        resting.ahead = max(0.0, ahead)
        return fill

    def _place(self, tick: Tick, low_bid: float, high_ask: float) -> None:
        """Orders whose level had not been seen: the displayed volume is ahead of them (an order
        out of the update's reach is beyond the displayed depth)."""
        for resting in self.resting.values():
            if resting.ahead is None:
                order = resting.order
                buy = order.direction == "buy"
                if (order.price < low_bid) if buy else (order.price > high_ask):
                    continue
                side = "bid" if buy else "ask"
                shown = _shown(self._books.get(tick, side), side, order.price)
                if shown is not None:
                    resting.ahead = float(shown)


def _traded_at(price: float, last0: float, last1: float, traded: int, vwap: float) -> float:
    """Lots of the interval's ``traded`` volume estimated to have traded at ``price``, from the
    two last prices and the interval's average price (docs/paper.md)."""
    if traded <= 0 or math.isnan(last0) or math.isnan(last1):
        return 0.0
    at0, at1 = abs(last0 - price) < EPS, abs(last1 - price) < EPS
    if at0 and at1:
        return float(traded)
    if not (at0 or at1):
        return 0.0
    other = last1 if at0 else last0
    if math.isnan(vwap):
        return float(traded)
    share = (other - vwap) / (other - price)  # n_p p + n_q q = vwap (n_p + n_q)
    estimate = float(traded) * min(1.0, max(0.0, share))
    # the last trade of the interval was at last1: at least one lot traded there
    return max(estimate, 1.0) if at1 else estimate
