"""A venue that runs on its own, as a CTP front does, for the engine's tests of the path a
non-deterministic adapter takes: the engine reaches it only through its outbox
(``Engine.data_to_send``) and hears of it only through ``Engine.adapter_event``; the test plays
the shell between them. Behind it the paper simulator stands in for the exchange, which
survives a crash of the engine."""

from __future__ import annotations

from collections.abc import Iterable

from contracts import messages as m
from libshm import Tick
from services.engine.adapter import Adapter, AdapterEvent
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine
from services.engine.orders import Order


class Remote(Adapter):
    """The adapter: it hands requests to the venue and never produces events itself."""

    def __init__(self, venue: PaperBroker, market: int = -1) -> None:
        super().__init__()
        self.venue = venue
        self.requests: list[tuple[str, str]] = []  # (action, order id) that reached the venue
        self.market = market  # the last tick the venue's market moved to (it lives through a crash)

    def submit(self, order: Order, now_ns: int) -> None:
        self.requests.append(("submit", order.order_id))
        self.venue.submit(order, now_ns)

    def cancel(self, order: Order, now_ns: int) -> None:
        self.requests.append(("cancel", order.order_id))
        self.venue.cancel(order, now_ns)

    def on_tick(self, tick: Tick, now_ns: int) -> None:
        pass  # the exchange has its own market: the shell gives the venue the ticks

    def open_day(self, trading_day: int, holdings: Iterable[m.Holding], cash: float) -> None:
        pass

    def events(self, now_ns: int) -> list[AdapterEvent]:
        return []  # they come through Engine.adapter_event, as CTP's callbacks do


def settle(engine: Engine, remote: Remote, now_ns: int) -> None:
    """The shell's work after an input: the outbox to the venue, the venue's events back, until
    both are quiet."""
    while True:
        for out in engine.data_to_send():
            if out.action == "submit":
                remote.submit(out.order, out.time_ns)
            else:
                remote.cancel(out.order, out.time_ns)
        events = remote.venue.events(now_ns)
        if not events:
            return
        for event in events:
            engine.adapter_event(event, now_ns)


def step(engine: Engine, remote: Remote, tick: Tick, seq: int) -> None:
    """One tick: the exchange's market moves (once: a recovered engine may read again the
    last ticks an engine read before its crash), then the engine hears of it."""
    now = tick.local_time_ns
    if seq > remote.market:
        remote.market = seq
        remote.venue.on_tick(tick, now)
        settle(engine, remote, now)
    engine.on_tick(tick, seq)
    settle(engine, remote, now)
