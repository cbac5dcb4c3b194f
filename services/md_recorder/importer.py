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
import re
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import numpy as np

from contracts.calendar import Calendar, Phase
from contracts.errors import JournalProblem
from libshm import (
    FLAG_SETTLEMENT,
    SEGMENT_HEADER_SIZE,
    TICK_DTYPE,
    TICK_FRAME_SIZE,
    TICK_LAYOUT,
    JournalError,
    JournalReader,
    JournalWriter,
    Tick,
    decode_tick,
    encode_tick,
    inspect_journal,
    list_segments,
)
from services.md_recorder.columnar import STATELESS, Columns, normalise_columns, read_ctp_columns
from services.md_recorder.errors import FileProblem
from services.md_recorder.files import FILE_ERRORS, BadInput, header, open_text, why_unreadable
from services.md_recorder.filters import SEQUENCE, TickFilter, judge_days
from services.md_recorder.mapping import Mapping, Reject, load_mapping, read_mapped_csv
from services.md_recorder.normalise import CTP_FIELDS, Drop, Normaliser, RawTick

__all__ = ["FORMATS", "BadInput", "ImportReport", "import_files", "inspect_file", "load_mapping"]

FORMATS: Final = ("ctp-csv", "vnpy-csv", "csv", "parquet")
BAD_ROWS_SHOWN: Final = 5
MIB: Final = 1 << 20
VNPY_COLUMNS: Final = ("symbol", "date", "time", "lastPrice", "bidPrice1", "askPrice1")
# CTP field -> vn.py column, for the columns vn.py's export may have
VNPY_FIELDS: Final = {
    "LastPrice": "lastPrice", "Volume": "volume", "OpenInterest": "openInterest",
    "UpperLimitPrice": "upperLimit", "LowerLimitPrice": "lowerLimit", "OpenPrice": "openPrice",
    "HighestPrice": "highPrice", "LowestPrice": "lowPrice", "PreClosePrice": "preClosePrice",
    **{f"{side}{kind}{k}": f"{side.lower()}{kind}{k}"
       for side in ("Bid", "Ask") for kind in ("Price", "Volume") for k in range(1, 6)},
}  # fmt: skip
VNPY_SOURCES: Final = {
    **VNPY_FIELDS, "TradingDay": "date", "ActionDay": "date", "UpdateTime": "time",
    "UpdateMillisec": "time", "InstrumentID": "symbol", "ExchangeID": "exchange",
}  # fmt: skip
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

    def summary(self) -> str:
        drops = ", ".join(f"{k} {v:,}" for k, v in sorted(self.dropped.items())) or "none"
        days = ", ".join(f"{d} ({n:,})" for d, n in sorted(self.days.items())) or "none"
        already = f", {self.already:,} already in the journal" if self.already else ""
        settled = f" ({self.settlements:,} settlement records)" if self.settlements else ""
        return (
            f"{self.rows:,} rows read, {self.written:,} ticks written{settled}{already}, "
            f"dropped: {drops}; trading days: {days}"
        )


def read_ctp_csv(path: Path) -> Iterator[tuple[int, RawTick | Reject]]:
    """(line, raw tick) per row of a CSV whose columns are CTP field names, any order; a
    row that cannot be split into the columns gives (line, reject)."""
    with open_text(path) as text:
        reader = csv.reader(text)
        found = header(path, reader, CTP_FIELDS)
        index = [found.index(name) for name in CTP_FIELDS]
        width = len(found)
        for row in reader:
            if len(row) != width:
                yield reader.line_num, _columns(len(row), width)
                continue
            yield reader.line_num, tuple(row[i] for i in index)


