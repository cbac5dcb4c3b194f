"""The engine with the CTP adapter on the real IF2101 day, the shell's hand-over played as
``live`` plays it (``deliver`` then ``pump``), the front played with openctp-ctp's own structs
(``adapters/ctp/front.py``): each order's ref journaled before it leaves; reconciliation at the
login that lets trading start, repairs a missed trade from the broker's list, or halts the
account with a report and sends nothing; and a recovery that sends no order twice."""

from __future__ import annotations

from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import structlog

from contracts import messages as m
from contracts.calendar import load_calendar
from contracts.config import ProductRates, RiskConfig
from contracts.ctp_locale import has_locale
from libshm import Tick
from services.engine.core import Engine
from services.engine.ctp_link import ledger_positions, pump
from services.engine.live import deliver
from services.engine.products import specs_for
from services.engine.risk import RiskLimits
from services.engine.strategy import Strategy
from tests.helpers import require_ctp_locale

if not has_locale():  # importing openctp-ctp without it aborts the process
    require_ctp_locale()  # skips the module, or fails it under CI

from openctp_ctp import tdapi

from services.engine.adapters.ctp.reconcile import Lots
from tests.services.engine.adapters.ctp.front import Rig, rtn_order, rtn_trade, struct

DAY = 20210104
RATES = {
    "IF": ProductRates(
        margin_rate=0.12, open_rate=0.000023, close_rate=0.000023, close_today_rate=0.000345
    )
}
RISK = RiskConfig(max_position=5, max_net_position=5, max_daily_loss=1e9, duplicate_window_ms=0)


class BuysOnce(Strategy):
    """One lot at the bid on its ``at``-th tick."""

    def on_start(self) -> None:
        self.seen = 0

    def on_tick(self, tick: Tick) -> None:
        self.seen += 1
        if self.seen == self.params["at"]:
            self.buy("IF2101", tick.bid_price1, 1)


def make(rig: Rig, journal: list[m.EngineMessage], at: int = 3) -> Engine:
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    engine = Engine(
        specs=specs,
        gate_config=RISK,
        adapter=rig.adapter,
        phases=phases,
        journal=lambda data, _t: journal.append(m.decode(data)),
    )
    engine.add_agent(
        "mm", BuysOnce, ["IF2101"], 1_000_000.0, RiskLimits.from_config(RISK), {"at": at}
    )
    return engine


def shell(engine: Engine, rig: Rig) -> None:
    """What the live loop does between ticks: hand orders over, let the session's thread turn,
    and give the engine what it handed back."""
    deliver(engine)
    rig.poll()
    pump(engine, rig.adapter, engine.now)
    deliver(engine)
    rig.poll()


def position_row(side: str, position: int, today: int) -> Any:
    return struct(
        "CThostFtdcInvestorPositionField",
        InstrumentID="IF2101",
        PosiDirection="2" if side == "long" else "3",
        Position=position,
        TodayPosition=today,
        YdPosition=position - today,
    )


@pytest.fixture
def early(ticks: list[tuple[int, Tick]]) -> list[tuple[int, Tick]]:
    """The day's first ticks (the engine's conftest gives the whole day)."""
    return ticks[:50]


def filled_while_away(requested: m.OrderRequested) -> tuple[Any, dict[str, list[Any]]]:
    """The order (ref 13) filled at the exchange while the engine was away: the fill, and the
    broker's state at the next login (the 2 lots carried and the new one, the order filled,
    the trade in the day's list)."""
    fill = rtn_trade("8001", "700001", price=requested.price, volume=1, instrument="IF2101",
                     exchange="CFFEX")  # fmt: skip
    done = rtn_order(13, sys_id="700001", instrument="IF2101", exchange="CFFEX", traded=1,
                     status=tdapi.THOST_FTDC_OST_AllTraded)  # fmt: skip
    return fill, {"position": [position_row("long", 3, 1)], "order": [done], "trade": [fill]}


HELD = m.Holding("mm", "IF2101", 2, 0, 2 * 5200.0, 0.0, 5200.0)


