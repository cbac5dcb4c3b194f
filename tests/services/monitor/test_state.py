"""The monitor's account state on two real IF2101 days traded by the real engine and paper
simulator: positions, PnL and cash computed from the journal alone agree with the engine's own
``DayClosed`` at each roll; a snapshot plus the deltas after it is the final state; the same
journal gives the same deltas under the same numbers (a restarted monitor)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgspec
import pytest

from contracts import messages as m
from contracts.calendar import load_calendar
from contracts.config import PaperConfig, ProductRates, RiskConfig
from contracts.monitor import ConditionalView, OrderView, PnlView, PositionView, TradeView
from libshm import JournalReader, Tick, decode_tick
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine
from services.engine.products import specs_for
from services.engine.risk import RiskLimits
from services.monitor.state import AccountState
from strategies.follower import Follower
from strategies.quoter import Quoter
from tests.helpers import import_market

DAYS = (20210104, 20210105)
RATES = {"IF": ProductRates(margin_rate=0.12, open_rate=0.000023, close_rate=0.000023,
                            close_today_rate=0.000345)}  # fmt: skip
RISK = RiskConfig(max_position=5, max_net_position=5, cancel_limit=5000, cancel_reserve=20,
                  max_cancel_ratio=2.0, duplicate_window_ms=0, max_daily_loss=1e9)  # fmt: skip
CALENDAR = load_calendar()


def multiplier(instrument: str) -> int:
    product = CALENDAR.product(instrument)
    assert product is not None
    return product.multiplier


def day_ticks(recording: Any, day: int) -> list[tuple[int, Tick]]:
    reader = JournalReader(recording / str(day))
    return [(f.seq, decode_tick(f.payload)) for f in iter(reader.read, None)]


@pytest.fixture(scope="module")
def journal(tmp_path_factory: pytest.TempPathFactory) -> list[m.EngineMessage]:
    """Every engine message of two real days, the first rolled into the second with its
    positions, as the live engine journals them (each decoded from its journaled bytes)."""
    recording = import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz",
                              "IF2101_20210105.csv.gz")  # fmt: skip
    specs, phases = specs_for(["IF2101"], CALENDAR, RATES)
    out: list[m.EngineMessage] = []
    holdings: list[m.Holding] = []
    cash: dict[str, float] = {}
    for day, next_day in zip(DAYS, (*DAYS[1:], DAYS[-1] + 1), strict=True):
        engine = Engine(specs=specs, gate_config=RISK,
                        adapter=PaperBroker(specs, phases, PaperConfig()), phases=phases,
                        journal=lambda data, _t: out.append(m.decode(data)))  # fmt: skip
        limits = RiskLimits.from_config(RISK)
        engine.add_agent("mm", Quoter, ["IF2101"], 1e6, limits,
                         {"spread_ticks": 1, "size": 1, "max_position": 3})  # fmt: skip
        engine.add_agent("trend", Follower, ["IF2101"], 1e6, limits,
                         {"fast": 10, "slow": 60, "size": 1})  # fmt: skip
        ticks = day_ticks(recording, day)
        engine.open_day(day, ticks[0][1].local_time_ns, 0, holdings, cash)
        for i, (seq, tick) in enumerate(ticks):
            engine.on_tick(tick, seq)
            if i % 50 == 49:
                engine.on_timer(tick.local_time_ns + 1)
        last = ticks[-1][1]
        engine.roll_day(last.local_time_ns + 10**9, next_day, {"IF2101": last.last})
        holdings, cash = engine.holdings()
    return out


def test_positions_and_cash_from_the_journal_match_the_engine_at_each_roll(
    journal: list[m.EngineMessage],
) -> None:
    state = AccountState("fund", multiplier)
    closes = 0
    for msg in journal:
        state.apply(msg)
        if isinstance(msg, m.DayClosed):
            closes += 1
            expected = sorted((h.agent, h.instrument, h.long, h.short) for h in msg.holdings)
            assert [h[:4] for h in state.holdings()] == expected
            for h, mine in zip(sorted(msg.holdings, key=lambda h: (h.agent, h.instrument)),
                               state.holdings(), strict=True):  # fmt: skip
                assert mine[4] == pytest.approx(h.long_cost, abs=1e-6)
                assert mine[5] == pytest.approx(h.short_cost, abs=1e-6)
            assert state.cash() == pytest.approx(msg.cash, abs=1e-6)
    assert closes == 2
    assert any(isinstance(x, m.DayOpened) and x.holdings for x in journal)  # positions carried
    trades = [x for x in journal if isinstance(x, m.Trade)]
    assert len(trades) > 100
    second_day = journal[[i for i, x in enumerate(journal) if isinstance(x, m.DayOpened)][1] :]
    shown = state.snapshot().topics["trades"]  # the day's own trades only
    assert len(shown) == sum(1 for x in second_day if isinstance(x, m.Trade))
    assert all(isinstance(t, TradeView) for t in shown.values())
    assert state.trading_day == DAYS[1]


def test_realised_pnl_of_the_day_is_what_the_cash_moved_by_without_positions(
    journal: list[m.EngineMessage],
) -> None:
    """On a day that ends flat for an agent, its realised PnL minus fees is exactly the change
    of its cash from open to close (nothing is left to mark)."""
    state = AccountState("fund", multiplier)
    opening: dict[str, float] = {}
    checked = 0
    for msg in journal:
        if isinstance(msg, m.DayOpened):
            opening = dict(msg.cash)
        if isinstance(msg, m.DayRolled):
            pnl = state.snapshot().topics["pnl"]
            flat = {a for a in opening if not any(h[0] == a for h in state.holdings())}
            for agent in flat:
                view = pnl[agent]
                assert isinstance(view, PnlView)
                assert view.cash == pytest.approx(opening[agent] + view.realised - view.fees)
                checked += 1
        state.apply(msg)
    assert checked >= 1


def apply_deltas(topics: dict[str, dict[str, Any]], deltas: list[Any]) -> None:
    """What a client does with the stream: set or remove each delta's key."""
    for delta in deltas:
        values = topics.setdefault(delta.topic, {})
        if delta.value is None:
            values.pop(delta.key, None)
        else:
            values[delta.key] = delta.value


