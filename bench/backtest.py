"""``hft bench backtest``: a backtest from a journal on disk to its result, on about a million
real ticks, against the plain-Python floor measured in the same run.

The ticks: the three bundled IF2101 days (2021-01-04 to 06), copied week after week into new
trading days (times shifted by whole weeks) until ``--ticks`` is reached, written as recordings.
Each case runs ``--runs`` times in a fresh process; figures are medians, peak memory the largest;
the imports (``load``) are timed apart and not counted in the rate:

- ``floor``: struct over the mapped journal (``TICK_STRUCT.iter_unpack`` of each batch) and one
  Python call per tick: what any Python backtester pays at least.
- ``nothing``: ``Backtest`` with an agent that does nothing.
- ``bars``: ``Backtest`` with an agent that subscribes to IF2101's 1-minute, 5-minute, 1-hour
  and daily K-lines and does nothing with them (its cost over ``nothing`` is building them).
- ``quoter``: ``Backtest`` with an agent that quotes one lot at the best bid and the best ask and
  re-quotes whenever either moves (cancel, then a new order once the cancel is answered).

Both backtests run the whole engine (risk gate on, with limits raised so that it refuses nothing
a backtester without one would accept; ledger; paper simulator with its default queue model and
latencies; the engine journal written to disk) and end with the results' statistics computed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from contracts.calendar import load_calendar
from libshm import JournalReader, JournalWriter, Tick
from libshm.record import TICK_LAYOUT, TICK_STRUCT

DATA = Path(__file__).resolve().parent.parent / "data" / "market"
SOURCE_DAYS = ("IF2101_20210104.csv.gz", "IF2101_20210105.csv.gz", "IF2101_20210106.csv.gz")
CASES = ("floor", "nothing", "bars", "quoter")
WEEK_NS = 7 * 86_400 * 1_000_000_000

CONFIG = """\
[suite]
name = "bench"
mode = "replay"
journal_dir = "journal"
shm_dir = "shm"

[md_recorder]
source = "replay"

[md_recorder.replay]
recording = "{recordings}"

[engine]
adapter = "paper"
command_endpoint = "tcp://127.0.0.1:0"

[engine.risk]
max_order_volume = 1000
max_orders_per_second = 100000
account_orders_per_second = 100000
max_position = 1000000
max_net_position = 1000000
max_margin_ratio = 1.0
max_daily_loss = 1e15
cancel_limit = 100000000
max_cancel_ratio = 1e9
price_band = 1.0
duplicate_window_ms = 0
self_trade = false

