"""Vendors' files as they come, through ``hft import`` as a user runs it: separate date, time and
millisecond columns, their own trading-day form and exchange codes, a stale row before a new
trading day, same-second rows written latest-first, the settlement in a post-close row, and every
dropped row accounted for (``--rejects``, the summary, the exit code).

Rows are the bundled real ones rewritten as a vendor writes them, or built to the documented
facts (docs/md_recorder.md; data/market/README.md)."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

from tests.helpers import ROOT, run_hft

MARKET = ROOT / "data" / "market"

# docs/import-mapping.md's example: separate date, time and millisecond columns, ISO dates, the
# vendor's exchange codes translated
VENDOR_MAPPING = (ROOT / "docs" / "examples" / "vendor-mapping.toml").read_text()
HEADER = ("Code", "Exch", "TradingDate", "Date", "Time", "Ms", "Last", "Vol", "Amount", "OI",
          "Bid", "BidVol", "Ask", "AskVol", "Settle")  # fmt: skip


def dashed(yyyymmdd: str) -> str:
    return f"{yyyymmdd[:4]}-{yyyymmdd[4:6]}-{yyyymmdd[6:]}"


def write_vendor(path: Path, rows: list[tuple[object, ...]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(HEADER)
        writer.writerows(rows)
    return path


def mapping_file(tmp_path: Path, text: str = VENDOR_MAPPING) -> Path:
    path = tmp_path / "vendor.toml"
    path.write_text(text)
    return path


def run_import(tmp_path: Path, *files: Path, mapping: Path | None = None, out: str = "out",
               extra: tuple[str, ...] = ()) -> tuple[int, str, str]:  # fmt: skip
    mapping = mapping or mapping_file(tmp_path)
    done = run_hft("import", "-f", "csv", "--mapping", str(mapping), *map(str, files),
                   "-o", str(tmp_path / out), *extra)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def journal(path: Path) -> list[dict[str, str]]:
    done = run_hft("journal", "cat", str(path), "--format", "csv")
    assert done.returncode == 0, done.stderr
    return list(csv.DictReader(io.StringIO(done.stdout)))


def cu_rows() -> list[dict[str, str]]:
    with gzip.open(MARKET / "cu1909_20190916.csv.gz", "rt", newline="") as f:
        return list(csv.DictReader(f))


def as_vendor(row: dict[str, str], exchange: str = "XSGE") -> tuple[object, ...]:
    """A real CTP row as the vendor writes it: ISO dates, milliseconds apart and unpadded."""
    return (row["InstrumentID"], exchange, dashed(row["TradingDay"]), dashed(row["ActionDay"]),
            row["UpdateTime"], str(int(row["UpdateMillisec"])), row["LastPrice"], row["Volume"],
            row["Turnover"], row["OpenInterest"], row["BidPrice1"], row["BidVolume1"],
            row["AskPrice1"], row["AskVolume1"], "")  # fmt: skip


def test_separate_millisecond_column_iso_trading_day_and_exchange_codes(tmp_path: Path) -> None:
    """The real cu1909 rows with date, time and milliseconds in three columns (``0``, ``500``,
    ``999`` written as numbers), the trading day as ``2019-09-16`` and SHFE as ``XSGE``: the
    journal equals the CTP CSV import of the original, millisecond for millisecond."""
    rows = cu_rows()
    vendor = write_vendor(tmp_path / "cu.csv", [as_vendor(r) for r in rows])
    code, out, err = run_import(tmp_path, vendor)
    assert code == 0, err
    assert "200 rows read, 200 ticks written" in out
    native = run_hft("import", "-f", "ctp-csv", str(MARKET / "cu1909_20190916.csv.gz"),
                     "-o", str(tmp_path / "native"))  # fmt: skip
    assert native.returncode == 0, native.stderr
    got, want = journal(tmp_path / "out" / "20190916"), journal(tmp_path / "native" / "20190916")
    keys = ("exchange_time", "instrument", "exchange", "trading_day", "last", "volume", "turnover",
            "open_interest", "bid_price1", "bid_volume1", "ask_price1", "ask_volume1")  # fmt: skip
    assert [{k: r[k] for k in keys} for r in got] == [{k: r[k] for k in keys} for r in want]
    assert {r["exchange_time"][-10:-6] for r in got} == {".000", ".500", ".999"}
    assert {r["exchange"] for r in got} == {"SHFE"}


def test_a_two_digit_millisecond_is_not_a_fraction(tmp_path: Path) -> None:
    """``95`` in the milliseconds column is 95 ms (joining it to the time as ``.95`` would read
    950 ms); a value that is no millisecond count is rejected naming the column."""
    row = cu_rows()[10]
    rows = [(*as_vendor(row)[:5], "95", *as_vendor(row)[6:]),
            (*as_vendor(row)[:5], "1500", *as_vendor(row)[6:])]  # fmt: skip
    code, _out, err = run_import(tmp_path, write_vendor(tmp_path / "ms.csv", rows))
    assert code == 0, err
    (tick,) = journal(tmp_path / "out" / "20190916")
    assert tick["exchange_time"] == f"2019-09-16T{row['UpdateTime']}.095+08:00"
    assert "ms.csv:3: impossible_time in column Ms ('1500'): not a whole number of millis" in err


def test_an_iso_trading_day_without_its_format_names_the_column_and_imports_nothing(
    tmp_path: Path,
) -> None:
    rows = cu_rows()[:20]
    vendor = write_vendor(tmp_path / "cu.csv", [as_vendor(r) for r in rows])
    mapping = mapping_file(tmp_path, VENDOR_MAPPING.replace('trading_day = "%Y-%m-%d"\n', ""))
    code, out, err = run_import(tmp_path, vendor, mapping=mapping,
                                extra=("--rejects", str(tmp_path / "rejects.csv")))  # fmt: skip
    assert code == 1
    assert (
        "cu.csv:2: impossible_time in column TradingDate ('2019-09-16'): not a trading day in the "
        "form '%Y%m%d'; set [format] trading_day to the file's form, e.g. \"%Y-%m-%d\"" in err
    )
    assert "nothing was imported (impossible_time 20)" in err
    assert "20 rows read, 0 ticks written, dropped: impossible_time 20" in out
    with (tmp_path / "rejects.csv").open(newline="") as f:
        rejects = list(csv.DictReader(f))
    assert [(r["line"], r["reason"], r["column"], r["value"]) for r in rejects] == [
        (str(n), "impossible_time", "TradingDate", "2019-09-16") for n in range(2, 22)
    ]


def dce_night(exchange: str) -> list[tuple[object, ...]]:
    """m1709 (DCE soybean meal) on the night of Friday 2017-04-14, as DCE sends it: TradingDay
    and ActionDay both the next trading day, Monday 2017-04-17; the night ran to 23:30 then."""

    def row(time: str, last: float, volume: int) -> tuple[object, ...]:
        return ("m1709", exchange, "2017-04-17", "2017-04-17", time, "0", last, volume,
                volume * 10 * last, 1_500_000, last - 1, 10, last + 1, 12, "")  # fmt: skip

    return [row("21:00:01", 2900.0, 100), row("23:29:59", 2901.0, 200),
            row("09:00:01", 2902.0, 300)]  # fmt: skip


def test_translated_dce_codes_get_the_dce_night_rule(tmp_path: Path) -> None:
    vendor = write_vendor(tmp_path / "m.csv", dce_night("XDCE"))
    code, _out, err = run_import(tmp_path, vendor)
    assert code == 0, err
    got = journal(tmp_path / "out" / "20170417")
    assert [r["exchange_time"] for r in got] == [
        "2017-04-14T21:00:01.000+08:00",  # the Friday evening, not Monday's
        "2017-04-14T23:29:59.000+08:00",
        "2017-04-17T09:00:01.000+08:00",
    ]
    assert {r["exchange"] for r in got} == {"DCE"}


def test_an_untranslated_exchange_code_is_refused_naming_the_fix(tmp_path: Path) -> None:
    """Without ``[translate.exchange]`` the DCE rule would silently not apply (the rows would
    land on Monday evening): each row is dropped as ``wrong_exchange`` instead."""
    vendor = write_vendor(tmp_path / "m.csv", dce_night("XDCE"))
    mapping = mapping_file(tmp_path, VENDOR_MAPPING.split("[translate.exchange]", maxsplit=1)[0])
    code, out, err = run_import(tmp_path, vendor, mapping=mapping)
    assert code == 1
    assert (
        "m.csv:2: wrong_exchange in column Exch ('XDCE'): the calendar has m1709 on DCE; "
        "translate the file's code in the mapping ([translate.exchange]" in err
    )
    assert "3 rows read, 0 ticks written, dropped: wrong_exchange 3" in out


def czce(time: str, volume: int, day: str = "2017-04-14", date: str = "",
         last: float = 6700.0) -> tuple[object, ...]:  # fmt: skip
    """SR709 (CZCE white sugar), no milliseconds, as the vendor writes it."""
    return ("SR709", "XZCE", day, date or day, time, "0", last, volume, volume * 10 * last,
            600_000, last - 1, 5, last + 1, 7, "")  # fmt: skip


def test_a_stale_evening_row_is_dropped_alone_not_the_next_days_rows(tmp_path: Path) -> None:
    """The vendor's file of Thursday 2017-04-13 opens with a copy of the previous night's
    closing tick stamped 23:29:59 of its own day and its own date as trading day: by its time it
    belongs to Friday's night, but its volume (5,000) is Thursday's. Imported with Friday's file,
    it alone is dropped (``stale``); Friday's real rows are all kept."""
    thursday = write_vendor(tmp_path / "20170413.csv", [
        czce("23:29:59", 5000, "2017-04-13"),  # the stale copy
        czce("09:00:00", 5100, "2017-04-13"), czce("14:59:59", 9000, "2017-04-13"),
    ])  # fmt: skip
    friday = write_vendor(tmp_path / "20170414.csv", [
        czce("21:00:01", 100, date="2017-04-13"), czce("23:29:58", 3000, date="2017-04-13"),
        *(czce(f"09:{m:02d}:00", 3100 + 100 * m) for m in range(12)),
    ])  # fmt: skip
    rejects = tmp_path / "rejects.csv"
    code, out, err = run_import(tmp_path, thursday, friday, extra=("--rejects", str(rejects)))
    assert code == 0, err
    assert "17 rows read, 16 ticks written, dropped: stale 1;" in out
    assert [r["volume"] for r in journal(tmp_path / "out" / "20170414")] == [
        "100",
        "3000",
        *(str(3100 + 100 * m) for m in range(12)),
    ]
    with rejects.open(newline="") as f:
        (stale,) = list(csv.DictReader(f))
    assert stale == {
        "file": str(thursday),
        "line": "2",
        "reason": "stale",
        "column": "Vol",
        "value": "5000",
        "detail": f"above 3100 at {friday}:4, later in its trading day 20170414: a copy of "
        "another moment",
    }


