"""One client's outgoing queue, bounded, and the history clients resume from: cores with no I/O
(docs/monitor.md, "Slow clients" and "Resume").

Encoded messages are shared between clients (a delta is encoded once for all who may see it).
A queue past its bound is coalesced: its messages are dropped and the client is sent a fresh
snapshot instead. It is closed as too slow when it is coalesced twice within the grace period,
or when another ``bound`` messages come while its snapshot is still waiting to go.
"""

from __future__ import annotations

from collections import deque

from contracts.monitor import Delta, Sample

__all__ = ["ClientQueue", "Curves", "History"]


class ClientQueue:
    """``bound`` counts changes: a batch of deltas weighs as many as it holds, anything else 1."""

    def __init__(self, bound: int, grace_ns: int) -> None:
        self.bound = bound
        self.grace_ns = grace_ns
        self._items: deque[tuple[bytes, int]] = deque()
        self._size = 0
        self.stale = False
        """The client is to be sent a fresh snapshot before anything else (it fell behind)."""
        self.closed: str | None = None
        """Why the client is to be closed (too slow), once it is."""
        self.coalesced = 0
        self._coalesced_at: int | None = None
        self._missed = 0

    def __len__(self) -> int:
        return self._size

    def put(self, data: bytes, now_ns: int, weight: int = 1) -> None:
        if self.closed is not None:
            return
        if self.stale:  # a snapshot will carry it, if the client takes it in time
            self._missed += weight
            if self._missed >= self.bound:
                self.closed = (f"too slow: {self._missed} changes behind while its snapshot "
                               "was waiting")  # fmt: skip
            return
        if self._size + weight > self.bound and self._items:
            behind = self._size
            self._items.clear()
            self._size = 0
            last = self._coalesced_at
            if last is not None and now_ns - last < self.grace_ns:
                self.closed = f"too slow: {behind} changes behind, twice within the grace period"
                return
            self.stale = True
            self._missed = 0
            self.coalesced += 1
            self._coalesced_at = now_ns
            return
        self._items.append((data, weight))
        self._size += weight

    def restart(self) -> None:
        """A new trading day began: what is queued belongs to the old one; a snapshot of the
        new day replaces it (not counted as falling behind)."""
        if self.closed is None:
            self._items.clear()
            self._size = 0
            self.stale = True
            self._missed = 0

    def take(self) -> bytes | None:
        if not self._items:
            return None
        data, weight = self._items.popleft()
        self._size -= weight
        return data


class History:
    """The last ``size`` deltas of one account's day, for clients that resume."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._deltas: deque[tuple[Delta, bytes]] = deque(maxlen=size or None)
        self.trading_day = 0

    def append(self, delta: Delta, data: bytes) -> None:
        if delta.trading_day != self.trading_day:
            self._deltas.clear()
            self.trading_day = delta.trading_day
        if self.size:
            self._deltas.append((delta, data))

    def after(self, trading_day: int, seq: int, current: int) -> list[bytes] | None:
        """The encoded deltas after ``seq`` of ``trading_day`` up to ``current``, or None if
        they are not all here (another day, or too far back): the client needs a snapshot."""
        if trading_day != self.trading_day or seq > current:
            return None
        if seq == current:
            return []
        if not self._deltas or self._deltas[0][0].seq > seq + 1:
            return None
        first = self._deltas[0][0].seq
        return [data for _, data in list(self._deltas)[seq + 1 - first :]]


class Curves:
    """An account's sampled curves of the day (prices and equity, from the marks): at most one
    sample per ``every_ns`` of market time; past ``size`` samples, every other one is dropped
    and the spacing doubles, so a whole day fits in bounded memory at an even resolution."""

    def __init__(self, size: int = 4000, every_ns: int = 5_000_000_000) -> None:
        self.size = size
        self.first_every_ns = self.every_ns = every_ns
        self.samples: list[Sample] = []
        self.trading_day = 0

    def add(self, trading_day: int, sample: Sample) -> None:
        if trading_day != self.trading_day:
            self.samples, self.trading_day = [], trading_day
            self.every_ns = self.first_every_ns
        if self.samples and sample.time_ns < self.samples[-1].time_ns + self.every_ns:
            return
        self.samples.append(sample)
        if len(self.samples) > self.size:
            self.samples = self.samples[::2]
            self.every_ns *= 2
