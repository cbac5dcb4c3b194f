"""``--format csv --mapping FILE.toml``: which column of a vendor's CSV is which tick field, how
its dates and times are written, and which of its values mean what (docs/import-mapping.md).

``read_mapped_csv`` turns each row into a raw CTP tick (``CTP_FIELDS`` order) for the same
normaliser as every other source, or into a ``Reject`` that names the column and value at fault.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import re
import tomllib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.config import format_validation_error
from services.md_recorder.files import BadInput, header, open_text
from services.md_recorder.normalise import CTP_FIELDS, Drop, RawTick

__all__ = [
    "MAPPABLE",
    "PRICES",
    "Mapping",
    "Reject",
    "RowMapper",
    "load_mapping",
    "millis_of",
    "parser_of",
    "read_mapped_csv",
]


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that cannot become a tick: the reason (a ``Drop`` value), the column of the file
    at fault ("" for the whole row), its value, and what is wrong."""

    reason: Drop
    column: str
    value: str
    detail: str

    def message(self) -> str:
        where = f" in column {self.column} ({self.value!r})" if self.column else ""
        return f"{self.reason}{where}: {self.detail}"


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
_INDEX: Final = {name: i for i, name in enumerate(CTP_FIELDS)}
_VOLUMES: Final = [i for i, name in enumerate(CTP_FIELDS) if "Volume" in name]
_MILLIS: Final = re.compile(r"\d{1,3}(\.0*)?")
_T = TypeVar("_T")


