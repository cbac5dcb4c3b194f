"""The columnar import against the per-row one, its reference: on every bundled file and on
random rows (real rows with faults put in at random, seeded), the same journals byte for byte,
the same counts and the same ``--rejects`` lines."""

from __future__ import annotations

import csv
import gzip
import os
import random
import tempfile
from pathlib import Path

import pytest

from contracts.calendar import load_calendar
from libshm import JournalReader
from services.md_recorder.importer import ImportReport, import_files
from services.md_recorder.mapping import load_mapping
from services.md_recorder.normalise import CTP_FIELDS
from tests.helpers import ROOT

MARKET = ROOT / "data" / "market"
CTP_FILES = sorted(p for p in MARKET.glob("*.csv.gz") if "vnpy" not in p.name)
CALENDAR = load_calendar()


def journals(out: Path) -> dict[str, bytes]:
    found = {}
    for day in sorted(out.iterdir()) if out.exists() else []:
        reader = JournalReader(day)
        parts = []
        while len(frames := reader.read_array()):
            parts.append(frames["payload"].tobytes())
        found[day.name] = b"".join(parts)
    return found


def both(tmp_path: Path, files: list[Path], fmt: str = "ctp-csv") -> tuple[ImportReport, ...]:
    """Import ``files`` both ways; assert the journals and the rejects are the same."""
    reports = []
    for columnar in (True, False):
        name = "columnar" if columnar else "rows"
        reports.append(import_files(files, fmt, tmp_path / name, CALENDAR, columnar=columnar,
                                    rejects=tmp_path / f"{name}.csv"))  # fmt: skip
    fast, slow = reports
    assert slow.columnar == 0
    assert journals(tmp_path / "columnar") == journals(tmp_path / "rows")
    assert (tmp_path / "columnar.csv").read_text() == (tmp_path / "rows.csv").read_text()
    assert (fast.rows, fast.written, fast.dropped, fast.settlements, fast.days) == (
        slow.rows,
        slow.written,
        slow.dropped,
        slow.settlements,
        slow.days,
    )
    assert fast.bad_rows == slow.bad_rows and fast.bad_count == slow.bad_count
    assert fast.unknown_products == slow.unknown_products
    return fast, slow


@pytest.mark.parametrize("path", CTP_FILES, ids=lambda p: p.name)
def test_every_bundled_file_imports_the_same_both_ways(tmp_path: Path, path: Path) -> None:
    fast, _ = both(tmp_path, [path])
    assert fast.written > 0 and fast.columnar == fast.rows


def real_rows() -> list[list[str]]:
    rows = []
    for path in CTP_FILES:
        with gzip.open(path, "rt", newline="") as f:
            reader = csv.reader(f)
            assert tuple(next(reader)) == CTP_FIELDS
            rows.extend(list(reader)[::97])
    return rows


REAL = real_rows()
COL = {name: i for i, name in enumerate(CTP_FIELDS)}
FAULTS = {
    "TradingDay": ["", "2021-01-04", "20210132", "20210109", "20210105", " 20210104"],
    "ActionDay": ["", "20210103", "20210108", "x"],
    "UpdateTime": ["25:00:00", "9:30:00", "21:30:00", "01:15:00", "15:20:00", "08:59:30",
                   "11:31:00", "", "12:00:00"],
    "UpdateMillisec": ["abc", "1000", "-1", "", "5.0", " 7"],
    "InstrumentID": ["", "zz2101", "IF2101" + "X" * 40, " IF2101", "rb2105", "SR105", "m2105",
                     "au2106", "IF2101\u00e9"],
    "ExchangeID": ["", "XDCE", "SHFE", "DCE", "CZCE", " CFFEX"],
    "LastPrice": ["", "x", "0", "-5", "1.7976931348623157e308", "nan", "inf", "1e400"],
    "Volume": ["1e30", "-3", "nan", "", "7.9", "1"],
    "BidVolume1": [str(2**31 + 5), "nan", "-1", "3.7"],
    "BidPrice1": ["999999", "0", "", "1.7976931348623157e308"],
    "AskPrice1": ["1", "0"],
    "SettlementPrice": ["5300.2", "0", "nan"],
    "ClosePrice": ["5290.0"],
    "UpperLimitPrice": ["5000.0", "1e301"],
    "AveragePrice": ["1586000.0", "nan"],
    "Turnover": ["-5", "inf", "x"],
    "OpenInterest": ["-1", "1e300"],
}  # fmt: skip


