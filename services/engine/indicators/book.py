"""Measures of the order book at one tick: spread, mid, microprice, book imbalance over N levels;
and the order-flow imbalance of Cont, Kukanov and Stoikov, streaming over a window of ticks.
An empty side (a NaN price, or no volume) gives NaN, never a number made up."""

from __future__ import annotations

from math import isnan

from libshm import Tick
from services.engine.indicators.windows import NAN, Ring, Sum

__all__ = ["OFI", "book_imbalance", "microprice", "mid", "spread"]

_BIDS = ("bid_volume1", "bid_volume2", "bid_volume3", "bid_volume4", "bid_volume5")
_ASKS = ("ask_volume1", "ask_volume2", "ask_volume3", "ask_volume4", "ask_volume5")


def spread(tick: Tick) -> float:
    """Best ask − best bid."""
    return tick.ask_price1 - tick.bid_price1


def mid(tick: Tick) -> float:
    """(best bid + best ask) / 2."""
    return (tick.bid_price1 + tick.ask_price1) / 2


def microprice(tick: Tick) -> float:
    """The best prices weighted by the opposite side's volume, (bid · ask volume + ask · bid
    volume) / (bid volume + ask volume): the price leans toward the side more likely to move
    (the weighted mid-price, the micro-price's first approximation in Stoikov, "The
    micro-price: a high-frequency estimator of future prices", Quantitative Finance 18, 2018).
    NaN with no volume at the best prices."""
    bv, av = tick.bid_volume1, tick.ask_volume1
    total = bv + av
    if total <= 0 or bv < 0 or av < 0:
        return NAN
    return (tick.bid_price1 * av + tick.ask_price1 * bv) / total


def book_imbalance(tick: Tick, levels: int = 1) -> float:
    """(bid volume − ask volume) / (bid volume + ask volume) over the best ``levels`` (1 to 5)
    of each side, in [−1, 1] (the depth imbalance of Cao, Hansch and Wang, "The information
    content of an open limit-order book", J. Futures Markets 29, 2009). NaN with no volume."""
    if not 1 <= levels <= 5:
        raise ValueError(f"levels must be 1 to 5 (CTP's depth), not {levels!r}")
    bids = sum(getattr(tick, name) for name in _BIDS[:levels])
    asks = sum(getattr(tick, name) for name in _ASKS[:levels])
    total = bids + asks
    return (bids - asks) / total if total > 0 else NAN


class OFI:
    """Order-flow imbalance at the best prices (Cont, Kukanov and Stoikov, "The price impact of
    order book events", J. Financial Econometrics 12, 2014, eq. 10): each tick after the first
    contributes e = 1{Pb ≥ Pb'} qb − 1{Pb ≤ Pb'} qb' − 1{Pa ≤ Pa'} qa + 1{Pa ≥ Pa'} qa' (primes:
    the tick before; Pb, qb the best bid and its volume, Pa, qa the best ask's). ``update``
    returns the sum of the last ``n`` contributions (``last``: the newest alone); NaN until
    ``n``. A tick with a side missing (a NaN price) contributes 0 and is not the next one's
    reference."""

    __slots__ = ("ask", "ask_volume", "bid", "bid_volume", "last", "ring", "sum", "value")

    def __init__(self, n: int = 1) -> None:
        self.ring = Ring(n)
        self.sum = Sum()
        self.bid = self.ask = NAN
        self.bid_volume = self.ask_volume = 0
        self.last = NAN
        self.value = NAN

    def update(self, tick: Tick) -> float:
        pb, qb, pa, qa = tick.bid_price1, tick.bid_volume1, tick.ask_price1, tick.ask_volume1
        e = NAN
        if not isnan(pb) and not isnan(pa):
            bid, ask = self.bid, self.ask
            if not isnan(bid):
                e = 0.0
                if pb >= bid:
                    e += qb
                if pb <= bid:
                    e -= self.bid_volume
                if pa <= ask:
                    e -= qa
                if pa >= ask:
                    e += self.ask_volume
            self.bid, self.ask, self.bid_volume, self.ask_volume = pb, pa, qb, qa
        elif not isnan(self.bid):
            e = 0.0
        if isnan(e):
            return self.value  # the first tick with both sides: the reference only
        self.last = e
        old = self.ring.push(e)
        self.sum.add(e)
        if self.ring.full:
            if not isnan(old):
                self.sum.add(-old)
            self.value = self.sum.value
        return self.value
