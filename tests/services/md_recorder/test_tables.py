"""Export to Parquet and CSV for research tools, and Parquet back into a recording."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from libshm import JournalReader, decode_tick
from tests.helpers import import_market, run_hft


@pytest.fixture(scope="module")
def day(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rec")
    return import_market(out, "cu1909_20190916.csv.gz", "IF2101_20210104.csv.gz")


def test_parquet_export_holds_every_field(day: Path, tmp_path: Path) -> None:
    out = tmp_path / "cu.parquet"
    done = run_hft("journal", "export", str(day / "20190916"), "-o", str(out))
    assert done.returncode == 0, done.stderr
    assert "wrote 200 ticks" in done.stdout
    table = pq.read_table(out)
    ticks = [decode_tick(f.payload) for f in iter(JournalReader(day / "20190916").read, None)]
    assert table.num_rows == len(ticks) == 200
    assert table.schema.field("exchange_time").type == pa.timestamp("ns", tz="+08:00")
    rows = table.to_pylist()
    for row, tick in zip(rows, ticks, strict=True):
        assert int(row["exchange_time"].timestamp() * 1e6) * 1000 == tick.exchange_time_ns
        for name in ("instrument", "volume", "bid_volume5", "trading_day"):
            assert row[name] == getattr(tick, name)
        for name in ("last", "bid_price5", "ask_price1", "settlement", "upper_limit"):
            value = getattr(tick, name)
            assert row[name] == (None if math.isnan(value) else value)
    assert any(row["bid_price5"] is None for row in rows)  # DBL_MAX level: null, not a price


def test_parquet_round_trip_is_exact(day: Path, tmp_path: Path) -> None:
    out = tmp_path / "if.parquet"
    assert run_hft("journal", "export", str(day / "20210104"), "-o", str(out)).returncode == 0
    back = run_hft("import", "-f", "parquet", str(out), "-o", str(tmp_path / "back"))
    assert back.returncode == 0, back.stderr
    original = run_hft("journal", "cat", str(day / "20210104"))
    again = run_hft("journal", "cat", str(tmp_path / "back" / "20210104"))
    assert original.stdout == again.stdout
    # the header, 27,953 ticks in hours and the settlement record
    assert original.stdout.count("\n") == 27_955


def test_csv_export_with_filters(day: Path, tmp_path: Path) -> None:
    out = tmp_path / "if.csv"
    done = run_hft(
        "journal", "export", str(day / "20210104"), "-o", str(out), "--format", "csv",
        "--from", "2021-01-04T10:00", "--to", "2021-01-04T10:01", "--instrument", "IF2101",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert 100 <= len(rows) <= 121  # one minute of 500 ms snapshots
    assert rows[0]["exchange_time"].startswith("2021-01-04 10:00:00")
    assert all(r["instrument"] == "IF2101" for r in rows)


def test_bad_parquet_input(tmp_path: Path) -> None:
    text = tmp_path / "not.parquet"
    text.write_text("hello")
    done = run_hft("import", "-f", "parquet", str(text), "-o", str(tmp_path / "rec"))
    assert done.returncode == 2
    assert "not a readable Parquet file" in done.stderr
    other = tmp_path / "other.parquet"
    pq.write_table(pa.table({"price": [1.0, 2.0]}), other)
    done = run_hft("import", "-f", "parquet", str(other), "-o", str(tmp_path / "rec"))
    assert done.returncode == 2
    assert "missing columns instrument, exchange" in done.stderr
    assert "reads what `hft journal export` writes" in done.stderr
    assert "Traceback" not in done.stderr