def random_rows(seed: int, n: int = 300) -> list[list[str]]:
    rng = random.Random(seed)
    out: list[list[str]] = []
    for _ in range(n):
        row = list(rng.choice(REAL))
        for _ in range(rng.choice((0, 0, 1, 1, 2, 3))):
            name = rng.choice(list(FAULTS))
            row[COL[name]] = rng.choice(FAULTS[name])
        if out and rng.random() < 0.08:
            row = list(out[-1])  # the same tick again
        if out and rng.random() < 0.05:  # a same-second neighbour, volumes swapped
            row = list(out[-1])
            row[COL["Volume"]] = (
                str(max(0, int(float(out[-1][COL["Volume"]] or 0)) - 1))
                if out[-1][COL["Volume"]].replace(".", "").isdigit()
                else "5"
            )
        out.append(row)
    return out


@pytest.mark.parametrize("seed", range(6))
def test_random_rows_import_the_same_both_ways(tmp_path: Path, seed: int) -> None:
    src = tmp_path / "rows.csv"
    with src.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CTP_FIELDS)
        writer.writerows(random_rows(seed))
    fast, _ = both(tmp_path, [src])
    assert fast.rows == 300 and 150 < fast.columnar < 300  # the faulty rows went row by row
    assert fast.written + sum(fast.dropped.values()) == fast.rows
    assert len(fast.dropped) >= 3  # the faults reached several checks


def test_a_file_the_columns_cannot_take_whole_falls_back_to_rows(tmp_path: Path) -> None:
    """A row of the wrong width: the columnar reader leaves the file to the per-row one."""
    with gzip.open(CTP_FILES[-1], "rt") as f:
        text = f.read().splitlines()
    text[5] = ",".join(text[5].split(",")[:9])
    src = tmp_path / "cut.csv"
    src.write_text("\n".join(text) + "\n")
    fast, _ = both(tmp_path, [src])
    assert fast.dropped["malformed"] == 1 and fast.columnar == 0


VENDOR_MAPPING = """\
[columns]
instrument = "Code"
exchange = "Exch"
trading_day = "TD"
date = "Date"
time = "Time"
millis = "Ms"
[columns.values]
last = "Last"
volume = "Vol"
turnover = "Amount"
open_interest = "OI"
bid_price1 = "Bid"
bid_volume1 = "BidVol"
ask_price1 = "Ask"
ask_volume1 = "AskVol"
settlement = "Settle"
upper_limit = "Up"
[format]
date = "%Y-%m-%d"
trading_day = "%Y-%m-%d"
price_scale = 10.0
[translate.exchange]
CCFX = "CFFEX"
XSGE = "SHFE"
"""
STAMPED_MAPPING = """\
instrument = "IF2101"
[columns]
datetime = "When"
[columns.values]
last = "Last"
volume = "Vol"
bid_price1 = "Bid"
ask_price1 = "Ask"
[format]
datetime = "%Y%m%d %H:%M:%S.%f"
"""
VENDOR_FAULTS = {
    "TD": ["", "20210104", "2021-13-04", "2021-01-09"],
    "Date": ["", "2021/01/04", "2021-01-05"],
    "Time": ["25:00:00", "9:30:00", "15:20:00", "", " 10:00:00"],
    "Ms": ["95", "1500", "x", "", "7.0", " 3"],
    "Code": ["", "zz2101", "IF2101" + "X" * 40],
    "Exch": ["", "XDCE", "CFFEX", "XSGE"],
    "Last": ["", "x", "0", "-5", " 52600"],
    "Vol": ["1e30", "", "nan", "7.9"],
    "Bid": ["999999", "", "x"],
    "Settle": ["52786", "", "0"],
}  # fmt: skip


def vendor_rows(seed: int, n: int = 300) -> list[list[str]]:
    rng = random.Random(seed)
    out: list[list[str]] = []
    for _ in range(n):
        r = rng.choice(REAL)
        row = [r[COL["InstrumentID"]], {"CFFEX": "CCFX", "SHFE": "XSGE"}[r[COL["ExchangeID"]]],
               f"{r[0][:4]}-{r[0][4:6]}-{r[0][6:]}", f"{r[1][:4]}-{r[1][4:6]}-{r[1][6:]}",
               r[COL["UpdateTime"]], r[COL["UpdateMillisec"]],
               repr(float(r[COL["LastPrice"]]) * 10), r[COL["Volume"]], r[COL["Turnover"]],
               r[COL["OpenInterest"]], repr(float(r[COL["BidPrice1"]]) * 10),
               r[COL["BidVolume1"]], repr(float(r[COL["AskPrice1"]]) * 10),
               r[COL["AskVolume1"]], "", ""]  # fmt: skip
        for _ in range(rng.choice((0, 0, 1, 2))):
            name = rng.choice(list(VENDOR_FAULTS))
            row[VENDOR_HEADER.index(name)] = rng.choice(VENDOR_FAULTS[name])
        if out and rng.random() < 0.08:
            row = list(out[-1])
        out.append(row)
    return out


