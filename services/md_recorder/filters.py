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
"""

from __future__ import annotations

from collections import Counter
from typing import Final

from contracts.calendar import Phase
from libshm import Tick
from services.md_recorder.normalise import Drop

__all__ = ["TickFilter"]

LIMIT_SLACK: Final = 1e-6


class TickFilter:
    """Decides per tick; keeps the counts."""

    def __init__(self, max_future_s: float = 600.0, check_local_time: bool = True) -> None:
        self.max_future_ns = int(max_future_s * 1e9)
        self.check_local_time = check_local_time
        self.kept = 0
        self.dropped: Counter[str] = Counter()
        self._last: dict[str, Tick] = {}

    def count(self, reason: Drop) -> Drop:
        """Count a drop decided elsewhere (the normaliser's) and return it."""
        self.dropped[reason] += 1
        return reason

    def check(self, tick: Tick, phase: Phase | None) -> Drop | None:
        """None to record ``tick``; otherwise the counted reason it is dropped."""
        reason = self._reason(tick, phase)
        if reason is None:
            self._last[tick[0]] = tick
            self.kept += 1
            return None
        self.dropped[reason] += 1
        return reason

    def _reason(self, tick: Tick, phase: Phase | None) -> Drop | None:
        if phase == Phase.CLOSED:
            return Drop.OUTSIDE_HOURS
        if self.check_local_time and tick[4] - tick[5] > self.max_future_ns:
            return Drop.IMPOSSIBLE_TIME
        last = self._last.get(tick[0])
        if last is not None:
            # Tuple equality compares identity first, and the normaliser gives every absent
            # price the same NaN object, so absent fields compare equal here.
            if tick[6:] == last[6:] and tick[:5] == last[:5]:
                return Drop.DUPLICATE
            if tick[17] < last[17] and tick[2] == last[2]:
                return Drop.VOLUME_BACKWARDS
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
