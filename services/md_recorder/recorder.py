"""The recorder: raw ticks from any source -> normaliser -> filters -> journal and snapshot table.

One journal per trading day, written as a ring of ``ring_segments`` segments in memory (the live
channel the engine and the monitor tail) that archives every segment into the day's recording on
disk (what replay and backtests read later; ``contracts.ticks``), and one snapshot table with the
latest tick of every instrument, rebuilt from the newest day's ticks when the recorder starts.
Sources call :meth:`Recorder.record` from the service's thread.
"""

from __future__ import annotations

import os
import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from contracts.calendar import Calendar
from contracts.clock import china_iso
from contracts.status import RecorderStatus
from contracts.ticks import TickStore
from libshm import TICK_LAYOUT, JournalWriter, SnapshotWriter, Tick, tick_from_row
from services.md_recorder.filters import TickFilter
from services.md_recorder.normalise import Drop, Normaliser, RawTick

__all__ = ["Recorder"]


MIB: Final = 1 << 20


class Recorder:
    """Owns the day's journal writer and the snapshot table; counts everything it sees."""

    def __init__(
        self,
        calendar: Calendar,
        store: TickStore,
        snapshot_path: Path | None,
        *,
        segment_mb: int = 64,
        ring_segments: int = 4,
        check_local_time: bool = True,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.normaliser = Normaliser(calendar)
        self.filters = TickFilter(check_local_time=check_local_time)
        self.store = store
        self.segment_size = segment_mb * MIB
        self.ring_segments = ring_segments
        self._clock = clock
        self._writer: JournalWriter | None = None
        self._day = 0
        self._snapshot = (
            SnapshotWriter(snapshot_path, capacity=4096) if snapshot_path is not None else None
        )
        self.last: dict[str, Tick] = {}
        self.lag_ns: dict[str, int] = {}
        self._metrics_at = self._clock()
        self._metrics_kept = 0
        self._status_at, self._status_kept = self._metrics_at, 0
        self.rebuilt: tuple[int, int] | None = None
        """The day the snapshot table was rebuilt from at start, and its instruments."""
        if self._snapshot is not None:
            self._rebuild_snapshot()

    def _rebuild_snapshot(self) -> None:
        """Make the snapshot table match the newest day's ticks (a restart, or a table lost
        with ``/dev/shm``) before any new tick comes."""
        assert self._snapshot is not None
        recorded = self.store.days()
        if not recorded:
            return
        reader = self.store.open(recorded[-1])
        try:
            self.rebuilt = recorded[-1], self._snapshot.rebuild(reader)
        finally:
            reader.close()

    @property
    def journal(self) -> Path | None:
        """The journal being written (the current trading day), if any."""
        return None if self._writer is None else self._writer.path

    def record(self, raw: RawTick, local_ns: int) -> Tick | Drop:
        """Normalise, filter and, if kept, append ``raw``; the tick or the counted reason."""
        result = self.normaliser.normalise(raw, local_ns)
        if isinstance(result, Drop):
            return self.filters.count(result)
        tick, phase = result
        reason = self.filters.check(tick, phase)
        if reason is not None:
            return reason
        try:
            self.write(tick)
        except (struct.error, ValueError, OverflowError):  # nothing was committed
            return self.filters.count(Drop.OUT_OF_RANGE)
        return tick

    def write(self, tick: Tick) -> None:
        """Append an already normalised and filtered tick (replay and the simulator)."""
        if tick[2] != self._day:
            self._open_day(tick[2])
        assert self._writer is not None
        self._writer.append_tick(tick, tick[5])
        if self._snapshot is not None:
            self._snapshot.write(tick)
        self.last[tick[0]] = tick
        self.lag_ns[tick[0]] = tick[5] - tick[4]

    def write_array(self, records: np.ndarray) -> int:
        """Append a batch of ``TICK_DTYPE`` records (replay): one ``append_array`` per trading
        day in the batch, then the latest record of each instrument into the snapshot table."""
        rec: Any = records
        days = rec["trading_day"]
        unique = np.unique(days)
        for day in unique:
            part = rec if len(unique) == 1 else rec[days == day]
            if int(day) != self._day:
                self._open_day(int(day))
            assert self._writer is not None
            self._writer.append_array(part, part["local_time_ns"])
        names = rec["instrument"]
        if self._snapshot is not None:
            reverse = names[::-1]
            _, last_of = np.unique(reverse, return_index=True)
            for i in len(rec) - 1 - last_of:
                tick = tick_from_row(rec[i])
                self._snapshot.write(tick)
                self.last[tick[0]] = tick
        self.filters.kept += len(rec)
        return len(rec)

    def _open_day(self, day: int) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()
        self._writer = JournalWriter(
            self.store.ring(day), layout=TICK_LAYOUT, segment_size=self.segment_size,
            ring_segments=self.ring_segments, archive_dir=self.store.recording(day),
            clock=self._clock,
        )  # fmt: skip
        self._day = day
        earlier = [d for d in self.store.days() if d < day and self.store.has_ring(d)]
        if earlier:  # keep the day before for readers finishing it; older rings go
            self.store.drop_rings_before(earlier[-1])

    @property
    def archive_error(self) -> str | None:
        """Why archiving the ring into the recording fails, if it does (the service warns)."""
        error = None if self._writer is None else self._writer.archive_error
        return None if error is None else str(error)

    def heartbeat(self) -> None:
        """Tell readers the writer lives (call while idle)."""
        now = self._clock()
        if self._writer is not None:
            self._writer.heartbeat(now)
        if self._snapshot is not None:
            self._snapshot.heartbeat(now)

    def metrics(self) -> dict[str, Any]:
        """Counts for logs and the monitor: kept, drops by reason, rate, lag, last tick time."""
        lags = sorted(self.lag_ns.values())
        now, kept = self._clock(), self.filters.kept
        elapsed = (now - self._metrics_at) / 1e9 if self._metrics_at else 0.0
        rate = (kept - self._metrics_kept) / elapsed if elapsed > 0 else None
        self._metrics_at, self._metrics_kept = now, kept
        newest = max((t[4] for t in self.last.values()), default=None)
        return {
            **self.filters.summary(),
            "ticks_per_s": None if rate is None else round(rate, 1),
            "instruments": len(self.last),
            "lag_ms_median": lags[len(lags) // 2] / 1e6 if lags else None,
            "last_tick": None if newest is None else china_iso(newest),
            "journal": str(self.journal) if self.journal else None,
            "recording": str(self.store.recording(self._day)) if self._day else None,
        }

    def status(self, *, stopped: bool = False) -> RecorderStatus:
        """The figures of the status file (``contracts.status``): the rate is over the time
        since the last call; ``stopped``: the last ones, as the service stops cleanly."""
        now, kept = self._clock(), self.filters.kept
        elapsed = (now - self._status_at) / 1e9
        rate = (kept - self._status_kept) / elapsed if elapsed > 0 else 0.0
        self._status_at, self._status_kept = now, kept
        lags = sorted(self.lag_ns.values())
        return RecorderStatus(
            os.getpid(), now, self._day, kept, round(rate, 1),
            {str(k): v for k, v in sorted(self.filters.dropped.items())},
            lags[len(lags) // 2] / 1e6 if lags else -1.0, len(self.last),
            max((t[4] for t in self.last.values()), default=0), self.archive_error or "",
            stopped,
        )  # fmt: skip

    def close(self) -> None:
        writer, self._writer = self._writer, None
        try:
            if writer is not None:
                writer.close()
        finally:
            if self._snapshot is not None:
                self._snapshot.close()
                self._snapshot = None
