"""``PaperBroker``: the paper simulator as an engine adapter (docs/paper.md).

Orders and cancels reach the simulated front and exchange after the entry and cancel latencies;
what the exchange does reaches the engine after the acknowledgement latency. The clock is the
engine's (``now`` of every call), so the simulator is deterministic for a given seed and input,
and the engine rebuilds it after a crash by feeding it again.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from contracts.config import PaperConfig
from contracts.messages import Holding
from libshm import Tick
from services.engine.adapter import (
    NEVER,
    Accepted,
    Adapter,
    AdapterEvent,
    Cancelled,
    CancelRefused,
    Rejected,
    Traded,
)  # fmt: skip
from services.engine.adapters.paper.exchange import REFUSALS, Exchange
from services.engine.adapters.paper.front import Front
from services.engine.adapters.paper.latency import Latency
from services.engine.adapters.paper.queues import make_queue_model
from services.engine.ledger import Spec
from services.engine.orders import Order

__all__ = ["PaperBroker"]

_NONE: list[AdapterEvent] = []  # shared and never appended to: "no events yet"


class PaperBroker(Adapter):
    """The adapter. ``deterministic``: recovery feeds it again to rebuild it."""

    deterministic = True

    def __init__(
        self,
        specs: Mapping[str, Spec],
        phases: Mapping[str, bytes] | None = None,
        config: PaperConfig | None = None,
    ) -> None:
        super().__init__()
        config = config or PaperConfig()
        self.config = config
        self.specs = dict(specs)
        self.phases = dict(phases or {})
        queue = make_queue_model(config.queue, cancel_share=config.cancel_share, seed=config.seed)
        self.exchanges = {
            instrument: Exchange(spec, queue, self.phases.get(instrument, b""))
            for instrument, spec in self.specs.items()
        }
        self.front = Front(self.specs)
        self.latency = Latency(
            entry_us=config.entry_latency_us, cancel_us=config.cancel_latency_us,
            ack_us=config.ack_latency_us, kind=config.latency, seed=config.seed + 1,
        )  # fmt: skip
        self._arrivals: list[tuple[int, int, str, Order]] = []  # (due, seq, "order"|"cancel", .)
        self._out: list[tuple[int, int, AdapterEvent]] = []  # (deliver at, seq, event)
        self._seq = 0
        self._orders: dict[str, Order] = {}  # at the exchange, still working
        self._filled: dict[str, int] = {}
        self._trades = 0
        self._exchange_ids = 0
        self._marked: dict[str, Tick] = {}  # the snapshot each instrument was last marked at
        # due_ns (Adapter): the earliest arrival or event

    # -- the engine's calls ----------------------------------------------------------------------

    def open_day(self, trading_day: int, holdings: Iterable[Holding], cash: float) -> None:
        self.front.open_day(holdings, cash)
        self._marked.clear()  # a new account: marked afresh

    def submit(self, order: Order, now_ns: int) -> None:
        self._schedule(now_ns + self.latency.entry(), "order", order)
        self._arrive_until(now_ns)

    def cancel(self, order: Order, now_ns: int) -> None:
        self._schedule(now_ns + self.latency.cancel(), "cancel", order)
        self._arrive_until(now_ns)

    def on_tick(self, tick: Tick, now_ns: int) -> None:
        """A new snapshot: what reached the exchange before it meets the previous book; then
        the snapshot moves the resting orders and fills them."""
        arrivals = self._arrivals
        if arrivals and arrivals[0][0] < now_ns:
            self._arrive_until(now_ns - 1)
        exchange = self.exchanges.get(tick.instrument)
        if exchange is None:
            return
        if exchange.resting:
            for output in exchange.on_tick(tick):
                self._apply(output, now_ns)
        else:  # nothing resting: only the snapshot changes (Exchange.on_tick's quiet case)
            exchange.tick = tick
            if exchange.taken:
                exchange.taken.clear()
        if arrivals and arrivals[0][0] <= now_ns:
            self._arrive_until(now_ns)

    def events(self, now_ns: int) -> list[AdapterEvent]:
        """What the engine hears of by ``now_ns``, in the order it happened."""
        arrivals = self._arrivals
        if arrivals and arrivals[0][0] <= now_ns:
            self._arrive_until(now_ns)
        out = self._out
        if not out or out[0][0] > now_ns:
            return _NONE
        due = []
        while out and out[0][0] <= now_ns:
            due.append(heapq.heappop(out)[2])
        self._refresh_due()
        return due

    # -- inside ----------------------------------------------------------------------------------

    def _schedule(self, due: int, kind: str, order: Order) -> None:
        self._seq += 1
        heapq.heappush(self._arrivals, (due, self._seq, kind, order))
        self.due_ns = min(self.due_ns, due)

    def _emit(self, at_ns: int, kind: Callable[..., AdapterEvent], *fields: Any) -> None:
        """The event ``kind(*fields)`` happened at the exchange at ``at_ns``: it reaches the
        engine after the acknowledgement latency (its ``time_ns``)."""
        self._seq += 1
        due = at_ns + self.latency.ack()
        heapq.heappush(self._out, (due, self._seq, kind(*fields, due, at_ns)))
        self.due_ns = min(self.due_ns, due)

    def _refresh_due(self) -> None:
        """``due_ns`` after something left one of the queues."""
        arrival = self._arrivals[0][0] if self._arrivals else NEVER
        event = self._out[0][0] if self._out else NEVER
        self.due_ns = arrival if arrival < event else event

    def _arrive_until(self, now_ns: int) -> None:
        arrivals = self._arrivals
        while arrivals and arrivals[0][0] <= now_ns:
            due, _, kind, order = heapq.heappop(arrivals)
            if kind == "order":
                self._arrive(order, due)
            else:
                self._cancel(order, due)
        self._refresh_due()

    def _arrive(self, order: Order, at_ns: int) -> None:
        exchange = self.exchanges.get(order.instrument)
        if exchange is None:
            self._emit(at_ns, Rejected, order.order_id, "16", "CTP:找不到合约")
            return
        limit = order.price
        if order.kind == "market" and exchange.tick is not None:
            buy = order.direction == "buy"
            limit = exchange.tick.upper_limit if buy else exchange.tick.lower_limit
        self._mark_front()
        refusal = self.front.check(order, limit) or exchange.check(order, at_ns)
        if refusal is not None:
            self._emit(at_ns, Rejected, order.order_id, *refusal)
            return
        self._exchange_ids += 1
        self._emit(at_ns, Accepted, order.order_id, f"E{self._exchange_ids}")
        self.front.accept(order, limit)
        self._orders[order.order_id] = order
        self._filled[order.order_id] = 0
        for output in exchange.match(order):  # checked above
            self._apply(output, at_ns)

    def _mark_front(self) -> None:
        """Mark the front's account to the last prices (only when it is asked: not per tick;
        an instrument whose snapshot has not changed since it was last marked is skipped)."""
        marked = self._marked
        for instrument, exchange in self.exchanges.items():
            tick = exchange.tick
            if tick is not None and tick is not marked.get(instrument):
                marked[instrument] = tick
                if not math.isnan(tick.last):
                    self.front.mark(instrument, tick.last)

    def _cancel(self, order: Order, at_ns: int) -> None:
        if order.order_id not in self._orders:
            known = order.order_id in self._filled
            code, text = REFUSALS["cancel" if known else "cancel_unknown"]
            self._emit(at_ns, CancelRefused, order.order_id, f"{text} ({code})")
            return
        for output in self.exchanges[order.instrument].cancel(order.order_id):
            self._apply(output, at_ns)

    def _apply(self, output: tuple[object, ...], at_ns: int) -> None:
        kind, order_id = output[0], str(output[1])
        order = self._orders.get(order_id)
        if order is None:
            return
        if kind == "fill":
            price, volume = cast(float, output[2]), cast(int, output[3])
            self.front.fill(order, price, volume)
            self._filled[order_id] += volume
            self._trades += 1
            self._emit(at_ns, Traded, order_id, f"P{self._trades}", price, volume)
            if self._filled[order_id] >= order.volume:
                del self._orders[order_id]
        elif kind == "cancelled":
            self.front.release(order, order.volume - self._filled[order_id])
            del self._orders[order_id]
            self._emit(at_ns, Cancelled, order_id, output[2])
        elif kind == "rejected":
            self.front.release(order, order.volume)
            del self._orders[order_id]
            self._emit(at_ns, Rejected, order_id, output[2], output[3])
