"""Trading hours and trading days by date, through ``hft import`` as a user runs it: a vendor's
file with one date-and-time column and no trading-day column, its rows built to the documented
facts (configs/calendar.toml and configs/holidays.toml cite the exchanges' notices)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from tests.helpers import run_hft

MAPPING = """\
[columns]
instrument = "code"
datetime = "ts"
[columns.values]
last = "px"
volume = "vol"
[format]
datetime = "%Y-%m-%d %H:%M:%S"
"""


def imported(tmp_path: Path, rows: list[tuple[str, str, float, int]]) -> tuple[str, Path]:
    vendor = tmp_path / "vendor.csv"
    vendor.write_text("code,ts,px,vol\n" + "".join(f"{c},{t},{p},{v}\n" for c, t, p, v in rows))
    mapping = tmp_path / "vendor.toml"
    mapping.write_text(MAPPING)
    out = tmp_path / "out"
    done = run_hft("import", "-f", "csv", "--mapping", str(mapping), str(vendor), "-o", str(out))
    assert done.returncode == 0, done.stderr
    return done.stdout, out


def journal(path: Path) -> list[dict[str, str]]:
    done = run_hft("journal", "cat", str(path), "--format", "csv")
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(io.StringIO(done.stdout)))


def test_a_2017_czce_night_to_2330_and_a_2024_one_to_2300(tmp_path: Path) -> None:
    summary, out = imported(tmp_path, [
        ("SR709", "2017-04-13 21:00:01", 6700, 10),  # Thursday evening: trading day Friday
        ("SR709", "2017-04-13 23:15:00", 6701, 20),  # inside the 2017 hours, not today's
        ("SR709", "2017-04-13 23:29:59", 6702, 30),
        ("SR405", "2024-04-15 21:00:01", 6500, 10),
        ("SR405", "2024-04-15 22:59:59", 6501, 20),
        ("SR405", "2024-04-15 23:15:00", 6502, 30),  # after the 23:00 close: dropped
    ])  # fmt: skip
    assert "6 rows read, 5 ticks written, dropped: outside_hours 1" in summary
    assert [r["last"] for r in journal(out / "20170414")] == ["6700.0", "6701.0", "6702.0"]
    assert [r["last"] for r in journal(out / "20240416")] == ["6500.0", "6501.0"]


def test_a_friday_night_without_a_trading_day_column_is_mondays(tmp_path: Path) -> None:
    """SHFE gold's night runs to 02:30: the Saturday-morning rows are Friday's night, which
    belongs to Monday's trading day."""
    summary, out = imported(tmp_path, [
        ("au1712", "2017-04-14 21:30:00", 280.5, 10),
        ("au1712", "2017-04-15 01:30:00", 280.6, 20),
        ("au1712", "2017-04-15 02:29:59", 280.7, 30),
        ("au1712", "2017-04-17 09:30:00", 280.8, 40),
    ])  # fmt: skip
    assert "4 rows read, 4 ticks written" in summary
    assert sorted(p.name for p in out.iterdir()) == ["20170417"]
    rows = journal(out / "20170417")
    assert [r["trading_day"] for r in rows] == ["20170417"] * 4
    assert [r["exchange_time"] for r in rows] == [
        "2017-04-14T21:30:00.000+08:00", "2017-04-15T01:30:00.000+08:00",
        "2017-04-15T02:29:59.000+08:00", "2017-04-17T09:30:00.000+08:00",
    ]  # fmt: skip


def test_no_night_session_before_a_holiday(tmp_path: Path) -> None:
    """2017-05-01 (Monday) was Labour Day: no night session on Friday 2017-04-28; the rows of
    the Thursday night before it are kept, those of the Friday night dropped."""
    summary, out = imported(tmp_path, [
        ("au1712", "2017-04-27 21:30:00", 281.0, 10),
        ("au1712", "2017-04-28 21:30:00", 281.1, 20),
        ("au1712", "2017-04-29 01:30:00", 281.2, 30),
        ("SR709", "2017-04-28 21:30:00", 6700, 10),
        ("au1712", "2017-05-02 09:30:00", 281.3, 10),
    ])  # fmt: skip
    assert "5 rows read, 2 ticks written, dropped: outside_hours 3" in summary
    assert [r["last"] for r in journal(out / "20170428")] == ["281.0"]
    assert [r["last"] for r in journal(out / "20170502")] == ["281.3"]
