"""``hft import``: tick files into recordings, through the recorder's normaliser and filters.

Each input row becomes a raw CTP tick (``CTP_FIELDS`` order) and goes through the same
``Normaliser`` as live data and the filters' per-row checks (``TickFilter.stateless``). The rows
kept are grouped by instrument and trading day and put in exchange-time order, rows sharing a
time (CZCE sends no milliseconds) by cumulative volume, then file order; each group is judged as
a whole (``filters.judge_days``: duplicates, volume going backwards, a stale row ahead of its
day). What is left is written to ``OUT/YYYYMMDD`` (one journal per trading day, as the recorder
writes them) in exchange-time order.

Every row read is accounted for: written, already in the journal (``--append``), or dropped
under one reason; ``--rejects FILE`` lists each dropped row with the column and value at fault.
``strict`` stops at the first row that cannot become a tick and writes nothing.
"""

from __future__ import annotations

import csv
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import numpy as np

from contracts.calendar import Calendar
from libshm import (
    FLAG_SETTLEMENT,
    TICK_DTYPE,
    decode_tick,
    encode_tick,
)
from services.md_recorder import journals
from services.md_recorder.columnar import STATELESS
from services.md_recorder.errors import FileProblem
from services.md_recorder.faults import fault, filtered, judged, out_of_range
from services.md_recorder.files import FILE_ERRORS, BadInput, why_unreadable
from services.md_recorder.filters import SEQUENCE, TickFilter, judge_days
from services.md_recorder.mapping import Mapping, Reject, load_mapping
from services.md_recorder.normalise import Drop, Normaliser, RawTick
from services.md_recorder.prepare import Prepared, prepared_files
from services.md_recorder.readers import FORMATS, inspect_file, reader

__all__ = ["FORMATS", "BadInput", "ImportReport", "import_files", "inspect_file", "load_mapping"]

BAD_ROWS_SHOWN: Final = 5
MIB: Final = 1 << 20
REJECT_COLUMNS: Final = ("file", "line", "reason", "column", "value", "detail")


@dataclass
class ImportReport:
    """What an import did. ``rows`` = ``written`` + ``already`` + the sum of ``dropped``, for
    the files read through; a file that could not be read counts in ``bad_files`` alone."""

    rows: int = 0
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    bad_rows: list[str] = field(default_factory=list)
    bad_count: int = 0
    """Rows that could not become a tick (also counted in ``dropped``)."""
    days: dict[int, int] = field(default_factory=dict)
    journals: list[Path] = field(default_factory=list)
    unknown_products: set[str] = field(default_factory=set)
    bad_files: list[str] = field(default_factory=list)
    """Files that could not be read through (each skipped whole), with why."""
    already: int = 0
    """Ticks not appended because the day's journal already held them (``--append``)."""
    settlements: int = 0
    """Settlement records kept (post-close rows with the day's settlement price)."""
    columnar: int = 0
    """Rows the columnar path normalised (the others went through the per-row path)."""
    scanned: int = 0
    """Rows of the files the C scanner read (the rest of the columnar path's: pyarrow's)."""
    processes: set[int] = field(default_factory=set)
    """The processes that read files through the columnar path."""

    def summary(self) -> str:
        drops = ", ".join(f"{k} {v:,}" for k, v in sorted(self.dropped.items())) or "none"
        days = ", ".join(f"{d} ({n:,})" for d, n in sorted(self.days.items())) or "none"
        already = f", {self.already:,} already in the journal" if self.already else ""
        settled = f" ({self.settlements:,} settlement records)" if self.settlements else ""
        return (
            f"{self.rows:,} rows read, {self.written:,} ticks written{settled}{already}, "
            f"dropped: {drops}; trading days: {days}"
        )


