"""Price indicators, streaming: SMA, EMA, standard deviation, ATR, RSI, MACD, Bollinger bands,
Donchian channels. Each takes one value (or one bar's high, low and close) per :meth:`update`,
does O(1) work (amortised O(1) for Donchian's monotonic queues), and returns its value, NaN until
it has seen enough. docs/toolkit.md lists the conventions; each class cites its definition."""

from __future__ import annotations

import math
from collections import deque
from math import isnan

from services.engine.indicators.windows import NAN, Ring, Sum

__all__ = ["ATR", "EMA", "MACD", "RSI", "SMA", "Bollinger", "Donchian", "StdDev"]


class SMA:
    """Simple moving average of the last ``n`` values: (x[t-n+1] + ... + x[t]) / n; NaN until
    ``n`` values. (The arithmetic mean over a sliding window; pandas' ``rolling(n).mean()``.)"""

    __slots__ = ("ring", "sum", "value")

    def __init__(self, n: int) -> None:
        self.ring = Ring(n)
        self.sum = Sum()
        self.value = NAN

    def update(self, x: float) -> float:
        old = self.ring.push(x)
        self.sum.add(x)
        if self.ring.full:
            if not isnan(old):  # not NaN: a value left the window
                self.sum.add(-old)
            self.value = self.sum.value / self.ring.n
        return self.value


class EMA:
    """Exponential moving average: y[0] = x[0], y[t] = y[t-1] + α (x[t] − y[t-1]) with
    α = 2 / (n + 1) (``n`` the span), or the given ``alpha``. Seeded with the first value (the
    recursive form, pandas' ``ewm(span=n, adjust=False)``; Hunter, "The exponentially weighted
    moving average", J. Quality Technology 18, 1986). A value from the first update."""

    __slots__ = ("alpha", "value")

    def __init__(self, n: int | None = None, *, alpha: float | None = None) -> None:
        if alpha is None:
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ValueError(f"EMA: give a span n of at least 1 or an alpha, not {n!r}")
            alpha = 2.0 / (n + 1)
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"EMA: alpha must be in (0, 1], not {alpha!r}")
        self.alpha = alpha
        self.value = NAN

    def update(self, x: float) -> float:
        value = self.value
        self.value = x if isnan(value) else value + self.alpha * (x - value)
        return self.value


class StdDev:
    """Standard deviation of the last ``n`` values, sqrt(Σ (x − mean)² / (n − ddof)); ``ddof``
    0 is the population's (Bollinger's), 1 the sample's (pandas' ``rolling(n).std()``). The
    sums are kept about the first value seen, with compensation, and a window of one repeated
    value is exactly 0 (as pandas keeps it). NaN until ``n`` values."""

    __slots__ = ("ddof", "previous", "ref", "repeat", "ring", "s1", "s2", "value")

    def __init__(self, n: int, ddof: int = 1) -> None:
        if ddof not in (0, 1) or ddof >= n:
            raise ValueError(f"StdDev: ddof must be 0 or 1 and below n ({n}), not {ddof!r}")
        self.ring = Ring(n)
        self.ddof = ddof
        self.ref = NAN
        self.s1, self.s2 = Sum(), Sum()
        self.repeat = 0  # how many of the latest values are the same
        self.previous = NAN
        self.value = NAN

    def update(self, x: float) -> float:
        if isnan(self.ref):
            self.ref = x
        self.repeat = self.repeat + 1 if x == self.previous else 1
        self.previous = x
        d = x - self.ref
        old = self.ring.push(d)
        self.s1.add(d)
        self.s2.add(d * d)
        ring = self.ring
        if ring.full:
            if not isnan(old):
                self.s1.add(-old)
                self.s2.add(-old * old)
            n = ring.n
            if self.repeat >= n:
                self.value = 0.0
            else:
                s1 = self.s1.value
                self.value = math.sqrt(max(self.s2.value - s1 * s1 / n, 0.0) / (n - self.ddof))
        return self.value


class _Wilder:
    """Wilder's smoothing: the mean of the first ``n`` values, then y = (y (n − 1) + x) / n."""

    __slots__ = ("count", "n", "sum", "value")

    def __init__(self, n: int) -> None:
        Ring(n)  # checks n
        self.n = n
        self.count = 0
        self.sum = 0.0
        self.value = NAN

    def update(self, x: float) -> float:
        n = self.n
        if self.count < n:
            self.count += 1
            self.sum += x
            if self.count == n:
                self.value = self.sum / n
        else:
            self.value = (self.value * (n - 1) + x) / n
        return self.value


