"""Parameter sweeps: eight points of a grid of the follower's parameters on one bundled real day,
run as tasks on a local Ray instance and in local processes, give for every point the
statistics of the same backtest run by itself here; a point that fails (a parameter its class
refuses) says why in its row and the others go on; the frame is sorted by the chosen statistic."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from contracts.config import load_config
from contracts.errors import UserError
from services.engine import Backtest, sweep
from services.engine.sweeps import points_of
from strategies.follower import Follower
from tests.services.engine.test_backtest import DAYS, deployment, recordings

__all__ = ["recordings"]
pytestmark = pytest.mark.timeout(600)
GRID = {"fast": [5, 10, 20, 40], "slow": [60, 240]}
KEYS = ["end_equity", "orders", "fills", "fees", "sharpe", "max_drawdown_intraday"]


def alone(config: Any, point: dict[str, Any]) -> pd.Series:
    bt = Backtest(config, days=[DAYS[0]], keep_agents=False)
    bt.add_strategy(Follower, **point)
    return bt.run(progress=False).stats


def same(row: pd.Series, stats: pd.Series) -> bool:
    return all(row[k] == stats[k] or (math.isnan(row[k]) and math.isnan(stats[k])) for k in KEYS)


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, recordings: Path) -> Any:
    return load_config(deployment(tmp_path_factory.mktemp("sweep"), recordings))


def test_a_sweep_on_ray_gives_each_point_its_own_backtest(config: Any) -> None:
    frame = sweep(config, Follower, GRID, executor="ray", days=[DAYS[0]], sort_by="end_equity")
    assert len(frame) == 8 and (frame["error"] == "").all()
    assert list(frame.columns[:2]) == ["fast", "slow"]
    assert frame["end_equity"].is_monotonic_decreasing
    assert frame["fills"].nunique() > 1  # the points differ
    for _, row in frame.iterrows():
        point = {"fast": int(row["fast"]), "slow": int(row["slow"])}
        assert same(row, alone(config, point)), point


def test_a_failing_point_says_why_and_the_sweep_goes_on(config: Any) -> None:
    grid = {"fast": [0, 10, 20], "slow": [60]}  # fast must be at least 1
    frame = sweep(config, Follower, grid, executor="processes", workers=2, days=[DAYS[0]],
                  sort_by="end_equity")  # fmt: skip
    failed = frame[frame["fast"] == 0].iloc[0]
    assert "fast" in failed["error"] and math.isnan(failed["sharpe"])
    assert frame.index[frame["fast"] == 0].tolist() == [2]  # failed points sort last
    good = frame[frame["fast"] != 0]
    assert good["end_equity"].is_monotonic_decreasing
    assert (good["error"] == "").all()
    for _, row in good.iterrows():
        assert same(row, alone(config, {"fast": int(row["fast"]), "slow": 60}))


def test_points_of_a_grid_and_a_random_draw() -> None:
    assert points_of({"a": [1, 2], "b": ["x"]}) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    drawn = points_of({"a": list(range(10)), "b": [0, 1]}, samples=5, seed=3)
    assert len(drawn) == 5 and len({(p["a"], p["b"]) for p in drawn}) == 5
    assert drawn == points_of({"a": list(range(10)), "b": [0, 1]}, samples=5, seed=3)
    with pytest.raises(UserError, match="non-empty list"):
        points_of({"a": []})
    with pytest.raises(UserError, match="non-empty list"):
        points_of({"a": "123"})


def test_bad_sweeps_get_one_clear_error(config: Any) -> None:
    with pytest.raises(UserError, match="sort_by 'sharp' is not a statistic"):
        sweep(config, Follower, {"fast": [5]}, executor="serial", days=[DAYS[0]],
              sort_by="sharp")  # fmt: skip
    with pytest.raises(UserError, match="executor 'threads'"):
        sweep(config, Follower, {"fast": [5]}, executor="threads", days=[DAYS[0]])
    with pytest.raises(UserError, match="no recording of 20210107"):
        sweep(config, Follower, {"fast": [5]}, executor="serial", days=[20210107])
