"""The columnar import against the per-row one, its reference: on every bundled file and on
random rows (real rows with faults put in at random, seeded), the same journals byte for byte,
the same counts and the same ``--rejects`` lines. The columnar path is taken both ways it reads
files: the C scanner (``_ext/csvscan.c``, plain files) and pyarrow's reader (every file)."""

from __future__ import annotations

import csv
import gzip
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import pytest

from contracts.calendar import load_calendar
from libshm import JournalReader
from services.md_recorder import scanned
from services.md_recorder.importer import ImportReport, import_files
from services.md_recorder.mapping import Mapping, load_mapping
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


def alike(tmp_path: Path, files: list[Path], fmt: str, mapping: Mapping | None,
          **ways: dict[str, Any]) -> list[ImportReport]:  # fmt: skip
    """Import ``files`` each way (a name: ``import_files``' keyword arguments); assert that all
    give the same journals byte for byte, the same ``--rejects`` lines and the same counts."""
    tmp_path.mkdir(exist_ok=True)
    reports = []
    built = scanned.SCANNER
    for name, kwargs in ways.items():
        options = dict(kwargs)
        scanned.SCANNER = built if options.pop("scanner", True) else None
        try:
            reports.append(import_files(files, fmt, tmp_path / name, CALENDAR, mapping=mapping,
                                        rejects=tmp_path / f"{name}.csv", **options))  # fmt: skip
        finally:
            scanned.SCANNER = built
    names = list(ways)
    first = reports[0]
    for name, report in zip(names[1:], reports[1:], strict=True):
        assert journals(tmp_path / name) == journals(tmp_path / names[0])
        assert (tmp_path / f"{name}.csv").read_text() == (tmp_path / f"{names[0]}.csv").read_text()
        assert (report.rows, report.written, report.dropped, report.settlements, report.days,
                report.bad_rows, report.bad_count, report.unknown_products) == (
            first.rows, first.written, first.dropped, first.settlements, first.days,
            first.bad_rows, first.bad_count, first.unknown_products)  # fmt: skip
    return reports


def scanner_built() -> None:
    """CI builds the scanner, so there its comparisons never skip."""
    if scanned.SCANNER is None and not os.environ.get("CI"):
        pytest.skip("services.md_recorder._csvscan is not built (no C compiler at install)")
    assert scanned.SCANNER is not None, "the scanner was not built: run `make install` with gcc"


def both(tmp_path: Path, files: list[Path], fmt: str = "ctp-csv",
         mapping: Mapping | None = None) -> tuple[ImportReport, ImportReport]:  # fmt: skip
    """The columnar import (by the scanner where built, and by pyarrow's reader) and the
    per-row one of ``files``, found alike; the first and the per-row one."""
    fast, arrow, slow = alike(tmp_path, files, fmt, mapping, columnar={"columnar": True},
                              arrow={"scanner": False}, rows={"columnar": False})  # fmt: skip
    assert slow.columnar == 0 and arrow.scanned == 0
    assert fast.scanned in (0, fast.rows)  # a file is the scanner's whole or not at all
    assert fast.bad_files == arrow.bad_files == slow.bad_files
    return fast, slow


def all_scanned(report: ImportReport) -> bool:
    """Whether the scanner read every file of the import (where it is built)."""
    return report.scanned == (report.rows if scanned.SCANNER is not None else 0)


def test_the_scanner_is_built_where_a_compiler_is() -> None:
    scanner_built()


@pytest.mark.parametrize("path", CTP_FILES, ids=lambda p: p.name)
def test_every_bundled_file_imports_the_same_both_ways(tmp_path: Path, path: Path) -> None:
    fast, _ = both(tmp_path, [path])
    assert fast.written > 0 and fast.columnar == fast.rows and all_scanned(fast)


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
    assert all_scanned(fast)
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
    fast, _ = both(tmp_path, [src], "csv", load_mapping(mapping))
    assert fast.rows == 300 and len(fast.dropped) >= 3 and 150 < fast.columnar < 300
    assert all_scanned(fast)


def test_a_spreadsheet_export_with_names_in_chinese_is_scanned(tmp_path: Path) -> None:
    """A byte-order mark, Windows line ends and a column of names the import does not read:
    still the scanner's, and the same as the other paths. The same file with a byte that is
    not UTF-8 in that column is a bad file every way."""
    mapping = tmp_path / "vendor.toml"
    mapping.write_text(VENDOR_MAPPING)
    header = [*VENDOR_HEADER, "名称"]
    rows = [[*row, "沪深300股指期货"] for row in vendor_rows(21)]
    text = "\r\n".join(",".join(row) for row in [header, *rows]) + "\r\n"
    src = tmp_path / "export.csv"
    src.write_bytes(b"\xef\xbb\xbf" + text.encode())
    fast, _ = both(tmp_path / "a", [src], "csv", load_mapping(mapping))
    assert fast.rows == 300 and fast.written > 100 and all_scanned(fast)
    src.write_bytes(b"\xef\xbb\xbf" + text.encode().replace("股指".encode(), b"\xff", 1))
    fast, _ = both(tmp_path / "b", [src], "csv", load_mapping(mapping))
    assert fast.written == 0 and fast.scanned == 0
    assert len(fast.bad_files) == 1 and "not UTF-8" in fast.bad_files[0]


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
    fast, _ = both(tmp_path / "a", [src], "csv", load_mapping(mapping))
    assert fast.written > 3000 and fast.columnar == fast.rows and all_scanned(fast)
    example = ROOT / "docs" / "examples" / "vnpy-mapping.toml"
    fast, _ = both(tmp_path / "b", [MARKET / "RM705-2017-03-20.vnpy.csv.gz"], "csv",
                   load_mapping(example))  # fmt: skip
    assert fast.written > 10_000 and fast.columnar == fast.rows


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
    two, one = alike(tmp_path, files, "ctp-csv", None, w2={"workers": 2}, w1={"workers": 1})
    assert two.columnar == one.columnar
    assert len(two.processes) == 2 and os.getpid() not in two.processes
    assert one.processes == {os.getpid()}
    assert not list(Path(tempfile.gettempdir()).glob("hft-import-*"))  # the scratch is gone
