"""Which normalised ticks are recorded: a core with per-instrument state and counted drops.

Every drop is counted under its reason (``Drop``) and the counts are what the recorder logs and
exports as metrics, so nothing is dropped silently. Auction ticks are kept (flagged by the
normaliser). The checks, in order:

- ``outside_hours``: the product's calendar says closed at the tick's second;
- ``duplicate``: every field but the local receive time equals the instrument's previous tick;
- ``volume_backwards``: cumulative volume below the previous tick's on the same trading day;
- ``crossed_book``: best bid at or above best ask in continuous trading;
- ``outside_limits``: last, best bid or best ask outside the day's price limits;
- ``impossible_time``: exchange time more than ``max_future_s`` after the local receive time.

A settlement record (``FLAG_SETTLEMENT``: a post-close row with a settlement price) is kept
outside hours, and is not checked for a crossed book or limits; one with the same settlement and
close as the instrument's previous settlement record of the day is dropped as ``outside_hours``.

``stateless`` is the part that needs no earlier tick, ``follows`` the part that does: an import
runs the first on each row and the second on each instrument's trading day in time order
(``judge_sequence``), which judges a row against the whole of its day, not only against
the row before it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from itertools import pairwise
from typing import Final

from contracts.calendar import Phase
from libshm import FLAG_SETTLEMENT, Tick
from services.md_recorder.normalise import Drop

__all__ = ["TickFilter", "follows", "judge_sequence", "longest_rising", "same_settlement"]

LIMIT_SLACK: Final = 1e-6


class TickFilter:
    """Decides per tick; keeps the counts."""

    def __init__(self, max_future_s: float = 600.0, check_local_time: bool = True) -> None:
        self.max_future_ns = int(max_future_s * 1e9)
        self.check_local_time = check_local_time
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self._last: dict[str, Tick] = {}
        self._settled: dict[str, Tick] = {}

    def count(self, reason: Drop) -> Drop:
        """Count a drop decided elsewhere (the normaliser's) and return it."""
        self.dropped[reason] += 1
        return reason

    def check(self, tick: Tick, phase: Phase | None) -> Drop | None:
        """None to record ``tick``; otherwise the counted reason it is dropped."""
        reason = self._reason(tick, phase)
        if reason is None:
            self._last[tick[0]] = tick
            if tick[3] & FLAG_SETTLEMENT:
                self._settled[tick[0]] = tick
            self.kept += 1
            return None
        self.dropped[reason] += 1
        return reason

    def _reason(self, tick: Tick, phase: Phase | None) -> Drop | None:
        if tick[3] & FLAG_SETTLEMENT:
            settled = self._settled.get(tick[0])
            if settled is not None and same_settlement(tick, settled):
                return Drop.OUTSIDE_HOURS
        reason = self.stateless(tick, phase)
        if reason is None and (last := self._last.get(tick[0])) is not None:
            reason = follows(tick, last)
        return reason

    def stateless(self, tick: Tick, phase: Phase | None) -> Drop | None:
        """The checks that need no earlier tick: hours, receive time, book and limits."""
        if tick[3] & FLAG_SETTLEMENT:
            return None
        if phase == Phase.CLOSED:
            return Drop.OUTSIDE_HOURS
        if self.check_local_time and tick[4] - tick[5] > self.max_future_ns:
            return Drop.IMPOSSIBLE_TIME
        bid, ask = tick[21], tick[26]
        if phase != Phase.AUCTION and bid >= ask:  # False when either is absent (NaN)
            return Drop.CROSSED_BOOK
        upper, lower = tick[14] + LIMIT_SLACK, tick[15] - LIMIT_SLACK
        # Comparisons with NaN are False: an absent limit or price never drops a tick.
        for price in (tick[6], bid, ask):
            if price > upper or price < lower:
                return Drop.OUTSIDE_LIMITS
        return None

    def summary(self) -> dict[str, int]:
        """Kept and dropped counts by reason, for logs and metrics."""
        return {"kept": self.kept, **{str(k): v for k, v in sorted(self.dropped.items())}}


def follows(tick: Tick, last: Tick) -> Drop | None:
    """Why ``tick`` cannot follow ``last`` (the instrument's previous kept tick), or None."""
    # Tuple equality compares identity first, and the normaliser gives every absent price the
    # same NaN object, so absent fields compare equal here.
    if tick[6:] == last[6:] and tick[:5] == last[:5]:
        return Drop.DUPLICATE
    if tick[17] < last[17] and tick[2] == last[2]:
        return Drop.VOLUME_BACKWARDS
    return None


def same_settlement(tick: Tick, settled: Tick) -> bool:
    """Whether a settlement record says nothing new: same trading day, settlement and close."""
    return (
        tick[2] == settled[2]
        and tick[13] == settled[13]
        and (tick[10] == settled[10] or (tick[10] != tick[10] and settled[10] != settled[10]))
    )


def judge_sequence(ticks: list[Tick]) -> list[tuple[Drop, int] | None]:
    """One instrument's trading day, in time order (ticks sharing a time by cumulative volume):
    None for each tick kept, else (why it is dropped, the index of the tick it was judged by).

    Judged against the whole day, not the tick before: the kept ticks are the longest sequence
    whose cumulative volume never falls (of several, the one that keeps earlier ticks). A tick
    off it below the kept tick before it is ``volume_backwards``; one above the kept tick after
    it is ``stale``, a copy of another moment (a vendor's copy of the previous night's close
    stamped with this day), and it alone is dropped, not the day's real ticks that follow it.
    A tick equal to the one before it is a ``duplicate``; a settlement record with nothing new,
    ``outside_hours``."""
    out: list[tuple[Drop, int] | None] = [None] * len(ticks)
    candidates: list[int] = []
    settled = -1
    for i, tick in enumerate(ticks):
        if tick[3] & FLAG_SETTLEMENT:
            if settled >= 0 and same_settlement(tick, ticks[settled]):
                out[i] = (Drop.OUTSIDE_HOURS, settled)
                continue
            settled = i
        if candidates:
            last = ticks[candidates[-1]]
            if tick[6:] == last[6:] and tick[:5] == last[:5]:
                out[i] = (Drop.DUPLICATE, candidates[-1])
                continue
        candidates.append(i)
    volumes = [ticks[i][17] for i in candidates]
    if all(a <= b for a, b in pairwise(volumes)):
        return out
    keep = longest_rising(volumes)
    before = -1  # the last kept candidate so far
    for k, i in enumerate(candidates):
        if keep[k]:
            before = i
            continue
        if before >= 0 and ticks[i][17] < ticks[before][17]:
            out[i] = (Drop.VOLUME_BACKWARDS, before)
        else:
            after = next(candidates[j] for j in range(k + 1, len(candidates)) if keep[j])
            out[i] = (Drop.STALE, after)
    return out


def longest_rising(values: list[int]) -> list[bool]:
    """Which of ``values`` form the longest non-decreasing subsequence; of several, the one
    that takes the earliest values (O(n log n))."""
    n = len(values)
    # length of the longest non-decreasing sequence starting at each i, computed from the right
    # as the longest non-decreasing sequence of the negated values ending there
    starting = [0] * n
    tails: list[int] = []
    for i in range(n - 1, -1, -1):
        w = -values[i]
        pos = bisect_right(tails, w)
        if pos == len(tails):
            tails.append(w)
        else:
            tails[pos] = w
        starting[i] = pos + 1
    keep = [False] * n
    need = len(tails)
    floor: float = -math.inf
    for i in range(n):
        if need and starting[i] == need and values[i] >= floor:
            keep[i] = True
            floor = values[i]
            need -= 1
    return keep