def test_a_snapshot_plus_the_deltas_after_it_is_the_final_state(
    journal: list[m.EngineMessage],
) -> None:
    state = AccountState("fund", multiplier)
    first_day = journal[: [i for i, x in enumerate(journal) if isinstance(x, m.DayOpened)][1]]
    third = len(first_day) // 3
    journal = first_day
    for msg in journal[:third]:
        state.apply(msg)
    middle = state.snapshot()
    later: list[Any] = []
    for msg in journal[third:]:
        deltas = state.apply(msg)
        later.extend(deltas)
    assert [d.seq for d in later] == list(range(middle.seq + 1, state.seq + 1))  # consecutive
    rebuilt = {t: dict(v) for t, v in middle.topics.items()}
    apply_deltas(rebuilt, later)
    final = state.snapshot().topics
    assert len(final["refusals"]) == 200  # the window held: older refusals left by delta
    assert msgspec.json.encode(rebuilt) == msgspec.json.encode(final)
    assert len(final["trades"]) > 100 and final["pnl"]


def test_the_same_journal_gives_the_same_deltas_under_the_same_numbers(
    journal: list[m.EngineMessage],
) -> None:
    first, second = AccountState("fund", multiplier), AccountState("fund", multiplier)
    a = [d for msg in journal for d in first.apply(msg)]
    b = [d for msg in journal for d in second.apply(msg)]
    assert msgspec.json.encode(a) == msgspec.json.encode(b)
    assert [d.seq for d in a if d.trading_day == DAYS[1]] == list(range(1, a[-1].seq + 1))
    # what goes over the wire decodes back to the same typed values
    wire = msgspec.json.encode(a[:500])
    assert msgspec.json.decode(wire, type=list[type(a[0])]) == a[:500]  # type: ignore[misc]