def rigged(tmp_path: Path) -> tuple[Rig, list[m.EngineMessage], Engine]:
    """A front's stand-in for IF2101, and the engine on its adapter with its journal."""
    rig, journal = Rig(tmp_path, instruments=["IF2101"]), list[m.EngineMessage]()
    return rig, journal, make(rig, journal)


def run_ticks(engine: Engine, rig: Rig, ticks: list[tuple[int, Tick]]) -> None:
    """Each tick, then the live loop's turn between ticks."""
    for seq, tick in ticks:
        engine.on_tick(tick, seq)
        shell(engine, rig)


def open_and_log_in(
    rig: Rig, engine: Engine, ticks: list[tuple[int, Tick]], broker: dict[str, list[Any]]
) -> None:
    engine.open_day(DAY, ticks[0][1].local_time_ns, ticks[0][0], [HELD])
    rig.log_in(broker=broker)
    shell(engine, rig)


def test_a_matching_broker_state_lets_trading_start_and_each_ref_is_journaled_first(
    tmp_path: Path, early: list[tuple[int, Tick]]
) -> None:
    rig, journal, engine = rigged(tmp_path)
    open_and_log_in(rig, engine, early, {"position": [position_row("long", 2, 0)]})
    assert rig.adapter.status == "trading"
    assert not any(isinstance(x, m.Halt) for x in journal)
    handed: list[bool] = []  # at each hand-over to the session's thread: was its ref journaled?
    put = rig.session.requests.put

    def hand_over(request: tuple[Any, ...]) -> None:
        handed.append(
            any(isinstance(x, m.OrderRouted) and x.order_id == request[2] for x in journal)
        )
        put(request)

    rig.adapter._requests = type("Q", (), {"put": staticmethod(hand_over)})()
    run_ticks(engine, rig, early[:5])
    (insert,) = rig.api.sent("ReqOrderInsert")
    assert handed == [True]
    kinds = [type(x).__name__ for x in journal]
    at = kinds.index("OrderRequested")
    assert kinds[at + 1] == "OrderRouted"  # journaled before it was handed over
    routed = journal[at + 1]
    requested = journal[at]
    assert isinstance(routed, m.OrderRouted) and isinstance(requested, m.OrderRequested)
    assert (routed.order_id, routed.front_id, routed.session_id, routed.order_ref) == (
        requested.order_id,
        1,
        7001,
        13,
    )
    assert insert["OrderRef"] == "13" and insert["InstrumentID"] == "IF2101"
    assert insert["ExchangeID"] == "CFFEX"


def test_a_position_difference_explained_by_a_missed_trade_is_repaired(
    tmp_path: Path, early: list[tuple[int, Tick]]
) -> None:
    """The order filled while the line was down and the flow files were lost (so no replay):
    the broker's trade list has the fill, which is booked, and the ledger agrees."""
    rig, journal, engine = rigged(tmp_path)
    open_and_log_in(rig, engine, early, {"position": [position_row("long", 2, 0)]})
    run_ticks(engine, rig, early[:5])
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="700001", instrument="IF2101", exchange="CFFEX"))
    shell(engine, rig)
    rig.spi.OnFrontDisconnected(0x1001)
    shell(engine, rig)
    (requested,) = [x for x in journal if isinstance(x, m.OrderRequested)]
    _, broker = filled_while_away(requested)
    rig.poll(2.0)  # the next session
    rig.log_in(session_id=7002, max_order_ref="13", broker=broker)
    shell(engine, rig)
    trades = [x for x in journal if isinstance(x, m.Trade)]
    assert [(t.order_id, t.trade_id, t.volume) for t in trades] == [
        (requested.order_id, "CFFEX:8001", 1)
    ]
    assert ledger_positions(engine) == {("IF2101", "long"): Lots(1, 2)}
    assert rig.adapter.status == "trading"
    assert not any(isinstance(x, m.Halt) for x in journal)


