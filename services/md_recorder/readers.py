"""The row readers of ``hft import``'s text formats: CTP CSV, vn.py's CSV, any CSV through a
mapping; each row as a raw CTP tick (``CTP_FIELDS`` order) or a ``Reject``. And ``inspect_file``:
a file's first rows as its reader and the normaliser take them (``hft import --inspect``)."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Final

from contracts.calendar import Calendar
from libshm import FLAG_SETTLEMENT
from services.md_recorder.faults import fault, value_of
from services.md_recorder.files import BadInput, header, open_text
from services.md_recorder.mapping import Mapping, Reject, read_mapped_csv
from services.md_recorder.normalise import CTP_FIELDS, Drop, Normaliser, RawTick

__all__ = ["FORMATS", "Read", "inspect_file", "read_ctp_csv", "read_vnpy_csv", "reader"]

FORMATS: Final = ("ctp-csv", "vnpy-csv", "csv", "parquet")
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
                yield reader.line_num, _width(len(row), width)
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
                yield reader.line_num, _width(len(row), width)
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


def _width(found: int, width: int) -> Reject:
    return Reject(Drop.MALFORMED, "", "", f"{found} columns, expected {width}")


Read = Callable[[Path], Iterator[tuple[int, RawTick | Reject]]]


def reader(fmt: str, mapping: Mapping | None) -> tuple[Read, dict[str, str]]:
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


def inspect_file(
    path: Path, fmt: str, calendar: Calendar, mapping: Mapping | None = None, rows: int = 10
) -> list[dict[str, str]]:
    """The first ``rows`` rows of ``path`` as the format (and mapping) reads them and the
    normaliser takes them: for ``hft import --inspect``."""
    if fmt == "parquet":
        raise BadInput("--inspect reads CSV formats; `hft journal cat` shows Parquet's records")
    read, sources = reader(fmt, mapping)
    normaliser = Normaliser(calendar, check_exchange=True)
    out = []
    for line, raw in read(path):
        entry = {"line": str(line)}
        if isinstance(raw, Reject):
            column = sources.get(raw.column, raw.column)
            entry["result"] = replace(raw, column=column).message()
        else:
            for name in ("TradingDay", "ActionDay", "UpdateTime", "UpdateMillisec",
                         "InstrumentID", "ExchangeID", "LastPrice", "Volume", "BidPrice1",
                         "AskPrice1", "SettlementPrice"):  # fmt: skip
                entry[name] = value_of(raw, name)
            result = normaliser.normalise(raw, 0)
            if isinstance(result, Drop):
                bad = fault(normaliser, raw, result)
                column = sources.get(bad.column, bad.column)
                entry["result"] = replace(bad, column=column).message()
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