def read_vnpy_csv(path: Path) -> Iterator[tuple[int, RawTick | Reject]]:
    """vn.py's CSV tick export (``symbol,date,time,lastPrice,...``): level 1 only; columns it
    lacks (cumulative volume, limits) become absent."""
    with open_text(path) as text:
        reader = csv.reader(text)
        found = header(path, reader, VNPY_COLUMNS)
        col = {name: i for i, name in enumerate(found)}
        width = len(found)

        def get(row: list[str], name: str, default: str = "0") -> str:
            i = col.get(name)
            return row[i] if i is not None else default

        for row in reader:
            if len(row) != width:
                yield reader.line_num, _columns(len(row), width)
                continue
            clock, _, fraction = get(row, "time").partition(".")
            millis = str(round(float("0." + fraction) * 1000)) if fraction.isdigit() else "0"
            date = get(row, "date")
            raw = [""] * len(CTP_FIELDS)
            raw[0], raw[1], raw[2], raw[3] = date, date, clock.zfill(8), millis
            raw[4], raw[5] = get(row, "symbol"), get(row, "exchange", "")
            for i, name in enumerate(CTP_FIELDS[6:], 6):
                # a column the file lacks: volumes 0, anything else absent
                missing = "0" if "Volume" in name else "nan"
                source = VNPY_FIELDS.get(name)
                raw[i] = get(row, source, missing) if source else missing
            yield reader.line_num, tuple(raw)


def _columns(found: int, width: int) -> Reject:
    return Reject(Drop.MALFORMED, "", "", f"{found} columns, expected {width}")


Read = Callable[[Path], Iterator[tuple[int, RawTick | Reject]]]


def _reader(fmt: str, mapping: Mapping | None) -> tuple[Read, dict[str, str]]:
    """The row reader of ``fmt`` and which column of its files each CTP field comes from."""
    if fmt == "csv":
        if mapping is None:
            raise BadInput("--format csv needs --mapping FILE.toml (see docs/import-mapping.md)")
        chosen = mapping

        def read(path: Path) -> Iterator[tuple[int, RawTick | Reject]]:
            return read_mapped_csv(path, chosen)

        return read, mapping.source_columns()
    if fmt == "vnpy-csv":
        return read_vnpy_csv, dict(VNPY_SOURCES)
    if fmt == "ctp-csv":
        return read_ctp_csv, {name: name for name in CTP_FIELDS}
    raise BadInput(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")


@dataclass
class _Kept:
    """Rows that became ticks and passed the per-row checks, waiting for their day's: records
    with, for each, its file, line and position in the files (``order``)."""

    records: list[np.ndarray] = field(default_factory=list)
    file: list[np.ndarray] = field(default_factory=list)
    line: list[np.ndarray] = field(default_factory=list)
    order: list[np.ndarray] = field(default_factory=list)
    pending: list[tuple[bytes, int, int, int]] = field(default_factory=list)
    """One row at a time from the per-row path, gathered into the arrays by ``flush``."""

    def add(self, records: np.ndarray, file: int, line: np.ndarray, order: np.ndarray) -> None:
        self.flush()
        self.records.append(records)
        self.file.append(np.full(len(records), file, dtype=np.int64))
        self.line.append(line.astype(np.int64))
        self.order.append(order.astype(np.int64))

    def flush(self) -> None:
        if self.pending:
            rows = self.pending
            self.pending = []
            self.records.append(np.frombuffer(b"".join(r[0] for r in rows), dtype=TICK_DTYPE))
            self.file.append(np.array([r[1] for r in rows], dtype=np.int64))
            self.line.append(np.array([r[2] for r in rows], dtype=np.int64))
            self.order.append(np.array([r[3] for r in rows], dtype=np.int64))

    def size(self) -> tuple[int, int]:
        return len(self.records), len(self.pending)

    def cut(self, size: tuple[int, int]) -> None:
        """Forget what was added after ``size()`` returned ``size``."""
        chunks, pending = size
        for part in (self.records, self.file, self.line, self.order):
            del part[chunks:]
        del self.pending[pending:]

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        self.flush()
        if not self.records:
            empty = np.zeros(0, dtype=np.int64)
            return np.zeros(0, dtype=TICK_DTYPE), empty, empty, empty
        return (np.concatenate(self.records), np.concatenate(self.file),
                np.concatenate(self.line), np.concatenate(self.order))  # fmt: skip


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
            where = f" in column {column} ({reject.value!r})" if column else ""
            message = f"{reject.reason}{where}: {reject.detail}"
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
) -> ImportReport:
    """Import ``paths`` into ``out/YYYYMMDD`` journals; see the module docstring. With
    ``rejects``, every dropped row is written there (CSV: file, line, reason, column, value,
    detail). ``columnar=False`` takes every row through the per-row path (the reference the
    columnar one is tested against)."""
    if fmt == "parquet":
        return _import_parquet(paths, out, append)
    read, sources = _reader(fmt, mapping)
    state = _Import(calendar, sources, strict, rejects is not None, paths=list(paths))
    report = state.report
    normaliser = Normaliser(calendar, check_exchange=True)
    filters = TickFilter(check_local_time=False)  # files carry no receive time
    for number, path in enumerate(paths):
        before = (report.rows, state.kept.size(), len(state.rejects), Counter(report.dropped),
                  report.bad_count, list(report.bad_rows))  # fmt: skip
        try:
            cols = _columns_of(path, fmt) if columnar else None
            if cols is not None:
                _take_columns(state, number, cols, normaliser, filters)
                if progress is not None:
                    progress(len(cols))
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
    by_day = _judge(state)
    if rejects is not None:
        _write_rejects(rejects, state)
    for day in sorted(by_day):
        records = by_day[day]
        journal = out / str(day)
        written = _write(journal, records, append)
        report.already += len(records) - written
        report.days[day] = written
        report.written += written
        report.journals.append(journal)
    return report