def test_same_second_rows_written_latest_first_are_ordered_by_volume(tmp_path: Path) -> None:
    """CZCE sends no milliseconds; this vendor writes a second's rows latest first. All are
    real rows: ordered by cumulative volume, none is dropped."""
    vendor = write_vendor(tmp_path / "sr.csv", [
        czce("10:00:00", 1000, last=6700.0),
        czce("10:00:01", 1030, last=6703.0), czce("10:00:01", 1020, last=6702.0),
        czce("10:00:01", 1010, last=6701.0),
        czce("10:00:02", 1040, last=6704.0),
    ])  # fmt: skip
    code, out, err = run_import(tmp_path, vendor)
    assert code == 0, err
    assert "5 rows read, 5 ticks written, dropped: none" in out
    got = journal(tmp_path / "out" / "20170414")
    assert [r["volume"] for r in got] == ["1000", "1010", "1020", "1030", "1040"]
    assert [r["last"] for r in got] == ["6700.0", "6701.0", "6702.0", "6703.0", "6704.0"]


def test_the_settlement_is_kept_from_a_post_close_row(tmp_path: Path) -> None:
    """CFFEX publishes the settlement after the close: the bundled IF2101 day has it only in
    its post-close rows (15:30:48 and 15:35:19). Rewritten as the vendor writes them, the first
    is kept as the day's settlement record, flagged; the repeat and a post-close row without a
    settlement are dropped as outside hours."""
    with gzip.open(MARKET / "IF2101_20210104.csv.gz", "rt", newline="") as f:
        rows = list(csv.DictReader(f))
    tail = rows[-4:]  # 15:00:00.x closing snapshots and the two post-close rows
    vendor_rows = [(*as_vendor(r, "CCFX")[:-1], r["SettlementPrice"]) for r in tail]
    no_settle = (*vendor_rows[-1][:4], "15:40:00", *vendor_rows[-1][5:-1], "")
    vendor = write_vendor(tmp_path / "if.csv", [*vendor_rows, no_settle])
    code, out, err = run_import(tmp_path, vendor)
    assert code == 0, err
    assert "(1 settlement records)" in out and "dropped: outside_hours 2" in out
    got = journal(tmp_path / "out" / "20210104")
    assert got[-1]["exchange_time"] == "2021-01-04T15:30:48.900+08:00"
    assert (got[-1]["flags"], got[-1]["settlement"]) == ("8", "5278.6")
    assert {r["flags"] for r in got[:-1]} == {"0"}


