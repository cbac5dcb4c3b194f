"""Paper trading: a deterministic matching core that fills the engine's orders against the
recorded or simulated book (no I/O).

This first model is deliberately conservative: a marketable order fills at the opposite best price
up to its displayed volume (a limit order's rest then rests, a FAK's rest is cancelled, a FOK that
cannot fill whole is cancelled whole, a market order is a FAK at the limit price); a resting order
fills at its own price only when the market trades or quotes through it (the last price strictly
beyond it, or the opposite best at or beyond it), up to the volume displayed or traded there.
Queue position, latency and the exchange's refusals are the paper simulator's next steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from libshm import Tick
from services.engine.core import AdapterEvent
from services.engine.orders import Order

__all__ = ["PaperBroker"]


@dataclass
class _Resting:
    order: Order
    left: int


@dataclass
class PaperBroker:
    """The paper adapter: ``deterministic`` so recovery rebuilds it by feeding it again."""

    deterministic: bool = True
    _book: dict[str, dict[str, _Resting]] = field(default_factory=dict)
    _ticks: dict[str, Tick] = field(default_factory=dict)
    _events: list[AdapterEvent] = field(default_factory=list)
    _trade_seq: int = 0
    _order_seq: int = 0

    def events(self) -> list[AdapterEvent]:
        out = self._events
        if not out:
            return out  # empty: the engine only iterates it
        self._events = []
        return out

    def submit(self, order: Order, now_ns: int) -> None:
        self._order_seq += 1
        self._events.append(("accepted", order.order_id, f"P{self._order_seq}"))
        tick = self._ticks.get(order.instrument)
        left = order.volume
        if tick is not None:
            price, available = _opposite(tick, order.direction)
            limit = _limit_of(order, tick)
            if available and _crosses(order.direction, limit, price):
                if order.kind == "fok" and available < order.volume:
                    self._events.append(("cancelled", order.order_id, "FOK not filled whole"))
                    return
                take = min(left, available)
                self._fill(order, price, take)
                left -= take
        if not left:
            return
        if order.kind in ("fak", "fok", "market"):
            self._events.append(("cancelled", order.order_id, f"{order.kind.upper()} remainder"))
            return
        self._book.setdefault(order.instrument, {})[order.order_id] = _Resting(order, left)

    def cancel(self, order: Order, now_ns: int) -> None:
        resting = self._book.get(order.instrument, {}).pop(order.order_id, None)
        if resting is None:
            self._events.append(("cancel_refused", order.order_id, "order not working"))
        else:
            self._events.append(("cancelled", order.order_id, "cancelled"))

    def on_tick(self, tick: Tick, now_ns: int) -> None:
        self._ticks[tick.instrument] = tick
        book = self._book.get(tick.instrument)
        if not book:
            return
        for order_id, resting in list(book.items()):
            order = resting.order
            price = order.price
            opposite, shown = _opposite(tick, order.direction)
            # the market traded or is quoted through the order's price: it was filled there
            if order.direction == "buy":
                through = tick.last < price or (shown and opposite <= price)
            else:
                through = tick.last > price or (shown and opposite >= price)
            if not through:
                continue
            self._fill(order, price, resting.left)
            del book[order_id]

    def _fill(self, order: Order, price: float, volume: int) -> None:
        self._trade_seq += 1
        self._events.append(("trade", order.order_id, f"T{self._trade_seq}", price, volume))


def _opposite(tick: Tick, direction: str) -> tuple[float, int]:
    if direction == "buy":
        price, volume = tick.ask_price1, tick.ask_volume1
    else:
        price, volume = tick.bid_price1, tick.bid_volume1
    if math.isnan(price):
        return math.nan, 0
    return price, volume


def _limit_of(order: Order, tick: Tick) -> float:
    if order.kind != "market":
        return order.price
    return tick.upper_limit if order.direction == "buy" else tick.lower_limit


def _crosses(direction: str, limit: float, price: float) -> bool:
    return price <= limit if direction == "buy" else price >= limit
