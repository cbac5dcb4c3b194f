"""``hft import``: tick files into recordings, through the recorder's normaliser and filters.

Each input row becomes a raw CTP tick (``CTP_FIELDS`` order) and goes through the same
``Normaliser`` and ``TickFilter`` as live data. Ticks are grouped by trading day and written to
``OUT/YYYYMMDD`` (one journal per trading day, as the recorder writes them) in exchange-time order;
ticks sharing a time keep their order in the files. Bad rows are counted and the first few are
reported with file and line; ``strict`` stops at the first and writes nothing.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import gzip
import io
import struct
import tomllib
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.calendar import Calendar
from contracts.config import format_validation_error
from contracts.errors import JournalProblem, UserError
from libshm import (
    SEGMENT_HEADER_SIZE,
    TICK_DTYPE,
    TICK_FRAME_SIZE,
    TICK_LAYOUT,
    JournalError,
    JournalReader,
    JournalWriter,
    encode_tick,
    inspect_journal,
    list_segments,
)
from services.md_recorder.errors import FileProblem
from services.md_recorder.filters import TickFilter
from services.md_recorder.normalise import CTP_FIELDS, Drop, Normaliser, RawTick

__all__ = ["FORMATS", "ImportReport", "import_files"]

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


@dataclass
class ImportReport:
    rows: int = 0
    written: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    bad_rows: list[str] = field(default_factory=list)
    bad_count: int = 0
    days: dict[int, int] = field(default_factory=dict)
    journals: list[Path] = field(default_factory=list)
    unknown_products: set[str] = field(default_factory=set)
    bad_files: list[str] = field(default_factory=list)
    """Files that could not be read through (each skipped whole), with why."""
    already: int = 0
    """Ticks not appended because the day's journal already held them (``--append``)."""

    def summary(self) -> str:
        drops = ", ".join(f"{k} {v:,}" for k, v in sorted(self.dropped.items())) or "none"
        days = ", ".join(f"{d} ({n:,})" for d, n in sorted(self.days.items())) or "none"
        already = f", {self.already:,} already in the journal" if self.already else ""
        return (
            f"{self.rows:,} rows read, {self.written:,} ticks written{already}, dropped: "
            f"{drops}; trading days: {days}"
        )


class BadInput(UserError):
    """A file that cannot be imported at all (wrong format, missing columns, unreadable)."""


def _open_text(path: Path) -> IO[str]:
    """The file as text: gzip-compressed if it ends in ``.gz``; UTF-8, or UTF-16 or UTF-8 with a
    byte-order mark (what spreadsheet programs write)."""
    try:
        raw: Any = gzip.open(path, "rb") if path.suffix == ".gz" else path.open("rb")  # noqa: SIM115 (the wrapper returned closes it)
        try:
            head = raw.peek(4)[:4]
        except (OSError, EOFError) as exc:
            raw.close()
            raise FileProblem(_why_unreadable(path, exc)) from None
        encoding = "utf-8"
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            encoding = "utf-16"
        elif head.startswith(b"\xef\xbb\xbf"):
            encoding = "utf-8-sig"
        return io.TextIOWrapper(raw, encoding=encoding, newline="")
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except PermissionError:
        raise BadInput(f"{path}: permission denied") from None
    except IsADirectoryError:
        raise BadInput(f"{path}: is a directory; give the files in it") from None
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from None


FILE_ERRORS: Final = (OSError, EOFError, zlib.error, UnicodeDecodeError)


def _why_unreadable(path: Path, exc: BaseException) -> str:
    if isinstance(exc, gzip.BadGzipFile):
        return "not a gzip file, though its name ends in .gz; rename it or compress it"
    if isinstance(exc, (EOFError, zlib.error)):
        return f"the compressed data is cut short or damaged ({exc}); fetch the file again"
    if isinstance(exc, UnicodeDecodeError):
        return (f"not UTF-8 or UTF-16 text ({exc.reason} at byte {exc.start} of a block); "
                "convert it, e.g. `iconv -f GB18030 -t UTF-8`")  # fmt: skip
    return f"cannot read: {getattr(exc, 'strerror', None) or exc}"


