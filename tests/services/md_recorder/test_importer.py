"""``hft import`` as a user runs it: every bundled real file round-trips through the journal and
``hft journal cat``; bad files and bad rows get clear messages."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import io
import math
import shutil
import sys
from pathlib import Path

import pytest

from services.md_recorder.normalise import CHINA, CTP_FIELDS
from tests.helpers import ROOT, in_small_tmpfs, run_hft

MARKET = ROOT / "data" / "market"
CTP_FILES = sorted(p.name for p in MARKET.glob("*.csv.gz") if "vnpy" not in p.name)


def cat(journal: Path) -> list[dict[str, str]]:
    done = run_hft("journal", "cat", str(journal), "--format", "csv")
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(io.StringIO(done.stdout)))


def source_rows(name: str) -> list[dict[str, str]]:
    with gzip.open(MARKET / name, "rt", newline="") as f:
        return list(csv.DictReader(f))


def gunzip(name: str) -> str:
    with gzip.open(MARKET / name, "rt") as f:
        return f.read()


def price(text: str) -> float:
    value = float(text) if text else math.nan
    return value if 0 < value < 1e300 else math.nan


def same_price(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def in_hours(row: dict[str, str]) -> bool:
    return row["UpdateTime"] <= "15:00:00"  # the bundled files are day sessions


@pytest.mark.parametrize("name", CTP_FILES)
def test_ctp_csv_round_trips(tmp_path: Path, name: str) -> None:
    done = run_hft("import", "--format", "ctp-csv", str(MARKET / name), "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    rows = source_rows(name)
    source = [r for r in rows if in_hours(r)]
    # the first post-close row that carries the settlement price is the day's settlement record
    settled = [r for r in rows if not in_hours(r) and price(r["SettlementPrice"]) > 0][:1]
    day = source[0]["TradingDay"]
    assert f"wrote {tmp_path / day}" in done.stdout
    got = cat(tmp_path / day)
    assert len(got) == len(source) + len(settled)
    assert [r["flags"] for r in got[len(source) :]] == ["8"] * len(settled)
    assert {r["flags"] for r in got[: len(source)]} <= {"0", "1"}
    for want, row in zip(source + settled, got, strict=True):
        assert row["instrument"] == want["InstrumentID"]
        assert row["trading_day"] == want["TradingDay"]
        expected = dt.datetime.strptime(
            f"{want['ActionDay']} {want['UpdateTime']}", "%Y%m%d %H:%M:%S"
        ).replace(tzinfo=CHINA) + dt.timedelta(milliseconds=int(want["UpdateMillisec"]))
        assert (
            int(row["exchange_time_ns"])
            == int(expected.timestamp()) * 10**9 + int(want["UpdateMillisec"]) * 10**6
        )
        assert row["volume"] == want["Volume"]
        assert float(row["turnover"]) == float(want["Turnover"])
        for ours, theirs in (
            ("last", "LastPrice"), ("high", "HighestPrice"), ("upper_limit", "UpperLimitPrice"),
            ("settlement", "SettlementPrice"), ("close", "ClosePrice"),
            *((f"bid_price{k}", f"BidPrice{k}") for k in range(1, 6)),
            *((f"ask_price{k}", f"AskPrice{k}") for k in range(1, 6)),
        ):  # fmt: skip
            assert same_price(price(row[ours]), price(want[theirs])), (ours, row, want)
        for k in range(1, 6):
            for side in ("bid", "ask"):
                volume = int(want[f"{side.title()}Volume{k}"])
                present = not math.isnan(price(want[f"{side.title()}Price{k}"]))
                assert int(row[f"{side}_volume{k}"]) == (volume if present else 0)


def test_vnpy_csv_round_trips(tmp_path: Path) -> None:
    name = "RM705-2017-03-20.vnpy.csv.gz"
    done = run_hft("import", "-f", "vnpy-csv", str(MARKET / name), "-o", str(tmp_path))
    assert done.returncode == 0, done.stderr
    # RM trades 09:00-10:15, 10:30-11:30, 13:30-15:00; the file has one tick half a second
    # before each reopening (10:29:59.5, 13:29:59.5), in the break, which the filter drops
    breaks = (("10:15:00.999", "10:30:00"), ("11:30:00.999", "13:30:00"))
    source = [
        r for r in source_rows(name)
        if r["time"] <= "15:00:00.999" and not any(a < r["time"] < b for a, b in breaks)
    ]  # fmt: skip
    assert len(source) == 16_977
    got = cat(tmp_path / "20170320")
    assert len(got) == len(source)
    for want, row in zip(source, got, strict=True):
        assert (row["instrument"], row["exchange"]) == ("RM705", "CZCE")
        clock, _, fraction = want["time"].partition(".")
        expected = dt.datetime.strptime(f"{want['date']} {clock}", "%Y%m%d %H:%M:%S").replace(
            tzinfo=CHINA
        ) + dt.timedelta(milliseconds=round(float("0." + (fraction or "0")) * 1000))
        assert row["exchange_time"] == expected.isoformat(timespec="milliseconds")
        assert float(row["last"]) == float(want["lastPrice"])
        assert float(row["bid_price1"]) == float(want["bidPrice1"])
        assert float(row["ask_price1"]) == float(want["askPrice1"])
        assert int(row["bid_volume1"]) == int(float(want["bidVolume1"]))
        assert int(row["ask_volume1"]) == int(float(want["askVolume1"]))
        assert row["turnover"] == "" and row["open_interest"] == ""  # not in this format


def test_czce_ticks_sharing_a_second_keep_their_order(tmp_path: Path) -> None:
    """CZCE sends no milliseconds: several ticks in one second stay in arrival order."""
    rows = source_rows("IF2101_20210104.csv.gz")[100:106]
    src = tmp_path / "rm.csv"
    with src.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CTP_FIELDS)
        writer.writeheader()
        for i, row in enumerate(rows):
            row.update(InstrumentID="RM105", ExchangeID="CZCE", UpdateTime="10:00:00")
            row.update(UpdateMillisec="0", Volume=str(1000 + i))
            writer.writerow(row)
    done = run_hft("import", "-f", "ctp-csv", str(src), "-o", str(tmp_path / "rec"))
    assert done.returncode == 0, done.stderr
    got = cat(tmp_path / "rec" / "20210104")
    assert [r["volume"] for r in got] == [str(1000 + i) for i in range(6)]
    assert len({r["exchange_time_ns"] for r in got}) == 1


def test_bad_rows_are_counted_and_shown_with_line_numbers(tmp_path: Path) -> None:
    text = gunzip("cu1909_20190916.csv.gz").splitlines()
    fields = text[3].split(",")
    fields[2] = "25:01:33"  # an impossible time
    text[3] = ",".join(fields)
    text[7] = ",".join(text[7].split(",")[:10])  # a cut row
    text[9] = text[9].replace("47", "4x7", 1) if "47" in text[9] else text[9]
    src = tmp_path / "cu.csv"
    src.write_text("\n".join(text) + "\n")
    done = run_hft("import", "-f", "ctp-csv", str(src), "-o", str(tmp_path / "rec"))
    assert done.returncode == 0, done.stderr
    assert (
        f"bad row: {src}:4: impossible_time in column UpdateTime ('25:01:33'): not a time of day"
        in done.stderr
    )
    assert f"bad row: {src}:8: malformed: 10 columns, expected 41" in done.stderr
    assert f"bad row: {src}:10: malformed in column LastPrice ('4x7" in done.stderr
    assert "200 rows read, 197 ticks written" in done.stdout
    assert "Traceback" not in done.stderr
    strict = run_hft("import", "-f", "ctp-csv", str(src), "-o", str(tmp_path / "s"), "--strict")
    assert strict.returncode == 2
    assert strict.stderr.strip().splitlines() == [
        f"hft import: error: {src}:4: impossible_time in column UpdateTime ('25:01:33'): not a "
        "time of day (HH:MM:SS) (--strict stops at the first bad row)"
    ]
    assert not (tmp_path / "s").exists()


def test_existing_day_needs_append(tmp_path: Path) -> None:
    src = str(MARKET / "cu1909_20190916.csv.gz")
    assert run_hft("import", "-f", "ctp-csv", src, "-o", str(tmp_path)).returncode == 0
    again = run_hft("import", "-f", "ctp-csv", src, "-o", str(tmp_path))
    assert again.returncode == 2
    assert "already exists; remove it, or pass --append" in again.stderr
    appended = run_hft("import", "-f", "ctp-csv", src, "-o", str(tmp_path), "--append")
    assert appended.returncode == 0, appended.stderr
    assert "0 ticks written, 200 already in the journal" in appended.stdout
    assert len(cat(tmp_path / "20190916")) == 200


def test_an_import_that_stops_before_writing_leaves_no_journal(tmp_path: Path) -> None:
    """The days' journals are made ready while the rows are judged; an import refused then
    (one day already recorded, a rejects file that cannot be written) leaves none of them,
    and the day that was there is untouched."""
    days = [str(MARKET / f"IF2101_2021010{d}.csv.gz") for d in (4, 5, 6)]
    out = tmp_path / "out"
    assert run_hft("import", "-f", "ctp-csv", days[1], "-o", str(out)).returncode == 0
    before = cat(out / "20210105")
    again = run_hft("import", "-f", "ctp-csv", *days, "-o", str(out))
    assert again.returncode == 2 and "20210105: a recording of this trading day" in again.stderr
    assert sorted(p.name for p in out.iterdir()) == ["20210105"]
    assert cat(out / "20210105") == before
    nowhere = tmp_path / "missing" / "rejects.csv"
    refused = run_hft("import", "-f", "ctp-csv", days[0], days[2], "-o", str(out), "--rejects",
                      str(nowhere))  # fmt: skip
    assert refused.returncode == 2 and "--rejects" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert sorted(p.name for p in out.iterdir()) == ["20210105"]


def test_an_import_onto_a_full_disk_says_so_in_one_line_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    """A real full disk (a 15 MiB tmpfs): the first day's journal fits, the second's segment
    does not; one line names it, and neither journal nor the failed one's directory is left."""
    days = [str(MARKET / f"IF2101_2021010{d}.csv.gz") for d in (4, 5, 6)]
    out = tmp_path / "out"
    out.mkdir()
    done = in_small_tmpfs(
        out, "15m",
        f"{{ {sys.executable} -m services.cli import -f ctp-csv {' '.join(days)} -o {out}; "
        f"echo exit $?; }}",
        f"ls -A {out}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exit 1", done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0] == (
        f"hft import: error: {out}/20210105/0000000000.seg: cannot allocate a 10 MiB segment "
        "(No space left on device); free space there or point the journal elsewhere; every "
        "frame committed before is intact"
    )


