"""Portfolios: agents under one capital with limits on their sum, checked by the risk gate above
each agent's own, on the real IF2101 day; journaled at the day's open (``PortfolioSet``) and
recovered; shown as a tree in the backtest results and the monitor's state."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts import messages as m
from contracts.calendar import load_calendar
from contracts.config import PaperConfig, RiskConfig, load_config
from contracts.errors import UserError
from contracts.monitor import PortfolioView
from libshm import FLAG_SETTLEMENT, Tick
from services.engine import Strategy
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.backtest import Backtest
from services.engine.core import Engine
from services.engine.products import specs_for
from services.engine.risk import Portfolio, RiskLimits
from services.monitor.state import AccountState
from tests.helpers import write_config
from tests.services.engine.test_backtest import DAYS, recordings
from tests.services.engine.test_core import RATES, recover_and_run, state
from tests.services.engine.test_live import CONFIG

__all__ = ["recordings"]
DAY = 20210104
RISK = RiskConfig(max_position=5, max_net_position=5, cancel_limit=5000, cancel_reserve=20,
                  max_cancel_ratio=5.0, duplicate_window_ms=0, max_daily_loss=1e12)  # fmt: skip


class Buys(Strategy):
    """Buys ``params["lots"]`` at the ask on tick ``params["at"]``; keeps what came back."""

    def on_start(self) -> None:
        self.seen = 0
        self.answers: list[Any] = []

    def on_tick(self, tick: Tick) -> None:
        self.seen += 1
        if self.seen == self.params["at"]:
            self.buy("IF2101", tick.ask_price1, self.params["lots"])

    def on_order(self, order: Any) -> None:
        self.answers.append((order.state, order.reason))


def engine_with(portfolio: Portfolio | None, journal: list[m.EngineMessage],
                agents: dict[str, dict[str, Any]]) -> Engine:  # fmt: skip
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    engine = Engine(specs=specs, gate_config=RISK,
                    adapter=PaperBroker(specs, phases, PaperConfig.instant()), phases=phases,
                    journal=lambda d, _t: journal.append(m.decode(d)))  # fmt: skip
    for name, params in agents.items():
        engine.add_agent(name, Buys, ["IF2101"], 5e6, RiskLimits.from_config(RISK), params)
    if portfolio is not None:
        engine.add_portfolio(portfolio)
    return engine


def run(engine: Engine, day: list[tuple[int, Tick]]) -> None:
    engine.open_day(DAY, day[0][1].local_time_ns)
    for seq, tick in day:
        engine.on_tick(tick, seq)


@pytest.fixture(scope="module")
def day(ticks: list[tuple[int, Tick]]) -> list[tuple[int, Tick]]:
    return [(s, t) for s, t in ticks if not t.flags & FLAG_SETTLEMENT][:400]


AGENTS = {"a": {"at": 100, "lots": 4}, "b": {"at": 200, "lots": 3}}


def test_a_portfolio_limit_refuses_an_order_each_agent_s_own_limit_allows(
    day: list[tuple[int, Tick]],
) -> None:
    # alone, each agent's 4 and 3 lots are within its own limit of 5 lots
    free: list[m.EngineMessage] = []
    run(engine_with(None, free, AGENTS), day)
    assert [x.volume for x in free if isinstance(x, m.OrderRequested)] == [4, 3]
    assert not any(isinstance(x, m.RiskRefused) for x in free)
    # under a portfolio of 6 lots a side, b's 3 would make 7 across the two: refused
    journal: list[m.EngineMessage] = []
    engine = engine_with(Portfolio("desk", ("a", "b"), 1e7, max_position=6), journal, AGENTS)
    run(engine, day)
    assert [x.volume for x in journal if isinstance(x, m.OrderRequested)] == [4]
    (refused,) = [x for x in journal if isinstance(x, m.RiskRefused)]
    assert (refused.agent, refused.code) == ("b", "PORTFOLIO_POSITION")
    assert refused.text == ("portfolio desk: long IF2101 would reach 7 lots across its agents "
                            "(limit 6)")  # fmt: skip
    b = engine.agents["b"].strategy
    assert b.answers == [("rejected", f"PORTFOLIO_POSITION: {refused.text}")]  # type: ignore[union-attr]
    # an agent outside the portfolio is not held to it
    other: list[m.EngineMessage] = []
    run(engine_with(Portfolio("desk", ("a",), 1e7, max_position=6), other, AGENTS), day)
    assert [x.volume for x in other if isinstance(x, m.OrderRequested)] == [4, 3]


def test_pending_opens_of_every_member_count(day: list[tuple[int, Tick]]) -> None:
    """a's 4 lots rest below the market (unfilled); b's 3 still make 7 with them."""

    class Rests(Buys):
        def on_tick(self, tick: Tick) -> None:
            self.seen += 1
            if self.seen == self.params["at"]:
                self.buy("IF2101", tick.bid_price1 - 20.0, self.params["lots"])

    journal: list[m.EngineMessage] = []
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    engine = Engine(specs=specs, gate_config=RISK,
                    adapter=PaperBroker(specs, phases, PaperConfig.instant()), phases=phases,
                    journal=lambda d, _t: journal.append(m.decode(d)))  # fmt: skip
    engine.add_agent("a", Rests, ["IF2101"], 5e6, RiskLimits.from_config(RISK), AGENTS["a"])
    engine.add_agent("b", Buys, ["IF2101"], 5e6, RiskLimits.from_config(RISK), AGENTS["b"])
    engine.add_portfolio(Portfolio("desk", ("a", "b"), 1e7, max_position=6))
    run(engine, day)
    assert not any(isinstance(x, m.Trade) for x in journal if getattr(x, "order_id", "")
                   .startswith("a-"))  # fmt: skip
    assert [x.code for x in journal if isinstance(x, m.RiskRefused)] == ["PORTFOLIO_POSITION"]


def test_portfolio_margin_and_daily_loss(day: list[tuple[int, Tick]]) -> None:
    # margin: 4 lots of IF at about 5,230 x 300 x 12% is about 753,000; 3 more would pass
    # 1.2 million, over 10% of a 10 million portfolio
    journal: list[m.EngineMessage] = []
    run(engine_with(Portfolio("desk", ("a", "b"), 1e7, max_margin_ratio=0.1), journal, AGENTS),
        day)  # fmt: skip
    (refused,) = [x for x in journal if isinstance(x, m.RiskRefused)]
    assert refused.code == "PORTFOLIO_MARGIN" and "of its capital; limit 10%" in refused.text
    # loss: a tiny limit; a's fees and the spread put the portfolio below it, it moves to
    # reducing, and b's later opening order is refused as reducing-only
    lossy: list[m.EngineMessage] = []
    run(engine_with(Portfolio("desk", ("a", "b"), 1e7, max_daily_loss=1.0), lossy, AGENTS), day)
    (changed,) = [x for x in lossy if isinstance(x, m.StateChanged)]
    assert (changed.scope, changed.target, changed.state) == ("portfolio", "desk", "reducing")
    assert changed.reason.startswith("PORTFOLIO_LOSS: the day PnL of portfolio desk")
    assert [x.code for x in lossy if isinstance(x, m.RiskRefused)] == ["REDUCING_ONLY"]


def test_the_portfolio_is_journaled_at_the_open_and_recovered(
    day: list[tuple[int, Tick]],
) -> None:
    desk = Portfolio("desk", ("a", "b"), 1e7, max_position=6, max_daily_loss=5e5)
    full: list[m.EngineMessage] = []
    engine = engine_with(desk, full, AGENTS)
    run(engine, day)
    assert isinstance(full[1], m.PortfolioSet) and full[1] == m.PortfolioSet(
        full[0].ticks, full[0].time_ns, "desk", ["a", "b"], 1e7, 6, -1, 0.0, 5e5)  # fmt: skip
    cut = next(i for i, x in enumerate(full) if isinstance(x, m.RiskRefused)) - 1
    journal = full[:cut]
    again = engine_with(desk, journal, AGENTS)
    recover_and_run(again, journal, day)
    assert journal == full and state(again) == state(engine)
    # the monitor's state shows the tree
    monitor = AccountState("acct", lambda _: 300)
    for msg in full:
        monitor.apply(msg)
    (view,) = monitor.snapshot().topics["portfolios"].values()
    assert isinstance(view, PortfolioView)
    assert (view.name, view.agents, view.capital, view.max_position) == ("desk", ["a", "b"], 1e7, 6)


PORTFOLIO = """
[[engine.portfolios]]
name = "desk"
agents = ["mm", "trend"]
capital = 2000000.0
max_position = 4
"""


def test_the_backtest_results_show_the_tree(tmp_path: Path, recordings: Path) -> None:
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    (tmp_path / "journal" / "recordings" / str(DAYS[0])).symlink_to(recordings / str(DAYS[0]))
    config = write_config(tmp_path, CONFIG + PORTFOLIO)
    result = Backtest(load_config(config), days=[DAYS[0]]).run(progress=False)
    tree = result.tree
    assert tree[["portfolio", "agent"]].values.tolist() == [["desk", ""], ["desk", "mm"],
                                                           ["desk", "trend"]]  # fmt: skip
    desk = tree.iloc[0]
    assert desk["capital"] == 2e6 and desk["pnl"] == pytest.approx(tree["pnl"].iloc[1:].sum())
    assert desk["equity"] == pytest.approx(result.daily_equity["account"].iloc[-1])
    assert (result.orders["reason"].astype(str).str.startswith("PORTFOLIO_POSITION")).any()


@pytest.mark.parametrize(("portfolios", "says"), [
    (PORTFOLIO.replace('"trend"]', '"trnd"]'),
     "portfolio desk names agent 'trnd', which is not under [[engine.agents]]"),
    (PORTFOLIO + PORTFOLIO.replace('"desk"', '"desk2"'),
     "agent mm is in two portfolios (desk and desk2)"),
    (PORTFOLIO.replace("2000000.0", "1500000.0"),
     "portfolio desk: its agents' capital adds up to 2,000,000, more than its capital 1,500,000"),
    (PORTFOLIO.replace("max_position = 4", "max_positon = 4"), "max_positon"),
])  # fmt: skip
def test_a_wrong_portfolio_is_one_clear_error(tmp_path: Path, portfolios: str, says: str) -> None:
    with pytest.raises(UserError) as caught:
        load_config(write_config(tmp_path, CONFIG + portfolios))
    assert says in str(caught.value)
