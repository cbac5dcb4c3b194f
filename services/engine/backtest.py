"""``Backtest``: the live engine's own code over recorded days, in-process, on the ticks' clock
(docs/backtest.md). It is the live loop's backlog path with no wall clock and no socket: each day
a fresh engine (``live.assemble``) opens at its first tick, the timer fires on its grid before a
tick that passes it (``live.fire_timer``), the day ends at its ticks' time (``live.end_of_day``)
and rolls to the next with the live roll's settlements. So a backtest writes, frame for frame,
the engine journal ``hft engine`` writes for the same finished recording.

The results (``services.engine.results``) are read from that journal as it is written, plus
what a journal does not hold: each agent's equity sampled every ``sample_s`` seconds of market
time with the prices, and each day's close marked to its settlement prices.
"""

from __future__ import annotations

import gc
import importlib.util
import os
import shutil
import sys
import tempfile
import weakref
from collections.abc import Iterable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from tqdm import tqdm

from contracts import messages as m
from contracts.config import AgentConfig, DeploymentConfig, format_validation_error, load_config
from contracts.errors import UserError
from contracts.ticks import TickStore
from libshm import JournalWriter, is_journal
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.collect import Collector
from services.engine.continuous import Continuous, build_continuous
from services.engine.core import Engine
from services.engine.drive import run_ticks
from services.engine.ledger import Spec
from services.engine.live import assemble, day_phases, end_of_day, prepare, settlements_of
from services.engine.results import BacktestResult
from services.engine.strategy import Strategy

__all__ = ["Backtest", "BacktestResult"]

DEFAULT_CAPITAL = 1_000_000.0