def _header(path: Path, reader: Iterator[list[str]], needed: tuple[str, ...]) -> list[str]:
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise BadInput(f"{path}: empty file") from None
    missing = [c for c in needed if c not in header]
    if missing:
        raise BadInput(
            f"{path}: missing columns {', '.join(missing)}; is this the right --format? "
            f"(found: {', '.join(header[:8])}{', ...' if len(header) > 8 else ''})"
        )
    return header


def read_ctp_csv(path: Path) -> Iterator[tuple[int, RawTick | str]]:
    """(line, raw tick) per row of a CSV whose columns are CTP field names, any order; a
    row that cannot be split into the columns gives (line, message)."""
    with _open_text(path) as text:
        reader = csv.reader(text)
        header = _header(path, reader, CTP_FIELDS)
        index = [header.index(name) for name in CTP_FIELDS]
        width = len(header)
        for row in reader:
            if len(row) != width:
                yield reader.line_num, f"{len(row)} columns, expected {width}"
                continue
            yield reader.line_num, tuple(row[i] for i in index)


def read_vnpy_csv(path: Path) -> Iterator[tuple[int, RawTick | str]]:
    """vn.py's CSV tick export (``symbol,date,time,lastPrice,...``): level 1 only; columns it
    lacks (cumulative volume, limits) become absent."""
    with _open_text(path) as text:
        reader = csv.reader(text)
        header = _header(path, reader, VNPY_COLUMNS)
        col = {name: i for i, name in enumerate(header)}
        width = len(header)

        def get(row: list[str], name: str, default: str = "0") -> str:
            i = col.get(name)
            return row[i] if i is not None else default

        for row in reader:
            if len(row) != width:
                yield reader.line_num, f"{len(row)} columns, expected {width}"
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


READERS: Final[dict[str, Callable[[Path], Iterator[tuple[int, RawTick | str]]]]] = {
    "ctp-csv": read_ctp_csv,
    "vnpy-csv": read_vnpy_csv,
}

# Tick fields a mapping can name, and the CTP field each one fills.
MAPPABLE: Final = {
    "last": "LastPrice", "open": "OpenPrice", "high": "HighestPrice", "low": "LowestPrice",
    "close": "ClosePrice", "pre_close": "PreClosePrice", "pre_settlement": "PreSettlementPrice",
    "settlement": "SettlementPrice", "upper_limit": "UpperLimitPrice",
    "lower_limit": "LowerLimitPrice", "average": "AveragePrice", "volume": "Volume",
    "turnover": "Turnover", "open_interest": "OpenInterest",
    "pre_open_interest": "PreOpenInterest",
    **{f"{side}_{kind}{k}": f"{side.title()}{kind.title()}{k}"
       for side in ("bid", "ask") for kind in ("price", "volume") for k in range(1, 6)},
}  # fmt: skip
PRICES: Final = {name for name in MAPPABLE if "volume" not in name and name != "open_interest"}


