"""Measures of trading, streaming: VWAP and TWAP over a time window, realised volatility, Kyle's
lambda, Amihud's illiquidity and Roll's spread over a window of observations. O(1) work per
update (amortised for the time windows); the sums are compensated (``windows.Sum``)."""

from __future__ import annotations

import math
from collections import deque
from math import isnan

from libshm import Tick
from services.engine.indicators.trend import SMA
from services.engine.indicators.windows import NAN, Ring, Sum

__all__ = ["TWAP", "VWAP", "Amihud", "KyleLambda", "RealisedVol", "RollSpread"]


def _window_ns(window_ns: int) -> int:
    if not isinstance(window_ns, int) or isinstance(window_ns, bool) or window_ns <= 0:
        raise ValueError(f"window_ns must be a positive whole number of ns, not {window_ns!r}")
    return window_ns


def _traded(tick: Tick, volume: int, turnover: float) -> tuple[int, float]:
    """What traded since the cumulative fields were ``volume`` and ``turnover`` (nothing if
    they went back)."""
    return max(tick.volume - volume, 0), max(tick.turnover - turnover, 0.0)


class VWAP:
    """Volume-weighted average price of the trades in the last ``window_ns`` of exchange time,
    (t − window, t]: Σ turnover / (Σ volume · multiplier), from the differences of the day's
    cumulative volume and turnover between ticks (Berkowitz, Logue and Noser, "The total cost
    of transactions on the NYSE", J. Finance 43, 1988). The first tick only sets where the
    differences start. NaN while nothing traded in the window."""

    __slots__ = (
        "multiplier",
        "trades",
        "turnover",
        "turnover_sum",
        "value",
        "volume",
        "volume_sum",
        "window",
    )  # fmt: skip

    def __init__(self, window_ns: int, multiplier: float) -> None:
        self.window = _window_ns(window_ns)
        if not multiplier > 0:
            raise ValueError(f"multiplier must be positive, not {multiplier!r}")
        self.multiplier = multiplier
        self.trades: deque[tuple[int, int, float]] = deque()  # (time, volume, turnover)
        self.volume = -1  # cumulative, at the last tick (-1: none yet)
        self.turnover = 0.0
        self.volume_sum = 0
        self.turnover_sum = Sum()
        self.value = NAN

    def update(self, tick: Tick) -> float:
        t = tick.exchange_time_ns
        if self.volume >= 0:
            volume, turnover = _traded(tick, self.volume, self.turnover)
            if volume:
                self.trades.append((t, volume, turnover))
                self.volume_sum += volume
                self.turnover_sum.add(turnover)
        self.volume, self.turnover = max(tick.volume, self.volume), max(tick.turnover,
                                                                        self.turnover)  # fmt: skip
        trades, start = self.trades, t - self.window
        while trades and trades[0][0] <= start:
            _, volume, turnover = trades.popleft()
            self.volume_sum -= volume
            self.turnover_sum.add(-turnover)
        self.value = (self.turnover_sum.value / (self.volume_sum * self.multiplier)
                      if self.volume_sum else NAN)  # fmt: skip
        return self.value


class TWAP:
    """Time-weighted average price over the last ``window_ns``: each price weighted by how long
    it was in force, from its update to the next, over [max(t − window, first update), t]
    (the price as a step function of time; its mean over the window). ``update(time_ns,
    price)`` with the time of the price (a tick's ``exchange_time_ns``); the first update's
    value is its price."""

    __slots__ = ("area", "first", "last", "price", "segments", "value", "window")

    def __init__(self, window_ns: int) -> None:
        self.window = _window_ns(window_ns)
        self.segments: deque[tuple[int, int, float]] = deque()  # (start, end, price)
        self.area = Sum()  # Σ price · (end − start) of the segments held
        self.first = self.last = -1
        self.price = NAN
        self.value = NAN

    def update(self, time_ns: int, price: float) -> float:
        last = self.last
        if last < 0:
            self.first = time_ns
        elif time_ns > last:
            self.segments.append((last, time_ns, self.price))
            self.area.add(self.price * (time_ns - last))
        self.last, self.price = max(time_ns, last), price
        start = time_ns - self.window
        segments = self.segments
        while segments and segments[0][1] <= start:
            s, e, p = segments.popleft()
            self.area.add(-p * (e - s))
        begin = max(start, self.first)
        covered = time_ns - begin
        if covered <= 0 or not segments:
            self.value = price
            return price
        s, _, p = segments[0]
        clipped = p * (begin - s) if s < begin else 0.0
        self.value = (self.area.value - clipped) / covered
        return self.value


class RealisedVol:
    """Realised volatility of the last ``n`` log returns of the values, sqrt(Σ ln(x[t] /
    x[t-1])²), not annualised (Andersen and Bollerslev, "Answering the skeptics: yes, standard
    volatility models do provide accurate forecasts", International Economic Review 39, 1998).
    NaN until ``n`` returns."""

    __slots__ = ("last", "ring", "sum", "value")

    def __init__(self, n: int) -> None:
        self.ring = Ring(n)
        self.sum = Sum()
        self.last = NAN
        self.value = NAN

    def update(self, x: float) -> float:
        last = self.last
        self.last = x
        if isnan(last):
            return self.value
        r = math.log(x / last)
        r2 = r * r
        old = self.ring.push(r2)
        self.sum.add(r2)
        if self.ring.full:
            if not isnan(old):
                self.sum.add(-old)
            self.value = math.sqrt(max(self.sum.value, 0.0))
        return self.value