def test_a_plain_close_realises_against_yesterdays_settlement_first() -> None:
    """Two lots long from yesterday (settled at 5000) and one bought today at 5010: a plain
    close of one lot at 5020 takes a yesterday lot and realises 20 points, not 10; the order's
    fill ends it, and the position keeps one lot of each day at their own basis."""
    state = AccountState("fund", multiplier)
    t = 1_609_723_800 * 10**9
    state.apply(m.DayOpened(0, t, 20210104, [m.Holding("a", "IF2101", 2, 0, 9_980.0, 0.0,
                                                        5000.0)], {"a": 1e6}))  # fmt: skip
    orders = [m.OrderRequested(1, t, "o1", "a", "IF2101", "CFFEX", "buy", "open", 5010.0, 1,
                               "limit"),
              m.OrderRequested(1, t, "o2", "a", "IF2101", "CFFEX", "sell", "close", 5020.0, 1,
                               "limit")]  # fmt: skip
    for request in orders:
        oid, price = request.order_id, request.price
        state.apply(request)
        state.apply(m.OrderAccepted(1, t, oid, "E" + oid))
        deltas = state.apply(m.Trade(1, t, oid, "P" + oid, price, 1, 10.0))
    trade = state.value("trades", "Po2")
    assert isinstance(trade, TradeView) and trade.realised == 20 * 300
    assert state.value("orders", "o2") is None and deltas[-1].value is None
    position = state.value("positions", "a/IF2101")
    assert position is not None and msgspec.structs.asdict(position) | {} == {
        "agent": "a", "instrument": "IF2101", "long_today": 1, "long_yesterday": 1,
        "short_today": 0, "short_yesterday": 0, "long_basis": 5010.0 + 5000.0,
        "short_basis": 0.0, "long_average": pytest.approx((9_980.0 + 5010.0) * 2 / 3 / 2),
        "short_average": 0.0,
    }  # fmt: skip
    pnl = state.value("pnl", "a")
    assert isinstance(pnl, PnlView)
    assert (pnl.realised, pnl.fees, pnl.cash) == (6000.0, 20.0, 1e6 + 6000.0 - 20.0)
    # marked at 5030: today's lot made 20 points since 5010, yesterday's 30 since 5000
    assert state.instruments() == ["IF2101"]
    assert state.unrealised({"IF2101": 5030.0}) == {"a": (20 + 30) * 300.0}
    assert state.unrealised({}) == {"a": 0.0}  # no price, nothing counted


def test_the_broker_s_multiplier_journaled_for_the_day_is_the_one_pnl_uses() -> None:
    """The CTP adapter journaled the broker's facts (``InstrumentSet``): a multiplier of 200
    where the calendar says 300 makes a 20-point close realise 4,000, and a new day goes back to
    the calendar's until the broker says again."""
    state = AccountState("fund", multiplier)
    t = 1_609_723_800 * 10**9
    state.apply(m.DayOpened(0, t, 20210104, [m.Holding("a", "IF2101", 1, 0, 5_000.0, 0.0,
                                                        5000.0)], {"a": 1e6}))  # fmt: skip
    state.apply(m.InstrumentSet(0, t, "IF2101", 200, 0.2, 0.15, 0.15, 0.0, 0.0, 0.000023, 0.0,
                                0.000023, 0.0, 0.000345, 0.0))  # fmt: skip
    state.apply(m.OrderRequested(1, t, "o1", "a", "IF2101", "CFFEX", "sell", "close", 5020.0, 1,
                                 "limit"))  # fmt: skip
    state.apply(m.Trade(1, t, "o1", "P1", 5020.0, 1, 0.0))
    trade = state.value("trades", "P1")
    assert isinstance(trade, TradeView) and trade.realised == 20 * 200
    state.apply(m.DayOpened(2, t, 20210105, [m.Holding("a", "IF2101", 1, 0, 5_000.0, 0.0,
                                                        5000.0)], {"a": 1e6}))  # fmt: skip
    assert state.unrealised({"IF2101": 5010.0}) == {"a": 10 * 300.0}


