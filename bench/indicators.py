"""``hft bench indicators``: what each streaming indicator (``services.engine.indicators``) costs
per update, on the real IF2101 day of 2021-01-04 (27,953 ticks; its 240 minute bars for the bar
indicators, each bar fed as often as there are ticks).

For each indicator, the loop ``for x in inputs: update(x)`` over the day is timed ``--runs``
times; the figure is the median, less the same loop calling a function that does nothing
(``floor``, printed first), so it is the indicator's own work as a strategy's ``on_tick`` would
pay it. A strategy that does not use an indicator pays nothing: they are a library, not part of
the engine's tick path.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libshm import FLAG_SETTLEMENT, JournalReader, Tick, decode_tick

DATA = Path(__file__).resolve().parent.parent / "data" / "market"
NS = 1_000_000_000


def _ticks() -> list[Tick]:
    from contracts.calendar import load_calendar
    from services.md_recorder.importer import import_files

    with tempfile.TemporaryDirectory() as tmp:
        import_files([DATA / "IF2101_20210104.csv.gz"], "ctp-csv", Path(tmp), load_calendar())
        reader = JournalReader(Path(tmp) / "20210104")
        ticks = [decode_tick(f.payload) for f in iter(reader.read, None)]
        reader.close()
    return [t for t in ticks if not t.flags & FLAG_SETTLEMENT]


def cases(ticks: list[Tick]) -> dict[str, tuple[Callable[[], Any], str]]:
    """name -> (a factory of the indicator's bound update, which inputs it takes)."""
    from services.engine import indicators as ind

    def one(make: Callable[[], Any]) -> Callable[[], Any]:
        return lambda: make().update

    return {
        "SMA(20)": (one(lambda: ind.SMA(20)), "price"),
        "EMA(20)": (one(lambda: ind.EMA(20)), "price"),
        "StdDev(20)": (one(lambda: ind.StdDev(20)), "price"),
        "RSI(14)": (one(lambda: ind.RSI(14)), "price"),
        "MACD(12,26,9)": (one(ind.MACD), "price"),
        "Bollinger(20,2)": (one(ind.Bollinger), "price"),
        "ATR(14)": (one(lambda: ind.ATR(14)), "bar3"),
        "Donchian(20)": (one(lambda: ind.Donchian(20)), "bar2"),
        "spread": (lambda: ind.spread, "tick"),
        "mid": (lambda: ind.mid, "tick"),
        "microprice": (lambda: ind.microprice, "tick"),
        "book_imbalance(5)": (lambda: lambda t: ind.book_imbalance(t, 5), "tick"),
        "OFI(50)": (one(lambda: ind.OFI(50)), "tick"),
        "VWAP(60 s)": (one(lambda: ind.VWAP(60 * NS, 300)), "tick"),
        "TWAP(60 s)": (one(lambda: ind.TWAP(60 * NS)), "time_price"),
        "RealisedVol(240)": (one(lambda: ind.RealisedVol(240)), "price"),
        "KyleLambda(500)": (one(lambda: ind.KyleLambda(500, 300)), "tick"),
        "Amihud(30)": (one(lambda: ind.Amihud(30)), "bar_turnover"),
        "RollSpread(200)": (one(lambda: ind.RollSpread(200)), "price"),
    }


def inputs(ticks: list[Tick]) -> dict[str, list[Any]]:
    minute: dict[int, list[Tick]] = {}
    for t in ticks:
        minute.setdefault(t.exchange_time_ns // (60 * NS), []).append(t)
    bars = [(max(x.last for x in ts), min(x.last for x in ts), ts[-1].last, ts[-1].turnover)
            for ts in minute.values()]  # fmt: skip
    repeat = len(ticks) // len(bars) + 1
    bars = (bars * repeat)[: len(ticks)]
    return {
        "price": [(t.last,) for t in ticks],
        "tick": [(t,) for t in ticks],
        "time_price": [(t.exchange_time_ns, t.last) for t in ticks],
        "bar3": [b[:3] for b in bars],
        "bar2": [b[:2] for b in bars],
        "bar_turnover": [(b[2], b[3]) for b in bars],
    }


def _time(update: Callable[..., Any], values: list[Any]) -> float:
    start = time.perf_counter_ns()
    for x in values:
        update(*x)
    return (time.perf_counter_ns() - start) / len(values) / 1000


def _nothing(*_: Any) -> None:
    pass


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hft bench indicators", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=5, help="runs per indicator (median)")
    args = parser.parse_args(argv)
    ticks = _ticks()
    given = inputs(ticks)
    print(f"hft bench indicators: {len(ticks):,} IF2101 ticks of 2021-01-04, runs={args.runs}; "
          "µs per update, median, less the floor")  # fmt: skip
    floor = statistics.median(_time(_nothing, given["price"]) for _ in range(args.runs))
    print(f"  {'floor (a call that does nothing)':<34} {floor:6.3f} µs")
    for name, (make, kind) in cases(ticks).items():
        times = [_time(make(), given[kind]) for _ in range(args.runs)]
        print(f"  {name:<34} {statistics.median(times) - floor:6.3f} µs")
    return 0
