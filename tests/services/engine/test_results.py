"""A backtest's results: the statistics agree with their reference formulas (written here
independently, in plain Python) on a known equity series; the closing fills' PnL by average cost
on trades worked by hand; and, notebook-style, the example agents over the two bundled real days:
every frame agrees with the engine journal the backtest kept (trades, fees, orders and their
ends, refusals, each day's close against the roll's ``DayClosed``), the account's PnL equals the
trades' cash flows, and the report is one offline page that Chromium draws."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from contracts import messages as m
from contracts.config import load_config
from contracts.errors import UserError
from services.engine import Strategy
from services.engine.backtest import Backtest
from services.engine.collect import Collector, FillSums, OrderCounts
from services.engine.results import TRADING_DAYS_PER_YEAR, stats_of, trades_frame
from strategies.follower import Follower
from tests.services.engine.test_backtest import DAYS, deployment, frames, recordings
from tests.services.monitor.test_dashboard import browser

__all__ = ["browser", "recordings"]  # the fixtures
pytestmark = pytest.mark.timeout(300)


def test_stats_agree_with_the_reference_formulas_on_a_known_series() -> None:
    start = 100.0
    closes = [102.0, 99.0, 101.0, 97.0, 103.0, 104.0]
    equity = pd.Series(closes, index=range(20210104, 20210110))
    got = stats_of(equity, start, FillSums(), OrderCounts())

    previous = [start, *closes[:-1]]
    r = [e / p - 1 for e, p in zip(closes, previous, strict=True)]
    a = TRADING_DAYS_PER_YEAR
    total = closes[-1] / start - 1
    assert got["total_return"] == pytest.approx(0.04)
    assert got["annual_return"] == pytest.approx((1 + total) ** (a / len(r)) - 1)
    # Sharpe (1994): mean excess return over its sample standard deviation, annualised by sqrt(A)
    assert got["volatility"] == pytest.approx(statistics.stdev(r) * math.sqrt(a))
    assert got["sharpe"] == pytest.approx(statistics.mean(r) / statistics.stdev(r) * math.sqrt(a))
    # Sortino and Price (1994): downside deviation below a target of 0 over all periods
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in r) / len(r))
    assert got["sortino"] == pytest.approx(statistics.mean(r) / downside * math.sqrt(a))
    # maximum drawdown: from the peak of 102 (first close) to 97 (fourth), regained at 103
    assert got["max_drawdown"] == pytest.approx(97 / 102 - 1)
    assert got["max_drawdown_days"] == 3  # 99, 101 and 97 below the peak of 102
    # Calmar (Young 1991): annual return over the maximum drawdown's size
    assert got["calmar"] == pytest.approx(got["annual_return"] / (1 - 97 / 102))
    assert got["days"] == 6 and got["end_equity"] == 104.0
    assert math.isnan(got["win_rate"]) and got["fills"] == 0 and got["turnover"] == 0.0


def test_a_drawdown_never_regained_lasts_to_the_end() -> None:
    equity = pd.Series([99.0, 98.0, 99.5])
    got = stats_of(equity, 100.0, FillSums(), OrderCounts())
    assert got["max_drawdown"] == pytest.approx(-0.02)  # the start is the first peak
    assert got["max_drawdown_days"] == 3


def closing_pnl(trades: pd.DataFrame, multipliers: dict[str, int]) -> list[float]:
    """The reference: each closing fill's net PnL by average cost, from the trades frame in
    time order (written apart from ``collect.Collector._pnl``, which computes it as the fills
    come)."""
    held: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    out: list[float] = []
    columns = ("agent", "instrument", "direction", "offset", "price", "volume", "fee")
    rows: list[tuple[str, str, str, str, float, int, float]] = list(
        zip(*(trades[c].tolist() for c in columns), strict=True)
    )
    for agent, instrument, direction, offset, price, volume, fee in rows:
        if offset == "open":
            lots = held[agent, instrument, "long" if direction == "buy" else "short"]
            lots[0] += volume
            lots[1] += price * volume
            lots[2] += fee
            out.append(math.nan)
            continue
        side = "long" if direction == "sell" else "short"
        lots = held[agent, instrument, side]
        if lots[0] < volume:
            out.append(math.nan)
            continue
        average, fee_each = lots[1] / lots[0], lots[2] / lots[0]
        points = price - average if side == "long" else average - price
        out.append(points * volume * multipliers[instrument] - fee - fee_each * volume)
        lots[0] -= volume
        lots[1] -= average * volume
        lots[2] -= fee_each * volume
    return out


def test_the_pnl_of_closing_fills_by_average_cost(tmp_path: Path) -> None:
    rows = [  # agent, instrument, direction, offset, price, volume, fee
        ("a", "X", "buy", "open", 100.0, 1, 1.0),
        ("a", "X", "buy", "open", 110.0, 1, 1.0),  # long 2 at an average of 105, fees 1 a lot
        ("a", "X", "sell", "close", 120.0, 1, 2.0),  # (120 - 105) x 10 - 2 - 1 = 147
        ("a", "X", "sell", "open", 130.0, 2, 2.0),  # short 2 at 130, fees 1 a lot
        ("a", "X", "buy", "close_today", 125.0, 1, 1.0),  # (130 - 125) x 10 - 1 - 1 = 48
        ("a", "X", "sell", "close_yesterday", 100.0, 1, 0.0),  # (100 - 105) x 10 - 0 - 1 = -51
        ("b", "X", "sell", "close", 100.0, 1, 0.0),  # b holds nothing: no open price, no PnL
    ]
    c = Collector(tmp_path, {"X": 10})
    for i, (agent, instrument, direction, offset, price, volume, fee) in enumerate(rows):
        sides: tuple[Any, Any] = (direction, offset)  # the literals of OrderRequested
        c.message(m.OrderRequested(0, i, f"{agent}-{i}", agent, instrument, "CFFEX", *sides,
                                   price, volume, "limit"))  # fmt: skip
        c.message(m.Trade(0, i, f"{agent}-{i}", f"T{i}", price, volume, fee))
    c.close()
    got = trades_frame(c)["pnl"].tolist()
    assert [math.isnan(x) for x in got] == [True, True, False, True, False, False, True]
    assert got[2] == pytest.approx(147) and got[4] == pytest.approx(48)
    assert got[5] == pytest.approx(-51)
    s = c.sums
    assert (s.closes, s.wins, s.losses) == (3, 2, 1)
    assert s.win_sum == pytest.approx(147 + 48) and s.loss_sum == pytest.approx(-51)
    assert s.turnover == pytest.approx(10 * sum(r[4] * r[5] for r in rows))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, recordings: Path) -> tuple[Any, Path]:
    """The deployment's two example agents (the quoter and the follower) over both bundled
    days, the engine journals kept."""
    tmp = tmp_path_factory.mktemp("bt")
    config = load_config(deployment(tmp, recordings))
    kept = tmp / "kept"
    result = Backtest(config, journal=kept, sample_s=60).run(progress=False)
    return result, kept


def test_the_frames_agree_with_the_engine_journal_kept(run: tuple[Any, Path]) -> None:
    result, kept = run
    journal = {day: [m.decode(f) for f in frames(kept / str(day))] for day in DAYS}
    every = [x for day in DAYS for x in journal[day]]
    sent = {x.order_id: x for x in every if isinstance(x, m.OrderRequested)}
    fills = [x for x in every if isinstance(x, m.Trade)]
    assert not any(isinstance(x, m.TimerFired) for x in every)  # no agent has on_timer

    trades = result.trades
    assert len(trades) == len(fills) > 50
    assert trades["trade_id"].tolist() == [t.trade_id for t in fills]
    assert trades["fee"].sum() == pytest.approx(sum(t.fee for t in fills))
    assert set(trades["agent"]) == {"mm", "trend"}
    for row in trades.itertuples():
        assert row.agent == sent[row.order_id].agent
        assert row.direction == sent[row.order_id].direction

    orders = result.orders
    refused = [x for x in every if isinstance(x, m.RiskRefused)]
    assert (orders["status"] == "refused").sum() == len(refused)
    mine = orders[orders["status"] != "refused"].set_index("order_id")
    assert set(mine.index) == set(sent)
    lots = pd.Series([t.volume for t in fills], index=[t.order_id for t in fills])
    filled = lots.groupby(level=0).sum()
    assert (mine["filled"] == filled.reindex(mine.index, fill_value=0)).all()
    done = mine[mine["status"] == "filled"]
    assert (done["filled"] == done["volume"]).all()
    cancelled = {x.order_id for x in every if isinstance(x, m.OrderCancelled)}
    assert set(mine.index[mine["status"] == "cancelled"]) == cancelled - set(
        mine.index[mine["status"] == "filled"]
    )
    assert (mine["status"] == "cancelled").sum() > 10  # the quoter re-quotes

    # the first day rolled: its close is the roll's DayClosed, agent by agent
    closed = journal[DAYS[0]][-1]
    assert isinstance(closed, m.DayClosed)
    for agent, cash in closed.cash.items():
        assert result.daily_equity.loc[DAYS[0], agent] == pytest.approx(cash, abs=1e-6)
    held = result.positions[result.positions["day"] == DAYS[0]]
    assert sorted(
        held[["agent", "instrument", "long", "short", "settlement"]].itertuples(
            index=False, name=None
        )
    ) == sorted((h.agent, h.instrument, h.long, h.short, h.settlement) for h in closed.holdings)


def test_the_pnl_is_the_trades_cash_flows_and_the_stats_add_up(run: tuple[Any, Path]) -> None:
    result, _ = run
    trades, daily, stats = result.trades, result.daily, result.stats
    # equity change = cash flows of the fills + what is still held at the last settlement - fees
    sign = trades["direction"].map({"buy": -1, "sell": 1})
    flows = (sign * trades["price"] * trades["volume"] * 300).sum()  # IF: 300 a point
    last = result.positions[result.positions["day"] == DAYS[-1]]
    held = (last["net"] * last["settlement"] * 300).sum()
    assert stats["end_equity"] - stats["start_equity"] == pytest.approx(
        flows + held - trades["fee"].sum(), abs=1e-4
    )
    assert daily["pnl"].sum() == pytest.approx(stats["end_equity"] - stats["start_equity"])
    assert stats["fills"] == len(trades) == daily["fills"].sum()
    assert stats["fees"] == pytest.approx(daily["fees"].sum())
    status = result.orders["status"]
    assert stats["orders"] == (status != "refused").sum()  # counted as it ran, and the frame
    assert stats["cancels"] == (status == "cancelled").sum() > 0
    assert stats["refused"] == (status == "refused").sum()
    assert stats["rejected"] == (status == "rejected").sum()
    assert stats["days"] == len(DAYS) and list(daily.index) == list(DAYS)
    assert stats["turnover"] == pytest.approx((trades["price"] * trades["volume"] * 300).sum())
    # each closing fill's PnL, summed as the backtest ran, against the reference on the frame
    want = pd.Series(closing_pnl(trades, {"IF2101": 300}))
    assert want.notna().sum() > 10
    assert trades["pnl"].to_numpy() == pytest.approx(want.to_numpy(), nan_ok=True)
    pnl = want.dropna()
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    assert stats["closes"] == len(pnl)
    assert stats["win_rate"] == pytest.approx(len(wins) / len(pnl))
    assert stats["profit_factor"] == pytest.approx(wins.sum() / -losses.sum())
    assert stats["avg_win"] == pytest.approx(wins.mean())
    assert stats["avg_loss"] == pytest.approx(losses.mean())
    per_day = trades.groupby("day")
    assert daily["fees"].to_numpy() == pytest.approx(per_day["fee"].sum().to_numpy())
    assert daily["fills"].tolist() == per_day.size().tolist()
    # the equity curve: a sample a minute of market time at most, each day's last at its end
    times = result.equity.index.asi8
    assert (times[1:] > times[:-1]).all()
    minutes = (times[-1] - times[0]) / 60e9
    assert 200 < len(times) < minutes + 10
    assert result.equity["account"].iloc[-1] != stats["start_equity"]


def test_a_strategy_class_from_a_notebook_is_added_with_its_parameters(
    tmp_path: Path, recordings: Path
) -> None:
    config = load_config(deployment(tmp_path, recordings))

    class Patient(Follower):  # defined here, not importable by a module path
        def on_timer(self, now_ns: int) -> None:
            self.timed = getattr(self, "timed", 0) + 1

    bt = Backtest(config, days=[DAYS[0]], keep_agents=False, journal=tmp_path / "kept")
    with pytest.raises(UserError, match="no agent"):
        bt.run(progress=False)
    assert bt.add_strategy(Patient, fast=10, slow=60) == "Patient"
    assert bt.add_strategy(Patient, fast=5, slow=30, capital=500_000) == "Patient-2"
    result = bt.run(progress=False)
    assert result.capital == {"Patient": 1_000_000.0, "Patient-2": 500_000.0}
    assert set(result.trades["agent"]) == {"Patient", "Patient-2"}
    assert result.trades["instrument"].eq("IF2101").all()  # the deployment's instruments
    timers = [x.time_ns for f in frames(tmp_path / "kept" / str(DAYS[0]))
              if isinstance(x := m.decode(f), m.TimerFired)]  # fmt: skip
    assert len(timers) > 200 and all(t % 60_000_000_000 == 0 for t in timers)  # timer_ms 60000

    misspelt = Backtest(config, days=[DAYS[0]], keep_agents=False)
    misspelt.add_strategy(Patient, fsat=10)
    with pytest.raises(UserError, match="fsat"):
        misspelt.run(progress=False)
    with pytest.raises(UserError, match="not a Strategy"):
        misspelt.add_strategy(dict)  # type: ignore[arg-type]
    with pytest.raises(UserError, match="capital"):
        misspelt.add_strategy(Patient, name="poor", capital=-1)
    with pytest.raises(UserError, match="exists"):
        misspelt.add_strategy(Strategy, name="Patient")


def test_the_report_is_one_offline_page_that_chromium_draws(
    run: tuple[Any, Path], tmp_path: Path, browser: Any
) -> None:
    result, _ = run
    path = result.report(tmp_path / "report.html")
    text = path.read_text(encoding="utf-8")
    assert "<link" not in text and "src=" not in text  # all inlined
    page = browser.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda request: requests.append(request.url))
    page.goto(path.as_uri())
    page.wait_for_selector("#price0 .uplot")
    titles = page.locator(".uplot .u-title").all_inner_texts()
    assert titles[:4] == ["Equity", "Drawdown from the highest equity so far (account, %)",
                          "Net position (lots, all agents)", "PnL per trading day"]  # fmt: skip
    assert titles[4].startswith("IF2101: last price, buys and sells")
    assert page.locator("table.stats td").first.inner_text() == "days"
    assert errors == []
    assert requests == [path.as_uri()]  # nothing fetched but the page itself
    page.close()
    assert "<iframe srcdoc=" in result.plot()._repr_html_()