[engine.products.IF]
margin_rate = 0.12
open_rate = 0.000023
close_rate = 0.000023
close_today_rate = 0.000345
"""


def make_recordings(root: Path, ticks: int) -> tuple[Path, int]:
    """Recordings of at least ``ticks`` ticks under ``root/recordings``; returns the directory
    and the count."""
    from services.md_recorder.importer import import_files

    source = root / "source"
    import_files([DATA / name for name in SOURCE_DAYS], "ctp-csv", source, load_calendar())
    days = []
    for name in sorted(p.name for p in source.iterdir()):
        reader = JournalReader(source / name)
        parts = []
        while len(batch := reader.read_array()):
            parts.append(batch["payload"].copy())
        reader.close()
        days.append((int(name), np.concatenate(parts)))
    out = root / "recordings"
    total, week = 0, 0
    while total < ticks:
        for day, records in days:
            if total >= ticks:
                break
            shifted = records.copy()
            shifted["local_time_ns"] += week * WEEK_NS
            shifted["exchange_time_ns"] += week * WEEK_NS
            date = dt.datetime.strptime(str(day), "%Y%m%d").date() + dt.timedelta(weeks=week)
            trading_day = int(date.strftime("%Y%m%d"))
            shifted["trading_day"] = trading_day
            writer = JournalWriter(out / str(trading_day), layout=TICK_LAYOUT)
            writer.append_array(shifted, shifted["local_time_ns"])
            writer.close()
            total += len(shifted)
        week += 1
    return out, total


def _floor(recordings: Path) -> int:
    seen = 0

    def on_tick(values: tuple[Any, ...]) -> None:
        nonlocal seen
        seen += 1

    for path in sorted(recordings.iterdir()):
        reader = JournalReader(path)
        while len(batch := reader.read_array()):
            for values in TICK_STRUCT.iter_unpack(batch["payload"].tobytes()):
                on_tick(values)
        reader.close()
    return seen


def _load() -> None:
    """What a backtest imports (pandas among them), timed apart from the run."""
    import services.engine.backtest  # noqa: F401


def _backtest(case: str, recordings: Path, work: Path) -> int:
    from contracts.config import load_config
    from contracts.logs import configure
    from services.engine import Backtest, Strategy

    class Idle(Strategy):
        def on_tick(self, tick: Tick) -> None:
            pass

    class Bars(Idle):
        def on_start(self) -> None:
            for period in ("1m", "5m", "1h", "1d"):
                self.subscribe_bars("IF2101", period)

        def on_bar(self, bar: Any) -> None:
            pass

    class BestQuoter(Strategy):
        """One lot at the best bid and one at the best ask; when either moves, the order there
        is cancelled and a new one sent at once."""

        def on_start(self) -> None:
            self.quotes: dict[str, tuple[str, float]] = {}  # side -> (order id, price)

        def on_tick(self, tick: Tick) -> None:
            bid, ask = tick.bid_price1, tick.ask_price1
            if math.isnan(bid) or math.isnan(ask):
                return
            quotes = self.quotes
            for direction, price in (("buy", bid), ("sell", ask)):
                quote = quotes.get(direction)
                if quote is not None:
                    if quote[1] == price:
                        continue
                    self.cancel(quote[0])
                sent = self.send_order(tick.instrument, direction, price, 1)  # type: ignore[arg-type]
                if sent:
                    quotes[direction] = (sent[0], price)
                else:
                    quotes.pop(direction, None)

    configure("bench", "error")
    (work / "deploy.toml").write_text(CONFIG.format(recordings=recordings), encoding="utf-8")
    bt = Backtest(load_config(work / "deploy.toml"), journal=work / "engine")
    # capital enough for any position the quoter's fills add up to: the peers check none
    cls = {"nothing": Idle, "bars": Bars}.get(case, BestQuoter)
    bt.add_strategy(cls, instruments=["IF2101"], capital=1e12)
    result = bt.run(progress=False)
    stats = result.stats
    print(f"orders={stats['orders']} cancels={stats['cancel_requests']} fills={stats['fills']}",
          file=sys.stderr)  # fmt: skip
    return _ticks_of(recordings)


def _ticks_of(recordings: Path) -> int:
    count = 0
    for path in sorted(recordings.iterdir()):
        reader = JournalReader(path)
        while len(batch := reader.read_array()):
            count += len(batch)
        reader.close()
    return count


def child(case: str, recordings: Path) -> dict[str, float]:
    """One case in this process: the imports' seconds, then the run's ticks, wall and CPU
    seconds, and the peak memory."""
    load = time.perf_counter()
    if case != "floor":
        _load()
    load = time.perf_counter() - load
    with tempfile.TemporaryDirectory() as tmp:
        wall, cpu = time.perf_counter(), time.process_time()
        ticks = _floor(recordings) if case == "floor" else _backtest(case, recordings, Path(tmp))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"ticks": ticks, "load_s": load, "wall_s": wall, "cpu_s": cpu, "peak_mb": peak_mb()}


def peak_mb() -> float:
    """This process's peak resident memory (VmHWM: its own, where ``ru_maxrss`` also counts
    the parent's memory before ``exec``)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hft bench backtest", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--ticks", type=int, default=1_000_000, help="ticks to backtest")
    parser.add_argument("--runs", type=int, default=3, help="runs per case (median)")
    parser.add_argument("--cases", default=",".join(CASES),
                        help=f"which of {', '.join(CASES)} (comma-separated)")  # fmt: skip
    parser.add_argument("--child", nargs=2, metavar=("CASE", "RECORDINGS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child[0], Path(args.child[1]))))
        return 0
    cases = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(cases) - set(CASES))
    if unknown:
        parser.error(f"--cases: unknown {', '.join(unknown)}; choose from {', '.join(CASES)}")
    with tempfile.TemporaryDirectory() as tmp:
        recordings, total = make_recordings(Path(tmp), args.ticks)
        print(f"hft bench backtest: {total:,} IF2101 ticks ({len(list(recordings.iterdir()))} "
              f"trading days), runs={args.runs}, each in a fresh process")  # fmt: skip
        figures: dict[str, list[dict[str, float]]] = {c: [] for c in cases}
        for _ in range(args.runs):  # interleaved: the machine's load falls on every case alike
            for case in cases:
                done = subprocess.run(
                    [sys.executable, "-m", "bench.backtest", "--child", case, str(recordings)],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                if done.returncode != 0:
                    print(done.stderr[-3000:], file=sys.stderr)
                    return 1
                figures[case].append(json.loads(done.stdout.strip().splitlines()[-1]))
    floor = None
    for case in cases:
        rows = figures[case]
        rate = statistics.median(r["ticks"] / r["wall_s"] for r in rows)
        cpu_us = statistics.median(r["cpu_s"] / r["ticks"] * 1e6 for r in rows)
        peak = max(r["peak_mb"] for r in rows)
        load = statistics.median(r["load_s"] for r in rows)
        floor = rate if case == "floor" else floor
        share = f"{rate / floor:7.1%} of the floor" if floor else ""
        print(f"  {case:<8} {rate:>12,.0f} ticks/s  {cpu_us:8.2f} µs CPU a tick  "
              f"peak {peak:7.0f} MB  load {load:5.2f} s  {share}")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(run())