VENDOR_HEADER = ["Code", "Exch", "TD", "Date", "Time", "Ms", "Last", "Vol", "Amount", "OI", "Bid",
                 "BidVol", "Ask", "AskVol", "Settle", "Up"]  # fmt: skip


@pytest.mark.parametrize("seed", range(4))
def test_random_vendor_rows_import_the_same_both_ways(tmp_path: Path, seed: int) -> None:
    src = tmp_path / "vendor.csv"
    with src.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(VENDOR_HEADER)
        writer.writerows(vendor_rows(seed))
    mapping = tmp_path / "vendor.toml"
    mapping.write_text(VENDOR_MAPPING)
    fast, _ = both_mapped(tmp_path, [src], mapping)
    assert fast.rows == 300 and len(fast.dropped) >= 3 and 150 < fast.columnar < 300


def test_a_datetime_column_and_the_vnpy_example_import_the_same_both_ways(tmp_path: Path) -> None:
    with gzip.open(CTP_FILES[0], "rt", newline="") as f:
        rows = list(csv.DictReader(f))[::7]
    src = tmp_path / "stamped.csv"
    with src.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["When", "Last", "Vol", "Bid", "Ask"])
        for r in rows:
            when = f"{r['ActionDay']} {r['UpdateTime']}.{int(r['UpdateMillisec']):03d}"
            writer.writerow([when, r["LastPrice"], r["Volume"], r["BidPrice1"], r["AskPrice1"]])
    mapping = tmp_path / "stamped.toml"
    mapping.write_text(STAMPED_MAPPING)
    fast, _ = both_mapped(tmp_path / "a", [src], mapping)
    assert fast.written > 3000 and fast.columnar == fast.rows
    example = ROOT / "docs" / "examples" / "vnpy-mapping.toml"
    fast, _ = both_mapped(tmp_path / "b", [MARKET / "RM705-2017-03-20.vnpy.csv.gz"], example)
    assert fast.written > 10_000 and fast.columnar == fast.rows


def both_mapped(tmp_path: Path, files: list[Path], mapping: Path) -> tuple[ImportReport, ...]:
    tmp_path.mkdir(exist_ok=True)
    chosen = load_mapping(mapping)
    reports = []
    for columnar in (True, False):
        name = "columnar" if columnar else "rows"
        rejects = tmp_path / f"{name}.csv"
        reports.append(import_files(files, "csv", tmp_path / name, CALENDAR, mapping=chosen,
                                    columnar=columnar, rejects=rejects))  # fmt: skip
    fast, slow = reports
    assert slow.columnar == 0
    assert journals(tmp_path / "columnar") == journals(tmp_path / "rows")
    assert (tmp_path / "columnar.csv").read_text() == (tmp_path / "rows.csv").read_text()
    assert (fast.rows, fast.written, fast.dropped, fast.settlements) == (
        slow.rows,
        slow.written,
        slow.dropped,
        slow.settlements,
    )
    assert fast.bad_rows == slow.bad_rows
    return fast, slow


def test_files_read_in_worker_processes_import_as_in_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two real files and one with random faults, read by two worker processes (the size
    threshold lowered so these small files use them), give what one process gives."""
    from services.md_recorder import prepare

    faulty = tmp_path / "rows.csv"
    with faulty.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CTP_FIELDS)
        writer.writerows(random_rows(11))
    files = [CTP_FILES[0], faulty, CTP_FILES[-1]]
    monkeypatch.setattr(prepare, "PARALLEL_FROM", 0)
    reports = []
    for workers in (2, 1):
        name = f"w{workers}"
        rejects = tmp_path / f"{name}.csv"
        reports.append(import_files(files, "ctp-csv", tmp_path / name, CALENDAR,
                                    workers=workers, rejects=rejects))  # fmt: skip
    two, one = reports
    assert journals(tmp_path / "w2") == journals(tmp_path / "w1")
    assert (tmp_path / "w2.csv").read_text() == (tmp_path / "w1.csv").read_text()
    assert (two.rows, two.written, two.dropped, two.columnar, two.bad_rows) == (
        one.rows,
        one.written,
        one.dropped,
        one.columnar,
        one.bad_rows,
    )
    assert len(two.processes) == 2 and os.getpid() not in two.processes
    assert one.processes == {os.getpid()}
    assert not list(Path(tempfile.gettempdir()).glob("hft-import-*"))  # the scratch is gone