def _columns_of(path: Path, fmt: str) -> Columns | None:
    if fmt == "ctp-csv":
        return read_ctp_columns(path)
    return None


def _take_columns(
    state: _Import, number: int, cols: Columns, normaliser: Normaliser, filters: TickFilter
) -> None:
    """One file read as columns: the fast path's rows, then the rows it left, one by one."""
    report = state.report
    base = report.rows
    report.rows += len(cols)
    done = normalise_columns(cols, normaliser)
    for i in done.slow.tolist():  # the per-row path, in file order within what it was given
        _take_row(state, number, i + 2, base + i + 1, cols.raw(i), normaliser, filters)
    dropped = done.drop != 0
    for code in np.unique(done.drop[dropped]).tolist():
        reason = Drop(STATELESS[code])
        rows = done.index[done.drop == code]
        if state.keep_rejects:
            for i, record in zip(rows.tolist(), done.records[done.drop == code], strict=True):
                tick = decode_tick(record.tobytes())
                state.reject(number, i + 2, _filtered(cols.raw(i), tick, reason, None), False)
        else:
            report.dropped[reason] += len(rows)
    keep = ~dropped
    index = done.index[keep]
    state.kept.add(done.records[keep], number, index + 2, base + index + 1)
    for instrument in {r.decode() for r in np.unique(done.records["instrument"][keep])}:
        if normaliser.calendar.product(instrument) is None:
            normaliser.unknown_products.add(instrument)


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
        state.reject(number, line, _out_of_range(raw, exc))
        return
    reason = filters.stateless(tick, phase)
    if reason is not None:
        state.reject(number, line, _filtered(raw, tick, reason, phase), shown=False)
        return
    state.kept.pending.append((record, number, line, order))


def _judge(state: _Import) -> dict[int, np.ndarray]:
    """The rows kept, judged by each instrument's trading day as a whole; by trading day, in
    the journal's order: exchange time, then position in the files, except that rows of one
    instrument sharing a time keep the volume order they were judged in."""
    records, files, lines, order = state.kept.arrays()
    state.kept = _Kept()
    perm, verdict, other = judge_days(records, order)
    if state.keep_rejects:
        for k in np.flatnonzero(verdict).tolist():
            j, o = perm[k], perm[other[k]]
            state.reject(int(files[j]), int(lines[j]),
                         _judged(records[j], int(files[j]), SEQUENCE[verdict[k]],
                                 records[o], int(files[o]), int(lines[o]), state.paths),
                         shown=False)  # fmt: skip
    else:
        for code, count in zip(*np.unique(verdict[verdict != 0], return_counts=True),
                               strict=True):  # fmt: skip
            state.report.dropped[str(SEQUENCE[code])] += int(count)
    kept = perm[verdict == 0]
    records = records[kept]
    state.report.settlements = int(np.count_nonzero(records["flags"] & FLAG_SETTLEMENT))
    # rows of one instrument sharing a time take that time's file positions in volume order
    position = order[kept]
    _, inst = np.unique(records["instrument"], return_inverse=True)
    by_position = np.lexsort((position, records["exchange_time_ns"], inst,
                              records["trading_day"]))  # fmt: skip
    position = position[by_position]  # the same runs as the judging order, sorted by position
    by_day: dict[int, np.ndarray] = {}
    days = records["trading_day"]
    for day in np.unique(days).tolist():
        mine = days == day
        final = np.lexsort((position[mine], records["exchange_time_ns"][mine]))
        by_day[int(day)] = records[mine][final]
    return by_day


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