class MappingColumns(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    instrument: str | None = None
    exchange: str | None = None
    trading_day: str | None = None
    date: str | None = None
    time: str | None = None
    datetime: str | None = None
    values: dict[str, str] = Field(default_factory=dict)
    """tick field -> column, for the fields in ``MAPPABLE``."""


class MappingFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    date: str = "%Y%m%d"
    time: str = "%H:%M:%S"
    datetime: str = "%Y-%m-%d %H:%M:%S.%f"
    price_scale: float = Field(1.0, gt=0)
    delimiter: str = Field(",", min_length=1, max_length=1)


class Mapping(BaseModel):
    """``--mapping FILE.toml``: which column of a vendor's CSV is which tick field."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    columns: MappingColumns
    format: MappingFormat = Field(default_factory=MappingFormat)
    instrument: str | None = None
    """A constant instrument id, for files of one instrument without an instrument column."""
    exchange: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Mapping:
        unknown = sorted(set(self.columns.values) - set(MAPPABLE))
        if unknown:
            raise ValueError(
                f"columns.values: unknown tick fields {', '.join(unknown)}; known: "
                f"{', '.join(MAPPABLE)}"
            )
        cols = self.columns
        if cols.datetime is None and (cols.date is None or cols.time is None):
            raise ValueError("columns: give datetime, or both date and time")
        if self.columns.instrument is None and self.instrument is None:
            raise ValueError("give columns.instrument or a constant instrument")
        if "last" not in self.columns.values:
            raise ValueError("columns.values: last (the last price) is required")
        return self


def load_mapping(path: Path) -> Mapping:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BadInput(f"{path}: no such mapping file") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadInput(f"{path}: cannot read the mapping: {exc}") from None
    try:
        return Mapping.model_validate(raw)
    except ValidationError as exc:
        raise BadInput(format_validation_error(exc, str(path), Mapping)) from None


def read_mapped_csv(path: Path, mapping: Mapping) -> Iterator[tuple[int, RawTick | str]]:
    """Rows of any CSV, through ``mapping``, as raw CTP ticks."""
    cols, fmt = mapping.columns, mapping.format
    needed = tuple(
        c for c in (cols.instrument, cols.exchange, cols.trading_day, cols.date, cols.time,
                    cols.datetime, *cols.values.values()) if c is not None
    )  # fmt: skip
    scale = fmt.price_scale
    instrument, exchange = mapping.instrument or "", mapping.exchange or ""
    with _open_text(path) as text:
        reader = csv.reader(text, delimiter=fmt.delimiter)
        header = _header(path, reader, needed)
        col = {name: i for i, name in enumerate(header)}
        width = len(header)
        for row in reader:
            if len(row) != width:
                yield reader.line_num, f"{len(row)} columns, expected {width}"
                continue
            try:
                if cols.datetime is not None:
                    stamp = dt.datetime.strptime(row[col[cols.datetime]].strip(), fmt.datetime)
                else:
                    day = dt.datetime.strptime(row[col[cols.date or ""]].strip(), fmt.date).date()
                    clock = dt.datetime.strptime(row[col[cols.time or ""]].strip(), fmt.time)
                    stamp = dt.datetime.combine(day, clock.time())
            except ValueError as exc:
                yield reader.line_num, f"impossible_time: {exc}"
                continue
            date = stamp.strftime("%Y%m%d")
            raw = ["nan"] * len(CTP_FIELDS)
            # no trading-day column: the normaliser derives it from the date and the calendar
            raw[0] = row[col[cols.trading_day]].strip() if cols.trading_day else ""
            raw[1], raw[2] = date, stamp.strftime("%H:%M:%S")
            raw[3] = str(stamp.microsecond // 1000)
            raw[4] = row[col[cols.instrument]].strip() if cols.instrument else instrument
            raw[5] = row[col[cols.exchange]].strip() if cols.exchange else exchange
            for i in _VOLUMES:  # a volume the file lacks is 0; any other value absent
                raw[i] = "0"
            for name, column in cols.values.items():
                value = row[col[column]].strip()
                if name in PRICES and scale != 1.0 and value:
                    # a value that is not a number stays as it is: the normaliser reports it
                    with contextlib.suppress(ValueError):
                        value = repr(float(value) / scale)
                raw[_INDEX[MAPPABLE[name]]] = value or ("0" if "volume" in name else "nan")
            yield reader.line_num, tuple(raw)


_INDEX: Final = {name: i for i, name in enumerate(CTP_FIELDS)}
_VOLUMES: Final = [i for i, name in enumerate(CTP_FIELDS) if "Volume" in name]


def import_files(  # noqa: PLR0917
    paths: list[Path],
    fmt: str,
    out: Path,
    calendar: Calendar,
    strict: bool = False,
    append: bool = False,
    progress: Callable[[int], object] | None = None,
    mapping: Mapping | None = None,
) -> ImportReport:
    """Import ``paths`` into ``out/YYYYMMDD`` journals; see the module docstring."""
    if fmt == "parquet":
        return _import_parquet(paths, out, append)
    read: Callable[[Path], Iterator[tuple[int, RawTick | str]]]
    if fmt == "csv":
        if mapping is None:
            raise BadInput("--format csv needs --mapping FILE.toml (see docs/import-mapping.md)")
        chosen = mapping

        def read(path: Path) -> Iterator[tuple[int, RawTick | str]]:
            return read_mapped_csv(path, chosen)
    else:
        read = READERS[fmt]
    report = ImportReport()
    normaliser = Normaliser(calendar)
    filters = TickFilter(check_local_time=False)  # files carry no receive time
    by_day: dict[int, list[bytes]] = defaultdict(list)
    times: dict[int, list[int]] = defaultdict(list)
    for path in paths:
        try:
            staged = _read_file(path, read, normaliser, filters, report, strict, progress)
        except FileProblem as exc:
            _bad_file(report, path, str(exc), strict)
            continue
        except FILE_ERRORS as exc:
            _bad_file(report, path, _why_unreadable(path, exc), strict)
            continue
        for day, record, time_ns in staged:  # a file's ticks count once it is read through
            by_day[day].append(record)
            times[day].append(time_ns)
    report.dropped.update(filters.dropped)
    report.unknown_products = normaliser.unknown_products
    for day in sorted(by_day):
        order = np.argsort(np.asarray(times[day], dtype=np.int64), kind="stable")
        records = np.frombuffer(b"".join(by_day[day]), dtype=TICK_DTYPE)[order]
        journal = out / str(day)
        written = _write(journal, records, append)
        report.already += len(records) - written
        report.days[day] = written
        report.written += written
        report.journals.append(journal)
    return report


def _read_file(  # noqa: PLR0917
    path: Path,
    read: Callable[[Path], Iterator[tuple[int, RawTick | str]]],
    normaliser: Normaliser,
    filters: TickFilter,
    report: ImportReport,
    strict: bool,
    progress: Callable[[int], object] | None,
) -> list[tuple[int, bytes, int]]:
    """(trading day, record, exchange time) of each tick of one file kept by the filters."""
    staged = []
    for line, raw in read(path):
        report.rows += 1
        if progress is not None and report.rows % 10_000 == 0:
            progress(10_000)
        if isinstance(raw, str):
            _bad(report, path, line, raw, strict)
            continue
        result = normaliser.normalise(raw, 0)
        if isinstance(result, Drop):
            filters.count(result)
            _bad(report, path, line, f"{result}: {_brief(raw)}", strict)
            continue
        tick, phase = result
        tick = tick._replace(local_time_ns=tick[4])
        try:  # before the filters, which remember the last volume of each instrument
            record = encode_tick(tick)
        except (struct.error, ValueError, OverflowError) as exc:  # e.g. 1e30 lots
            filters.count(Drop.OUT_OF_RANGE)
            _bad(report, path, line, f"{Drop.OUT_OF_RANGE}: {exc}", strict)
            continue
        if filters.check(tick, phase) is not None:
            continue
        staged.append((tick[2], record, tick[4]))
    return staged


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


def _brief(raw: RawTick) -> str:
    return f"{raw[4]} {raw[0]} {raw[2]}.{raw[3]}"


def _bad(report: ImportReport, path: Path, line: int, message: str, strict: bool) -> None:
    report.bad_count += 1
    if len(report.bad_rows) < BAD_ROWS_SHOWN:
        report.bad_rows.append(f"{path}:{line}: {message}")
    if strict:
        raise BadInput(f"{path}:{line}: {message} (--strict stops at the first bad row)")


def _bad_file(report: ImportReport, path: Path, message: str, strict: bool) -> None:
    if strict:
        raise BadInput(f"{path}: {message} (--strict stops at the first bad file)")
    report.bad_files.append(f"{path}: {message}; nothing of it was imported")


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
