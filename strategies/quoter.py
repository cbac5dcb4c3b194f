"""An agent that quotes both sides: a bid and an ask ``spread_ticks`` away from the mid, each of
``size`` lots, re-quoted when the mid moves ``requote_ticks`` away, within ``max_position`` lots.

Parameters (``params`` in the agent's config): ``spread_ticks`` (2), ``size`` (1),
``max_position`` (3), ``requote_ticks`` (2).
"""

from __future__ import annotations

import math

from pydantic import Field

from libshm import Tick
from services.engine import Strategy, StrategyParams


class QuoterParams(StrategyParams):
    spread_ticks: int = Field(2, ge=1)
    size: int = Field(1, ge=1)
    max_position: int = Field(3, ge=0)
    requote_ticks: int = Field(2, ge=1)


class Quoter(Strategy):
    Params = QuoterParams

    def on_start(self) -> None:
        self.spread = int(self.params.get("spread_ticks", 2))
        self.size = int(self.params.get("size", 1))
        self.max_position = int(self.params.get("max_position", 3))
        self.requote = int(self.params.get("requote_ticks", 2))

    def on_tick(self, tick: Tick) -> None:
        bid, ask = tick.bid_price1, tick.ask_price1
        if math.isnan(bid) or math.isnan(ask):
            return
        step = self.price_tick(tick.instrument)
        mid = (bid + ask) / 2
        targets = {
            "buy": math.floor(mid / step - self.spread) * step,
            "sell": math.ceil(mid / step + self.spread) * step,
        }
        working = {o.direction: o for o in self.open_orders(tick.instrument)}
        net = self.position(tick.instrument).net
        for direction, target in targets.items():
            price = round(target, 10)
            order = working.get(direction)
            if order is not None:
                if (
                    abs(order.price - price) >= self.requote * step
                    and order.state != "pending_cancel"
                ):
                    self.cancel(order.order_id)
                continue
            room = self.max_position - (net if direction == "buy" else -net)
            if room >= self.size:
                self.send_order(tick.instrument, direction, price, self.size)  # type: ignore[arg-type]
