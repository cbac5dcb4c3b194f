"""Tick records as Arrow tables: what ``hft journal export`` writes (Parquet, CSV) and
``hft import --format parquet`` reads back.

One flat column per ``Tick`` field, except the two times, which are Arrow timestamps in China
time (``exchange_time``, ``local_time``, ns, UTC+08:00) so pandas, polars and DuckDB show them as
times; absent prices are nulls (NaN in pandas).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pyarrow as pa

from libshm import TICK_DTYPE, Tick

__all__ = ["SCHEMA", "records_to_table", "table_to_records"]

TZ: Final = "+08:00"
_TIMES: Final = {"exchange_time_ns": "exchange_time", "local_time_ns": "local_time"}
_LEVELS: Final = ("bid_price", "ask_price", "bid_volume", "ask_volume")


def _arrow_type(name: str) -> pa.DataType:
    if name in ("instrument", "exchange"):
        return pa.string()
    if name in _TIMES:
        return pa.timestamp("ns", tz=TZ)
    if name in ("trading_day", "flags"):
        return pa.uint32()
    if name == "volume":
        return pa.int64()
    if name.startswith(("bid_volume", "ask_volume")):
        return pa.int32()
    return pa.float64()


SCHEMA: Final = pa.schema([(_TIMES.get(n, n), _arrow_type(n)) for n in Tick._fields])


def _column(records: Any, name: str) -> Any:
    """The numpy column of a ``Tick`` field name (depth levels are 5-wide sub-arrays)."""
    for level in _LEVELS:
        if name.startswith(level) and name[len(level) :].isdigit():
            return records[level][:, int(name[len(level) :]) - 1]
    return records[name]


def records_to_table(records: np.ndarray) -> pa.Table:
    """An Arrow table of ``TICK_DTYPE`` records."""
    rec: Any = records
    arrays = []
    for name in Tick._fields:
        values = _column(rec, name)
        kind = _arrow_type(name)
        if name in ("instrument", "exchange"):
            arrays.append(pa.array(np.char.decode(values, "ascii"), type=kind))
        elif kind == pa.float64():
            arrays.append(pa.array(values, type=kind, mask=np.isnan(values)))
        elif name in _TIMES:
            arrays.append(pa.array(values, type=pa.int64()).cast(kind))
        else:
            arrays.append(pa.array(values, type=kind))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


def table_to_records(table: pa.Table) -> np.ndarray:
    """``TICK_DTYPE`` records of a table with ``SCHEMA``'s columns (extra columns ignored);
    raises ``ValueError`` naming missing or mistyped columns."""
    missing = [f.name for f in SCHEMA if f.name not in table.column_names]
    if missing:
        raise ValueError(f"missing columns {', '.join(missing)}")
    out: Any = np.zeros(table.num_rows, dtype=TICK_DTYPE)
    for name in Tick._fields:
        column = table.column(_TIMES.get(name, name))
        try:
            column = column.cast(_arrow_type(name))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"column {_TIMES.get(name, name)}: {exc}") from None
        if name in _TIMES:
            values: Any = column.cast(pa.int64()).to_numpy(zero_copy_only=False)
        elif name in ("instrument", "exchange"):
            values = np.char.encode(np.asarray(column.to_pylist(), dtype=str), "ascii")
        elif _arrow_type(name) == pa.float64():
            values = column.fill_null(np.nan).to_numpy(zero_copy_only=False)
        else:
            if column.null_count:
                raise ValueError(f"column {name}: {column.null_count} empty values")
            values = column.to_numpy(zero_copy_only=False)
        target = _column(out, name)
        target[...] = values
    return np.asarray(out)
