"""Strategies the engine's process tests load by name (``tests.services.engine.agents:X``)."""

from __future__ import annotations

import time

from libshm import Tick
from services.engine import Strategy


class OpensAtStart(Strategy):
    """Buys one lot at market from ``on_start``, before any tick, then a limit lot at the bid
    of each of the first ``params["ticks"]`` ticks: orders whose times must be in the tick
    clock."""

    def on_start(self) -> None:
        self.buy("IF2101", 0.0, 1, "market")
        self.seen = 0

    def on_tick(self, tick: Tick) -> None:
        self.seen += 1
        if self.seen <= self.params.get("ticks", 3):
            self.buy("IF2101", tick.bid_price1, 1)


class Blocks(Strategy):
    """Sends one order on each tick; at tick ``params["at"]`` it never returns: a loop that
    sleeps, or (``params["spin"]``) one that keeps calling into the engine."""

    def on_start(self) -> None:
        self.seen = 0

    def on_tick(self, tick: Tick) -> None:
        self.seen += 1
        if self.seen < self.params["at"]:
            return
        if self.seen == self.params["at"]:
            self.buy("IF2101", tick.bid_price1, 1)
            while True:
                if self.params.get("spin"):
                    self.position("IF2101")
                    self.cancel_all()
                else:
                    time.sleep(0.01)


class HoldsAStop(Strategy):
    """Places a buy stop far above the market on its first tick: it waits all day (a conditional
    order for the dashboard to show)."""

    def on_start(self) -> None:
        self.placed = False

    def on_tick(self, tick: Tick) -> None:
        if not self.placed:
            self.stop(tick.instrument, "buy", 1, tick.last + 100.0)
            self.placed = True


class Churns(Strategy):
    """Every ``params["every"]`` ticks: cancels what it has working, or, with nothing working,
    buys a lot at the bid when flat and sells its long at the ask: a steady stream of orders,
    fills and cancels for a venue to answer (the CTP SIGKILL test)."""

    def on_start(self) -> None:
        self.seen = 0

    def on_tick(self, tick: Tick) -> None:
        self.seen += 1
        if self.seen % self.params.get("every", 50):
            return
        if self.open_orders(tick.instrument):
            self.cancel_all()
        elif self.position(tick.instrument).long:
            self.sell(tick.instrument, tick.ask_price1, 1)
        else:
            self.buy(tick.instrument, tick.bid_price1, 1)
