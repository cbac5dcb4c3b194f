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
(``judge_days``), which judges a row against the whole of its day, not only against
the row before it.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import Counter
from typing import Final

import numpy as np

from contracts.calendar import Phase
from libshm import FLAG_SETTLEMENT, Tick
from services.md_recorder.normalise import Drop

__all__ = ["SEQUENCE", "TickFilter", "follows", "judge_days", "longest_rising", "same_settlement"]

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


def judge_days(
    records: np.ndarray, order: np.ndarray, group: np.ndarray, rows: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An import's rows (``records[rows]``, or all of ``records``; for each row ``order``, its
    position in the files, and ``group``, a number per instrument and trading day) judged by
    each instrument's trading day as a whole. Returns (``perm``: the rows in judging order, as
    positions in ``rows``; the verdict of each row of ``perm``: 0 kept or a ``SEQUENCE`` code;
    and the position in ``perm`` of the row it was judged by).

    A day is in exchange-time order, rows sharing a time by cumulative volume, then file order.
    A row equal to the one before it is a ``duplicate``; a settlement record with the same
    settlement and close as the day's previous one, ``outside_hours``. The others kept are the
    longest sequence whose cumulative volume never falls (of several, the one keeping earlier
    rows): a row off it below the kept row before it is ``volume_backwards``; one above the kept
    row after it is ``stale``, a copy of another moment (a vendor's copy of the previous night's
    close stamped with this day), and it alone is dropped, not the day's real rows after it.
    Days whose volume never falls are judged with whole columns, the others row by row."""
    at = np.arange(len(records)) if rows is None else rows
    n = len(at)
    time, volume = records["exchange_time_ns"][at], records["volume"][at]
    perm = np.lexsort((order, group))
    g, t, v = group[perm], time[perm], volume[perm]
    inside = g[1:] == g[:-1]
    later = (t[1:] > t[:-1]) | ((t[1:] == t[:-1]) & (v[1:] >= v[:-1]))
    if not np.all(later | ~inside):  # some day's file order is not its time and volume order
        perm = np.lexsort((order, volume, time, group))
        g = group[perm]
    where = at[perm]  # each row of perm among the records
    flags, settlement, close = (records[name][where] for name in ("flags", "settlement", "close"))
    time, volume, last = time[perm], volume[perm], records["last"][where].view(np.int64)
    starts = np.ones(n, dtype=bool)
    starts[1:] = g[1:] != g[:-1]
    g = np.cumsum(starts) - 1
    verdict = np.zeros(n, dtype=np.uint8)
    other = np.arange(n)
    # a settlement record saying what the day's previous one said
    settles = np.flatnonzero((flags & FLAG_SETTLEMENT) != 0)
    if len(settles) > 1:
        a, b = settles[1:], settles[:-1]
        same = (g[a] == g[b]) & _same(settlement[a], settlement[b]) & _same(close[a], close[b])
        kept = np.concatenate(([True], ~same))
        said = np.maximum.accumulate(np.where(kept, settles, 0))  # the day's last kept one
        verdict[a[same]], other[a[same]] = SEQUENCE.index(Drop.OUTSIDE_HOURS), said[:-1][same]
    # a row equal to the one before it (the rows just dropped left out)
    rest = np.flatnonzero(verdict == 0)
    if len(rest) > 1:
        a, b = rest[1:], rest[:-1]
        maybe = (g[a] == g[b]) & (time[a] == time[b]) & (volume[a] == volume[b])
        maybe &= last[a] == last[b]  # the price's bits
        dup = np.zeros(len(a), dtype=bool)  # the same bytes, checked where it can be
        size = records.dtype.itemsize
        same_bytes = records[where[a[maybe]]].view(np.uint8).reshape(-1, size) == records[
            where[b[maybe]]
        ].view(np.uint8).reshape(-1, size)
        dup[maybe] = np.all(same_bytes, axis=1)
        verdict[a[dup]] = SEQUENCE.index(Drop.DUPLICATE)
        # the row each repeats: the last before it that is no duplicate
        first = np.where(verdict[rest] == 0, rest, 0)
        other[rest] = np.where(verdict[rest] != 0, np.maximum.accumulate(first), other[rest])
    # days whose volume falls somewhere are judged row by row
    plain = np.flatnonzero(verdict == 0)
    falls = plain[1:][(volume[plain[1:]] < volume[plain[:-1]]) & (g[plain[1:]] == g[plain[:-1]])]
    hard = np.unique(g[falls])
    if len(hard):
        starts_at = np.searchsorted(g, hard)
        ends_at = np.searchsorted(g, hard, side="right")
        for a0, b0 in zip(starts_at.tolist(), ends_at.tolist(), strict=True):
            r = records[where[a0:b0]]
            raw = r.view(np.uint8).reshape(b0 - a0, records.dtype.itemsize)
            _judge_one(r, raw, a0, verdict, other)
    return perm, verdict, other


SEQUENCE: Final = (None, Drop.DUPLICATE, Drop.OUTSIDE_HOURS, Drop.VOLUME_BACKWARDS, Drop.STALE)
"""Codes of ``judge_days``' verdicts."""


def _judge_one(
    r: np.ndarray, raw: np.ndarray, at: int, verdict: np.ndarray, other: np.ndarray
) -> None:
    """``judge_days`` for one day, row by row: its rows ``r`` (bytes ``raw``), the first of
    them at ``at`` in ``verdict`` and ``other``."""
    candidates: list[int] = []
    settled = -1
    for i in range(len(r)):
        verdict[at + i] = 0
        if r["flags"][i] & FLAG_SETTLEMENT:
            if settled >= 0 and _same_settlement(r, i, settled):
                verdict[at + i], other[at + i] = SEQUENCE.index(Drop.OUTSIDE_HOURS), at + settled
                continue
            settled = i
        if candidates and raw[i].tobytes() == raw[candidates[-1]].tobytes():
            verdict[at + i] = SEQUENCE.index(Drop.DUPLICATE)
            other[at + i] = at + candidates[-1]
            continue
        candidates.append(i)
    volumes = r["volume"][candidates].tolist()
    keep = longest_rising(volumes)
    before = -1
    for k, i in enumerate(candidates):
        if keep[k]:
            before = i
        elif before >= 0 and volumes[k] < r["volume"][before]:
            verdict[at + i], other[at + i] = SEQUENCE.index(Drop.VOLUME_BACKWARDS), at + before
        else:
            after = next(candidates[j] for j in range(k + 1, len(candidates)) if keep[j])
            verdict[at + i], other[at + i] = SEQUENCE.index(Drop.STALE), at + after


def _same_settlement(r: np.ndarray, i: int, j: int) -> bool:
    return bool(
        _same(r["settlement"][i : i + 1], r["settlement"][j : j + 1])[0]
        and _same(r["close"][i : i + 1], r["close"][j : j + 1])[0]
    )


def _same(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Equal, or both absent (NaN)."""
    same: np.ndarray = (x == y) | (np.isnan(x) & np.isnan(y))
    return same


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