def test_an_unexplained_difference_halts_the_account_and_no_order_is_sent(
    tmp_path: Path, early: list[tuple[int, Tick]]
) -> None:
    rig, journal, engine = rigged(tmp_path)
    open_and_log_in(
        rig, engine, early, {"position": [position_row("long", 2, 0), position_row("short", 3, 3)]}
    )
    (halt,) = [x for x in journal if isinstance(x, m.Halt)]
    assert halt.scope == "account"
    assert halt.requester == "ctp reconciliation: IF2101 short: expected 0 lots, found 3"
    assert engine.gate.state("account", "") == "halted"
    run_ticks(engine, rig, early[:5])
    (refused,) = [x for x in journal if isinstance(x, m.RiskRefused)]
    assert refused.code == "HALTED"
    assert rig.api.sent("ReqOrderInsert") == []


def test_a_recovered_engine_sends_no_order_twice_and_knows_its_returns(
    tmp_path: Path, early: list[tuple[int, Tick]]
) -> None:
    rig, journal, engine = rigged(tmp_path)
    open_and_log_in(rig, engine, early, {"position": [position_row("long", 2, 0)]})
    run_ticks(engine, rig, early[:5])
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="700001", instrument="IF2101", exchange="CFFEX"))
    external = rtn_order(
        13, session_id=5555, sys_id="990001", instrument="IF2101", exchange="CFFEX"
    )  # another terminal's, with the same ref
    rig.spi.OnRtnOrder(external)
    shell(engine, rig)
    assert [x.order_id for x in journal if isinstance(x, m.ExternalOrder)] == ["ext:CFFEX:990001"]
    # the process dies here; a new one recovers the journal and logs in again
    rig2, journal2 = Rig(tmp_path, instruments=["IF2101"]), list[m.EngineMessage]()
    again = make(rig2, journal2)
    source: Iterator[tuple[int, Tick]] = iter(early)
    again.recover(list(journal), partial(next, source))
    again.adapter.restore(journal, again.orders)
    (requested,) = [x for x in journal if isinstance(x, m.OrderRequested)]
    fill, broker = filled_while_away(requested)
    rig2.log_in(session_id=7300, max_order_ref="1", broker=broker)
    rig2.spi.OnRtnTrade(fill)  # the private flow's replay: the same trade, once
    rig2.spi.OnRtnOrder(external)  # and the other terminal's order: journaled already
    shell(again, rig2)
    assert not any(isinstance(x, m.ExternalOrder) for x in journal2)
    run_ticks(again, rig2, early[5:8])
    assert rig2.api.sent("ReqOrderInsert") == []  # the journaled order never left again
    assert [x.trade_id for x in journal + journal2 if isinstance(x, m.Trade)] == ["CFFEX:8001"]
    assert ledger_positions(again) == {("IF2101", "long"): Lots(1, 2)}
    assert rig2.adapter.status == "trading"


def broker_facts(multiplier: int = 300) -> dict[str, list[Any]]:
    """IF2101 as a broker's queries give it: its facts, margin by money per side plus an amount
    per lot on the long side, and commission rates stated for the product (IF)."""
    return {
        "instrument": [struct("CThostFtdcInstrumentField", InstrumentID="IF2101",
                              ExchangeID="CFFEX", ProductID="IF", PriceTick=0.2,
                              VolumeMultiple=multiplier, IsTrading=1)],
        "margin": [struct("CThostFtdcInstrumentMarginRateField", InstrumentID="IF2101",
                          LongMarginRatioByMoney=0.15, LongMarginRatioByVolume=100.0,
                          ShortMarginRatioByMoney=0.16, ShortMarginRatioByVolume=0.0)],
        "commission": [struct("CThostFtdcInstrumentCommissionRateField", InstrumentID="IF",
                              OpenRatioByMoney=0.000025, OpenRatioByVolume=0.0,
                              CloseRatioByMoney=0.000025, CloseRatioByVolume=0.0,
                              CloseTodayRatioByMoney=0.00023, CloseTodayRatioByVolume=1.0)],
        "position": [position_row("long", 2, 0)],
    }  # fmt: skip


