"""Parameter sweeps (docs/backtest.md, "Sweeps"): one backtest per point of a grid (or of a
random draw from it), run in parallel processes on this machine or as tasks on a Ray cluster,
gathered into one DataFrame sorted by a chosen statistic. Ray schedules the tasks; a point that
fails reports its error in its row and the others go on."""

from __future__ import annotations

import itertools
import multiprocessing
import os
import random as random_module
import traceback
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pandas as pd

from contracts.config import DeploymentConfig, load_config
from contracts.errors import UserError
from services.engine.backtest import Backtest
from services.engine.strategy import Strategy

__all__ = ["points_of", "run_point", "sweep"]


def points_of(grid: Mapping[str, Sequence[Any]], samples: int | None = None,
              seed: int = 0) -> list[dict[str, Any]]:  # fmt: skip
    """Every combination of the grid's values, in order; or ``samples`` of them drawn without
    repetition with ``seed`` (all of them if the grid has no more)."""
    if not grid:
        raise UserError("sweep: the grid names no parameter (grid={'fast': [5, 10], ...})")
    for name, values in grid.items():
        if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
            raise UserError(f"sweep: grid[{name!r}] must be a non-empty list of values")
    names = list(grid)
    points = [dict(zip(names, combo, strict=True))
              for combo in itertools.product(*(grid[n] for n in names))]  # fmt: skip
    if samples is not None and samples < len(points):
        if samples < 1:
            raise UserError(f"sweep: samples must be at least 1 (got {samples})")
        picked = sorted(random_module.Random(seed).sample(range(len(points)), samples))
        points = [points[i] for i in picked]
    return points


def run_point(config: DeploymentConfig, strategy: type[Strategy], point: Mapping[str, Any],
              fixed: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:  # fmt: skip
    """One point: a backtest of ``strategy`` alone with ``fixed`` and the point's parameters;
    its statistics, or its error, with the point."""
    row: dict[str, Any] = dict(point)
    try:
        bt = Backtest(config, keep_agents=False, **options)
        bt.add_strategy(strategy, name="sweep", **{**fixed, **point})
        stats = bt.run(progress=False).stats
        row.update({str(k): v for k, v in stats.items()})
        row["error"] = ""
    except UserError as exc:
        row["error"] = str(exc)
    except Exception as exc:  # the point's own failure: reported in its row, the sweep goes on
        last = traceback.extract_tb(exc.__traceback__)[-1:]
        where = f" ({last[0].filename}:{last[0].lineno})" if last else ""
        row["error"] = f"{type(exc).__name__}: {exc}{where}"
    return row


def sweep(
    config: DeploymentConfig | str | Path,
    strategy: type[Strategy],
    grid: Mapping[str, Sequence[Any]],
    *,
    samples: int | None = None,
    seed: int = 0,
    sort_by: str = "sharpe",
    ascending: bool = False,
    fixed: Mapping[str, Any] | None = None,
    executor: str = "processes",
    workers: int | None = None,
    address: str | None = None,
    **options: Any,
) -> pd.DataFrame:
    """Backtest ``strategy`` at each point of ``grid`` (``samples``: that many points drawn
    with ``seed``), each alone, with ``fixed`` parameters besides the point's and the
    ``Backtest`` ``options`` (``recordings``, ``days``, ``start``, ``end``, ...).

    ``executor``: ``"processes"`` (``workers`` processes on this machine, default its CPUs),
    ``"ray"`` (tasks on the Ray cluster at ``address``, for example ``"auto"`` or
    ``"ray://head:10001"``; ``None`` starts a local instance), or ``"serial"`` (one after the
    other, here). Returns one row per point, the parameters first, then the statistics and
    ``error`` (empty unless the point failed), sorted by ``sort_by`` (failed points last)."""
    if isinstance(config, str | Path):
        config = load_config(config)
    if not (isinstance(strategy, type) and issubclass(strategy, Strategy)):
        raise UserError(f"sweep: {strategy!r} is not a Strategy subclass")
    points = points_of(grid, samples, seed)
    fixed = dict(fixed or {})
    Backtest(config, keep_agents=False, **options)  # the days and options, checked here first
    if executor == "serial":
        rows = [run_point(config, strategy, p, fixed, options) for p in points]
    elif executor == "processes":
        rows = _in_processes(config, strategy, points, fixed, options, workers)
    elif executor == "ray":
        rows = _on_ray(config, strategy, points, fixed, options, address)
    else:
        raise UserError(f"sweep: executor {executor!r}: choose processes, ray or serial")
    frame = pd.DataFrame(rows)
    if sort_by not in frame.columns:
        raise UserError(f"sweep: sort_by {sort_by!r} is not a statistic; choose one of "
                        f"{', '.join(c for c in frame.columns if c not in grid)}")  # fmt: skip
    key = pd.to_numeric(frame[sort_by], errors="coerce")
    failed = frame["error"] != ""
    ranked = key[~failed].sort_values(ascending=ascending, na_position="last", kind="stable")
    return frame.loc[[*ranked.index, *frame.index[failed]]].reset_index(drop=True)


def _in_processes(  # noqa: PLR0917
    config: DeploymentConfig, strategy: type[Strategy], points: Iterable[dict[str, Any]],
    fixed: dict[str, Any], options: Mapping[str, Any], workers: int | None,
) -> list[dict[str, Any]]:  # fmt: skip
    """A process per CPU; forked, so a strategy class defined in a notebook is there too."""
    points = list(points)
    count = max(1, min(workers or os.cpu_count() or 1, len(points)))
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=count, mp_context=context) as pool:
        futures = [pool.submit(run_point, config, strategy, p, fixed, dict(options))
                   for p in points]  # fmt: skip
        return [f.result() for f in futures]


def _on_ray(  # noqa: PLR0917
    config: DeploymentConfig, strategy: type[Strategy], points: Iterable[dict[str, Any]],
    fixed: dict[str, Any], options: Mapping[str, Any], address: str | None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Each point a Ray task (the strategy class travels by value, as Ray pickles it); the
    recordings must be at the same path on every node."""
    try:
        import ray  # noqa: PLC0415 (only a Ray sweep needs it)
    except ImportError:
        raise UserError("sweep on Ray: the ray package is not installed (pip install ray)"
                        ) from None  # fmt: skip
    started = False
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False,
                     ignore_reinit_error=True)  # fmt: skip
        except ConnectionError as exc:
            raise UserError(f"sweep on Ray: cannot reach the cluster at {address}: {exc}"
                            ) from None  # fmt: skip
        started = True
    try:
        task = ray.remote(num_cpus=1)(run_point)
        refs = [task.remote(config, strategy, p, fixed, dict(options)) for p in points]
        return list(ray.get(refs))
    finally:
        if started:  # a local instance stops; a cluster only loses this driver
            ray.shutdown()