def test_conditional_orders_show_while_they_are_open() -> None:
    """A journal of conditional orders on the real day (test_conditional's): each shows from
    its placing, waiting then working once triggered, and leaves when it ends."""
    from tests.services.engine.test_conditional import every_kind, run

    out = import_market(Path(tempfile.mkdtemp()), "IF2101_20210104.csv.gz")
    reader = JournalReader(out / "20210104")
    day = [(f.seq, decode_tick(f.payload)) for f in iter(reader.read, None)]
    reader.close()
    _, journal = run(every_kind, day[:3000])
    state = AccountState("acct", multiplier)
    seen: dict[str, list[str | None]] = {}
    for msg in journal:
        for delta in state.apply(msg):
            if delta.topic == "conditionals":
                value = delta.value
                seen.setdefault(delta.key, []).append(
                    value.state if isinstance(value, ConditionalView) else None)  # fmt: skip
    placed = [x.cond_id for x in journal if isinstance(x, m.ConditionalPlaced)]
    ended = {x.cond_id for x in journal if isinstance(x, m.ConditionalEnded)}
    triggered = {x.cond_id for x in journal if isinstance(x, m.ConditionalTriggered)}
    assert list(seen) == placed and ended and triggered
    for cond_id, states in seen.items():
        assert states[-1] is None if cond_id in ended else states[-1] in ("waiting", "working")
        if cond_id in triggered:
            assert "working" in states
    left = state.snapshot().topics.get("conditionals", {})
    assert set(left) == set(placed) - ended


def test_another_terminal_s_orders_and_fills_show_under_external() -> None:
    """The CTP adapter journals an order of another terminal of the account (``ExternalOrder``)
    and its fills (``ExternalTrade``): the monitor shows the order while it works and the fill
    and position under the agent ``external``, apart from every agent's."""
    state = AccountState("fund", multiplier)
    t = 1_609_723_800 * 10**9
    state.apply(m.DayOpened(0, t, 20210104, [], {"a": 1e6}))
    state.apply(m.ExternalOrder(1, t, "ext:CFFEX:9", "IF2101", "CFFEX", "sell", "open", 5200.0,
                                3, 0, "working", "未成交"))  # fmt: skip
    order = state.value("orders", "ext:CFFEX:9")
    assert isinstance(order, OrderView)
    assert (order.agent, order.direction, order.volume, order.state, order.exchange_order_id) == (
        "external",
        "sell",
        3,
        "accepted",
        "CFFEX:9",
    )
    state.apply(m.ExternalTrade(2, t, "ext:CFFEX:9", "CFFEX:71", "IF2101", "sell", "open",
                                5200.0, 1))  # fmt: skip
    order = state.value("orders", "ext:CFFEX:9")
    assert isinstance(order, OrderView) and order.filled == 1
    trade = state.value("trades", "CFFEX:71")
    assert isinstance(trade, TradeView) and (trade.agent, trade.volume) == ("external", 1)
    position = state.value("positions", "external/IF2101")
    assert isinstance(position, PositionView) and position.short_today == 1
    state.apply(m.ExternalOrder(3, t, "ext:CFFEX:9", "IF2101", "CFFEX", "sell", "open", 5200.0,
                                3, 1, "cancelled", "已撤单"))  # fmt: skip
    assert state.value("orders", "ext:CFFEX:9") is None
    assert state.value("positions", "a/IF2101") is None  # no agent's
