"""Strategies and factors shipped as a package of their own: a small plugin package is installed
with pip (into a directory on the test's path, as into a venv: its metadata and entry points are
real), then named in a deployment file by entry point and by ``module:Class``; its factor is
computed once per tick and shared by the two agents that read it, in the order listed."""

from __future__ import annotations

import importlib
import math
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.config import load_config
from contracts.errors import UserError
from libshm import FLAG_SETTLEMENT, JournalReader, decode_tick
from services.engine.backtest import Backtest
from tests.helpers import run_hft, write_config
from tests.services.engine.test_backtest import DAYS, recordings
from tests.services.engine.test_live import CONFIG

__all__ = ["recordings"]
pytestmark = pytest.mark.timeout(300)

PYPROJECT = """\
[build-system]
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "hft-plugin-demo"
version = "0.1.0"

[project.entry-points."hft.strategies"]
demo-spread-taker = "hft_plugin_demo:SpreadTaker"

[project.entry-points."hft.factors"]
demo-spread = "hft_plugin_demo:Spread"
"""

MODULE = '''\
"""A plugin package: a factor (the spread), another (the mid), a strategy that reads them."""

import math

from services.engine import Factor, Strategy

CALLS = []  # (factor, tick time): every update, in order


class Mid(Factor):
    def update(self, tick):
        CALLS.append(("mid", tick.exchange_time_ns))
        return (tick.bid_price1 + tick.ask_price1) / 2


class Spread(Factor):
    def update(self, tick):
        CALLS.append(("spread", tick.exchange_time_ns))
        return tick.ask_price1 - tick.bid_price1


class SpreadTaker(Strategy):
    """Buys one lot at the ask when the spread is one price step, sells it back a hundred ticks
    later; keeps every factor value it read."""

    def on_start(self):
        self.seen = []
        self.held = 0

    def on_tick(self, tick):
        spread = self.factor("spread", tick.instrument)
        mid = self.factor("mid", tick.instrument)
        self.seen.append((spread, mid))
        one_step = abs(spread - self.price_tick(tick.instrument)) < 1e-6
        if self.held == 0 and one_step and len(self.seen) % 500 == 0:
            self.buy(tick.instrument, tick.ask_price1, 1)
            self.held = len(self.seen)
        elif self.held and len(self.seen) - self.held >= 100:
            self.sell(tick.instrument, tick.bid_price1, 1)
            self.held = 0
'''

