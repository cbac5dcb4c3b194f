"""``hft bench paper``: the paper simulator's cost per tick with 0, 10 and 100 resting orders.

The real IF2101 day (the bundled recording) is fed to ``PaperBroker.on_tick`` after ``N`` limit
orders were placed away from the market (half bids 20 to 70 ticks below the first best bid, half
asks as far above the best ask: they rest all day and are moved in their queues by every snapshot
that shows their level). Figure: the time of the whole day divided by its ticks, median of the
runs; ``events`` is called after every tick as the engine does.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from contracts.calendar import load_calendar
from contracts.config import PaperConfig
from contracts.logs import configure
from libshm import JournalReader, Tick, decode_tick
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.ledger import Rates, Spec
from services.engine.orders import Order
from services.md_recorder.importer import import_files

DATA = Path(__file__).resolve().parent.parent / "data" / "market"
IF = Spec("IF2101", "CFFEX", 300, 0.2, Rates(margin_rate=0.12, open_rate=0.000023))
INSTANT = PaperConfig.instant()


def _day(root: Path) -> list[Tick]:
    import_files([DATA / "IF2101_20210104.csv.gz"], "ctp-csv", root, load_calendar())
    reader = JournalReader(root / "20210104")
    ticks = []
    while (frame := reader.read()) is not None:
        ticks.append(decode_tick(frame.payload))
    return ticks


def per_tick(ticks: list[Tick], resting: int) -> float:
    """Nanoseconds per tick of ``on_tick`` plus ``events`` with ``resting`` orders working."""
    broker = PaperBroker({"IF2101": IF}, {}, INSTANT)
    broker.open_day(20210104, [], 1e12)
    start = next(i for i, t in enumerate(ticks) if t.bid_price1 == t.bid_price1)  # not NaN
    first = ticks[start]
    broker.on_tick(first, first.local_time_ns)
    for k in range(resting):
        buy = k % 2 == 0
        away = (20 + k // 2 % 50) * IF.price_tick
        price = round(first.bid_price1 - away if buy else first.ask_price1 + away, 1)
        order = Order(f"r{k}", "a", "IF2101", "buy" if buy else "sell", "open", price, 1)
        broker.submit(order, first.local_time_ns)
    broker.events(first.local_time_ns)
    on_tick, events = broker.on_tick, broker.events
    rest = ticks[start + 1 :]
    t0 = time.perf_counter_ns()
    for tick in rest:
        now = tick.local_time_ns
        on_tick(tick, now)
        events(now)
    return (time.perf_counter_ns() - t0) / len(rest)


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hft bench paper", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    args = parser.parse_args(argv)
    configure("bench", "warning")
    with tempfile.TemporaryDirectory() as tmp:
        ticks = _day(Path(tmp))
    print(f"hft bench paper: runs={args.runs}, {len(ticks):,} ticks of IF2101 2021-01-04")
    for resting in (0, 10, 100):
        figure = statistics.median(per_tick(ticks, resting) for _ in range(args.runs))
        label = f"paper simulator, per tick, {resting} resting orders (µs)"
        print(f"  {label:<70} {figure / 1000:>10.2f}")
    return 0