@dataclass
class _Kept:
    """Rows that became ticks and passed the per-row checks, waiting for their day's: records,
    the positions of the rows kept among them (None: all), and for each row kept its
    instrument's code, file, line and position in the files (``order``)."""

    parts: list[tuple[Any, ...]] = field(default_factory=list)
    pending: list[tuple[bytes, int, int, int, int]] = field(default_factory=list)
    """One row at a time from the per-row path, gathered into ``parts`` by ``flush``."""
    codes: dict[str, int] = field(default_factory=dict)

    def code(self, instrument: str) -> int:
        """The instrument's number in this import."""
        return self.codes.setdefault(instrument, len(self.codes))

    def add(  # noqa: PLR0917
        self, records: np.ndarray, rows: np.ndarray | None, inst: np.ndarray, file: int,
        line: np.ndarray, order: np.ndarray,
    ) -> None:  # fmt: skip
        """``records[rows]`` kept (``rows`` None: all), without copying the records."""
        self.flush()
        self.parts.append((records, rows, inst.astype(np.int64),
                           np.full(len(inst), file, dtype=np.int64),
                           line.astype(np.int64), order.astype(np.int64)))  # fmt: skip

    def flush(self) -> None:
        if self.pending:
            rows = self.pending
            self.pending = []
            self.parts.append((
                np.frombuffer(b"".join(r[0] for r in rows), dtype=TICK_DTYPE), None,
                *(np.array([r[k] for r in rows], dtype=np.int64) for k in range(1, 5)),
            ))  # fmt: skip

    def size(self) -> tuple[int, int]:
        return len(self.parts), len(self.pending)

    def cut(self, size: tuple[int, int]) -> None:
        """Forget what was added after ``size()`` returned ``size``."""
        del self.parts[size[0] :], self.pending[size[1] :]

    def arrays(self) -> tuple[np.ndarray, ...]:
        """(records, the positions of the rows kept among them, and of each row kept: its
        instrument code, file, line and order)."""
        self.flush()
        if not self.parts:
            empty = np.zeros(0, dtype=np.int64)
            return np.zeros(0, dtype=TICK_DTYPE), empty, empty, empty, empty, empty
        positions, base = [], 0
        for records, rows, *_ in self.parts:
            positions.append(np.arange(base, base + len(records)) if rows is None else rows + base)
            base += len(records)
        records = (self.parts[0][0] if len(self.parts) == 1
                   else np.concatenate([part[0] for part in self.parts]))  # fmt: skip
        rest = [np.concatenate(column) for column in zip(*(p[2:] for p in self.parts),
                                                          strict=True)]  # fmt: skip
        return records, np.concatenate(positions), *rest


@dataclass
class _Import:
    """State of one import: the rows kept so far and every reject."""

    calendar: Calendar
    sources: dict[str, str]
    strict: bool
    keep_rejects: bool
    report: ImportReport = field(default_factory=ImportReport)
    kept: _Kept = field(default_factory=_Kept)
    rejects: list[tuple[int, int, str, str, str, str]] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)

    def reject(self, file: int, line: int, reject: Reject, shown: bool = True) -> None:
        report = self.report
        report.dropped[reject.reason] += 1
        column = self.sources.get(reject.column, reject.column)
        if shown:
            path = self.paths[file]
            message = replace(reject, column=column).message()
            report.bad_count += 1
            if len(report.bad_rows) < BAD_ROWS_SHOWN:
                report.bad_rows.append(f"{path}:{line}: {message}")
            if self.strict:
                raise BadInput(f"{path}:{line}: {message} (--strict stops at the first bad row)")
        if self.keep_rejects:
            self.rejects.append(
                (file, line, str(reject.reason), column, reject.value, reject.detail)
            )


