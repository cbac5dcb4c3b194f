"""The columnar import against the per-row one, its reference: on every bundled file and on
random rows (real rows with faults put in at random, seeded), the same journals byte for byte,
the same counts and the same ``--rejects`` lines."""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

import pytest

from contracts.calendar import load_calendar
from libshm import JournalReader
from services.md_recorder.importer import ImportReport, import_files
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
    assert fast.written > 0


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
    assert fast.rows == 300
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
    assert fast.dropped["malformed"] == 1
