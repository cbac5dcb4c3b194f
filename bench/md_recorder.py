"""``hft bench md_recorder``: CTP struct to committed frame, and import throughput.

- struct to frame: a real ``CThostFtdcDepthMarketDataField`` (filled from the bundled IF2101 day)
  goes through the SPI callback (values copied, receive time stamped, queued), is taken off the
  queue, normalised, filtered, appended to the journal and published in the snapshot table; the
  time from the callback's start to the commit, per tick, in one thread (the wake-up of the service
  thread by the queue is not included).
- import: ``hft import`` of a whole-market-like file: the three bundled IF2101 days copied as
  twelve instruments (IF2101..IF2112, 1,012,164 rows, 235 MB of CTP CSV), rows per second, as
  ``ctp-csv`` and as a vendor's CSV through a mapping (separate date, time and millisecond
  columns, ISO dates, a translated exchange code), each by the columnar path and, on the first
  84,347 rows, by the per-row path it is tested against (the ratio in one run); and the CTP CSV
  as two files read by two worker processes.
- replay: a recorded day of about 1,000,000 ticks published at maximum pace into a new live
  journal and the snapshot table (journal opening included).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from contracts.calendar import load_calendar
from contracts.ctp_locale import has_locale
from contracts.logs import get_logger
from contracts.ticks import TickStore
from libshm import TICK_LAYOUT, JournalReader, JournalWriter
from services.md_recorder.importer import import_files
from services.md_recorder.mapping import load_mapping
from services.md_recorder.normalise import CTP_FIELDS
from services.md_recorder.recorder import Recorder
from services.md_recorder.replay import ReplaySource

DATA = Path(__file__).resolve().parent.parent / "data" / "market"
IF_DAYS = sorted(DATA.glob("IF2101_*.csv.gz"))


def _rows(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt", newline="") as f:
        reader = csv.reader(f)
        next(reader)
        return list(reader)


def bench_struct_to_frame(root: Path, runs: int) -> dict[str, float]:
    from openctp_ctp import mdapi

    from services.md_recorder.ctp import CtpMdSource

    fields = []
    for row in _rows(IF_DAYS[0]):
        field = mdapi.CThostFtdcDepthMarketDataField()
        for i, name in enumerate(CTP_FIELDS):
            value: Any = row[i]
            if i >= 6:
                value = int(value) if "Volume" in name else float(value)
            elif name == "UpdateMillisec":
                value = int(value)
            setattr(field, name, value)
        fields.append(field)
    p50s, p99s, maxes = [], [], []
    calendar = load_calendar()
    for run in range(runs):
        source = CtpMdSource(
            ["tcp://127.0.0.1:1"], "b", "u", "p", ["IF2101"], root / f"flow{run}", log=get_logger()
        )
        store = TickStore(root / f"ring{run}", root / f"rec{run}")
        recorder = Recorder(calendar, store, root / f"snap{run}", check_local_time=False)
        spi, get, record = source.spi, source.events.get_nowait, recorder.record
        clock = time.perf_counter_ns
        costs = np.zeros(len(fields), dtype=np.int64)
        for i, field in enumerate(fields):
            start = clock()
            spi.OnRtnDepthMarketData(field)
            event = get()
            record(event[1], event[2])
            costs[i] = clock() - start
        recorder.close()
        costs_us = costs / 1000.0
        p50s.append(float(np.percentile(costs_us, 50)))
        p99s.append(float(np.percentile(costs_us, 99)))
        maxes.append(float(costs_us.max()))
    return {
        "CTP struct to committed frame, p50 (µs)": statistics.median(p50s),
        "CTP struct to committed frame, p99 (µs)": statistics.median(p99s),
        "CTP struct to committed frame, max (µs)": statistics.median(maxes),
    }


VENDOR_MAPPING = DATA.parent.parent / "docs" / "examples" / "vendor-mapping.toml"
COPIES = 12


def _big_files(root: Path) -> list[Path]:
    """[CTP CSV, vendor CSV, their first 84,347 rows as small files, the CTP CSV in two
    halves] of the bundled days copied as ``COPIES`` instruments."""
    rows: list[list[str]] = []
    for path in IF_DAYS:
        rows.extend(_rows(path))
    header = list(CTP_FIELDS)
    col = {name: i for i, name in enumerate(header)}
    vendor_header = ["Code", "Exch", "TradingDate", "Date", "Time", "Ms", "Last", "Vol", "Amount",
                     "OI", "Bid", "BidVol", "Ask", "AskVol", "Settle"]  # fmt: skip

    def dashed(day: str) -> str:
        return f"{day[:4]}-{day[4:6]}-{day[6:]}"

    def vendor(row: list[str]) -> list[str]:
        return [row[col["InstrumentID"]], "CCFX", dashed(row[0]), dashed(row[1]), row[2],
                str(int(row[3])), row[col["LastPrice"]], row[col["Volume"]],
                row[col["Turnover"]], row[col["OpenInterest"]], row[col["BidPrice1"]],
                row[col["BidVolume1"]], row[col["AskPrice1"]], row[col["AskVolume1"]],
                row[col["SettlementPrice"]]]  # fmt: skip

    names = ("big-ctp.csv", "big-vendor.csv", "small-ctp.csv", "small-vendor.csv",
             "half1-ctp.csv", "half2-ctp.csv")  # fmt: skip
    paths = [root / name for name in names]
    files = [p.open("w", newline="") for p in paths]
    writers = [csv.writer(f) for f in files]
    for k in (0, 2, 4, 5):
        writers[k].writerow(header)
    writers[1].writerow(vendor_header), writers[3].writerow(vendor_header)
    for copy in range(1, COPIES + 1):
        for source in rows:
            row = [*source[:4], f"IF21{copy:02d}", *source[5:]]
            writers[0].writerow(row)
            writers[1].writerow(vendor(row))
            writers[4 if copy <= COPIES // 2 else 5].writerow(row)
            if copy == 1:
                writers[2].writerow(row)
                writers[3].writerow(vendor(row))
    for f in files:
        f.close()
    return paths


def bench_import(root: Path, runs: int) -> dict[str, float]:
    calendar = load_calendar()
    big_ctp, big_vendor, small_ctp, small_vendor, *halves = _big_files(root)
    mapping = load_mapping(VENDOR_MAPPING)
    results: dict[str, float] = {}
    for label, paths, fmt, columnar, workers in (
        ("ctp-csv, 1,012,164 rows, columnar", [big_ctp], "ctp-csv", True, 1),
        ("ctp-csv, the same in 2 files, 2 processes", halves, "ctp-csv", True, 2),
        ("mapped csv, 1,012,164 rows, columnar", [big_vendor], "csv", True, 1),
        ("ctp-csv, 84,347 rows, columnar", [small_ctp], "ctp-csv", True, 1),
        ("ctp-csv, 84,347 rows, per row", [small_ctp], "ctp-csv", False, 1),
        ("mapped csv, 84,347 rows, columnar", [small_vendor], "csv", True, 1),
        ("mapped csv, 84,347 rows, per row", [small_vendor], "csv", False, 1),
    ):
        rates = []
        for run in range(runs):
            out = root / f"import-{fmt}-{columnar}-{workers}-{run}"
            start = time.perf_counter()
            report = import_files(paths, fmt, out, calendar, mapping=mapping, columnar=columnar,
                                  workers=workers)  # fmt: skip
            rates.append(report.rows / (time.perf_counter() - start))
            shutil.rmtree(out)
        results[f"import {label} (rows/s)"] = statistics.median(rates)
    return results


def bench_replay(root: Path, runs: int) -> dict[str, float]:
    """Replay one recorded day of 1,000,000 ticks (the bundled IF2101 day repeated, each copy
    later than the one before) at maximum pace into a new live journal and the snapshot table."""
    calendar = load_calendar()
    imported = root / "imported"
    import_files(IF_DAYS[:1], "ctp-csv", imported, calendar)
    day: Any = JournalReader(imported / "20210104").read_array(100_000)["payload"].copy()
    recording = root / "replay-source" / "20210104"
    with JournalWriter(recording, layout=TICK_LAYOUT) as writer:
        copies, span = 0, int(day["exchange_time_ns"][-1] - day["exchange_time_ns"][0]) + 1
        while copies * len(day) < 1_000_000:
            shifted = day.copy()
            shifted["exchange_time_ns"] += copies * span
            shifted["local_time_ns"] += copies * span
            writer.append_array(shifted, shifted["local_time_ns"])
            copies += 1
    total = copies * len(day)
    rates = []
    for run in range(runs):
        store = TickStore(root / f"replay-ring{run}", root / f"replayed{run}")
        source = ReplaySource(recording, pace="max", into=store)
        recorder = Recorder(calendar, store, root / f"replay-snap{run}")
        start = time.perf_counter()
        source.start()
        published = 0
        while not source.finished:
            published += source.poll(1.0, recorder.write_array)
        recorder.close()
        assert published == total
        rates.append(published / (time.perf_counter() - start))
    return {f"replay at maximum pace, {total:,} ticks (ticks/s)": statistics.median(rates)}


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="hft bench md_recorder", description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--dir", default="/dev/shm", help="where the journals go")
    args = parser.parse_args(argv)
    print(f"hft bench md_recorder: runs={args.runs}, journals in {args.dir}")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        results: dict[str, float] = {}
        if has_locale():
            results.update(bench_struct_to_frame(root, args.runs))
        else:
            print("  (CTP struct figures skipped: no zh_CN.GB18030 locale)")
        results.update(bench_import(root, args.runs))
        results.update(bench_replay(root, args.runs))
    for label, value in results.items():
        shown = f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"
        print(f"  {label:<60} {shown:>12}")
    return 0
