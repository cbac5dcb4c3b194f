"""pyarrow's CSV reader for the import's columnar path: any CSV file as ``columnar.Columns``
(columns of text, the numbers cast at once), where the scanner (``scanned.py``) does not take the
file: quoted fields, or the scanner not built. A file this reader cannot take whole (a row of the
wrong width, a byte-order mark, text that is not UTF-8, a damaged gzip stream) is left to the
per-row reader, which gives the message (None)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Final

import numpy as np

from services.md_recorder.columnar import (
    NUMBERS,
    TEXTS,
    Columns,
    mapped_names,
    mapped_times,
)
from services.md_recorder.mapping import MAPPABLE, PRICES, Mapping, Reject, RowMapper
from services.md_recorder.normalise import CTP_FIELDS, RawTick

__all__ = ["columns_of", "read_ctp_columns", "read_mapped_columns"]


def _read_text(path: Path, columns: tuple[str, ...], delimiter: str = ",") -> Any:
    """``columns`` of a CSV file as a pyarrow table of text, or None where the per-row reader
    must read the file (it gives the message for a file that is wrong)."""
    import pyarrow as pa  # noqa: PLC0415 - heavy; only imports need it
    import pyarrow.csv as pacsv  # noqa: PLC0415

    try:
        with path.open("rb") as f:
            head = f.read(4)
    except OSError:
        return None  # missing, a directory, not readable: the per-row reader's message
    if head.startswith((b"\xff\xfe", b"\xfe\xff", b"\xef\xbb\xbf")):
        return None  # UTF-16 or a byte-order mark: the per-row reader's decoding
    invalid = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=1 << 24),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, invalid_row_handler=on_invalid, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(columns, pa.string()),
                include_columns=list(columns),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowException, OSError, KeyError):
        return None  # missing columns, damaged gzip, not UTF-8: the per-row reader says which
    if invalid:
        return None  # a row of the wrong width: its line number comes from the per-row reader
    return table


def read_ctp_columns(path: Path) -> Columns | None:
    """A CTP CSV file as columns, or None where the per-row reader must read it."""
    table = _read_text(path, CTP_FIELDS)
    return None if table is None else columns_of(table)


def read_mapped_columns(path: Path, mapping: Mapping) -> Columns | None:
    """A CSV file read through ``mapping`` as columns, or None where the per-row reader must
    read it. Dates, times, trading days, milliseconds and names are parsed once per distinct
    value; a datetime column whose form is a date form and a time form with a space between
    is split in two first, so a day's rows need one parse per distinct date and time."""
    table = _read_text(path, mapping.needed(), mapping.format.delimiter)
    if table is None:
        return None

    def encoded(name: str) -> tuple[list[str], np.ndarray]:
        return _encoded(table.column(name))

    rows = table.num_rows
    texts, millis, slow = mapped_times(encoded, rows, mapping)
    mapped_names(encoded, rows, mapping, texts, slow)
    numbers = _mapped_numbers(table, mapping, slow)
    to_raw = RowMapper(mapping, table.column_names)

    def raw(i: int) -> RawTick | Reject:
        row = table.slice(i, 1).to_pylist()[0]
        return to_raw([row[name] for name in table.column_names])

    return Columns(texts, millis, numbers, slow, raw)


def _mapped_numbers(table: Any, mapping: Mapping, slow: np.ndarray) -> np.ndarray:
    """The mapped number columns in ``NUMBERS`` order (a field the file lacks: volumes 0, the
    rest absent); rows with a value that is not a plain number, or no last price, marked in
    ``slow``."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    rows = table.num_rows
    fmt = mapping.format
    numbers = np.full((len(NUMBERS), rows), np.nan)
    for j, name in enumerate(NUMBERS):
        if "Volume" in name:
            numbers[j] = 0.0
    scale = fmt.price_scale
    for key, column_name in mapping.columns.values.items():
        name = MAPPABLE[key]
        j = NUMBERS.index(name)
        column = table.column(column_name)
        empty = pc.equal(column, "").to_numpy(zero_copy_only=False)
        if key == "last":
            slow |= empty  # a row without its last price is bad: the per-row path says so
        default = "0" if "volume" in key else "nan"
        filled = pc.if_else(pc.equal(column, ""), pa.scalar(default), column)
        values, bad = _floats(filled)
        slow |= bad
        if key in PRICES and scale != 1.0:
            values = values / scale
        numbers[j] = values
    return numbers


def columns_of(table: Any) -> Columns:
    """``Columns`` of a pyarrow table of text with the ``CTP_FIELDS`` columns."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    rows = table.num_rows
    texts = {name: _encoded(table.column(name)) for name in TEXTS}
    bad = np.zeros(rows, dtype=bool)
    numbers = np.empty((len(NUMBERS), rows), dtype=np.float64)
    for j, name in enumerate(NUMBERS):
        numbers[j], wrong = _floats(table.column(name))
        bad |= wrong
    millis_text = table.column("UpdateMillisec")
    try:
        millis = pc.cast(millis_text, pa.int64()).to_numpy()
    except pa.ArrowInvalid:
        values = pc.unique(millis_text).to_pylist()
        lookup = {v: _int_or(v, -1) for v in values}
        codes = pc.index_in(millis_text, value_set=pa.array(values, pa.string())).to_numpy()
        millis = np.array([lookup[v] for v in values], dtype=np.int64)[codes]

    def raw(i: int) -> RawTick:
        row = table.slice(i, 1).to_pylist()[0]
        return tuple(row[name] for name in CTP_FIELDS)

    return Columns(texts, np.asarray(millis, dtype=np.int64), numbers, bad, raw)


_NUMBER: Final = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _floats(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """A column of text as float64, and where a value was not a plain decimal number (those
    rows are the per-row path's: Python's ``float`` decides them)."""
    import pyarrow as pa  # noqa: PLC0415
    import pyarrow.compute as pc  # noqa: PLC0415

    try:
        values = pc.cast(column, pa.float64()).to_numpy()
        return values, np.zeros(len(values), dtype=bool)
    except pa.ArrowInvalid:
        pass
    wrong = [v for v in pc.unique(column).to_pylist() if not _NUMBER.fullmatch(v)]
    mask = pc.is_in(column, value_set=pa.array(wrong, pa.string()))
    fixed = pc.if_else(mask, pa.scalar("0"), column)
    return pc.cast(fixed, pa.float64()).to_numpy(), mask.to_numpy(zero_copy_only=False)


def _encoded(column: Any) -> tuple[list[str], np.ndarray]:
    """(distinct values, the code of each row) of a column of text."""
    import pyarrow.compute as pc  # noqa: PLC0415

    encoded = pc.dictionary_encode(column).combine_chunks()
    return (encoded.dictionary.to_pylist(),
            encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))  # fmt: skip


def _int_or(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default
