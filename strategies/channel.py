"""An agent that trades breakouts of a channel of K-lines: when a bar closes above the highest
high of the ``lookback`` bars before it, it goes ``size`` lots long; below their lowest low,
``size`` lots short. Orders are marketable limit orders at the opposite best price, sent from
``on_bar`` (before the tick that closed the bar, or from the engine's wake-up at the bar's due
time), one at a time. An example of ``subscribe_bars`` and ``on_bar`` (docs/toolkit.md).

Parameters: ``period`` ("1m"), ``lookback`` (20 bars), ``size`` (1).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Literal

from pydantic import Field

from services.engine import Bar, OrderView, Strategy, StrategyParams


class ChannelParams(StrategyParams):
    period: str = "1m"
    lookback: int = Field(20, ge=1)
    size: int = Field(1, ge=1)


class Channel(Strategy):
    Params = ChannelParams

    def on_start(self) -> None:
        self.lookback = int(self.params.get("lookback", 20))
        self.size = int(self.params.get("size", 1))
        self.highs: dict[str, deque[float]] = {}
        self.lows: dict[str, deque[float]] = {}
        self.busy = False
        for instrument in self.instruments:
            self.subscribe_bars(instrument, str(self.params.get("period", "1m")))
            self.highs[instrument] = deque(maxlen=self.lookback)
            self.lows[instrument] = deque(maxlen=self.lookback)

    def on_bar(self, bar: Bar) -> None:
        highs, lows = self.highs[bar.instrument], self.lows[bar.instrument]
        target = None
        if len(highs) == self.lookback:
            if bar.close > max(highs):
                target = self.size
            elif bar.close < min(lows):
                target = -self.size
        highs.append(bar.high)
        lows.append(bar.low)
        if target is None or self.busy:
            return
        net = self.position(bar.instrument).net
        if net == target:
            return
        quote = self.snapshot(bar.instrument)
        if quote is None:
            return
        direction: Literal["buy", "sell"] = "buy" if target > net else "sell"
        price = quote.ask_price1 if direction == "buy" else quote.bid_price1
        if math.isnan(price):  # no quote on that side
            return
        ids = self.send_order(bar.instrument, direction, price, abs(target - net))
        self.busy = bool(ids) and any(o.active for o in self.open_orders(bar.instrument))

    def on_order(self, order: OrderView) -> None:
        if not order.active:
            self.busy = any(o.active for o in self.open_orders(order.instrument))
