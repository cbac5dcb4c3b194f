"""A recorded day's ticks through the engine, as the live loop runs a backlog: the backtest's
inner loop, compiled (``native.py``); ``backtest.Backtest`` opens and ends each day around it."""

from __future__ import annotations

import gc
from collections.abc import Callable

from libshm import JournalReader
from services.engine.core import Engine
from services.engine.live import GC_YOUNG, fire_timer

__all__ = ["run_ticks"]


def run_ticks(  # noqa: PLR0917
    engine: Engine, reader: JournalReader, due: int, step: int, sample: int, every: int,
    at_sample: Callable[[int], None], at_timer: Callable[[], None],
) -> int:  # fmt: skip
    """Every tick ``reader`` holds, each after the timer's call if one fell due before it
    (``live.fire_timer``, on the grid of ``step`` from ``due``). ``at_sample(time)`` after the
    first tick at or past each multiple of ``every`` from ``sample``, ``at_timer()`` after each
    timer's turn. Between batches of ticks, the young objects are collected once there are
    ``GC_YOUNG`` of them (the backtest turns automatic collection off, as the live loop does).
    Returns the timer's next due time."""
    while True:
        if gc.get_count()[0] >= GC_YOUNG:  # automatic collection is off (backtest.run)
            gc.collect(1)
        seq, ticks = reader.next_ticks()
        if not ticks:
            return due
        for tick in ticks:
            tick_time = tick.local_time_ns
            if tick_time > due:
                due = fire_timer(engine, due, step, tick_time - 1)
                at_timer()
            engine.on_tick(tick, seq)
            seq += 1
            if tick_time >= sample:
                at_sample(tick_time)
                sample = (tick_time // every + 1) * every
