"""Writing an import's days: each trading day's rows into its own journal, the days at once.

The journals are made ready (created, their pages faulted in) on another core while the rows are
judged (``open_days``); an import refused before writing removes them again (``discard``).
``write`` is the one-day path (``--append``, Parquet), which refuses to write over a recording
unless appending and then adds only the ticks the day lacks.
"""

from __future__ import annotations

import shutil
from concurrent.futures import Future
from pathlib import Path

import numpy as np

from contracts.errors import JournalProblem
from libshm import (
    SEGMENT_HEADER_SIZE,
    TICK_DTYPE,
    TICK_FRAME_SIZE,
    TICK_LAYOUT,
    JournalError,
    JournalReader,
    JournalWriter,
    inspect_journal,
    list_segments,
)
from services.md_recorder.files import BadInput

__all__ = ["check_new", "discard", "fill", "open_days", "segment_size", "write"]

MIB = 1 << 20


def segment_size(count: int) -> int:
    """The segment size of a day of ``count`` ticks: one segment holds the day up to 256 MiB
    (about 790,000 ticks); bigger days roll over segments of that size."""
    need = count * TICK_FRAME_SIZE + SEGMENT_HEADER_SIZE + 4096
    return min(max((need + MIB - 1) // MIB * MIB, MIB), 256 * MIB)


def open_days(
    out: Path, records: np.ndarray, rows: np.ndarray, append: bool
) -> dict[int, JournalWriter]:
    """Every day's journal the rows kept may need, checked (``check_new``) before any is
    made, and made ready: created with its segment sized for the day's rows before judging
    (an upper bound) and its pages faulted in. With ``append`` none is made here (``write``
    opens each as it is). If one cannot be made (a full disk), none is left, not even the
    directory of the one that failed."""
    days, counts = np.unique(records["trading_day"][rows], return_counts=True)
    for day in days.tolist():  # before any is written: an import writes all its days or none
        check_new(out / str(day), append)
    writers: dict[int, JournalWriter] = {}
    if append:
        return writers
    journal = out
    fresh = False
    try:
        for day, count in zip(days.tolist(), counts.tolist(), strict=True):
            journal, size = out / str(day), segment_size(count)
            fresh = not journal.exists()
            writer = JournalWriter(journal, layout=TICK_LAYOUT, segment_size=size,
                                   prepare_ahead=False)  # fmt: skip
            writers[day] = writer
            writer.populate()
    except BaseException as exc:
        close_unused(out, writers, set())
        if fresh:
            shutil.rmtree(journal, ignore_errors=True)
        if isinstance(exc, JournalError):
            raise JournalProblem(str(exc)) from None
        raise
    return writers


def discard(out: Path, ready: Future[dict[int, JournalWriter]], used: set[int]) -> None:
    """The journals ``open_days`` made in ``out`` that no day's rows went to, removed (a day
    whose every row the judging dropped, or all of them when the import stops before writing)."""
    try:
        writers = ready.result()
    except BaseException:
        return
    close_unused(out, writers, used)


def close_unused(out: Path, writers: dict[int, JournalWriter], used: set[int]) -> None:
    for day, writer in writers.items():
        if day not in used:
            writer.close()
            shutil.rmtree(out / str(day), ignore_errors=True)


def fill(
    writer: JournalWriter | None, journal: Path, records: np.ndarray, rows: np.ndarray,
    append: bool,
) -> int:  # fmt: skip
    """A day's rows into the journal ``open_days`` made ready (closed after), or through
    ``write``."""
    if writer is None:
        return write(journal, records, rows, append)
    try:
        with writer:
            if len(rows):
                writer.append_array(records, records["exchange_time_ns"][rows], order=rows)
    except JournalError as exc:
        raise JournalProblem(str(exc)) from None
    return len(rows)


def write(journal: Path, records: np.ndarray, rows: np.ndarray, append: bool) -> int:
    """Write ``records[rows]`` as the day's journal, or append those it does not hold yet (a
    tick whose every field equals one already there is not appended again); the number
    written."""
    if journal.exists() and append:
        rows = rows[not_in(journal, records[rows])]
    check_new(journal, append)
    try:
        writer = JournalWriter(journal, layout=TICK_LAYOUT, segment_size=segment_size(len(rows)),
                               prepare_ahead=False)  # fmt: skip
    except JournalError as exc:
        raise JournalProblem(str(exc)) from None
    return fill(writer, journal, records, rows, append)


def check_new(journal: Path, append: bool) -> None:
    """Refuses to write over a recording that exists, unless appending."""
    if journal.exists() and not append:
        try:
            exists = bool(list_segments(journal))
        except JournalError:
            exists = True
        if exists:
            raise BadInput(
                f"{journal}: a recording of this trading day already exists; remove it, or "
                "pass --append to add to it"
            )


def not_in(journal: Path, records: np.ndarray) -> np.ndarray:
    """Which of ``records`` ``journal`` does not hold already, byte for byte (a mask)."""
    try:
        if not list_segments(journal):
            return np.ones(len(records), dtype=bool)
        report = inspect_journal(journal, count_instruments=False)
        if not report.intact:
            raise JournalProblem(
                f"{report.problems[0]}; --append adds to intact journals only: `hft journal "
                f"verify {journal}` lists the damage, `hft journal repair {journal}` cuts it there"
            )
        reader = JournalReader(journal)
        held = []
        while len(frames := reader.read_array()):
            held.append(frames["payload"].copy())
    except JournalError as exc:
        raise JournalProblem(str(exc)) from None
    if not held:
        return np.ones(len(records), dtype=bool)
    size = f"S{TICK_DTYPE.itemsize}"  # whole records compared as one byte string each
    seen = np.concatenate(held).view(size)
    fresh: np.ndarray = ~np.isin(records.view(size), seen)
    return fresh
