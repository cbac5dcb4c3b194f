"""``Backtest``: the live engine's own code over recorded days, in-process, on the ticks' clock
(docs/backtest.md). It is the live loop's backlog path with no wall clock and no socket: each day
a fresh engine (``live.assemble``) opens at its first tick, the timer fires on its grid before a
tick that passes it (``live.fire_timer``), the day ends at its ticks' time (``live.end_of_day``)
and rolls to the next with the live roll's settlements. So a backtest writes, frame for frame,
the engine journal ``hft engine`` writes for the same finished recording.

Built so far: the run and its engine journal, per day. Results as DataFrames, statistics,
reports, sweeps and the speed work are issue 16's next steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from contracts import messages as m
from contracts.config import DeploymentConfig, load_config
from contracts.errors import UserError
from contracts.ticks import TickStore
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine
from services.engine.live import assemble, end_of_day, fire_timer, prepare, settlements_of

__all__ = ["Backtest", "BacktestRun"]


@dataclass
class BacktestRun:
    """What a backtest wrote: each trading day's engine journal (encoded messages, in order)."""

    journals: dict[int, list[bytes]] = field(default_factory=dict)

    def messages(self, day: int) -> list[m.EngineMessage]:
        return [m.decode(frame) for frame in self.journals[day]]


class Backtest:
    """A deployment's agents over its recorded days (``suite.journal_dir/recordings`` and the
    rings of ``suite.shm_dir``), with its products, risk limits and paper simulator."""

    def __init__(self, config: DeploymentConfig, *, days: Iterable[int] | None = None,
                 log: Any = None) -> None:  # fmt: skip
        self.config = config
        ec = config.engine
        if ec.adapter != "paper":
            raise UserError("a backtest trades on the paper simulator: set engine.adapter = "
                            '"paper" (its [engine.paper] section sets the fill model)')  # fmt: skip
        self.specs, self.phases, self.classes = prepare(config)
        self.store = TickStore.of(config.suite.shm_dir, config.suite.journal_dir)
        recorded = self.store.days()
        self.days = sorted(recorded if days is None else set(days))
        missing = sorted(set(self.days) - set(recorded))
        if missing:
            raise UserError(f"no recording of {', '.join(map(str, missing))} in "
                            f"{self.store.recordings}; recorded: "
                            f"{', '.join(map(str, recorded)) or 'none'}")  # fmt: skip
        self.log = log or structlog.get_logger("backtest")

    @classmethod
    def from_config(cls, path: str | Path, **kwargs: Any) -> Backtest:
        return cls(load_config(path), **kwargs)

    def run(self, progress: Callable[[int, int], object] | None = None) -> BacktestRun:
        """Every day in order; ``progress(day, ticks)`` after each day."""
        result = BacktestRun()
        holdings: list[m.Holding] = []
        cash: dict[str, float] = {}
        step = self.config.engine.timer_ms * 1_000_000
        for i, day in enumerate(self.days):
            frames = result.journals.setdefault(day, [])

            def journal(data: bytes, _time: int, out: list[bytes] = frames) -> None:
                out.append(bytes(data))

            engine = assemble(self.config, self.specs, self.phases, self.classes,
                              PaperBroker(self.specs, self.phases, self.config.engine.paper),
                              journal, self.log)  # fmt: skip
            last = self._day(engine, day, holdings, cash, step)
            if i + 1 < len(self.days):
                engine.roll_day(engine.now, self.days[i + 1], settlements_of(engine))
                holdings, cash = engine.holdings()
            engine.stop()
            if progress is not None:
                progress(day, last)
        return result

    def _day(self, engine: Engine, day: int, holdings: list[m.Holding], cash: dict[str, float],
             step: int) -> int:  # fmt: skip
        """One day as the live loop runs a backlog; returns the ticks handled."""
        reader = self.store.open(day)
        try:
            start = reader.peek_time()
            if start is None:
                raise UserError(f"{self.store.where(day)}: the recording holds no tick")
            engine.open_day(day, start, reader.next_seq, holdings, cash)
            due = (engine.now // step + 1) * step  # the timer's grid, as live
            last = engine.now
            read, on_tick = reader.next_tick, engine.on_tick
            while (item := read()) is not None:
                tick_time = item[1].local_time_ns
                if tick_time > due:
                    due = fire_timer(engine, due, step, tick_time - 1)
                on_tick(item[1], item[0])
                last = tick_time
            end_of_day(engine, last, due, step)
            return engine.ticks
        finally:
            reader.close()