def test_the_broker_s_rates_replace_the_table_for_the_day_and_a_recovery_takes_them(
    tmp_path: Path, early: list[tuple[int, Tick]]
) -> None:
    rig, journal, engine = rigged(tmp_path)
    open_and_log_in(rig, engine, early, broker_facts())
    (facts,) = [x for x in journal if isinstance(x, m.InstrumentSet)]
    assert (facts.long_margin_rate, facts.short_margin_rate, facts.long_margin_per_lot) == (
        0.15,
        0.16,
        100.0,
    )
    assert (facts.open_rate, facts.close_today_rate, facts.close_today_per_lot) == (
        0.000025,
        0.00023,
        1.0,
    )
    # by hand: 2 lots carried at 5,200 (the mark until a tick), 300 a point, 15 % + 100 a lot
    assert engine.ledger.accounts["mm"].margin() == 2 * (5200 * 300 * 0.15 + 100)  # 468,200
    run_ticks(engine, rig, early[:5])
    (requested,) = [x for x in journal if isinstance(x, m.OrderRequested)]
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="700001", instrument="IF2101", exchange="CFFEX"))
    rig.spi.OnRtnTrade(rtn_trade("8001", "700001", price=requested.price, instrument="IF2101",
                                 exchange="CFFEX"))  # fmt: skip
    shell(engine, rig)
    (trade,) = [x for x in journal if isinstance(x, m.Trade)]
    assert trade.fee == pytest.approx(requested.price * 300 * 0.000025)  # open: by money
    # a restart recovers the same facts from the journal
    again = make(Rig(tmp_path, instruments=["IF2101"]), [])
    source: Iterator[tuple[int, Tick]] = iter(early)
    again.recover(list(journal), partial(next, source))
    assert again.specs["IF2101"] == engine.specs["IF2101"]
    assert again.ledger.accounts["mm"].margin() == engine.ledger.accounts["mm"].margin()


def test_a_multiplier_that_changed_is_said_and_the_broker_s_is_used(
    tmp_path: Path, early: list[tuple[int, Tick]]
) -> None:
    rig, _, engine = rigged(tmp_path)
    with structlog.testing.capture_logs() as logs:
        open_and_log_in(rig, engine, early, broker_facts(multiplier=200))
    (said,) = [x for x in logs if x["event"] == "ctp_instrument_differs"]
    assert (said["configured"], said["broker"]) == (
        {"multiplier": 300, "price_tick": 0.2},
        {"multiplier": 200, "price_tick": 0.2},
    )
    assert engine.specs["IF2101"].multiplier == 200
    assert engine.ledger.accounts["mm"].margin() == 2 * (5200 * 200 * 0.15 + 100)


def test_without_the_broker_s_rates_the_table_stays_and_it_is_said(
    tmp_path: Path, early: list[tuple[int, Tick]]
) -> None:
    rig, journal, engine = rigged(tmp_path)
    facts = broker_facts()
    del facts["commission"]
    with structlog.testing.capture_logs() as logs:
        open_and_log_in(rig, engine, early, facts)
    assert not any(isinstance(x, m.InstrumentSet) for x in journal)
    (said,) = [x for x in logs if x["event"] == "ctp_broker_facts_missing"]
    assert said["missing"] == ["commission rate"]
    assert engine.ledger.accounts["mm"].margin() == 2 * 5200 * 300 * 0.12


def test_an_instrument_that_expires_today_or_does_not_trade_is_said(
    tmp_path: Path, early: list[tuple[int, Tick]]
) -> None:
    rig, _, engine = rigged(tmp_path)
    facts = broker_facts()
    facts["instrument"] = [
        struct("CThostFtdcInstrumentField", InstrumentID="IF2101", ExchangeID="CFFEX",
               ProductID="IF", PriceTick=0.2, VolumeMultiple=300, ExpireDate="20210105",
               IsTrading=0)
    ]  # fmt: skip
    with structlog.testing.capture_logs() as logs:
        open_and_log_in(rig, engine, early, facts)  # the login's trading day: 20210105
    said = {x["event"] for x in logs if x["event"].startswith("ctp_instrument_")}
    assert said == {"ctp_instrument_not_trading", "ctp_instrument_expires_today"}
