"""The import's scanner (``_ext/csvscan.c``, ``services.md_recorder._csvscan``): a plain CSV
file read in one pass on every core, straight into tick records, as ``columnar.Columns`` with
the records in place. Plain: no quote character, no control character but the delimiter and the
line ends, the header's number of fields on every row (the C file's comment says what it decides
and what it leaves to the per-row path). None where the file is not plain or the scanner is not
built: pyarrow's reader (``arrow.py``) reads it then.
"""

from __future__ import annotations

import codecs
import gzip
import importlib
import mmap
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import numpy as np

from libshm import TICK_DTYPE
from services.md_recorder.columnar import (
    NUMBERS,
    TEXTS,
    Columns,
    mapped_names,
    mapped_times,
)
from services.md_recorder.mapping import MAPPABLE, PRICES, Mapping, Reject, RowMapper
from services.md_recorder.normalise import CTP_FIELDS, RawTick

__all__ = ["SCANNER", "SCAN_THREADS", "scan_ctp", "scan_mapped", "scanner_status"]

_MILLIS_KIND: Final = 35
_TEXT_KIND: Final = 64
_SKIP_KIND: Final = 127


def _scanner() -> ModuleType | None:
    if os.environ.get("HFT_PURE_PYTHON") == "1":
        return None
    try:
        return importlib.import_module("services.md_recorder._csvscan")
    except ImportError:  # not compiled: pyarrow's reader
        return None


def scanner_status() -> str:
    """One line for ``hft doctor``: which reader takes plain CSV files."""
    if SCANNER is not None:
        return "C scanner (services.md_recorder._csvscan), on every core"
    if os.environ.get("HFT_PURE_PYTHON") == "1":
        return "pyarrow's reader (HFT_PURE_PYTHON=1)"
    return "pyarrow's reader (the C scanner is not built: reinstall with a C compiler for speed)"


SCAN_THREADS: int = os.cpu_count() or 1
"""Threads the scanner reads a file with: every core, or its share where several worker
processes read files at once (``prepare._work``)."""

SCANNER: ModuleType | None = _scanner()
"""``services.md_recorder._csvscan`` (``_ext/csvscan.c``): plain CSV files straight to records,
on every core; None where it is not built or ``HFT_PURE_PYTHON=1`` is set (pyarrow then reads
every file). A test switches with ``monkeypatch.setattr(columnar, "SCANNER", None)``."""


@dataclass
class _Scan:
    """What ``_csvscan.scan`` made of a file: per text slot (distinct values, codes), the
    records, and per row: slow, milliseconds, the line's text."""

    texts: list[tuple[list[str], np.ndarray]]
    records: np.ndarray
    slow: np.ndarray
    facts: np.ndarray
    millis: np.ndarray
    line: Callable[[int], list[str]]
    """Row ``i``'s cells (a plain line: its text split at the delimiter)."""


def _scan(  # noqa: PLR0917
    path: Path,
    delimiter: str,
    needed: tuple[str, ...],
    roles: dict[str, int],
    initial: np.ndarray,
    divisor: np.ndarray,
    empty_slow: np.ndarray,
    names: dict[str, str],
) -> tuple[_Scan, list[str], list[str]] | None:
    """A plain file through the scanner, with its text slots' columns and its header; None
    where it is not plain (or the scanner is not built). ``roles``: each column's kind (a
    column not in it is skipped); ``names``: the text slot's column whose raw text goes to the
    record's ``instrument`` or ``exchange`` field."""
    if SCANNER is None or len(delimiter) != 1 or delimiter in '"\r\n':
        return None
    if not (delimiter == "\t" or (delimiter.isascii() and delimiter.isprintable())):
        return None
    data = _plain_bytes(path)
    if data is None:
        return None
    begin = 3 if data[:3] == b"\xef\xbb\xbf" else 0  # UTF-8's byte-order mark
    end = data.find(b"\n", begin)
    first = data[begin : end if end >= 0 else len(data)].removesuffix(b"\r")
    if b'"' in first or b"\r" in first:
        return None
    try:
        header = [name.strip() for name in first.decode("utf-8").split(delimiter)]
    except UnicodeDecodeError:
        return None
    if any(header.count(name) != 1 for name in needed):
        return None  # missing or twice: the per-row reader's message, or its choice
    spec = bytes(roles.get(name, _SKIP_KIND) for name in header)
    slots = sorted((k - _TEXT_KIND, name) for name, k in roles.items() if k >= _TEXT_KIND)
    offsets = {"instrument": (0, 32), "exchange": (32, 8)}
    placed = {column: offsets[field] for field, column in names.items()}
    text_offset = np.array([placed.get(name, (-1, 0)) for _, name in slots], dtype=np.int32)
    parts = SCANNER.lines(data, end + 1 if end >= 0 else len(data), SCAN_THREADS)
    rows = sum(lines for _, _, lines in parts)
    # numpy's own memory (huge pages where the kernel gives them: far fewer page faults)
    records = np.empty(rows, dtype=TICK_DTYPE)
    code = np.empty((len(slots), rows), dtype=np.int32)
    slow, facts = np.empty(rows, dtype=np.uint8), np.empty(rows, dtype=np.uint8)
    millis, starts = np.empty(rows, dtype=np.int64), np.empty(rows, dtype=np.int64)
    got = SCANNER.scan(data, parts, ord(delimiter), spec, initial, divisor, empty_slow,
                       text_offset, records, code, slow, facts, millis, starts)  # fmt: skip
    if got is None:
        return None
    values, wide = got
    if wide and not _utf8(data):
        return None  # the per-row reader names the byte

    def line(i: int) -> list[str]:
        begin = int(starts[i])
        stop = data.find(b"\n", begin)
        text = data[begin : stop if stop >= 0 else len(data)].removesuffix(b"\r")
        cells: list[str] = text.decode("utf-8").split(delimiter)
        return cells

    codes = code.astype(np.int64)
    scan = _Scan([(values[k], codes[k]) for k in range(len(slots))], records,
                 slow.astype(bool), facts, millis, line)  # fmt: skip
    return scan, [name for _, name in slots], header