class _Pairs:
    """Running sums of the last ``n`` pairs (x, y) for their sample covariance and variances."""

    __slots__ = ("n", "sx", "sxx", "sxy", "sy", "xs", "ys")

    def __init__(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 2:
            raise ValueError(f"window must be a whole number of at least 2, not {n!r}")
        self.n = n
        self.xs, self.ys = Ring(n), Ring(n)
        self.sx, self.sy, self.sxx, self.sxy = Sum(), Sum(), Sum(), Sum()

    def push(self, x: float, y: float) -> bool:
        """Add a pair; whether the window is full."""
        ox, oy = self.xs.push(x), self.ys.push(y)
        for s, v in ((self.sx, x), (self.sy, y), (self.sxx, x * x), (self.sxy, x * y)):
            s.add(v)
        if not isnan(ox):
            for s, v in ((self.sx, -ox), (self.sy, -oy), (self.sxx, -ox * ox),
                         (self.sxy, -ox * oy)):  # fmt: skip
                s.add(v)
        return self.xs.full

    def cov(self) -> float:
        n = self.n
        return (self.sxy.value - self.sx.value * self.sy.value / n) / (n - 1)

    def var_x(self) -> float:
        n = self.n
        return (self.sxx.value - self.sx.value * self.sx.value / n) / (n - 1)


class KyleLambda:
    """Kyle's lambda, the price impact of signed volume (Kyle, "Continuous auctions and insider
    trading", Econometrica 53, 1985), estimated as the slope of the least-squares line of each
    tick's change of mid price on its signed traded volume over the last ``n`` ticks, Cov(q,
    Δmid) / Var(q) (as in Goyenko, Holden and Trzcinka, "Do liquidity measures measure
    liquidity?", J. Financial Economics 92, 2009). A tick's volume (the difference of the
    cumulative volume) is signed by the Lee and Ready rule ("Inferring trade direction from
    intraday data", J. Finance 46, 1991): its average price (turnover / volume / multiplier)
    above the mid before it is a buy, below a sell, at the mid by the tick test (up from the
    last different average price a buy, down a sell). NaN until ``n`` ticks after the first,
    or while the signed volumes do not vary."""

    __slots__ = (
        "mid",
        "multiplier",
        "pairs",
        "previous_price",
        "price",
        "turnover",
        "value",
        "volume",
    )  # fmt: skip

    def __init__(self, n: int, multiplier: float) -> None:
        self.pairs = _Pairs(n)
        if not multiplier > 0:
            raise ValueError(f"multiplier must be positive, not {multiplier!r}")
        self.multiplier = multiplier
        self.mid = NAN
        self.volume = -1
        self.turnover = 0.0
        self.price = NAN  # the last average trade price
        self.previous_price = NAN  # the last one different from it
        self.value = NAN

    def update(self, tick: Tick) -> float:
        mid = (tick.bid_price1 + tick.ask_price1) / 2
        before = self.mid
        if self.volume < 0 or isnan(before) or isnan(mid):
            self._carry(tick, mid)
            return self.value
        volume, turnover = _traded(tick, self.volume, self.turnover)
        signed = 0.0
        if volume:
            price = turnover / (volume * self.multiplier)
            if price != self.price:
                self.previous_price, self.price = self.price, price
            lots = float(volume)
            if price > before:
                signed = lots
            elif price < before:
                signed = -lots
            elif not isnan(self.previous_price):
                reference = self.previous_price
                signed = lots if price > reference else -lots if price < reference else 0.0
        self._carry(tick, mid)
        if self.pairs.push(signed, mid - before):
            var = self.pairs.var_x()
            self.value = self.pairs.cov() / var if var > 0 else NAN
        return self.value

    def _carry(self, tick: Tick, mid: float) -> None:
        self.mid = mid
        self.volume, self.turnover = max(tick.volume, self.volume), max(tick.turnover,
                                                                        self.turnover)  # fmt: skip


class Amihud:
    """Amihud's illiquidity (Amihud, "Illiquidity and stock returns: cross-section and
    time-series effects", J. Financial Markets 5, 2002): the mean of |r| / turnover over the last
    ``n`` observations, r = price / previous price − 1; ``update(price, turnover)`` once a
    period (a bar's close and turnover); a period with no turnover moves the price on but is no
    observation. NaN until ``n`` observations."""

    __slots__ = ("last", "sma", "value")

    def __init__(self, n: int) -> None:
        self.sma = SMA(n)
        self.last = NAN
        self.value = NAN

    def update(self, price: float, turnover: float) -> float:
        last = self.last
        self.last = price
        if not isnan(last) and turnover > 0:
            self.value = self.sma.update(abs(price / last - 1.0) / turnover)
        return self.value


class RollSpread:
    """Roll's effective spread (Roll, "A simple implicit measure of the effective bid-ask spread
    in an efficient market", J. Finance 39, 1984): 2 · sqrt(−Cov(Δp[t], Δp[t-1])) over the last
    ``n`` pairs of consecutive price changes (sample covariance); 0 when the covariance is not
    negative, where the estimator is undefined (the convention of Harris, "Statistical
    properties of the Roll serial covariance bid/ask spread estimator", J. Finance 45, 1990).
    NaN until ``n`` pairs (``n`` + 2 prices)."""

    __slots__ = ("change", "last", "pairs", "value")

    def __init__(self, n: int) -> None:
        self.pairs = _Pairs(n)
        self.last = self.change = NAN
        self.value = NAN

    def update(self, price: float) -> float:
        last = self.last
        self.last = price
        if isnan(last):
            return self.value
        change, before = price - last, self.change
        self.change = change
        if not isnan(before) and self.pairs.push(change, before):
            cov = self.pairs.cov()
            self.value = 2.0 * math.sqrt(-cov) if cov < 0 else 0.0
        return self.value
