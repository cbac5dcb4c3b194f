"""``hft bench md_recorder``: CTP struct to committed frame, and import throughput.

- struct to frame: a real ``CThostFtdcDepthMarketDataField`` (filled from the bundled IF2101 day)
  goes through the SPI callback (values copied, receive time stamped, queued), is taken off the
  queue, normalised, filtered, appended to the journal and published in the snapshot table; the
  time from the callback's start to the commit, per tick, in one thread (the wake-up of the service
  thread by the queue is not included).
- import: ``hft import`` of the three bundled IF2101 days (84,347 rows), rows per second.
- replay: a recorded day of about 1,000,000 ticks published at maximum pace into a new live
  journal and the snapshot table (journal opening included).
"""

from __future__ import annotations

import argparse
import csv
import gzip
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


def bench_import(root: Path, runs: int) -> dict[str, float]:
    calendar = load_calendar()
    rates = []
    for run in range(runs):
        start = time.perf_counter()
        report = import_files(IF_DAYS, "ctp-csv", root / f"import{run}", calendar)
        rates.append(report.rows / (time.perf_counter() - start))
    return {"import ctp-csv, 3 IF2101 days (rows/s)": statistics.median(rates)}


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