# -- which column and value are at fault ----------------------------------------------------

_FIELD: Final = {name: i for i, name in enumerate(CTP_FIELDS)}
# tick field (libshm's names, as encode_tick's errors give them) -> CTP field
_TICK_TO_CTP: Final = {
    "instrument": "InstrumentID", "exchange": "ExchangeID", "volume": "Volume",
    "turnover": "Turnover", "open_interest": "OpenInterest",
    **{f"{side}_volume{k}": f"{side.title()}Volume{k}" for side in ("bid", "ask")
       for k in range(1, 6)},
}  # fmt: skip
_TICK_FIELD: Final = re.compile(r"tick field '(\w+)'")


def _value(raw: RawTick, name: str) -> str:
    return str(raw[_FIELD[name]])


def fault(normaliser: Normaliser, raw: RawTick, reason: Drop) -> Reject:
    """The column (CTP field) and value that made the normaliser drop ``raw``, found again on
    this slow path only for the rows it dropped."""
    if reason is Drop.WRONG_EXCHANGE:
        product = normaliser.calendar.product(str(raw[4]).strip())
        home = product.exchange if product is not None else "?"
        return Reject(reason, "ExchangeID", _value(raw, "ExchangeID"),
                      f"the calendar has {raw[4]} on {home}; translate the file's code in the "
                      "mapping ([translate.exchange], docs/import-mapping.md)")  # fmt: skip
    if reason is Drop.IMPOSSIBLE_TIME:
        given = str(raw[0]).strip()
        if given and normaliser.date_of(given) is None:
            return Reject(reason, "TradingDay", given, "not a trading day (YYYYMMDD)")
        if normaliser.seconds_of(raw[2]) is None:
            return Reject(reason, "UpdateTime", _value(raw, "UpdateTime"),
                          "not a time of day (HH:MM:SS)")  # fmt: skip
        return Reject(reason, "UpdateMillisec", _value(raw, "UpdateMillisec"),
                      "not milliseconds 0 to 999, or no date to place the time on")  # fmt: skip
    if not str(raw[4]).strip():
        return Reject(reason, "InstrumentID", "", "no instrument")
    try:
        int(raw[3])  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return Reject(reason, "UpdateMillisec", _value(raw, "UpdateMillisec"), "not a number")
    for name in CTP_FIELDS[6:]:
        text = _value(raw, name)
        try:
            float(text)
        except ValueError:
            what = (
                "empty: a row needs its last price"
                if not text and name == "LastPrice"
                else "not a number"
            )
            return Reject(reason, name, text, what)
    return Reject(reason, "", "", "a value the tick cannot take")


def _out_of_range(raw: RawTick, exc: BaseException) -> Reject:
    found = _TICK_FIELD.search(str(exc))
    name = _TICK_TO_CTP.get(found.group(1), "") if found else ""
    return Reject(Drop.OUT_OF_RANGE, name, _value(raw, name) if name else "", str(exc))


def _filtered(raw: RawTick, tick: Tick, reason: Drop, phase: Phase | None) -> Reject:
    """Why the per-row checks dropped a tick, with the column at fault."""
    if reason is Drop.OUTSIDE_HOURS:
        day = tick[2]
        return Reject(reason, "UpdateTime", _value(raw, "UpdateTime"),
                      f"{tick[0]} is closed then on trading day {day}")  # fmt: skip
    if reason is Drop.CROSSED_BOOK:
        return Reject(reason, "BidPrice1", _value(raw, "BidPrice1"),
                      f"bid {tick[21]} at or above ask {tick[26]}")  # fmt: skip
    if reason is Drop.OUTSIDE_LIMITS:
        lower, upper = tick[15], tick[14]
        for name, price in (("LastPrice", tick[6]), ("BidPrice1", tick[21]),
                            ("AskPrice1", tick[26])):  # fmt: skip
            if price > upper or price < lower:
                return Reject(reason, name, _value(raw, name),
                              f"outside the day's limits {lower} to {upper}")  # fmt: skip
    return Reject(reason, "", "", f"phase {phase}")