class MappingColumns(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    instrument: str | None = None
    exchange: str | None = None
    trading_day: str | None = None
    date: str | None = None
    time: str | None = None
    datetime: str | None = None
    millis: str | None = None
    """A separate column of whole milliseconds (0-999), as a number: ``95`` is 95 ms."""
    values: dict[str, str] = Field(default_factory=dict)
    """tick field -> column, for the fields in ``MAPPABLE``."""


class MappingFormat(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    date: str = "%Y%m%d"
    time: str = "%H:%M:%S"
    datetime: str = "%Y-%m-%d %H:%M:%S.%f"
    trading_day: str = "%Y%m%d"
    price_scale: float = Field(1.0, gt=0)
    delimiter: str = Field(",", min_length=1, max_length=1)


class MappingTranslate(BaseModel):
    """Values of the file replaced by ours, e.g. a vendor's exchange codes: ``XDCE = "DCE"``."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    exchange: dict[str, str] = Field(default_factory=dict)
    instrument: dict[str, str] = Field(default_factory=dict)


class Mapping(BaseModel):
    """``--mapping FILE.toml``: which column of a vendor's CSV is which tick field."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    columns: MappingColumns
    format: MappingFormat = Field(default_factory=MappingFormat)
    translate: MappingTranslate = Field(default_factory=MappingTranslate)
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

    def source_columns(self) -> dict[str, str]:
        """CTP field -> the file's column it comes from (for reports)."""
        cols = self.columns
        stamp = cols.datetime or ""
        out = {MAPPABLE[name]: column for name, column in cols.values.items()}
        out["TradingDay"] = cols.trading_day or cols.date or stamp
        out["ActionDay"] = cols.date or stamp
        out["UpdateTime"] = cols.time or stamp
        out["UpdateMillisec"] = cols.millis or cols.time or stamp
        out["InstrumentID"] = cols.instrument or "(instrument)"
        out["ExchangeID"] = cols.exchange or "(exchange)"
        return out

    def needed(self) -> tuple[str, ...]:
        """The file's columns the mapping reads, each once."""
        cols = self.columns
        named = (cols.instrument, cols.exchange, cols.trading_day, cols.date, cols.time,
                 cols.datetime, cols.millis, *cols.values.values())  # fmt: skip
        return tuple(dict.fromkeys(c for c in named if c is not None))


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


class _Parser:
    """Dates, times and trading days of a mapping, each distinct text parsed once."""

    def __init__(self, mapping: Mapping) -> None:
        self.fmt = mapping.format
        self.cols = mapping.columns
        self._days: dict[str, str | Reject] = {}
        self._dates: dict[str, dt.date | Reject] = {}
        self._times: dict[str, dt.time | Reject] = {}

    def trading_day(self, text: str) -> str | Reject:
        """``YYYYMMDD`` (what the normaliser reads), "" for an empty cell, or the reject."""
        form = self.fmt.trading_day
        hint = ("; set [format] trading_day to the file's form, e.g. \"%Y-%m-%d\""
                if form == "%Y%m%d" else " ([format] trading_day)")  # fmt: skip
        return _once(
            self._days, 100_000, text,
            lambda t: dt.datetime.strptime(t, form).strftime("%Y%m%d") if t else "",
            lambda: Reject(Drop.IMPOSSIBLE_TIME, self.cols.trading_day or "", text,
                           f"not a trading day in the form {form!r}{hint}"),
        )  # fmt: skip

    def date(self, text: str) -> dt.date | Reject:
        form = self.fmt.date
        return _once(
            self._dates, 100_000, text, lambda t: dt.datetime.strptime(t, form).date(),
            lambda: Reject(Drop.IMPOSSIBLE_TIME, self.cols.date or "", text,
                           f"not a date in the form {form!r} ([format] date)"),
        )  # fmt: skip

    def time(self, text: str) -> dt.time | Reject:
        form = self.fmt.time
        return _once(
            self._times, 200_000, text, lambda t: dt.datetime.strptime(t, form).time(),
            lambda: Reject(Drop.IMPOSSIBLE_TIME, self.cols.time or "", text,
                           f"not a time in the form {form!r} ([format] time)"),
        )  # fmt: skip

    def stamp(self, text: str) -> dt.datetime | Reject:
        try:
            return dt.datetime.strptime(text, self.fmt.datetime)
        except ValueError:
            return Reject(Drop.IMPOSSIBLE_TIME, self.cols.datetime or "", text,
                          f"not a date and time in the form {self.fmt.datetime!r} "
                          "([format] datetime)")  # fmt: skip


def _once(
    cache: dict[str, _T | Reject], limit: int, text: str, parse: Callable[[str], _T],
    reject: Callable[[], Reject],
) -> _T | Reject:  # fmt: skip
    """``parse(text)``, or ``reject()`` where it raises ValueError; each text once (up to
    ``limit`` remembered)."""
    got = cache.get(text)
    if got is None:
        try:
            got = parse(text)
        except ValueError:
            got = reject()
        if len(cache) < limit:
            cache[text] = got
    return got


def read_mapped_csv(path: Path, mapping: Mapping) -> Iterator[tuple[int, RawTick | Reject]]:
    """(line, raw CTP tick or reject) per row of any CSV, through ``mapping``."""
    with open_text(path) as text:
        reader = csv.reader(text, delimiter=mapping.format.delimiter)
        found = header(path, reader, mapping.needed())
        to_raw = RowMapper(mapping, found)
        width = len(found)
        for row in reader:
            if len(row) != width:
                yield reader.line_num, Reject(Drop.MALFORMED, "", "",
                                              f"{len(row)} columns, expected {width}")  # fmt: skip
                continue
            yield reader.line_num, to_raw(row)


class RowMapper:
    """One row of a mapped file (its cells, in ``columns`` order) -> raw CTP tick or reject."""

    def __init__(self, mapping: Mapping, columns: list[str]) -> None:
        self.mapping = mapping
        self.parse = _Parser(mapping)
        translate = mapping.translate
        self.instrument = translate.instrument.get(mapping.instrument or "",
                                                   mapping.instrument or "")  # fmt: skip
        self.exchange = translate.exchange.get(mapping.exchange or "", mapping.exchange or "")
        self.col = {name: i for i, name in enumerate(columns)}
        scale = mapping.format.price_scale
        self.values = [(_INDEX[MAPPABLE[name]], self.col[column], name,
                        name in PRICES and scale != 1.0)
                       for name, column in mapping.columns.values.items()]  # fmt: skip

    def __call__(self, row: Sequence[str]) -> RawTick | Reject:
        cols, col, parse = self.mapping.columns, self.col, self.parse
        translate = self.mapping.translate
        stamp = _stamp(row, col, cols, parse)
        if isinstance(stamp, Reject):
            return stamp
        day, clock, millis = stamp
        raw = ["nan"] * len(CTP_FIELDS)
        if cols.trading_day is not None:  # else the normaliser derives it from the date
            trading = parse.trading_day(row[col[cols.trading_day]].strip())
            if isinstance(trading, Reject):
                return trading
            raw[0] = trading
        else:
            raw[0] = ""
        raw[1], raw[2], raw[3] = day, clock, millis
        if cols.instrument is not None:
            value = row[col[cols.instrument]].strip()
            raw[4] = translate.instrument.get(value, value)
        else:
            raw[4] = self.instrument
        if cols.exchange is not None:
            value = row[col[cols.exchange]].strip()
            raw[5] = translate.exchange.get(value, value)
        else:
            raw[5] = self.exchange
        for i in _VOLUMES:  # a volume the file lacks is 0; any other value absent
            raw[i] = "0"
        scale = self.mapping.format.price_scale
        for i, j, name, scaled in self.values:
            value = row[j].strip()
            if not value:  # the last price is never absent in a file: an empty one is bad
                value = "" if name == "last" else "0" if "volume" in name else "nan"
            elif scaled:
                # a value that is not a number stays as it is: the normaliser reports it
                with contextlib.suppress(ValueError):
                    value = repr(float(value) / scale)
            raw[i] = value
        return tuple(raw)


def _stamp(
    row: Sequence[str], col: dict[str, int], cols: MappingColumns, parse: _Parser
) -> tuple[str, str, str] | Reject:
    """(``YYYYMMDD``, ``HH:MM:SS``, milliseconds) of a row, or the reject."""
    if cols.datetime is not None:
        stamp = parse.stamp(row[col[cols.datetime]].strip())
        if isinstance(stamp, Reject):
            return stamp
        day, clock = stamp.date(), stamp.time()
    else:
        date = parse.date(row[col[cols.date or ""]].strip())
        if isinstance(date, Reject):
            return date
        time = parse.time(row[col[cols.time or ""]].strip())
        if isinstance(time, Reject):
            return time
        day, clock = date, time
    millis = clock.microsecond // 1000
    if cols.millis is not None:
        text = row[col[cols.millis]]
        given = millis_of(text)
        if given is None:
            return Reject(Drop.IMPOSSIBLE_TIME, cols.millis, text.strip(),
                          "not a whole number of milliseconds, 0 to 999")  # fmt: skip
        millis = given
    return (f"{day.year:04d}{day.month:02d}{day.day:02d}",
            f"{clock.hour:02d}:{clock.minute:02d}:{clock.second:02d}", str(millis))  # fmt: skip


def millis_of(text: str) -> int | None:
    """A milliseconds column's value (``95``, ``500.0``), or None if it is not one."""
    text = text.strip()
    if not _MILLIS.fullmatch(text) or int(float(text)) > 999:
        return None
    return int(float(text))


def parser_of(mapping: Mapping) -> _Parser:
    """The mapping's parser of dates, times and trading days (each distinct text once)."""
    return _Parser(mapping)