class Backtest:
    """A deployment's agents (and those added with :meth:`add_strategy`) over its recorded days
    (``suite.journal_dir/recordings`` and the rings of ``suite.shm_dir``), with its products,
    risk limits and paper simulator.

    ``recordings`` is a directory of recorded days (``YYYYMMDD`` journals, as md_recorder and
    ``hft import`` write them) or one such journal; by default the deployment's own
    (``tick_source``). ``days`` (or ``start``/``end``, trading days as ``YYYYMMDD``, both
    included) choose among them; ``continuous`` names products traded as their continuous
    instrument (``["IF"]``: ``IF888``, the main contract by open interest, rolled as
    ``services.engine.continuous`` says); ``journal`` keeps the engine journal of each day in
    ``journal/YYYYMMDD`` (``hft journal cat``); ``sample_s`` is the equity curve's step in
    market time; ``keep_agents=False`` drops the deployment's own agents."""

    def __init__(
        self, config: DeploymentConfig, *, days: Iterable[int] | None = None,
        start: int | None = None, end: int | None = None, recordings: str | Path | None = None,
        journal: str | Path | None = None, continuous: Iterable[str] = (),
        sample_s: float = 60.0, keep_agents: bool = True, log: Any = None,
    ) -> None:  # fmt: skip
        ec = config.engine
        if ec.adapter != "paper":
            raise UserError("a backtest trades on the paper simulator: set engine.adapter = "
                            '"paper" (its [engine.paper] section sets the fill model)')  # fmt: skip
        self.instruments = list(dict.fromkeys(i for a in ec.agents for i in a.instruments))
        """The deployment's instruments: an added strategy's if it names none."""
        self.strategies: dict[str, Strategy] = {}
        """After ``run``: each agent's strategy object on the last day, to look into."""
        if not keep_agents:
            config = config.model_copy(update={"engine": ec.model_copy(update={"agents": []})})
        self.config = config
        self.given: dict[str, type[Strategy]] = {}
        self.store, only = tick_source(config, recordings)
        recorded = [d for d in self.store.days() if only is None or d == only]
        chosen = set(recorded if days is None else days)
        chosen = {d for d in chosen if (start is None or d >= start) and (end is None or d <= end)}
        self.days = sorted(chosen)
        missing = sorted(set(self.days) - set(recorded))
        if missing or not self.days:
            hint = "" if recorded else (" (record days with md_recorder, or import tick files: "
                                        "hft import -f ctp-csv FILE... -o DIR)")  # fmt: skip
            raise UserError(f"no recording of {', '.join(map(str, missing)) or 'the days asked'} "
                            f"in {self.store.recordings}; recorded: "
                            f"{', '.join(map(str, recorded)) or 'none'}{hint}")  # fmt: skip
        if not sample_s > 0:
            raise UserError(f"sample_s must be above 0 seconds (got {sample_s})")
        self.sample_ns = int(sample_s * 1e9)
        self.journal = Path(journal) if journal is not None else None
        self.log = log or structlog.get_logger("backtest")
        self.series: dict[str, Continuous] = {}
        """The continuous instruments traded (``continuous``), by name (``IF888``)."""
        if continuous:
            made = scratch_dir("hft-continuous")
            weakref.finalize(self, shutil.rmtree, made, ignore_errors=True)  # gone with it
            self.series = build_continuous(self.store, continuous, self.days, made)
            self.store = TickStore(made / ".no-rings", made)
            self.instruments = list(self.series)

    @classmethod
    def from_config(cls, path: str | Path, **kwargs: Any) -> Backtest:
        """The deployment file's agents, products, risk limits and recordings."""
        return cls(load_config(path), **kwargs)

    def add_strategy(
        self, strategy: type[Strategy], *, name: str | None = None,
        instruments: Iterable[str] | None = None, capital: float = DEFAULT_CAPITAL,
        risk: Mapping[str, Any] | None = None, **params: Any,
    ) -> str:  # fmt: skip
        """Run ``strategy`` as one more agent with ``params``; returns its name (the class's
        name, numbered if taken). ``instruments``: those of the deployment's agents (kept or
        not) if not given; ``risk``: this agent's own limits (``engine.agents.risk``)."""
        if not (isinstance(strategy, type) and issubclass(strategy, Strategy)):
            raise UserError(f"add_strategy: {strategy!r} is not a Strategy subclass "
                            "(services.engine.Strategy)")  # fmt: skip
        ec = self.config.engine
        taken = {a.name for a in ec.agents}
        if name is None:
            name, n = strategy.__name__, 1
            while name in taken:
                n += 1
                name = f"{strategy.__name__}-{n}"
        elif name in taken:
            raise UserError(f"add_strategy: an agent named {name!r} exists; choose another name")
        chosen = list(instruments or self.instruments)
        if not chosen:
            raise UserError(f"add_strategy({strategy.__name__}): say which instruments it "
                            "trades (instruments=[...]); the deployment has no agent to take "
                            "them from")  # fmt: skip
        fields = {"name": name, "strategy": f"{strategy.__module__}:{strategy.__name__}",
                  "instruments": chosen, "capital": capital, "params": params,
                  "risk": dict(risk or {})}  # fmt: skip
        where = f"add_strategy({strategy.__name__})"
        try:
            agent = AgentConfig.model_validate(fields)
        except ValidationError as exc:
            raise UserError(format_validation_error(exc, where, root=AgentConfig)) from None
        engine = ec.model_copy(update={"agents": [*ec.agents, agent]})
        self.config = self.config.model_copy(update={"engine": engine})
        self.given[name] = strategy
        return name

    def run(self, progress: bool | None = None) -> BacktestResult:
        """Every day in order; a progress bar (tqdm) on a terminal or in Jupyter unless
        ``progress`` is False (None: when standard error is a terminal or in a notebook)."""
        if not self.config.engine.agents:
            raise UserError("the backtest has no agent: add one with add_strategy(...) or in "
                            "the deployment's [[engine.agents]]")  # fmt: skip
        specs, classes = prepare(self.config, self.given)
        if self.journal is not None:
            taken = [d for d in self.days if (self.journal / str(d)).exists()]
            if taken:
                raise UserError(f"{self.journal}: already holds the engine journal of "
                                f"{', '.join(map(str, taken))}; choose a new directory or "
                                "remove it")  # fmt: skip
        result = self._result(specs)
        collector = result.collector
        bar = _progress_bar(progress)
        holdings: list[m.Holding] = []
        cash: dict[str, float] = {}
        # as the live service (docs/engine.md, "The garbage collector"): what exists now frozen
        # (never scanned again), no automatic collection; drive.run_ticks collects the young
        # objects between its batches of ticks, and each day's end what the day left
        collecting = gc.isenabled()
        gc.collect()
        gc.freeze()
        gc.disable()
        try:
            for i, day in enumerate(self.days):
                gc.collect()  # the days before (all that is not frozen: a day's objects)
                writer = None
                if self.journal is not None:
                    size = self.config.engine.segment_mb << 20
                    # no segment prepared ahead: most days of most backtests fill a fraction
                    # of one, and the spare's 16 MB would be faulted in for nothing each day
                    writer = JournalWriter(self.journal / str(day), layout=m.ENGINE_LAYOUT,
                                           segment_size=size, prepare_ahead=False)  # fmt: skip
                try:
                    phases = day_phases(self.config, specs, day)  # the day's hours
                    engine = assemble(self.config, specs, phases, classes,
                                      PaperBroker(specs, phases, self.config.engine.paper),
                                      writer.append if writer is not None else None, self.log,
                                      collector.message)  # fmt: skip
                    # no shell to interrupt or time an agent (docs/engine.md)
                    engine.shell_calls = False
                    self._day(engine, day, holdings, cash, result, bar)
                    settlements = settlements_of(engine)
                    result.close(day, engine, settlements)
                    if i + 1 < len(self.days):
                        engine.roll_day(engine.now, self.days[i + 1], settlements)
                        holdings, cash = engine.holdings()
                        if self.series:
                            holdings = self._roll_contracts(self.days[i + 1], holdings, cash,
                                                            specs, result)  # fmt: skip
                    result.add_bars(engine)
                    self.strategies = {name: h.strategy for name, h in engine.agents.items()
                                       if h.strategy is not None}  # fmt: skip
                    engine.stop()
                finally:
                    if writer is not None:
                        writer.close()
        finally:
            collector.close()
            gc.unfreeze()
            if collecting:
                gc.enable()
            if bar is not None:
                bar.close()
        return result

    def _result(self, specs: Mapping[str, Spec]) -> BacktestResult:
        """An empty result; its rows go to files (``collect.py``) removed with it."""
        rows = scratch_dir("hft-backtest")
        multipliers = {i: s.multiplier for i, s in specs.items()}
        capital = {a.name: a.capital for a in self.config.engine.agents}
        result = BacktestResult(self.days, capital, multipliers, Collector(rows, multipliers),
                                self.journal)  # fmt: skip
        result.portfolios = {p.name: (p.capital, list(p.agents))
                             for p in self.config.engine.portfolios}  # fmt: skip
        weakref.finalize(result, shutil.rmtree, rows, ignore_errors=True)
        return result

    def _roll_contracts(
        self, day: int, holdings: list[m.Holding], cash: dict[str, float],
        specs: Mapping[str, Spec], result: BacktestResult,
    ) -> list[m.Holding]:  # fmt: skip
        """Positions in a continuous instrument whose main contract changes on ``day``: closed
        in the old contract and opened in the new at their closing prices of the day before,
        both fees paid from ``cash``; the holdings re-based to the new contract's price."""
        out = []
        for h in holdings:
            series = self.series.get(h.instrument)
            roll = series.rolls.get(day) if series is not None else None
            if roll is None:
                out.append(h)
                continue
            lots, spec = h.long + h.short, specs[h.instrument]
            fee = spec.fee("close", roll.old_price, lots) + spec.fee("open", roll.new_price, lots)
            cash[h.agent] -= fee
            out.append(m.Holding(h.agent, h.instrument, h.long, h.short, h.long * roll.new_price,
                                 h.short * roll.new_price, roll.new_price))  # fmt: skip
            result.roll_rows.append((day, h.agent, h.instrument, roll.old, roll.new, h.long,
                                     h.short, roll.old_price, roll.new_price, fee))  # fmt: skip
        return out

    def _day(  # noqa: PLR0917
        self, engine: Engine, day: int, holdings: list[m.Holding], cash: dict[str, float],
        result: BacktestResult, bar: Any,
    ) -> None:  # fmt: skip
        """One day as the live loop runs a backlog."""
        reader = self.store.open(day)
        step = self.config.engine.timer_ms * 1_000_000
        every = self.sample_ns
        try:
            start = reader.peek_time()
            if start is None:
                raise UserError(f"{self.store.where(day)}: the recording holds no tick")
            engine.open_day(day, start, reader.next_seq, holdings, cash)
            if bar is not None:
                bar.set_description(f"backtest {day}")
            due = (engine.now // step + 1) * step  # the timer's grid, as live
            sample = (engine.now // every + 1) * every
            shown = [engine.ticks]

            def progress() -> None:
                if bar is not None:
                    bar.update(engine.ticks - shown[0])
                    shown[0] = engine.ticks

            at_sample = partial(result.sample, engine)
            due = run_ticks(engine, reader, due, step, sample, every, at_sample, progress)
            end_of_day(engine, engine.now, due, step)  # now: the last tick's time
            result.sample(engine, engine.now)
            progress()
        finally:
            reader.close()


def tick_source(config: DeploymentConfig, recordings: str | Path | None = None
                ) -> tuple[TickStore, int | None]:  # fmt: skip
    """Where a backtest reads its ticks, and the one day to read if only one: ``recordings``
    (a directory of day journals, or one of them); else the deployment's recordings and rings
    if they hold a day; else, for a replay deployment, what it replays (its recording, or
    every day of its directory of recordings)."""
    if recordings is None:
        store = TickStore.of(config.suite.shm_dir, config.suite.journal_dir)
        replay = config.md_recorder.replay
        if store.days() or config.md_recorder.source != "replay" or replay is None:
            return store, None
        recordings = replay.recording
    path = Path(recordings)
    no_rings = path / ".no-rings"  # a backtest of files reads no live ring
    if is_journal(path):
        if not (path.name.isdigit() and len(path.name) == 8):
            raise UserError(f"{path}: a recorded day's journal is named after its trading "
                            "day (YYYYMMDD); rename it, or give the directory that holds "
                            "it")  # fmt: skip
        return TickStore(no_rings, path.parent), int(path.name)
    if not path.is_dir():
        raise UserError(f"{path}: no such recordings directory (a directory of YYYYMMDD "
                        "journals, as md_recorder and hft import write them; `hft import -f "
                        "ctp-csv FILE... -o DIR` makes one from tick files, and `make demo` "
                        "imports the bundled day to var/recordings)")  # fmt: skip
    return TickStore(no_rings, path), None


def _progress_bar(progress: bool | None) -> Any:
    """tqdm's bar counting ticks (in Jupyter with ipywidgets, its widget); None for none."""
    if progress is None:
        progress = sys.stderr.isatty() or "ipykernel" in sys.modules
    if not progress:
        return None
    bar: Any = tqdm
    if "ipykernel" in sys.modules and importlib.util.find_spec("ipywidgets") is not None:
        from tqdm.notebook import tqdm as bar  # noqa: PLC0415 (Jupyter's widget)
    return bar(unit=" ticks", unit_scale=True, total=None, smoothing=0.1, mininterval=0.5)


def scratch_dir(prefix: str) -> Path:
    """A new directory ``PREFIX-PID-XXXX`` in ``TMPDIR`` for a backtest's scratch files (removed
    with the object that owns them). Directories of the same prefix left by a process that no
    longer runs (one killed with SIGKILL, whose finalizers never ran) are removed first; one
    whose process still runs, or cannot be told, is kept."""
    root = Path(tempfile.gettempdir())
    for left in root.glob(f"{prefix}-*-*"):
        pid = left.name[len(prefix) + 1 :].partition("-")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(left, ignore_errors=True)
    try:
        return Path(tempfile.mkdtemp(prefix=f"{prefix}-{os.getpid()}-", dir=root))
    except OSError as exc:
        raise UserError(f"{root}: cannot make a backtest's scratch directory there "
                        f"({exc.strerror}); set TMPDIR to a directory with room"
                        ) from None  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it runs
        return True
    return True