def _plain_bytes(path: Path) -> Any:
    """The file's bytes (mapped, or decompressed if it ends in ``.gz``), or None where the
    per-row reader must say what is wrong with it (missing, empty, damaged)."""
    try:
        with path.open("rb") as f:
            if path.suffix == ".gz":
                return gzip.decompress(f.read()) or None
            if not os.fstat(f.fileno()).st_size:
                return None
            return mmap.mmap(f.fileno(), 0, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE,
                             prot=mmap.PROT_READ)  # fmt: skip
    except (OSError, ValueError, EOFError, zlib.error):
        return None


def _utf8(data: Any) -> bool:
    try:
        codecs.utf_8_decode(data, "strict", True)
    except UnicodeDecodeError:
        return False
    return True


def scan_ctp(path: Path) -> Columns | None:
    """A CTP CSV file through the scanner, or None."""
    roles = {name: j for j, name in enumerate(NUMBERS)}
    roles |= {"UpdateMillisec": _MILLIS_KIND}
    roles |= {name: _TEXT_KIND + k for k, name in enumerate(TEXTS)}
    got = _scan(path, ",", CTP_FIELDS, roles, np.full(len(NUMBERS), np.nan),
                np.ones(len(NUMBERS)), np.ones(len(NUMBERS), dtype=np.uint8),
                {"instrument": "InstrumentID", "exchange": "ExchangeID"})  # fmt: skip
    if got is None:
        return None
    scan, slots, header = got
    texts = dict(zip(slots, scan.texts, strict=True))
    written = {name: texts[name][0] for name in ("InstrumentID", "ExchangeID")}

    def raw(i: int) -> RawTick:
        row = scan.line(i)
        return tuple(row[index[name]] for name in CTP_FIELDS)

    index = {name: header.index(name) for name in CTP_FIELDS}
    return Columns(texts, scan.millis, None, scan.slow, raw, scan.records, written, scan.facts)


def scan_mapped(path: Path, mapping: Mapping) -> Columns | None:
    """A CSV file read through ``mapping`` by the scanner, or None."""
    cols, scale = mapping.columns, mapping.format.price_scale
    text_columns = [c for c in (cols.datetime, cols.date, cols.time, cols.millis,
                                cols.trading_day, cols.instrument, cols.exchange)
                    if c is not None]  # fmt: skip
    roles = {name: _TEXT_KIND + k for k, name in enumerate(dict.fromkeys(text_columns))}
    for key, column in cols.values.items():
        if column in roles:
            return None  # a column in two roles: pyarrow's path reads it
        roles[column] = NUMBERS.index(MAPPABLE[key])
    initial = np.array([0.0 if "Volume" in name else np.nan for name in NUMBERS])
    divisor = np.ones(len(NUMBERS))
    for key in cols.values:
        if key in PRICES and scale != 1.0:
            divisor[NUMBERS.index(MAPPABLE[key])] = scale
    empty_slow = np.zeros(len(NUMBERS), dtype=np.uint8)
    empty_slow[0] = 1  # a row without its last price is bad: the per-row path says so
    names = {field: column
             for field, column in (("instrument", cols.instrument), ("exchange", cols.exchange))
             if column}  # fmt: skip
    got = _scan(path, mapping.format.delimiter, mapping.needed(), roles,
                initial, divisor, empty_slow, names)  # fmt: skip
    if got is None:
        return None
    scan, slots, header = got
    by_column = dict(zip(slots, scan.texts, strict=True))

    def encoded(name: str) -> tuple[list[str], np.ndarray]:
        return by_column[name]

    rows = len(scan.records)
    texts, millis, slow = mapped_times(encoded, rows, mapping)
    mapped_names(encoded, rows, mapping, texts, slow)
    written = {field: by_column[column][0]
               for field, column in (("InstrumentID", cols.instrument),
                                     ("ExchangeID", cols.exchange))
               if column}  # fmt: skip
    to_raw: list[RowMapper] = []

    def raw(i: int) -> RawTick | Reject:
        if not to_raw:
            to_raw.append(RowMapper(mapping, header))
        return to_raw[0](scan.line(i))

    return Columns(texts, millis, None, slow | scan.slow, raw, scan.records, written, scan.facts)