def test_append_adds_only_the_ticks_the_day_lacks(tmp_path: Path) -> None:
    """A second file that overlaps the first (a vendor's re-export of the same day, a re-run
    after a partial import) adds only its new ticks: no tick is in the journal twice."""
    with gzip.open(MARKET / "cu1909_20190916.csv.gz", "rt") as f:
        header, *rows = f.read().splitlines()
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    first.write_text("\n".join([header, *rows[:120]]) + "\n")
    second.write_text("\n".join([header, *rows[80:]]) + "\n")
    out = tmp_path / "rec"
    assert run_hft("import", "-f", "ctp-csv", str(first), "-o", str(out)).returncode == 0
    appended = run_hft("import", "-f", "ctp-csv", str(second), "-o", str(out), "--append")
    assert appended.returncode == 0, appended.stderr
    assert "80 ticks written, 40 already in the journal" in appended.stdout
    whole = tmp_path / "whole"
    src = str(MARKET / "cu1909_20190916.csv.gz")
    assert run_hft("import", "-f", "ctp-csv", src, "-o", str(whole)).returncode == 0
    assert cat(out / "20190916") == cat(whole / "20190916")


@pytest.mark.parametrize(
    ("fmt", "name", "message"),
    [
        ("vnpy-csv", "cu1909_20190916.csv.gz", "missing columns symbol, date, time, lastPrice"),
        ("ctp-csv", "RM705-2017-03-20.vnpy.csv.gz", "is this the right --format?"),
        ("ctp-csv", "nope.csv", "no such file"),
    ],
)
def test_wrong_file_is_one_clear_line(tmp_path: Path, fmt: str, name: str, message: str) -> None:
    done = run_hft("import", "-f", fmt, str(MARKET / name), "-o", str(tmp_path))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert lines[0].startswith("hft import: error: ")