def _judged(  # noqa: PLR0917
    record: np.ndarray,
    file: int,
    reason: Drop | None,
    other: np.ndarray,
    other_file: int,
    other_line: int,
    paths: list[Path],
) -> Reject:
    """Why the day's sequence dropped ``record``, judged by ``other``."""
    at = f"line {other_line}" if other_file == file else f"{paths[other_file]}:{other_line}"
    volume = str(int(record["volume"]))
    if reason is Drop.DUPLICATE:
        return Reject(reason, "", "", f"the same tick as {at}")
    if reason is Drop.VOLUME_BACKWARDS:
        below = f"below {int(other['volume'])} at {at}, earlier in its trading day"
        return Reject(reason, "Volume", volume, below)
    if reason is Drop.STALE:
        return Reject(reason, "Volume", volume,
                      f"above {int(other['volume'])} at {at}, later in its trading day "
                      f"{int(record['trading_day'])}: a copy of another moment")  # fmt: skip
    return Reject(Drop.OUTSIDE_HOURS, "SettlementPrice", repr(float(record["settlement"])),
                  f"the same settlement as {at}")  # fmt: skip


# -- looking at a file through its format ---------------------------------------------------


def inspect_file(
    path: Path, fmt: str, calendar: Calendar, mapping: Mapping | None = None, rows: int = 10
) -> list[dict[str, str]]:
    """The first ``rows`` rows of ``path`` as the format (and mapping) reads them and the
    normaliser takes them: for ``hft import --inspect``."""
    if fmt == "parquet":
        raise BadInput("--inspect reads CSV formats; `hft journal cat` shows Parquet's records")
    read, sources = _reader(fmt, mapping)
    normaliser = Normaliser(calendar, check_exchange=True)
    out = []
    for line, raw in read(path):
        entry = {"line": str(line)}
        if isinstance(raw, Reject):
            column = sources.get(raw.column, raw.column)
            entry["result"] = Reject(raw.reason, column, raw.value, raw.detail).message()
        else:
            for name in ("TradingDay", "ActionDay", "UpdateTime", "UpdateMillisec",
                         "InstrumentID", "ExchangeID", "LastPrice", "Volume", "BidPrice1",
                         "AskPrice1", "SettlementPrice"):  # fmt: skip
                entry[name] = _value(raw, name)
            result = normaliser.normalise(raw, 0)
            if isinstance(result, Drop):
                bad = fault(normaliser, raw, result)
                entry["result"] = Reject(bad.reason, sources.get(bad.column, bad.column),
                                         bad.value, bad.detail).message()  # fmt: skip
            else:
                tick, phase = result
                kind = (
                    "settlement record"
                    if tick[3] & FLAG_SETTLEMENT
                    else ("unknown product" if phase is None else phase.name.lower())
                )
                entry["result"] = f"trading day {tick[2]}, {kind}"
        out.append(entry)
        if len(out) >= rows:
            break
    return out


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
        written = _write(journal, part, append)
        report.already += len(part) - written
        report.days[int(day)] = written
        report.written += written
        report.journals.append(journal)
    return report


def _write(journal: Path, records: np.ndarray, append: bool) -> int:
    """Write ``records`` as the day's journal, or append those it does not hold yet (a tick
    whose every field equals one already there is not appended again); the number written."""
    if journal.exists() and append:
        records = _not_in(journal, records)
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
    # One segment holds a typical single-instrument day; big imports roll over 64 MiB segments.
    need = len(records) * TICK_FRAME_SIZE + SEGMENT_HEADER_SIZE + 4096
    segment = min(max((need + MIB - 1) // MIB * MIB, MIB), 64 * MIB)
    try:
        with JournalWriter(journal, layout=TICK_LAYOUT, segment_size=segment) as writer:
            if len(records):
                writer.append_array(records, records["exchange_time_ns"])
    except JournalError as exc:
        raise JournalProblem(str(exc)) from None
    return len(records)


def _not_in(journal: Path, records: np.ndarray) -> np.ndarray:
    """The records ``journal`` does not hold already, byte for byte."""
    try:
        if not list_segments(journal):
            return records
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
        return records
    size = f"S{TICK_DTYPE.itemsize}"  # whole records compared as one byte string each
    seen = np.concatenate(held).view(size)
    result: np.ndarray = records[~np.isin(records.view(size), seen)]
    return result
