"""Strategies the engine's process tests load by name (``tests.services.engine.agents:X``)."""

from __future__ import annotations

from libshm import Tick
from services.engine.strategy import Strategy


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
