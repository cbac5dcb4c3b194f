"""An agent that follows a signal: a fast and a slow moving average of the last price. It holds
``size`` lots long while the fast average is above the slow one by more than ``threshold_ticks``,
``size`` lots short while below, and trades toward that target with marketable limit orders at
the opposite best price, one order at a time.

Parameters: ``fast`` (20 ticks), ``slow`` (120 ticks), ``size`` (1), ``threshold_ticks`` (1).
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from libshm import Tick
from services.engine import OrderView, Strategy, StrategyParams


class FollowerParams(StrategyParams):
    fast: int = Field(20, ge=1)
    slow: int = Field(120, ge=1)
    size: int = Field(1, ge=1)
    threshold_ticks: float = Field(1.0, ge=0)


class Follower(Strategy):
    Params = FollowerParams

    def on_start(self) -> None:
        self.fast_alpha = 2 / (int(self.params.get("fast", 20)) + 1)
        self.slow_alpha = 2 / (int(self.params.get("slow", 120)) + 1)
        self.size = int(self.params.get("size", 1))
        self.threshold = float(self.params.get("threshold_ticks", 1))
        self.fast = self.slow = math.nan
        self.seen = 0
        self.target = 0
        self.busy = False

    def on_tick(self, tick: Tick) -> None:
        last = tick.last
        if math.isnan(last):
            return
        self.seen += 1
        if math.isnan(self.fast):
            self.fast = self.slow = last
        self.fast += self.fast_alpha * (last - self.fast)
        self.slow += self.slow_alpha * (last - self.slow)
        if self.seen < 2 / self.slow_alpha:
            return  # the slow average needs its warm-up
        edge = (self.fast - self.slow) / self.price_tick(tick.instrument)
        if edge > self.threshold:
            self.target = self.size
        elif edge < -self.threshold:
            self.target = -self.size
        if self.busy:
            return
        net = self.position(tick.instrument).net
        if net == self.target:
            return
        direction: Literal["buy", "sell"] = "buy" if self.target > net else "sell"
        price = tick.ask_price1 if direction == "buy" else tick.bid_price1
        if math.isnan(price):
            return
        ids = self.send_order(tick.instrument, direction, price, abs(self.target - net))
        self.busy = bool(ids) and any(o.active for o in self.open_orders(tick.instrument))

    def on_order(self, order: OrderView) -> None:
        if not order.active:
            self.busy = any(o.active for o in self.open_orders(order.instrument))
