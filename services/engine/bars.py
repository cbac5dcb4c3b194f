"""K-lines: bars of N seconds, minutes or hours, and daily bars, built from ticks on the
exchange's trading clock of the day (docs/toolkit.md, "K-lines").

A core with no I/O. The engine keeps one :class:`BarBook` per trading day; an agent subscribes
(``Strategy.subscribe_bars``) and gets each bar in ``on_bar``. A bar closes when a tick of a
later bar arrives, when the engine's clock reaches its due time (``BarBook.due_ns``: the bar's
end, plus the closing snapshot's second where a section ends, plus the feed's latency and a
slack), or when the day rolls; so a session's last bar closes on time with no later tick.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from libshm import Tick
from services.engine.port import NEVER
from services.engine.strategy import Bar

__all__ = [
    "CLOSE_SLACK_NS", "DAILY", "END_GRACE_NS", "Bar", "BarBook", "BarBuilder", "TradingClock",
    "parse_period",
]  # fmt: skip

NS: Final = 1_000_000_000
END_GRACE_NS: Final = NS
"""A tick stamped in the first second after a section's end (the closing snapshot) belongs to
the section (as the calendar's phase tables count it)."""
CLOSE_SLACK_NS: Final = 200_000_000
"""Added to a bar's due time, beyond the feed's latency, for the variation of that latency."""
DAILY: Final = 0
"""The period of the daily bar (one per trading day, night session included)."""
MAX_PERIOD_S: Final = 86_400
_PERIOD = re.compile(r"^([1-9][0-9]{0,5})([smhd])$")
_UNIT: Final = {"s": 1, "m": 60, "h": 3600}


def parse_period(period: object) -> tuple[str, int]:
    """``"30s"``, ``"1m"``, ``"5m"``, ``"1h"``, ``"1d"`` as (its canonical label, its length in
    seconds; :data:`DAILY` for ``"1d"``); ``"60s"`` and ``"1m"`` are one label. A ``ValueError``
    that says what is accepted otherwise."""
    found = _PERIOD.match(period) if isinstance(period, str) else None
    if found is None:
        raise ValueError(f"bar period {period!r}: write a whole number and a unit, as "
                         '"30s", "1m", "15m", "1h", or "1d" for the daily bar')  # fmt: skip
    number, unit = int(found[1]), found[2]
    if unit == "d":
        if number != 1:
            raise ValueError(f'bar period {period!r}: the daily bar is "1d" (one per trading day)')
        return "1d", DAILY
    seconds = number * _UNIT[unit]
    if seconds > MAX_PERIOD_S:
        raise ValueError(f'bar period {period!r} is longer than a day; use "1d"')
    if seconds % 3600 == 0:
        return f"{seconds // 3600}h", seconds
    if seconds % 60 == 0:
        return f"{seconds // 60}m", seconds
    return f"{seconds}s", seconds


class TradingClock:
    """The trading time of one instrument's day in blocks: bar ``k`` of a block covers its
    trading nanoseconds ``[k·period, (k+1)·period)``. Blocks are the night session and the day
    session for bars of a period, the whole day for the daily bar. Keys number the day's
    possible bars in order across the blocks."""

    __slots__ = ("blocks", "firsts", "period", "total")

    def __init__(self, sections: Sequence[tuple[int, int, bool]], period_ns: int) -> None:
        if not sections:
            raise ValueError("no trading sections on that day")
        blocks: list[list[tuple[int, int, int]]] = []  # per block: (start, end, trading before)
        night: bool | None = None
        for start, end, is_night in sections:
            if not blocks or (period_ns and is_night != night):
                blocks.append([])
                night = is_night
            block = blocks[-1]
            before = block[-1][2] + block[-1][1] - block[-1][0] if block else 0
            block.append((start, end, before))
        self.blocks = blocks
        self.period = period_ns
        self.firsts: list[int] = []  # the key of each block's first bar
        total = 0
        for block in blocks:
            self.firsts.append(total)
            length = block[-1][2] + block[-1][1] - block[-1][0]
            total += -(-length // period_ns) if period_ns else 1
        self.total = total

    def key_of(self, t: int) -> int:
        """The key of the bar a tick stamped ``t`` (exchange time) joins (the module's rules:
        the closing second to its section, an auction or a break to the next section)."""
        previous: tuple[int, int, int] | None = None
        previous_key = 0
        for b, block in enumerate(self.blocks):
            for window in block:
                start, end, before = window
                if t < start:
                    if previous is not None and t < previous[1] + END_GRACE_NS:
                        return previous_key  # the closing snapshot of the section before
                    return self._key(b, before)
                if t < end:
                    return self._key(b, before + t - start)
                previous = window
                previous_key = self._key(b, before + end - start - 1)
        return previous_key  # after the day's last section: its last bar

    def _key(self, block: int, offset: int) -> int:
        return self.firsts[block] + (offset // self.period if self.period else 0)

    def span(self, key: int) -> tuple[int, int, bool]:
        """The exchange times where bar ``key`` starts and ends, and whether it ends where a
        section ends (its closing second then belongs to it)."""
        b = len(self.firsts) - 1
        while self.firsts[b] > key:
            b -= 1
        block = self.blocks[b]
        length = block[-1][2] + block[-1][1] - block[-1][0]
        index = key - self.firsts[b]
        lo = index * self.period if self.period else 0
        hi = min(lo + self.period, length) if self.period else length
        start = end = 0
        ends_section = False
        for window_start, window_end, before in block:
            if before <= lo < before + window_end - window_start:
                start = window_start + lo - before
            if before < hi <= before + window_end - window_start:
                end = window_start + hi - before
                ends_section = end == window_end
        return start, end, ends_section


class BarBuilder:
    """The bars of one instrument and period on one trading day, and who gets them."""

    __slots__ = (
        "base_turnover", "base_volume", "clock", "close", "count", "due_ns", "end_ns",
        "ends_section", "hi", "high", "history", "instrument", "key", "label", "last_key", "late",
        "latency", "lo", "low", "open", "open_interest", "start_ns", "subscribers", "trading_day",
        "turnover", "volume",
    )  # fmt: skip

    def __init__(self, instrument: str, label: str, clock: TradingClock, trading_day: int) -> None:
        self.instrument = instrument
        self.label = label
        self.clock = clock
        self.trading_day = trading_day
        self.subscribers: list[Any] = []
        self.history: list[Bar] = []
        self.key = -1  # the open bar's, or -1
        self.last_key = -1  # the last closed bar's
        self.late = 0  # ticks after the day's last bar closed: in no bar
        self.lo = self.hi = 0  # exchange times that surely join the open bar: [lo, hi)
        self.start_ns = self.end_ns = 0
        self.ends_section = False
        self.due_ns = NEVER
        self.latency = 0  # the last tick's local time minus its exchange time
        self.open = self.high = self.low = self.close = 0.0
        self.count = 0
        self.volume = self.base_volume = 0  # cumulative: at the last tick, before the bar
        self.turnover = self.base_turnover = 0.0
        self.open_interest = 0.0

    def on_tick(self, tick: Tick) -> Bar | None:
        """Add a tick; the bar it closed (a tick of a later bar), if any."""
        t = tick.exchange_time_ns
        self.latency = tick.local_time_ns - t
        if self.key >= 0 and self.lo <= t < self.hi:
            self._add(tick)
            return None
        key = self.clock.key_of(t)
        closed = None
        if self.key >= 0:
            if key <= self.key:  # out of order, or its bar's closing second: the open bar
                self._add(tick)
                return None
            closed = self._close()
        if key <= self.last_key:  # its bar closed already (by the clock): the next one
            key = self.last_key + 1
            if key >= self.clock.total:
                self.late += 1
                self._carry(tick)
                return closed
        self._start(key, tick)
        return closed

    def close_due(self, now_ns: int) -> Bar | None:
        """The open bar if the clock reached its due time."""
        if self.key >= 0 and self.due_ns <= now_ns:
            return self._close()
        return None

    def close_open(self) -> Bar | None:
        """The open bar, closed (the day's roll)."""
        return self._close() if self.key >= 0 else None

    def _start(self, key: int, tick: Tick) -> None:
        self.key = key
        start, end, ends_section = self.clock.span(key)
        self.start_ns, self.end_ns, self.ends_section = start, end, ends_section
        self.lo = start
        self.hi = end + END_GRACE_NS if ends_section else end
        self.base_volume, self.base_turnover = self.volume, self.turnover
        price = tick.last
        self.open = self.high = self.low = self.close = price
        self.count = 0
        self._add(tick)

    def _add(self, tick: Tick) -> None:
        price = tick.last
        if price > self.high:
            self.high = price
        elif price < self.low:
            self.low = price
        self.close = price
        self.count += 1
        self._carry(tick)
        self.due_ns = self.hi + self.latency + CLOSE_SLACK_NS

    def _carry(self, tick: Tick) -> None:
        """The cumulative fields: a value that goes back (a bad tick) adds nothing."""
        self.volume = max(self.volume, tick.volume)  # NaN never replaces a number
        self.turnover = max(self.turnover, tick.turnover)
        self.open_interest = tick.open_interest

    def _close(self) -> Bar:
        bar = Bar(
            self.instrument, self.label, self.trading_day, self.start_ns, self.end_ns, self.open,
            self.high, self.low, self.close, self.volume - self.base_volume,
            self.turnover - self.base_turnover, self.open_interest, self.count,
        )  # fmt: skip
        self.history.append(bar)
        self.last_key = self.key
        self.key = -1
        self.due_ns = NEVER
        return bar


class BarBook:
    """Every bar subscription of a trading day: builders by instrument, the earliest due time.
    ``sections(instrument)`` gives the instrument's sections on the day
    (``Calendar.day_sections``)."""

    def __init__(self, trading_day: int,
                 sections: Callable[[str], Sequence[tuple[int, int, bool]]]) -> None:  # fmt: skip
        self.trading_day = trading_day
        self._sections = sections
        self.builders: dict[tuple[str, str], BarBuilder] = {}
        self.by_instrument: dict[str, list[BarBuilder]] = {}
        self.due_ns = NEVER

    def subscribe(self, instrument: str, period: object, subscriber: object,
                  latest: Tick | None = None) -> BarBuilder:  # fmt: skip
        """``subscriber`` gets the bars of ``instrument`` and ``period`` from now on (once,
        however often it subscribes). ``latest``: the instrument's last tick if the day has
        had one (a subscription in the middle of the day: its first bar's volume counts from
        there, not from the day's start). ``ValueError`` for a period that is not one."""
        label, seconds = parse_period(period)
        builder = self.builders.get((instrument, label))
        if builder is None:
            clock = TradingClock(self._sections(instrument), seconds * NS)
            builder = BarBuilder(instrument, label, clock, self.trading_day)
            if latest is not None:
                builder.volume, builder.turnover = latest.volume, latest.turnover
            self.builders[instrument, label] = builder
            self.by_instrument.setdefault(instrument, []).append(builder)
        if subscriber not in builder.subscribers:
            builder.subscribers.append(subscriber)
        return builder

    def on_tick(self, tick: Tick) -> list[tuple[BarBuilder, Bar]]:
        """Add a tick to its instrument's builders; the bars it closed."""
        builders = self.by_instrument.get(tick.instrument)
        if builders is None:  # (the engine gives no settlement record: it is no trade)
            return []
        closed = []
        due = NEVER
        for builder in builders:
            bar = builder.on_tick(tick)
            if bar is not None:
                closed.append((builder, bar))
            due = min(due, builder.due_ns)
        if len(self.by_instrument) == 1:
            self.due_ns = due  # the one instrument's builders are all of them
        else:
            self._due()
        return closed

    def close_due(self, now_ns: int) -> list[tuple[BarBuilder, Bar]]:
        """The bars whose due time is at or before ``now_ns``, in due-time order."""
        due = sorted((b for b in self.builders.values() if b.due_ns <= now_ns),
                     key=lambda b: b.due_ns)  # fmt: skip
        closed = []
        for builder in due:
            bar = builder.close_due(now_ns)
            if bar is not None:
                closed.append((builder, bar))
        self._due()
        return closed

    def close_all(self) -> list[tuple[BarBuilder, Bar]]:
        """Every open bar (the day's roll)."""
        closed = []
        for builder in self.builders.values():
            bar = builder.close_open()
            if bar is not None:
                closed.append((builder, bar))
        self._due()
        return closed

    def last_due(self) -> int:
        """The latest due time of an open bar (0 if none is open): a finished day's end."""
        return max((b.due_ns for b in self.builders.values() if b.key >= 0), default=0)

    def bars(self) -> list[Bar]:
        """Every bar closed today, by subscription, each in time order."""
        return [bar for builder in self.builders.values() for bar in builder.history]

    def _due(self) -> None:
        self.due_ns = min((b.due_ns for b in self.builders.values()), default=NEVER)