AGENTS = """
[[engine.factors]]
name = "mid"
factor = "hft_plugin_demo:Mid"
instruments = ["IF2101"]

[[engine.factors]]
name = "spread"
factor = "demo-spread"
instruments = ["IF2101"]

[[engine.agents]]
name = "taker1"
strategy = "demo-spread-taker"
instruments = ["IF2101"]
capital = 1000000.0
factors = ["spread", "mid"]

[[engine.agents]]
name = "taker2"
strategy = "demo-spread-taker"
instruments = ["IF2101"]
capital = 1000000.0
factors = ["mid", "spread"]
"""


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The plugin package built and installed by pip into a directory put on ``sys.path``."""
    source = tmp_path_factory.mktemp("plugin-src")
    (source / "pyproject.toml").write_text(PYPROJECT, encoding="utf-8")
    (source / "hft_plugin_demo").mkdir()
    (source / "hft_plugin_demo" / "__init__.py").write_text(MODULE, encoding="utf-8")
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert list(target.glob("hft_plugin_demo-0.1.0.dist-info/entry_points.txt"))
    sys.path.insert(0, str(target))
    importlib.invalidate_caches()
    try:
        yield target
    finally:
        sys.path.remove(str(target))
        sys.modules.pop("hft_plugin_demo", None)


def deployment(tmp_path: Path, recordings: Path, agents: str = AGENTS) -> Path:
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    (tmp_path / "journal" / "recordings" / str(DAYS[0])).symlink_to(recordings / str(DAYS[0]))
    base = CONFIG[: CONFIG.index("[[engine.agents]]")]
    return write_config(tmp_path, base + agents)


def test_a_plugin_s_factor_is_computed_once_a_tick_and_shared_in_the_order_listed(
    tmp_path: Path, recordings: Path, installed: Path
) -> None:
    import hft_plugin_demo  # type: ignore[import-not-found]

    hft_plugin_demo.CALLS.clear()
    config = load_config(deployment(tmp_path, recordings))
    bt = Backtest(config, days=[DAYS[0]])
    result = bt.run(progress=False)
    reader = JournalReader(recordings / str(DAYS[0]))
    ticks = [decode_tick(f.payload) for f in iter(reader.read, None)]
    reader.close()
    market = [t for t in ticks if not t.flags & FLAG_SETTLEMENT]
    # once a tick for both agents, "mid" (listed first) before "spread"
    calls = hft_plugin_demo.CALLS
    assert len(calls) == 2 * len(market)
    assert calls[0::2] == [("mid", t.exchange_time_ns) for t in market]
    assert calls[1::2] == [("spread", t.exchange_time_ns) for t in market]
    # both agents read the same values, which are the spread and the mid of each tick
    seen = [s.seen for s in bt.strategies.values()]  # type: ignore[attr-defined]
    want = [(t.ask_price1 - t.bid_price1, (t.bid_price1 + t.ask_price1) / 2) for t in market]
    assert seen[0] == seen[1] == want
    assert not any(math.isnan(s) for s, _ in want)
    assert set(result.trades["agent"]) == {"taker1", "taker2"} and len(result.trades) >= 4


def test_hft_backtest_loads_the_plugin_by_its_entry_point(
    tmp_path: Path, recordings: Path, installed: Path
) -> None:
    config = deployment(tmp_path, recordings)
    done = run_hft("backtest", "--config", str(config), "--recordings", str(recordings),
                   "--to", "2021-01-04", "--no-progress", "--log-level", "error",
                   env={"PYTHONPATH": str(installed)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "backtest of 20210104: agents taker1, taker2"
    # without the package on the path: one line naming the group and what is installed
    missing = run_hft("backtest", "--config", str(config), "--recordings", str(recordings),
                      "--no-progress")  # fmt: skip
    assert missing.returncode != 0
    assert "no installed package declares it in entry point group 'hft.strategies'" in (
        missing.stderr)  # fmt: skip
    assert "Traceback" not in missing.stderr


@pytest.mark.parametrize(("agents", "says"), [
    (AGENTS.replace('factors = ["spread", "mid"]', 'factors = ["spraed"]'),
     "agent taker1 reads factor 'spraed', which is not under [[engine.factors]]; defined: mid, "
     "spread"),
    (AGENTS.replace('factor = "demo-spread"', 'factor = "demo-sprd"'),
     "factor spread: cannot import factor 'demo-sprd': no installed package declares it in entry "
     "point group 'hft.factors' (installed: demo-spread)"),
    (AGENTS.replace('factor = "hft_plugin_demo:Mid"', 'factor = "hft_plugin_demo:SpreadTaker"'),
     "factor mid: 'hft_plugin_demo:SpreadTaker' is not a Factor subclass"),
    (AGENTS.replace('instruments = ["IF2101"]\n\n[[engine.factors]]',
                    'instruments = ["rb2105"]\n\n[[engine.factors]]'),
     "engine.factors[0] (mid): rb2105 is not traded by any agent"),
])  # fmt: skip
def test_a_wrong_plugin_is_one_clear_error(
    tmp_path: Path, recordings: Path, installed: Path, agents: str, says: str
) -> None:
    with pytest.raises(UserError) as caught:
        Backtest(load_config(deployment(tmp_path, recordings, agents)), days=[DAYS[0]]).run(
            progress=False)  # fmt: skip
    assert says in str(caught.value)
