"""Replay: recorded tick journals re-published into the live journal, paced or at full speed.

``recording`` is one tick journal or a directory of them (one per trading day, as the recorder
and ``hft import`` write them; replayed in name order). Records are read as zero-copy numpy
batches and copied; with ``shift_to_now`` every exchange and receive time is moved by one offset
so the first tick is "now" (and each loop lap continues after the previous one), otherwise the
original times are kept. ``pace``: 1.0 replays in the recording's own time, N times faster, or
"max" with no waiting. Recorded ticks were filtered when recorded and are not filtered again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from contracts.errors import UserError
from libshm import JournalError, JournalReader
from libshm.segment import list_segments

__all__ = ["ReplaySource", "journals_in"]

BATCH: Final = 4096
GAP_NS: Final = 60 * 1_000_000_000  # a pause longer than this (between sessions) is skipped


def journals_in(recording: Path) -> list[Path]:
    """The journals of a recording: itself, or its day subdirectories in name order."""
    try:
        if list_segments(recording):
            return [recording]
    except JournalError as exc:
        if not recording.is_dir():
            raise UserError(str(exc)) from None
    days = sorted(p for p in recording.iterdir() if p.is_dir() and p.name.isdigit())
    journals = [p for p in days if list_segments(p)]
    if not journals:
        raise UserError(
            f"{recording}: no recorded journal there (a journal directory, or a directory of "
            "them named by trading day); record with md_recorder or `hft import`"
        )
    return journals


class ReplaySource:
    """Yields batches of ``TICK_DTYPE`` records when they are due."""

    def __init__(
        self,
        recording: Path,
        *,
        pace: float | Literal["max"] = 1.0,
        shift_to_now: bool = False,
        loop: bool = False,
        instruments: list[str] | None = None,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.journals = journals_in(recording)
        self.pace = pace
        self.shift_to_now = shift_to_now
        self.loop = loop
        self._wanted = np.array([n.encode() for n in instruments or []], dtype="S32")
        self._clock, self._monotonic = clock, monotonic
        self._batches: Iterator[np.ndarray] = iter(())
        self._pending: np.ndarray | None = None
        self._offset = 0
        self._lap_end = 0
        self._sim0 = self._wall0 = 0
        self.finished = False
        self.laps = 0
        self.published = 0

    def start(self) -> None:
        self._batches = self._read()

    def _read(self) -> Iterator[np.ndarray]:
        while True:
            first = True
            for journal in self.journals:
                reader = JournalReader(journal)
                while len(frames := reader.read_array(BATCH)):
                    records: Any = frames["payload"].copy()
                    if len(self._wanted):
                        records = records[np.isin(records["instrument"], self._wanted)]
                    if not len(records):
                        continue
                    if first:
                        self._begin_lap(records)
                        first = False
                    if self._offset:
                        records["exchange_time_ns"] += self._offset
                        records["local_time_ns"] += self._offset
                    self._lap_end = int(records["exchange_time_ns"][-1])
                    yield records
            self.laps += 1
            if not self.loop or first:  # first: nothing at all matched
                return

    def _begin_lap(self, records: Any) -> None:
        """Lap 1 starts now (``shift_to_now``) or at its own time; every later lap one second
        after the previous one ended, so time never goes backwards for a reader."""
        start = int(records["exchange_time_ns"][0])
        if self.laps:
            self._offset = self._lap_end + 1_000_000_000 - start
        else:
            self._offset = self._clock() - start if self.shift_to_now else 0
            self._sim0, self._wall0 = start + self._offset, self._monotonic()

    def poll(self, timeout_s: float, on_batch: Callable[[np.ndarray], object]) -> int:
        """Publish what is due within ``timeout_s``; the number of ticks published."""
        end = self._monotonic() + int(timeout_s * 1e9)
        published = 0
        while not self.finished:
            if self._pending is None:
                self._pending = next(self._batches, None)
                if self._pending is None:
                    self.finished = True
                    break
            records: Any = self._pending
            if self.pace == "max":
                count = len(records)
            else:
                due = self._wall0 + (records["exchange_time_ns"] - self._sim0) / self.pace
                now = self._monotonic()
                if due[0] - now > GAP_NS:  # a break between sessions: not waited out
                    self._sim0 = int(records["exchange_time_ns"][0])
                    self._wall0 = now
                    due = self._wall0 + (records["exchange_time_ns"] - self._sim0) / self.pace
                count = int(np.searchsorted(due, now, side="right"))
                if count == 0:
                    wait = min(int(due[0]) - now, end - now)
                    if wait > 0:
                        time.sleep(wait / 1e9)
                    if self._monotonic() >= end:
                        break
                    continue
            on_batch(records[:count])
            published += count
            self._pending = records[count:] if count < len(records) else None
            if self._monotonic() >= end:
                break
        self.published += published
        return published

    def describe(self) -> dict[str, object]:
        return {
            "source": "replay", "published": self.published, "laps": self.laps,
            "finished": self.finished,
        }  # fmt: skip

    def stop(self) -> None:
        self.finished = True