def test_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    done = run_hft("import", "-f", "ctp-csv", str(empty), "-o", str(tmp_path / "rec"))
    assert done.returncode == 2
    assert "empty file" in done.stderr


def test_unknown_product_is_noted(tmp_path: Path) -> None:
    text = gunzip("cu1909_20190916.csv.gz").replace("cu1909", "zz1909")
    src = tmp_path / "zz.csv"
    src.write_text(text)
    done = run_hft("import", "-f", "ctp-csv", str(src), "-o", str(tmp_path / "rec"))
    assert done.returncode == 0, done.stderr
    assert "(no trading-hours filter): zz1909" in done.stderr
    shutil.rmtree(tmp_path / "rec")


def _with(rows: list[list[str]], row: int, column: str, value: str) -> list[list[str]]:
    out = [list(r) for r in rows]
    out[row][out[0].index(column)] = value
    return out


def _write_csv(path: Path, rows: list[list[str]], encoding: str = "utf-8") -> Path:
    with path.open("w", newline="", encoding=encoding) as f:
        csv.writer(f).writerows(rows)
    return path


@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("Volume", "1e30", "tick field 'volume': 1000000000000000019884624838656 is out of range"),
        ("BidVolume1", str(2**31 + 5), "tick field 'bid_volume1': 2147483653 is out of range"),
        ("InstrumentID", "cu1909" + "X" * 40, "is longer than 32 bytes"),
    ],
)
def test_a_value_the_record_cannot_hold_is_a_bad_row(
    tmp_path: Path, column: str, value: str, expected: str
) -> None:
    rows = list(csv.reader(io.StringIO(gunzip("cu1909_20190916.csv.gz"))))[:60]
    src = _write_csv(tmp_path / "cu.csv", _with(rows, 5, column, value))
    done = run_hft("import", "-f", "ctp-csv", str(src), "-o", str(tmp_path / "rec"))
    assert done.returncode == 0, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("bad row:")]
    assert line.startswith(f"bad row: {src}:6: out_of_range in column {column} (")
    assert expected in line
    # the others are all kept: a refused row leaves no trace in the filters' memory
    assert "59 rows read, 58 ticks written, dropped: out_of_range 1;" in done.stdout
    assert "Traceback" not in done.stderr


