"""The recorder: raw ticks from any source -> normaliser -> filters -> journal and snapshot table.

One journal per trading day (``ROOT/YYYYMMDD``, every segment kept: it is the live channel the
engine tails and the recording replay and backtests read later), and one snapshot table with the
latest tick of every instrument. Sources call :meth:`Recorder.record` from the service's thread.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import numpy as np

from contracts.calendar import Calendar
from contracts.clock import china_iso
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
        recordings: Path,
        snapshot_path: Path | None,
        *,
        segment_mb: int = 64,
        check_local_time: bool = True,
        clock: Callable[[], int] = time.time_ns,
    ) -> None:
        self.normaliser = Normaliser(calendar)
        self.filters = TickFilter(check_local_time=check_local_time)
        self.recordings = recordings
        self.segment_size = segment_mb * MIB
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
            self._writer.close()
        self._writer = JournalWriter(
            self.recordings / str(day), layout=TICK_LAYOUT, segment_size=self.segment_size,
            clock=self._clock,
        )  # fmt: skip
        self._day = day

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
        }

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._snapshot is not None:
            self._snapshot.close()
            self._snapshot = None