class ATR:
    """Average true range over ``n`` bars (Wilder, "New Concepts in Technical Trading Systems",
    1978): the true range is max(high − low, |high − previous close|, |low − previous close|)
    (high − low for the first bar), smoothed by Wilder's method, seeded with the mean of the
    first ``n`` true ranges. NaN until ``n`` bars."""

    __slots__ = ("close", "value", "wilder")

    def __init__(self, n: int = 14) -> None:
        self.wilder = _Wilder(n)
        self.close = NAN
        self.value = NAN

    def update(self, high: float, low: float, close: float) -> float:
        previous = self.close
        tr = high - low
        if not isnan(previous):
            tr = max(tr, abs(high - previous), abs(low - previous))
        self.close = close
        self.value = self.wilder.update(tr)
        return self.value


class RSI:
    """Relative strength index over ``n`` changes (Wilder 1978): gains and losses of each change
    smoothed by Wilder's method (seeded with the mean of the first ``n``), RSI = 100 · gain /
    (gain + loss), which is 100 − 100 / (1 + RS); 50 when nothing moved. NaN until ``n``
    changes (``n`` + 1 values)."""

    __slots__ = ("gain", "last", "loss", "value")

    def __init__(self, n: int = 14) -> None:
        self.gain, self.loss = _Wilder(n), _Wilder(n)
        self.last = NAN
        self.value = NAN

    def update(self, x: float) -> float:
        last = self.last
        self.last = x
        if isnan(last):
            return self.value
        change = x - last
        gain = self.gain.update(change if change > 0 else 0.0)
        loss = self.loss.update(-change if change < 0 else 0.0)
        if not isnan(gain):
            total = gain + loss
            self.value = 100.0 * (gain / total) if total > 0 else 50.0
        return self.value


class MACD:
    """Moving average convergence divergence (Appel, "Technical Analysis: Power Tools for Active
    Investors", 2005): ``macd`` = EMA(fast) − EMA(slow) of the values, ``signal`` = EMA(signal)
    of ``macd``, ``histogram`` = macd − signal; the EMAs seeded with their first value
    (:class:`EMA`). ``update`` returns ``macd``; all three from the first value."""

    __slots__ = ("fast", "histogram", "macd", "signal", "signal_ema", "slow", "value")

    def __init__(self, fast: int = 12, slow: int = 26, signal: int = 9) -> None:
        if fast >= slow:
            raise ValueError(f"MACD: fast ({fast}) must be shorter than slow ({slow})")
        self.fast, self.slow, self.signal_ema = EMA(fast), EMA(slow), EMA(signal)
        self.macd = self.signal = self.histogram = self.value = NAN

    def update(self, x: float) -> float:
        self.macd = self.value = self.fast.update(x) - self.slow.update(x)
        self.signal = self.signal_ema.update(self.macd)
        self.histogram = self.macd - self.signal
        return self.macd


class Bollinger:
    """Bollinger bands (Bollinger, "Bollinger on Bollinger Bands", 2001): ``middle`` = SMA(n),
    ``upper`` and ``lower`` = middle ± k · the population standard deviation of the same ``n``
    values. ``update`` returns ``middle``; NaN until ``n`` values."""

    __slots__ = ("k", "lower", "middle", "sma", "std", "upper", "value")

    def __init__(self, n: int = 20, k: float = 2.0) -> None:
        self.sma, self.std, self.k = SMA(n), StdDev(n, ddof=0), k
        self.middle = self.upper = self.lower = self.value = NAN

    def update(self, x: float) -> float:
        middle = self.sma.update(x)
        width = self.k * self.std.update(x)
        self.middle = self.value = middle
        self.upper, self.lower = middle + width, middle - width
        return middle


class Donchian:
    """Donchian channel of ``n`` bars (Donchian, "Trend-following methods in commodity price
    analysis", Commodity Year Book, 1957): ``upper`` the highest high and ``lower`` the lowest
    low of the last ``n`` bars, ``middle`` their mean. Monotonic queues: amortised O(1).
    ``update`` returns ``upper``; NaN until ``n`` bars."""

    __slots__ = ("count", "highs", "lower", "lows", "middle", "n", "upper", "value")

    def __init__(self, n: int = 20) -> None:
        Ring(n)  # checks n
        self.n = n
        self.count = 0
        self.highs: deque[tuple[int, float]] = deque()  # (index, high), highs decreasing
        self.lows: deque[tuple[int, float]] = deque()  # (index, low), lows increasing
        self.upper = self.lower = self.middle = self.value = NAN

    def update(self, high: float, low: float) -> float:
        i = self.count
        self.count += 1
        highs, lows = self.highs, self.lows
        while highs and highs[-1][1] <= high:
            highs.pop()
        highs.append((i, high))
        while lows and lows[-1][1] >= low:
            lows.pop()
        lows.append((i, low))
        oldest = i - self.n + 1
        if highs[0][0] < oldest:
            highs.popleft()
        if lows[0][0] < oldest:
            lows.popleft()
        if self.count >= self.n:
            self.upper, self.lower = highs[0][1], lows[0][1]
            self.middle = (self.upper + self.lower) / 2
            self.value = self.upper
        return self.value