def test_rejects_list_every_dropped_row_and_the_counts_add_up(tmp_path: Path) -> None:
    """Real cu1909 rows with faults put in: each dropped row is in ``--rejects`` with its reason
    and the vendor's column and value, and rows read = written + dropped."""
    rows = [list(as_vendor(r)) for r in cu_rows()[:40]]
    rows[3][6] = ""  # an empty last price: a bad row, not an absent price
    rows[5][4] = "16:20:00"  # after the close, no settlement: outside hours
    rows[7][10], rows[7][12] = "48000", "47000"  # crossed book
    rows[9] = list(rows[8])  # the same tick twice
    rows[12][7] = "1"  # volume going backwards
    rows[15][1] = "XXXX"  # an exchange code the mapping does not know
    vendor = write_vendor(tmp_path / "cu.csv", [tuple(r) for r in rows])
    rejects = tmp_path / "rejects.csv"
    code, out, err = run_import(tmp_path, vendor, extra=("--rejects", str(rejects)))
    assert code == 0, err
    with rejects.open(newline="") as f:
        got = [(r["line"], r["reason"], r["column"], r["value"]) for r in csv.DictReader(f)]
    assert got == [
        ("5", "malformed", "Last", ""),
        ("7", "outside_hours", "Time", "16:20:00"),
        ("9", "crossed_book", "Bid", "48000"),
        ("11", "duplicate", "", ""),
        ("14", "volume_backwards", "Vol", "1"),
        ("17", "wrong_exchange", "Exch", "XXXX"),
    ]
    assert "cu.csv:5: malformed in column Last (''): empty: a row needs its last price" in err
    summary = out.splitlines()[0]
    assert summary.startswith("40 rows read, 34 ticks written, dropped: crossed_book 1, "
                              "duplicate 1, malformed 1, outside_hours 1, volume_backwards 1, "
                              "wrong_exchange 1;")  # fmt: skip
    assert f"rejects: 6 rows in {rejects}" in out
    assert len(journal(tmp_path / "out" / "20190916")) == 34