def import_files(  # noqa: PLR0917
    paths: list[Path],
    fmt: str,
    out: Path,
    calendar: Calendar,
    strict: bool = False,
    append: bool = False,
    progress: Callable[[int], object] | None = None,
    mapping: Mapping | None = None,
    rejects: Path | None = None,
    columnar: bool = True,
    workers: int | None = None,
) -> ImportReport:
    """Import ``paths`` into ``out/YYYYMMDD`` journals; see the module docstring. With
    ``rejects``, every dropped row is written there (CSV: file, line, reason, column, value,
    detail). ``columnar=False`` takes every row through the per-row path (the reference the
    columnar one is tested against). Several files are read in up to ``workers`` processes at
    once (default: half the machine's cores, since each file's CSV reader already runs on
    several threads; ``prepare.prepared_files`` says when)."""
    if fmt == "parquet":
        return _import_parquet(paths, out, append)
    read, sources = reader(fmt, mapping)
    state = _Import(calendar, sources, strict, rejects is not None, paths=list(paths))
    report = state.report
    normaliser = Normaliser(calendar, check_exchange=True)
    filters = TickFilter(check_local_time=False)  # files carry no receive time
    jobs = workers if workers is not None else max(1, (os.cpu_count() or 1) // 2)
    ready: Iterator[Prepared | None] = (
        prepared_files(paths, fmt, mapping, calendar, normaliser, state.keep_rejects, jobs)
        if columnar else iter([None] * len(paths))
    )  # fmt: skip
    for number, (path, prepared) in enumerate(zip(paths, ready, strict=True)):
        before = (report.rows, state.kept.size(), len(state.rejects), Counter(report.dropped),
                  report.bad_count, list(report.bad_rows))  # fmt: skip
        try:
            if prepared is not None:
                _take_prepared(state, number, prepared, normaliser, filters)
                if progress is not None:
                    progress(prepared.rows)
            else:
                _read_file(state, number, read(path), normaliser, filters, progress)
        except (FileProblem, *FILE_ERRORS) as exc:
            why = str(exc) if isinstance(exc, FileProblem) else why_unreadable(path, exc)
            if strict:
                raise BadInput(f"{path}: {why} (--strict stops at the first bad file)") from None
            report.bad_files.append(f"{path}: {why}; nothing of it was imported")
            # a file counts once it is read through: forget what was taken of this one
            report.rows = before[0]
            state.kept.cut(before[1])
            del state.rejects[before[2] :]
            report.dropped, report.bad_count, report.bad_rows = before[3], before[4], before[5]
    report.unknown_products = normaliser.unknown_products
    _write_days(state, out, append, rejects)
    return report


def _write_days(state: _Import, out: Path, append: bool, rejects: Path | None) -> None:
    """The rows kept, judged, written to a journal per trading day; ``--rejects`` written
    before any journal."""
    report = state.report
    kept = state.kept.arrays()
    state.kept = _Kept()
    with ThreadPoolExecutor(max(2, os.cpu_count() or 1)) as pool:
        # the days' journals are made ready on another core while this one judges the rows
        opening = pool.submit(journals.open_days, out, kept[0], kept[1], append)
        try:
            records, by_day = _judge(state, kept)
            if rejects is not None:
                _write_rejects(rejects, state)
            writers = opening.result()
        except BaseException:
            journals.discard(out, opening, set())
            raise
        days = sorted(by_day)
        try:
            # each day's journal is its own file, written at once (gathering, page faults and
            # checksums run without the GIL)
            writes = [pool.submit(journals.fill, writers.get(day), out / str(day), records,
                                  by_day[day], append) for day in days]  # fmt: skip
            done = [w.result() for w in writes]
        finally:
            journals.discard(out, opening, set(days))
    for day, written in zip(days, done, strict=True):
        rows, journal = by_day[day], out / str(day)
        report.already += len(rows) - written
        report.days[day] = written
        report.written += written
        report.journals.append(journal)


def _take_prepared(
    state: _Import, number: int, prepared: Prepared, normaliser: Normaliser, filters: TickFilter
) -> None:
    """One file read as columns: the fast path's rows, then the rows it left, one by one."""
    report = state.report
    base = report.rows
    report.rows += prepared.rows
    done = prepared.done
    report.columnar += len(done.index)
    report.scanned += prepared.rows if done.scanned else 0
    report.processes.add(prepared.pid)
    for i in done.slow.tolist():  # the per-row path, in file order within what it was given
        raw = prepared.raws[i]
        if isinstance(raw, Reject):
            state.reject(number, i + 2, raw)
        else:
            _take_row(state, number, i + 2, base + i + 1, raw, normaliser, filters)
    dropped = done.drop != 0
    normaliser.unknown_products |= done.unknown
    for code in np.unique(done.drop[dropped]).tolist():
        reason = Drop(STATELESS[code])
        rows = done.index[done.drop == code]
        if state.keep_rejects:
            for i, record in zip(rows.tolist(), done.records[done.drop == code], strict=True):
                tick, raw = decode_tick(record.tobytes()), prepared.raws[i]
                assert not isinstance(raw, Reject)  # the fast path took it: its reader did
                state.reject(number, i + 2, filtered(raw, tick, reason, None), False)
        else:
            report.dropped[reason] += len(rows)
    codes = np.array([state.kept.code(name) for name in done.instruments], dtype=np.int64)
    if dropped.any():
        keep = np.flatnonzero(~dropped)
        index = done.index[keep]
        state.kept.add(done.records, keep, codes[done.codes[keep]], number, index + 2,
                       base + index + 1)  # fmt: skip
    else:
        index = done.index
        state.kept.add(done.records, None, codes[done.codes], number, index + 2,
                       base + index + 1)  # fmt: skip


def _read_file(  # noqa: PLR0917
    state: _Import,
    number: int,
    rows: Iterator[tuple[int, RawTick | Reject]],
    normaliser: Normaliser,
    filters: TickFilter,
    progress: Callable[[int], object] | None,
) -> None:
    """Each row of one file through the normaliser and the per-row checks."""
    report = state.report
    for line, raw in rows:
        report.rows += 1
        if progress is not None and report.rows % 10_000 == 0:
            progress(10_000)
        if isinstance(raw, Reject):
            state.reject(number, line, raw)
            continue
        _take_row(state, number, line, report.rows, raw, normaliser, filters)


def _take_row(  # noqa: PLR0917
    state: _Import,
    number: int,
    line: int,
    order: int,
    raw: RawTick,
    normaliser: Normaliser,
    filters: TickFilter,
) -> None:
    """One row through the normaliser and the per-row checks (the reference path)."""
    result = normaliser.normalise(raw, 0)
    if isinstance(result, Drop):
        state.reject(number, line, fault(normaliser, raw, result))
        return
    tick, phase = result
    tick = tick._replace(local_time_ns=tick[4])
    try:
        record = encode_tick(tick)
    except (struct.error, ValueError, OverflowError) as exc:  # e.g. 1e30 lots
        state.reject(number, line, out_of_range(raw, exc))
        return
    reason = filters.stateless(tick, phase)
    if reason is not None:
        state.reject(number, line, filtered(raw, tick, reason, phase), shown=False)
        return
    state.kept.pending.append((record, state.kept.code(tick[0]), number, line, order))


def _judge(
    state: _Import, kept: tuple[np.ndarray, ...]
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The rows kept (``_Kept.arrays``), judged by each instrument's trading day as a whole:
    (records, and by trading day the positions of its rows among them in the journal's order:
    exchange time, then position in the files, except that rows of one instrument sharing a
    time keep the volume order they were judged in)."""
    records, rows, inst, files, lines, order = kept
    days = records["trading_day"][rows]
    group = days.astype(np.int64) * (1 << 24) + inst
    perm, verdict, other = judge_days(records, order, group, rows)
    if state.keep_rejects:
        for k in np.flatnonzero(verdict).tolist():
            j, o = perm[k], perm[other[k]]
            state.reject(int(files[j]), int(lines[j]),
                         judged(records[rows[j]], int(files[j]), SEQUENCE[verdict[k]],
                                records[rows[o]], int(files[o]), int(lines[o]), state.paths),
                         shown=False)  # fmt: skip
    else:
        for code, count in zip(*np.unique(verdict[verdict != 0], return_counts=True),
                               strict=True):  # fmt: skip
            state.report.dropped[str(SEQUENCE[code])] += int(count)
    kept = perm[verdict == 0]
    group, position = group[kept], order[kept]
    time, days = records["exchange_time_ns"][rows[kept]], days[kept]
    # rows of one instrument sharing a time take that time's file positions in volume order
    run = (group[1:] == group[:-1]) & (time[1:] == time[:-1])
    if np.any(run & (position[1:] < position[:-1])):
        position = position[np.lexsort((position, time, group))]
    final = np.lexsort((position, time, days))
    journal_order, days = rows[kept[final]], days[final]
    flags = records["flags"][journal_order]
    state.report.settlements = int(np.count_nonzero(flags & FLAG_SETTLEMENT))
    bounds = np.flatnonzero(days[1:] != days[:-1]) + 1
    parts = np.split(journal_order, bounds)
    return records, {int(days[at]): part for at, part in zip([0, *bounds.tolist()], parts,
                                                             strict=True) if len(part)}  # fmt: skip


def _write_rejects(path: Path, state: _Import) -> None:
    state.rejects.sort(key=lambda r: (r[0], r[1]))
    try:
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(REJECT_COLUMNS)
            for file, line, reason, column, value, detail in state.rejects:
                writer.writerow((state.paths[file], line, reason, column, value, detail))
    except OSError as exc:
        raise BadInput(f"--rejects {path}: cannot write: {exc.strerror}") from None


# -- Parquet and writing --------------------------------------------------------------------


def _import_parquet(paths: list[Path], out: Path, append: bool) -> ImportReport:
    """Parquet written by ``hft journal export``: already normalised records, written back
    as they are (no normaliser, no filters), grouped by trading day in time order."""
    import pyarrow as pa  # noqa: PLC0415 - heavy; only this format needs it
    import pyarrow.parquet as pq  # noqa: PLC0415

    from services.md_recorder.tables import table_to_records  # noqa: PLC0415

    report = ImportReport()
    parts = []
    for path in paths:
        if not path.exists():
            raise BadInput(f"{path}: no such file")
        try:
            parts.append(table_to_records(pq.read_table(path)))
        except (pa.ArrowInvalid, OSError) as exc:
            raise BadInput(f"{path}: not a readable Parquet file: {exc}") from None
        except ValueError as exc:
            raise BadInput(
                f"{path}: {exc}; import --format parquet reads what `hft journal export` writes"
            ) from None
    records: Any = np.concatenate(parts) if parts else np.empty(0, dtype=TICK_DTYPE)
    report.rows = len(records)
    for day in np.unique(records["trading_day"]):
        part = records[records["trading_day"] == day]
        part = part[np.argsort(part["exchange_time_ns"], kind="stable")]
        journal = out / str(int(day))
        written = journals.write(journal, part, np.arange(len(part)), append)
        report.already += len(part) - written
        report.days[int(day)] = written
        report.written += written
        report.journals.append(journal)
    return report
