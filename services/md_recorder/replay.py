"""Replay: recorded tick journals re-published into the live journal, paced or at full speed.

``recording`` is one tick journal or a directory of them (one per trading day, as the recorder
and ``hft import`` write them; replayed in name order). Records are read as zero-copy numpy
batches and copied; with ``shift_to_now`` every exchange and receive time is moved by one offset
so the first tick is "now" (and each loop lap continues after the previous one), otherwise the
original times are kept. ``pace``: 1.0 replays in the recording's own time, N times faster, or
"max" with no waiting. Recorded ticks were filtered when recorded and are not filtered again.

A replay never publishes a tick twice. ``into`` is where the recorder writes (the suite's
``TickStore``: rings and recordings): a trading day whose live journal there already holds ticks is
resumed after them, once they are checked to be exactly what this replay publishes (the same
records in the same order, times moved by one offset per lap, which is kept, so time goes on
forward); a day holding anything else is refused, as is a recording inside ``into`` itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np

from contracts.errors import JournalProblem, UserError
from contracts.ticks import TickStore
from libshm import (
    TICK_DTYPE,
    JournalError,
    JournalReader,
    inspect_journal,
    is_journal,
    list_segments,
)

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
    journals = [p for p in days if is_journal(p)]
    if not journals:
        raise UserError(
            f"{recording}: no recorded journal there (a journal directory, or a directory of "
            "them named by trading day); record with md_recorder or `hft import`"
        )
    return journals


class _Published:
    """What a day's live journal already holds, read in step with the replay to skip it."""

    def __init__(self, store: TickStore, day: int) -> None:
        self.journal = store.where(day)
        self.left = 0
        self.reader: JournalReader | None = None
        if is_journal(self.journal):
            report = inspect_journal(self.journal, count_instruments=False)
            if not report.intact:
                raise JournalProblem(
                    f"{report.problems[0]}; the replay would continue this day's journal, "
                    f"which is damaged: `hft journal verify {self.journal}` lists the damage"
                )
            # numbered from 0: the last sequence number counts the frames a ring already let go
            self.left = 0 if report.last_seq is None else report.last_seq + 1
            self.reader = store.open(day)
        self.total = self.left

    def take(self, n: int) -> Any:
        assert self.reader is not None
        parts = []
        while n:
            frames = self.reader.read_array(n)
            if not len(frames):
                break
            parts.append(frames["payload"].copy())
            n -= len(frames)
        held = np.concatenate(parts) if parts else np.empty(0, dtype=TICK_DTYPE)
        self.left -= len(held)
        return held

    def check(self, held: Any, records: Any, offset: int) -> None:
        expected = records.copy()
        expected["exchange_time_ns"] += offset
        expected["local_time_ns"] += offset
        size = f"S{TICK_DTYPE.itemsize}"
        differ = np.flatnonzero(held.view(size) != expected.view(size))
        if len(differ) or len(held) < len(records):
            at = self.total - self.left - len(held) + (int(differ[0]) if len(differ) else 0)
            self._refuse(f"its tick {at} is not the replay's")

    def finish(self) -> None:
        if self.left:
            self._refuse(f"it holds {self.left} ticks more than the recording")

    def _refuse(self, why: str) -> None:
        raise JournalProblem(
            f"{self.journal}: this day's journal already holds {self.total} ticks and {why}, "
            "so the replay would not continue it; move the journal aside, or give the replay "
            "another suite.journal_dir"
        )


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
        into: TickStore,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        """``clock`` (wall time, for ``shift_to_now``), ``monotonic`` and ``sleep`` (for the
        pace) are the machine's unless a test gives its own."""
        self.journals = journals_in(recording)
        self.into = into
        roots = {into.recordings.resolve(), into.live.resolve()}
        for journal in self.journals:
            if journal.resolve().parent in roots:
                raise UserError(
                    f"{journal}: the replay's recording is in the directory it records into "
                    f"({journal.parent}), so it would replay its own output; replay a copy, or "
                    "give the replay suite another suite.journal_dir"
                )
            report = inspect_journal(journal, count_instruments=False)
            if not report.intact:
                raise JournalProblem(
                    f"{report.problems[0]}; replay reads intact recordings only: `hft journal "
                    f"verify {journal}` lists the damage, `hft journal repair {journal}` cuts "
                    "it there after keeping a copy"
                )
        self.pace = pace
        self.shift_to_now = shift_to_now
        self.loop = loop
        self._wanted = np.array([n.encode() for n in instruments or []], dtype="S32")
        self._clock, self._monotonic, self._sleep = clock, monotonic, sleep
        self._batches: Iterator[np.ndarray] = iter(())
        self._pending: np.ndarray | None = None
        self._offset = 0
        self._lap_end = 0
        self._sim0 = self._wall0 = 0
        self.finished = False
        self.laps = 0
        self.published = 0
        self.resumed: dict[int, int] = {}
        """Ticks found already published, by trading day, and so not published again."""
        self._live: dict[int, _Published] = {}

    def start(self) -> None:
        """Find where a replay into the same journals stopped (checking what it published), so
        the first call to :meth:`poll` publishes the next tick; raises ``UserError`` if a day's
        journal holds ticks this replay did not publish."""
        self._batches = self._read()
        self._pending = next(self._batches, None)
        if self._pending is None:
            self.finished = True
        elif self.resumed:  # pace from the first tick published now, not the recording's first
            self._sim0, self._wall0 = int(self._pending["exchange_time_ns"][0]), self._monotonic()

    def _unpublished(self, records: Any, first_of_lap: bool) -> Any:
        """``records`` without those the day's live journal holds already (checked to be the
        same ticks); on the first batch of a lap, the lap's time offset is the journal's."""
        day = int(records["trading_day"][0])
        live = self._live.get(day)
        if live is None:
            live = self._live[day] = _Published(self.into, day)
        if not live.left:
            return records
        held = live.take(min(live.left, len(records)))
        if first_of_lap:
            self._offset = int(held["exchange_time_ns"][0]) - int(records["exchange_time_ns"][0])
        live.check(held, records[: len(held)], self._offset)
        self.resumed[day] = self.resumed.get(day, 0) + len(held)
        self._lap_end = int(held["exchange_time_ns"][-1])
        return records[len(held) :]

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
                    if len(np.unique(records["trading_day"])) > 1:  # a day's end in the batch
                        splits = np.flatnonzero(np.diff(records["trading_day"])) + 1
                        parts = np.split(records, splits)
                    else:
                        parts = [records]
                    for part in parts:
                        first_of_lap = first
                        if first:
                            self._begin_lap(part)
                            first = False
                        fresh = self._unpublished(part, first_of_lap)
                        if len(fresh):
                            yield self._shifted(fresh)
            self.laps += 1
            if not self.loop or first:  # first: nothing at all matched
                for live in self._live.values():
                    live.finish()
                return

    def _shifted(self, records: Any) -> Any:
        if self._offset:
            records["exchange_time_ns"] += self._offset
            records["local_time_ns"] += self._offset
        self._lap_end = int(records["exchange_time_ns"][-1])
        return records

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
                        self._sleep(wait / 1e9)
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

    def queued(self) -> int:
        return 0  # records are read when due

    def describe(self) -> dict[str, object]:
        return {
            "source": "replay", "published": self.published, "laps": self.laps,
            "finished": self.finished, "resumed": {str(d): n for d, n in self.resumed.items()},
        }  # fmt: skip

    def stop(self) -> None:
        self.finished = True
