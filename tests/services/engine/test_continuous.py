"""Continuous contracts: the main contract by open interest, rolled forward, traded as one
instrument (IF888) with the roll shown and priced at the previous day's close.

The data: the three bundled real IF2101 days, and beside them a second contract made from them
for this test (no two contract months are bundled): "IF2102", every tick of IF2101 a microsecond
later at prices 20 points higher, with 0.5 times its open interest on the first day and 3 times
on the others. So IF2101 is the main contract on the first two days (by the open interest at the
previous close), IF2102 from the third, and a position carried into it rolls at the second day's
close: the continuous series must not make a 20-point jump in anyone's PnL."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from contracts.config import load_config
from contracts.errors import UserError
from contracts.ticks import TickStore
from libshm import TICK_LAYOUT, JournalReader, JournalWriter, Tick
from services.engine import Backtest, Strategy
from services.engine.continuous import build_continuous
from tests.helpers import import_market, write_config
from tests.services.engine.test_live import CONFIG

pytestmark = pytest.mark.timeout(300)
DAYS = (20210104, 20210105, 20210106)
PRICES = ("last", "open", "high", "low", "close", "pre_close", "pre_settlement", "settlement",
          "upper_limit", "lower_limit", "average", "bid_price", "ask_price")  # fmt: skip
FACTOR = {20210104: 0.5, 20210105: 3.0, 20210106: 3.0}


def day_array(path: Path) -> np.ndarray:
    reader = JournalReader(path)
    try:
        parts = []
        while len(batch := reader.read_array()):
            parts.append(batch["payload"].copy())
        return np.concatenate(parts)
    finally:
        reader.close()


@pytest.fixture(scope="module")
def two_contracts(tmp_path_factory: pytest.TempPathFactory) -> dict[int, np.ndarray]:
    """The recordings directory's days (both contracts, in time order), returned by day."""
    root = tmp_path_factory.mktemp("two")
    real = import_market(root / "real", "IF2101_20210104.csv.gz", "IF2101_20210105.csv.gz",
                         "IF2101_20210106.csv.gz")  # fmt: skip
    out, days = root / "recordings", {}
    previous_close = math.nan
    for day in DAYS:
        near = day_array(real / str(day))
        far = near.copy()
        far["instrument"] = b"IF2102"
        far["local_time_ns"] += 1000
        for name in PRICES:
            far[name] += 20.0
        far["open_interest"] *= FACTOR[day]
        far["pre_open_interest"] = (near["pre_open_interest"] * FACTOR[day]
                                    if math.isnan(previous_close) else previous_close)  # fmt: skip
        previous_close = float(far["open_interest"][-1])
        both = np.concatenate([near, far])
        both = both[np.argsort(both["local_time_ns"], kind="stable")]
        writer = JournalWriter(out / str(day), layout=TICK_LAYOUT)
        writer.append_array(both, both["local_time_ns"])
        writer.close()
        days[day] = both
    return days


class Holder(Strategy):
    """Holds one lot: buys it at the ask when it holds none and has no order working."""

    def on_tick(self, tick: Tick) -> None:
        flat = self.position(tick.instrument).net == 0 and not self.open_orders()
        if flat and not math.isnan(tick.ask_price1):
            self.send_order(tick.instrument, "buy", tick.ask_price1, 1)


def close_of(ticks: np.ndarray, contract: bytes) -> float:
    last = ticks[ticks["instrument"] == contract][-1]
    return float(last["settlement"]) if not math.isnan(last["settlement"]) else float(last["last"])


def test_the_main_contract_by_open_interest_rolls_forward_once(
    tmp_path: Path, two_contracts: dict[int, np.ndarray]
) -> None:
    store = TickStore(tmp_path / "none", _recordings(tmp_path, two_contracts))
    series = build_continuous(store, ["IF"], DAYS, tmp_path / "IF888")["IF888"]
    assert series.mains == {20210104: "IF2101", 20210105: "IF2101", 20210106: "IF2102"}
    (roll,) = series.rolls.values()
    assert (roll.day, roll.old, roll.new) == (20210106, "IF2101", "IF2102")
    assert roll.old_price == close_of(two_contracts[20210105], b"IF2101")
    assert roll.new_price == pytest.approx(roll.old_price + 20)
    third = day_array(tmp_path / "IF888" / "20210106")
    far = two_contracts[20210106]
    far = far[far["instrument"] == b"IF2102"]
    assert set(third["instrument"].tolist()) == {b"IF888"}
    assert np.array_equal(third["last"], far["last"], equal_nan=True)  # IF2102's ticks, renamed


def _recordings(tmp_path: Path, days: dict[int, np.ndarray]) -> Path:
    out = tmp_path / "recordings"
    for day, ticks in days.items():
        writer = JournalWriter(out / str(day), layout=TICK_LAYOUT)
        writer.append_array(ticks, ticks["local_time_ns"])
        writer.close()
    return out


def test_a_position_carried_across_the_roll_pays_the_roll_not_the_gap(
    tmp_path: Path, two_contracts: dict[int, np.ndarray]
) -> None:
    recordings = _recordings(tmp_path, two_contracts)
    config = load_config(write_config(tmp_path, CONFIG))
    bt = Backtest(config, recordings=recordings, continuous=["IF"], keep_agents=False)
    assert bt.add_strategy(Holder, capital=2_000_000.0) == "Holder"
    result = bt.run(progress=False)
    (fill,) = result.trades.to_dict("records")
    assert (fill["instrument"], fill["direction"], fill["volume"]) == ("IF888", "buy", 1)
    price, paid = float(fill["price"]), float(fill["fee"])
    rolls = result.rolls
    assert rolls[["day", "agent", "instrument", "old", "new", "long", "short"]].values.tolist() \
        == [[20210106, "Holder", "IF888", "IF2101", "IF2102", 1, 0]]  # fmt: skip
    old_close = close_of(two_contracts[20210105], b"IF2101")
    new_close = close_of(two_contracts[20210105], b"IF2102")
    end = close_of(two_contracts[20210106], b"IF2102")
    # IF: 300 a point; fees at the deployment's rates (open and close 0.23 per 10,000 of value)
    fee: Any = rolls["fee"].iloc[0]
    assert fee == pytest.approx(0.000023 * 300 * (old_close + new_close))
    pnl = (old_close - price) * 300 + (end - new_close) * 300 - paid - fee
    assert result.stats["end_equity"] - 2_000_000.0 == pytest.approx(pnl, abs=1e-6)
    held = result.positions[result.positions["day"] == 20210106]
    assert held[["instrument", "long", "settlement"]].values.tolist() == [["IF888", 1, end]]


def test_a_product_with_no_contract_recorded_is_one_clear_error(
    tmp_path: Path, two_contracts: dict[int, np.ndarray]
) -> None:
    config = load_config(write_config(tmp_path, CONFIG))
    with pytest.raises(UserError, match="no contract of product 'cu'"):
        Backtest(config, recordings=_recordings(tmp_path, two_contracts), continuous=["cu"])