def test_utf16_and_bom_files_are_read(tmp_path: Path) -> None:
    rows = list(csv.reader(io.StringIO(gunzip("cu1909_20190916.csv.gz"))))[:30]
    for encoding in ("utf-16", "utf-8-sig"):
        src = _write_csv(tmp_path / f"{encoding}.csv", rows, encoding)
        done = run_hft("import", "-f", "ctp-csv", str(src), "-o", str(tmp_path / encoding))
        assert done.returncode == 0, done.stderr
        assert "29 rows read, 29 ticks written" in done.stdout


def test_a_file_that_cannot_be_read_through_is_reported_and_the_others_imported(
    tmp_path: Path,
) -> None:
    plain = tmp_path / "plain.csv.gz"
    plain.write_text(gunzip("cu1909_20190916.csv.gz"))  # named .gz, not compressed
    cut = tmp_path / "cut.csv.gz"
    cut.write_bytes((MARKET / "IF2101_20210104.csv.gz").read_bytes()[:3000])
    latin = tmp_path / "gb.csv"
    latin.write_bytes(gunzip("cu1909_20190916.csv.gz").replace("SHFE", "上期所").encode("gb18030"))
    good = MARKET / "cu1909_20190916.csv.gz"
    done = run_hft("import", "-f", "ctp-csv", str(plain), str(cut), str(latin), str(good),
                   "-o", str(tmp_path / "rec"))  # fmt: skip
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        f"bad file: {plain}: not a gzip file, though its name ends in .gz; rename it or compress "
        "it; nothing of it was imported",
        f"bad file: {cut}: the compressed data is cut short or damaged (Compressed file ended "
        "before the end-of-stream marker was reached); fetch the file again; nothing of it was "
        "imported",
        lines[2],
        "3 of 4 files could not be read; the others were imported",
    ]
    assert lines[2].startswith(f"bad file: {latin}: not UTF-8 or UTF-16 text (invalid")
    assert "`iconv -f GB18030 -t UTF-8`; nothing of it was imported" in lines[2]
    assert (
        "ticks written" in done.stdout and f"wrote {tmp_path / 'rec' / '20190916'}" in done.stdout
    )
    alone = run_hft("import", "-f", "ctp-csv", str(good), "-o", str(tmp_path / "alone"))
    written = alone.stdout.split(" ticks written")[0].split(", ")[-1]
    assert f", {written} ticks written" in done.stdout  # exactly the good file's ticks
    strict = run_hft("import", "-f", "ctp-csv", str(good), str(plain), "-o", str(tmp_path / "s"),
                     "--strict")  # fmt: skip
    assert strict.returncode == 2 and "--strict stops at the first bad file" in strict.stderr
    assert not (tmp_path / "s").exists()
