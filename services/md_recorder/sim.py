"""A simulated market for paper trading without a CTP account: a core with no I/O.

It produces what a CTP front would send, raw ``CThostFtdcDepthMarketDataField`` values in
``CTP_FIELDS`` order, so the ticks go through the recorder's normaliser and filters like live
data. Per instrument: prices on the product's tick grid around a seeded start price, a random walk
of the mid, a spread of one or two ticks, 5 levels of depth, cumulative volume, turnover and open
interest, limits at +/-8% of the pre-settlement price. Time walks through the product's sessions
of one trading day (night first, with the real feeds' date fields, DCE's quirk included), one
snapshot every ``interval_ms``; then the next weekday. Same seed and start, same ticks.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

from contracts.calendar import (
    DAY_SECONDS,
    Calendar,
    Phase,
    Product,
    next_weekday,
    window_seconds,
)
from contracts.calendar import previous_weekday as _previous_weekday
from contracts.clock import CHINA
from services.md_recorder.normalise import RawTick

__all__ = ["SimMarket"]

# Typical price levels (2021) by product, so the demo looks like the market; others start at 3000.
START_PRICES: Final = {
    "IF": 5200.0, "IC": 6300.0, "IH": 3600.0, "T": 98.0, "TF": 100.0, "TS": 100.5,
    "rb": 4300.0, "hc": 4500.0, "cu": 58000.0, "al": 15500.0, "zn": 21000.0, "au": 390.0,
    "ag": 5400.0, "sc": 330.0, "m": 3400.0, "y": 7800.0, "i": 1000.0, "RM": 2800.0,
    "SR": 5200.0, "TA": 3900.0, "MA": 2300.0, "CF": 14500.0,
}  # fmt: skip
LIMIT_RATIO: Final = 0.08
NIGHT_FROM: Final = 18 * 3600


@dataclass
class _Book:
    instrument: str
    product: Product
    pre_settlement: float
    mid_ticks: int  # mid price in ticks (bid = mid - spread // 2 ...)
    volume: int = 0
    turnover: float = 0.0
    open_interest: float = 0.0
    pre_open_interest: float = 0.0
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    last: float = 0.0


class SimMarket:
    """Deterministic snapshots for ``instruments`` (products the calendar knows)."""

    def __init__(
        self,
        calendar: Calendar,
        instruments: list[str],
        trading_day: dt.date,
        *,
        seed: int = 1,
        interval_ms: int = 500,
    ) -> None:
        self.calendar = calendar
        self.interval_ms = interval_ms
        self.trading_day = trading_day
        self._rng = random.Random(seed)
        self._books: list[_Book] = []
        for name in instruments:
            product = calendar.product(name)
            if product is None:
                raise ValueError(f"{name}: the simulated market needs its product in the calendar")
            tick = product.price_tick
            base = START_PRICES.get(name[: len(name.rstrip("0123456789"))], 3000.0)
            pre = round(round(base * self._rng.uniform(0.97, 1.03) / tick) * tick, _decimals(tick))
            oi = float(self._rng.randrange(20_000, 200_000))
            self._books.append(_Book(name, product, pre, round(pre / tick), 0, 0.0, oi, oi))

    def ticks(self) -> Iterator[tuple[int, list[RawTick]]]:
        """(exchange time ns, the raw snapshots due then), forever, trading day after day."""
        while True:
            yield from self._day()
            self.trading_day = next_weekday(self.trading_day)
            for book in self._books:  # settle: the day's last price becomes the reference
                tick = book.product.price_tick
                book.pre_settlement = round(book.mid_ticks * tick, _decimals(tick))
                book.volume, book.turnover, book.open = 0, 0.0, 0.0
                book.pre_open_interest = book.open_interest

    def _day(self) -> Iterator[tuple[int, list[RawTick]]]:
        evening = _previous_weekday(self.trading_day)
        step = self.interval_ms * 1_000_000
        for date, start, end in self._windows(evening):
            midnight = int(dt.datetime(date.year, date.month, date.day, tzinfo=CHINA).timestamp())
            t = midnight * 1_000_000_000 + start * 1_000_000_000
            stop = midnight * 1_000_000_000 + end * 1_000_000_000
            while t <= stop:
                second = (t // 1_000_000_000 - midnight) % DAY_SECONDS
                raws = [
                    self._snapshot(book, date, second, (t // 1_000_000) % 1000)
                    for book in self._books
                    if self.calendar.phase_table(book.product)[second] == Phase.OPEN
                ]
                if raws:
                    yield t, raws
                t += step

    def _windows(self, evening: dt.date) -> list[tuple[dt.date, int, int]]:
        """Every section any instrument trades, as (calendar date, start s, end s), in time
        order: the night on the evening (after midnight on the next date), then the day."""
        windows: set[tuple[dt.date, int, int]] = set()
        for book in self._books:
            for section in self.calendar.data.sessions[book.product.session].sections:
                start, end = window_seconds(section)
                if start >= NIGHT_FROM:
                    if end > start:
                        windows.add((evening, start, end))
                    else:  # crosses midnight
                        windows.add((evening, start, DAY_SECONDS - 1))
                        windows.add((evening + dt.timedelta(days=1), 0, end))
                else:
                    windows.add((self.trading_day, start, end))
        return sorted(windows)

    def _snapshot(self, book: _Book, date: dt.date, second: int, millis: int) -> RawTick:
        rng, product = self._rng, book.product
        tick, places = product.price_tick, _decimals(product.price_tick)

        def price(ticks: int) -> float:  # exactly the decimal a feed sends, on the grid
            return round(ticks * tick, places)

        upper_ticks = round(book.pre_settlement * (1 + LIMIT_RATIO) / tick)
        lower_ticks = round(book.pre_settlement * (1 - LIMIT_RATIO) / tick)
        walked = book.mid_ticks + rng.choice((-1, 0, 0, 0, 1))
        book.mid_ticks = min(max(walked, lower_ticks + 5), upper_ticks - 6)
        spread = 1 if rng.random() < 0.8 else 2
        bid, ask = price(book.mid_ticks), price(book.mid_ticks + spread)
        traded = rng.choice((0, 0, 1, 2, 3, 5, 8, 13))
        if traded or not book.last:
            traded = max(traded, 1)
            book.last = ask if rng.random() < 0.5 else bid
            book.volume += traded
            book.turnover += traded * book.last * product.multiplier
            book.open_interest += rng.choice((-1, 0, 1)) * traded
            if not book.open:
                book.open = book.high = book.low = book.last
            book.high, book.low = max(book.high, book.last), min(book.low, book.last)
        average = book.turnover / book.volume if book.volume else 0.0
        levels: list[object] = []
        for k in range(5):
            levels += [
                price(book.mid_ticks - k), rng.randrange(1, 60),
                price(book.mid_ticks + spread + k), rng.randrange(1, 60),
            ]  # fmt: skip
        night = second >= NIGHT_FROM or second < 6 * 3600
        action = self.trading_day if night and product.exchange == "DCE" else date  # as DCE sends
        return (
            self.trading_day.strftime("%Y%m%d"), action.strftime("%Y%m%d"),
            f"{second // 3600:02d}:{second // 60 % 60:02d}:{second % 60:02d}",
            0 if product.exchange == "CZCE" else millis, book.instrument, product.exchange,
            book.last, book.pre_settlement, book.pre_settlement, book.pre_open_interest,
            book.open, book.high, book.low, book.volume, book.turnover, book.open_interest,
            0.0, 0.0, price(upper_ticks), price(lower_ticks), average, *levels,
        )  # fmt: skip


def _decimals(tick: float) -> int:
    text = repr(tick)
    return len(text.split(".")[1].rstrip("0")) if "." in text else 0