def test_inspect_shows_the_first_rows_as_the_mapping_reads_them(tmp_path: Path) -> None:
    rows = [as_vendor(r) for r in cu_rows()[:12]]
    rows[1] = (*rows[1][:1], "XXXX", *rows[1][2:])
    vendor = write_vendor(tmp_path / "cu.csv", rows)
    done = run_hft("import", "-f", "csv", "--mapping", str(mapping_file(tmp_path)),
                   str(vendor), "--inspect")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"{vendor}: the first 10 rows as read"
    first = cu_rows()[0]
    assert lines[1] == (
        f"  line 2: TradingDay=20190916  ActionDay=20190916  UpdateTime={first['UpdateTime']}  "
        f"UpdateMillisec={int(first['UpdateMillisec'])}  InstrumentID=cu1909  ExchangeID=SHFE  "
        f"LastPrice={first['LastPrice']}  Volume={first['Volume']}  "
        f"BidPrice1={first['BidPrice1']}  AskPrice1={first['AskPrice1']}  SettlementPrice=nan"
    )
    assert lines[2] == "    -> trading day 20190916, open"
    assert lines[4].startswith("    -> wrong_exchange in column Exch ('XXXX'): the calendar has")
    assert len(lines) == 21
    assert not (tmp_path / "out").exists()


def test_the_documented_vendor_example_imports_as_the_docs_say(tmp_path: Path) -> None:
    """docs/import-mapping.md's example, from docs/examples: the DCE rows on the Friday
    evening, 95 ms as 95 ms, the CFFEX post-close row as the settlement record."""
    examples = ROOT / "docs" / "examples"
    code, out, err = run_import(tmp_path, examples / "vendor-ticks.csv",
                                mapping=examples / "vendor-mapping.toml")  # fmt: skip
    assert code == 0, err
    assert "4 rows read, 4 ticks written (1 settlement records)" in out
    dce = journal(tmp_path / "out" / "20170417")
    assert [r["exchange_time"] for r in dce] == [
        "2017-04-14T21:00:01.000+08:00",
        "2017-04-14T23:29:59.500+08:00",
    ]
    (cu,) = journal(tmp_path / "out" / "20190916")
    assert (cu["exchange"], cu["exchange_time"]) == ("SHFE", "2019-09-16T14:01:00.095+08:00")
    (settled,) = journal(tmp_path / "out" / "20210104")
    assert (settled["flags"], settled["settlement"]) == ("8", "5278.6")


def test_a_wrong_jobs_count_or_no_out_is_one_clear_line(tmp_path: Path) -> None:
    src = str(MARKET / "cu1909_20190916.csv.gz")
    for args, message in (
        (("-o", str(tmp_path / "o"), "--jobs", "0"), "hft import: error: --jobs 0: give 1 or more"),
        ((), "hft import: error: --out DIR is needed: where the trading days' journals go"),
    ):
        done = run_hft("import", "-f", "ctp-csv", src, *args)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "o").exists()


def test_a_file_of_a_header_alone_imports_nothing_and_says_so(tmp_path: Path) -> None:
    vendor = write_vendor(tmp_path / "empty.csv", [])
    code, out, err = run_import(tmp_path, vendor)
    assert code == 1
    assert "0 rows read, 0 ticks written" in out
    assert err.strip().splitlines() == ["nothing was imported: the files hold no rows"]
