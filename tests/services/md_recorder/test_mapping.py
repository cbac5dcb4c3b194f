"""``hft import --format csv --mapping``: any vendor's columns, through the same normaliser."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

from tests.helpers import ROOT, run_hft

MARKET = ROOT / "data" / "market"
EXAMPLE = ROOT / "docs" / "examples" / "vnpy-mapping.toml"


def cat(journal: Path) -> str:
    done = run_hft("journal", "cat", str(journal))
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_example_mapping_imports_the_vnpy_file_like_vnpy_csv(tmp_path: Path) -> None:
    src = str(MARKET / "RM705-2017-03-20.vnpy.csv.gz")
    mapped = run_hft("import", "-f", "csv", "--mapping", str(EXAMPLE), src, "-o", f"{tmp_path}/m")
    assert mapped.returncode == 0, mapped.stderr
    native = run_hft("import", "-f", "vnpy-csv", src, "-o", str(tmp_path / "v"))
    assert native.returncode == 0, native.stderr
    assert cat(tmp_path / "m" / "20170320") == cat(tmp_path / "v" / "20170320")


def test_datetime_column_scale_and_delimiter(tmp_path: Path) -> None:
    """The real cu1909 rows rewritten as a vendor would: one datetime column, integer prices
    x10000, semicolons; the result equals the CTP CSV import of the original."""
    with gzip.open(MARKET / "cu1909_20190916.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    vendor = tmp_path / "vendor.csv"
    with vendor.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=";")
        writer.writerow(["code", "ts", "px", "vol", "amount", "oi", "b1", "bv1", "a1", "av1"])
        for r in rows:
            stamp = f"{r['ActionDay']} {r['UpdateTime']}.{int(r['UpdateMillisec']):03d}"
            writer.writerow([
                r["InstrumentID"], stamp,
                round(float(r["LastPrice"]) * 10000), r["Volume"], r["Turnover"], r["OpenInterest"],
                round(float(r["BidPrice1"]) * 10000), r["BidVolume1"],
                round(float(r["AskPrice1"]) * 10000), r["AskVolume1"],
            ])  # fmt: skip
    mapping = tmp_path / "vendor.toml"
    mapping.write_text(
        'exchange = "SHFE"\n[columns]\ninstrument = "code"\ndatetime = "ts"\n'
        '[columns.values]\nlast = "px"\nvolume = "vol"\nturnover = "amount"\n'
        'open_interest = "oi"\nbid_price1 = "b1"\nbid_volume1 = "bv1"\nask_price1 = "a1"\n'
        'ask_volume1 = "av1"\n[format]\ndatetime = "%Y%m%d %H:%M:%S.%f"\nprice_scale = 10000.0\n'
        'delimiter = ";"\n'
    )
    out = f"{tmp_path}/m"
    done = run_hft("import", "-f", "csv", "--mapping", str(mapping), str(vendor), "-o", out)
    assert done.returncode == 0, done.stderr
    assert "200 rows read, 200 ticks written" in done.stdout
    got = list(csv.DictReader(cat(tmp_path / "m" / "20190916").splitlines()))
    for want, row in zip(rows, got, strict=True):
        assert float(row["last"]) == float(want["LastPrice"])
        assert float(row["bid_price1"]) == float(want["BidPrice1"])
        assert row["volume"] == want["Volume"]
        assert row["exchange_time"].endswith(f".{int(want['UpdateMillisec']):03d}+08:00")


def test_bad_mappings_are_one_clear_error(tmp_path: Path) -> None:
    src = str(MARKET / "RM705-2017-03-20.vnpy.csv.gz")
    cases = {
        'instrument = "x"\n[columns]\ndate = "date"\ntime = "time"\n[columns.values]\n'
        'lst = "lastPrice"\n': "unknown tick fields lst",
        'instrument = "x"\n[columns]\ndate = "date"\n[columns.values]\nlast = "lastPrice"\n':
            "give datetime, or both date and time",
        'instrument = "x"\n[columns]\ndatetime = "d"\nsymbl = "s"\n[columns.values]\n'
        'last = "p"\n': "columns.symbl: unknown key",
        'instrument = "x"\n[columns]\ndatetime = "when"\n[columns.values]\nlast = "lastPrice"\n':
            "missing columns when",
    }  # fmt: skip
    for i, (text, message) in enumerate(cases.items()):
        mapping = tmp_path / f"m{i}.toml"
        mapping.write_text(text)
        done = run_hft("import", "-f", "csv", "--mapping", str(mapping), src, "-o", str(tmp_path))
        assert done.returncode == 2, done.stdout
        assert message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    missing = run_hft("import", "-f", "csv", src, "-o", str(tmp_path))
    assert missing.returncode == 2
    assert "--format csv needs --mapping" in missing.stderr
