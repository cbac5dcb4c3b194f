"""Clocks passed into cores, so that tests and backtests run on simulated time."""

from __future__ import annotations

import datetime as dt
import time
from typing import Final, Protocol

CHINA: Final = dt.timezone(dt.timedelta(hours=8), "CST")
"""Exchange time: China has kept UTC+8 without daylight saving since 1991."""


def china_iso(ns: int) -> str:
    """``ns`` since the epoch as ISO 8601 in China time, to the millisecond."""
    return dt.datetime.fromtimestamp(ns / 1e9, CHINA).isoformat(timespec="milliseconds")


class Clock(Protocol):
    """Wall time for timestamps, monotonic time for intervals, both in nanoseconds."""

    def now_ns(self) -> int: ...

    def monotonic_ns(self) -> int: ...


class LiveClock:
    """The machine's clocks."""

    def now_ns(self) -> int:
        return time.time_ns()

    def monotonic_ns(self) -> int:
        return time.monotonic_ns()


class FakeClock:
    """A clock that moves only when told to; wall and monotonic time advance together."""

    def __init__(self, start_ns: int = 0) -> None:
        self._now = start_ns
        self._mono = 0

    def now_ns(self) -> int:
        return self._now

    def monotonic_ns(self) -> int:
        return self._mono

    def advance(self, ns: int) -> None:
        if ns < 0:
            raise ValueError("a clock does not go backwards")
        self._now += ns
        self._mono += ns

    def set_wall(self, now_ns: int) -> None:
        """Jump wall time (as a replay does between recorded ticks); monotonic time stays."""
        self._now = now_ns
