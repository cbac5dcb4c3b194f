"""Contract tests of the CTP session and adapter: the SPI driven with openctp-ctp's own structs as
a front would send them (``front.py``), the requests checked as the real request structs the
session built. Login with and without authentication, a wrong password, the settlement
confirmation and the start-up queries at CTP's pace; an order accepted, part filled, filled;
refused by the front and by the exchange; a cancel refused; FAK and FOK outcomes; a disconnect in
the middle of an order's life and a reconnect whose replay gives nothing twice; an external
order; a restart that recognises the earlier session's returns."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts import messages as m
from contracts.ctp_locale import has_locale
from tests.helpers import require_ctp_locale

if not has_locale():  # importing openctp-ctp without it aborts the process
    require_ctp_locale()  # skips the module, or fails it under CI

from openctp_ctp import tdapi

from services.engine.adapters.ctp.items import BrokerState
from services.engine.adapters.ctp.session import PERMANENT_LOGIN_ERRORS
from services.engine.events import Accepted, Cancelled, CancelRefused, Rejected, Traded
from services.engine.orders import Event, Order
from tests.services.engine.adapters.ctp.front import (
    APP,
    AUTH_CODE,
    BROKER,
    PASSWORD,
    USER,
    Rig,
    rsp_info,
    rtn_order,
    rtn_trade,
    struct,
)

NOW = 1_609_765_201_000_000_000


def order(n: int = 1, kind: str = "limit", volume: int = 3, instrument: str = "rb2105") -> Order:
    return Order(f"mm-20210105-{n}", "mm", instrument, "buy", "open", 4300.0, volume, kind)


def routed_and_sent(rig: Rig, o: Order) -> dict[str, object]:
    """The shell's hand-over (``live.deliver``): route, then submit; the session sends it."""
    assert rig.adapter.route(o) is not None
    rig.adapter.submit(o, NOW)
    rig.poll()
    return rig.api.sent("ReqOrderInsert")[-1]


def drained(rig: Rig) -> list[Any]:
    rig.poll()
    return rig.adapter.drain(NOW)


def trading(rig: Rig, **login: Any) -> None:
    rig.log_in(**login)
    items = drained(rig)
    assert isinstance(items[-1], BrokerState)
    rig.adapter.reconciled(True, NOW)


def test_login_with_authentication_confirms_and_queries_at_ctp_s_pace(tmp_path: Path) -> None:
    rig = Rig(tmp_path, instruments=["rb2105", "m2105"])
    rig.log_in(
        broker={
            "instrument": [
                struct(
                    "CThostFtdcInstrumentField",
                    InstrumentID="rb2105",
                    ExchangeID="SHFE",
                    PriceTick=1.0,
                    VolumeMultiple=10,
                )
            ],
            "position": [
                struct(
                    "CThostFtdcInvestorPositionField",
                    InstrumentID="rb2105",
                    PosiDirection="2",
                    Position=5,
                    TodayPosition=2,
                    YdPosition=3,
                )
            ],
        }
    )
    api = rig.api
    assert api.topics == [("private", tdapi.THOST_TERT_RESUME), ("public", tdapi.THOST_TERT_QUICK)]
    assert rig.flow_path == str(tmp_path / "flow") + "/"
    methods = [name for name, _ in api.requests]
    assert methods[:3] == ["ReqAuthenticate", "ReqUserLogin", "ReqSettlementInfoConfirm"]
    auth = api.sent("ReqAuthenticate")[0]
    assert (auth["BrokerID"], auth["UserID"], auth["AppID"], auth["AuthCode"]) == (
        BROKER,
        USER,
        APP,
        AUTH_CODE,
    )
    login = api.sent("ReqUserLogin")[0]
    assert (login["BrokerID"], login["UserID"], login["Password"]) == (BROKER, USER, PASSWORD)
    confirm = api.sent("ReqSettlementInfoConfirm")[0]
    assert (confirm["BrokerID"], confirm["InvestorID"]) == (BROKER, USER)
    # per instrument its facts and rates, then the account, positions, orders, trades
    assert methods[3:] == [
        "ReqQryInstrument",
        "ReqQryInstrumentMarginRate",
        "ReqQryInstrumentCommissionRate",
        "ReqQryInstrument",
        "ReqQryInstrumentMarginRate",
        "ReqQryInstrumentCommissionRate",
        "ReqQryTradingAccount",
        "ReqQryInvestorPosition",
        "ReqQryOrder",
        "ReqQryTrade",
    ]
    assert [q["InstrumentID"] for q in api.sent("ReqQryInstrumentMarginRate")] == [
        "rb2105",
        "m2105",
    ]
    items = drained(rig)
    assert isinstance(items[-1], BrokerState)
    state = items[-1]
    assert state.trading_day == "20210105"
    assert state.rows["instrument"] == [
        {
            "InstrumentID": "rb2105",
            "ExchangeID": "SHFE",
            "ProductID": "",
            "PriceTick": 1.0,
            "VolumeMultiple": 10,
            "ExpireDate": "",
            "IsTrading": 0,
        }
    ]
    assert state.rows["position"][0]["TodayPosition"] == 2
    assert rig.adapter.status == "reconciling"  # no order leaves before the shell's verdict
    assert rig.adapter.route(order()) is None


def test_queries_wait_a_second_apart_and_a_busy_answer_is_sent_again(tmp_path: Path) -> None:
    busy = {"n": 0}

    def results(method: str) -> int:
        if method == "ReqQryTradingAccount" and busy["n"] < 2:
            busy["n"] += 1
            return -3  # CTP's flow control: too many requests a second
        return 0

    rig = Rig(tmp_path, results=results)
    rig.log_in()
    sends = rig.api.sent("ReqQryTradingAccount")
    assert len(sends) == 3  # twice held by the flow control, then answered
    assert isinstance(drained(rig)[-1], BrokerState)


def test_login_without_authentication(tmp_path: Path) -> None:
    rig = Rig(tmp_path, auth_code="")
    rig.log_in()
    assert [name for name, _ in rig.api.requests][:2] == [
        "ReqUserLogin",
        "ReqSettlementInfoConfirm",
    ]


@pytest.mark.parametrize(
    ("step", "error_id", "text"),
    [
        ("login", 3, "CTP:不合法的登录"),
        ("authentication", 63, "CTP:客户端认证失败"),
    ],
)
def test_a_wrong_password_or_auth_code_is_reported_once_and_not_retried(
    tmp_path: Path, step: str, error_id: int, text: str
) -> None:
    rig = Rig(tmp_path)
    rig.session.start(threaded=False)
    rig.spi.OnFrontConnected()
    rig.poll()
    if step == "login":
        rig.spi.OnRspAuthenticate(None, rsp_info(), 1, True)
        rig.poll()
        rig.spi.OnRspUserLogin(
            struct("CThostFtdcRspUserLoginField"), rsp_info(error_id, text), 2, True
        )
    else:
        rig.spi.OnRspAuthenticate(None, rsp_info(error_id, text), 1, True)
    items = drained(rig)
    assert rig.session.state == "failed" and rig.api.released
    assert rig.adapter.status == "failed"
    assert f"{step} refused: CTP error {error_id}: {text}" in rig.adapter.reason
    assert PERMANENT_LOGIN_ERRORS[error_id] in rig.adapter.reason
    for _ in range(10):  # an hour later: still one API, never connected again
        rig.poll(360.0)
    assert len(rig.apis) == 1
    o = order()
    assert rig.adapter.route(o) is None
    rig.adapter.submit(o, NOW)
    assert items == [] and drained(rig) == [
        Rejected(o.order_id, "LOGIN_REFUSED", f"the order did not leave: {rig.adapter.reason}", NOW)
    ]


def test_a_login_error_retrying_can_fix_is_retried_with_backoff(tmp_path: Path) -> None:
    rig = Rig(tmp_path, fronts=["tcp://127.0.0.1:1", "tcp://127.0.0.1:2"])
    rig.session.start(threaded=False)
    rig.spi.OnFrontConnected()
    rig.poll()
    rig.spi.OnRspAuthenticate(None, rsp_info(), 1, True)
    rig.poll()
    rig.spi.OnRspUserLogin(None, rsp_info(8, "CTP:前置不活跃"), 2, True)  # front not active
    rig.poll()  # the next front of the round at once
    assert rig.apis[0].released and len(rig.apis) == 2
    assert rig.api.fronts == ["tcp://127.0.0.1:2"]
    rig.spi.OnFrontDisconnected(0x2003)  # that one too: the round is done, 1 s +-20 % to wait
    rig.poll()
    assert rig.apis[1].released and rig.session.state == "waiting"
    rig.poll(0.79)
    assert len(rig.apis) == 2
    rig.poll(0.42)
    assert len(rig.apis) == 3 and rig.api.fronts == ["tcp://127.0.0.1:1"]
    assert rig.adapter.status == "disconnected"


def test_an_order_accepted_part_filled_and_filled(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    trading(rig)
    o = order()
    sent = routed_and_sent(rig, o)
    # above the login's MaxOrderRef (12), with the broker and investor
    assert (sent["OrderRef"], sent["BrokerID"], sent["InvestorID"], sent["UserID"]) == (
        "13",
        BROKER,
        USER,
        USER,
    )
    assert (
        sent["InstrumentID"],
        sent["ExchangeID"],
        sent["LimitPrice"],
        sent["VolumeTotalOriginal"],
        sent["TimeCondition"],
    ) == ("rb2105", "SHFE", 4300.0, 3, tdapi.THOST_FTDC_TC_GFD)
    rig.spi.OnRtnOrder(
        rtn_order(
            13, submit=tdapi.THOST_FTDC_OSS_InsertSubmitted, status=tdapi.THOST_FTDC_OST_Unknown
        )
    )  # the front's, no number
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="880001"))  # the exchange's
    rig.spi.OnRtnTrade(rtn_trade("55001", "880001", volume=1))
    rig.spi.OnRtnOrder(
        rtn_order(13, sys_id="880001", traded=1, status=tdapi.THOST_FTDC_OST_PartTradedQueueing)
    )
    rig.spi.OnRtnTrade(rtn_trade("55002", "880001", volume=2, price=4299.0))
    rig.spi.OnRtnOrder(
        rtn_order(13, sys_id="880001", traded=3, status=tdapi.THOST_FTDC_OST_AllTraded)
    )
    events = drained(rig)
    assert [type(e) for e in events] == [Accepted, Traded, Traded]
    assert events[0].exchange_order_id == "SHFE:880001"
    assert [(e.trade_id, e.price, e.volume) for e in events[1:]] == [
        ("SHFE:55001", 4300.0, 1),
        ("SHFE:55002", 4299.0, 2),
    ]
    assert all(e.order_id == o.order_id for e in events)


def test_refused_by_the_front_with_ctp_s_message_decoded_and_said_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    trading(rig)
    o = order()
    sent = routed_and_sent(rig, o)
    answer = struct("CThostFtdcInputOrderField", OrderRef=sent["OrderRef"])
    rig.spi.OnRspOrderInsert(answer, rsp_info(31, "CTP:资金不足"), 9, True)
    rig.spi.OnErrRtnOrderInsert(answer, rsp_info(31, "CTP:资金不足"))  # both come for one
    assert drained(rig) == [Rejected(o.order_id, "CTP-31", "CTP:资金不足", NOW)]


def test_refused_by_the_exchange(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    trading(rig)
    o = order()
    routed_and_sent(rig, o)
    refused = rtn_order(13, submit=tdapi.THOST_FTDC_OSS_InsertRejected,
                        status=tdapi.THOST_FTDC_OST_Canceled, text="价格超出涨跌停板")  # fmt: skip
    rig.spi.OnRtnOrder(refused)
    rig.spi.OnRtnOrder(refused)  # said twice (a replay): rejected once
    assert drained(rig) == [
        Rejected(o.order_id, "EXCHANGE", "价格超出涨跌停板", NOW, 1_609_765_201_000_000_000)
    ]


def test_a_cancel_by_either_key_and_a_cancel_refused(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    trading(rig)
    first, second = order(1), order(2)
    routed_and_sent(rig, first)
    routed_and_sent(rig, second)
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="880001"))
    drained(rig)
    rig.adapter.cancel(first, NOW)  # numbered by the exchange: by its OrderSysID, as sent
    rig.adapter.cancel(second, NOW)  # not yet: by the session's FrontID, SessionID, OrderRef
    rig.poll()
    by_sys, by_ref = rig.api.sent("ReqOrderAction")
    assert (by_sys["OrderSysID"], by_sys["ExchangeID"], by_sys["ActionFlag"]) == (
        f"{'880001':>20}",
        "SHFE",
        tdapi.THOST_FTDC_AF_Delete,
    )
    assert (by_ref["FrontID"], by_ref["SessionID"], by_ref["OrderRef"], by_ref["OrderSysID"]) == (
        1,
        7001,
        "14",
        "",
    )
    action = struct(
        "CThostFtdcOrderActionField", FrontID=1, SessionID=7001, OrderRef="14", ExchangeID="SHFE"
    )
    rig.spi.OnErrRtnOrderAction(action, rsp_info(26, "CTP:报单已全成交或已撤销，不能再撤"))
    assert drained(rig) == [
        CancelRefused(second.order_id, "CTP-26: CTP:报单已全成交或已撤销，不能再撤", NOW)
    ]


@pytest.mark.parametrize("kind", ["fak", "fok"])
def test_fak_and_fok_outcomes(tmp_path: Path, kind: str) -> None:
    rig = Rig(tmp_path)
    trading(rig)
    o = order(kind=kind)
    sent = routed_and_sent(rig, o)
    assert (sent["TimeCondition"], sent["VolumeCondition"]) == (
        tdapi.THOST_FTDC_TC_IOC,
        tdapi.THOST_FTDC_VC_AV if kind == "fak" else tdapi.THOST_FTDC_VC_CV,
    )
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="880002"))
    if kind == "fak":  # 1 of 3 filled, the rest cancelled by the exchange
        rig.spi.OnRtnTrade(rtn_trade("55010", "880002", volume=1))
        rig.spi.OnRtnOrder(
            rtn_order(
                13, sys_id="880002", traded=1, status=tdapi.THOST_FTDC_OST_PartTradedNotQueueing
            )
        )
    rig.spi.OnRtnOrder(
        rtn_order(
            13,
            sys_id="880002",
            traded=1 if kind == "fak" else 0,
            status=tdapi.THOST_FTDC_OST_Canceled,
            text="已撤单",
        )
    )
    events = drained(rig)
    want = [Accepted, Traded, Cancelled] if kind == "fak" else [Accepted, Cancelled]
    assert [type(e) for e in events] == want
    assert events[-1].text == "已撤单"


def test_a_disconnect_mid_order_and_a_reconnect_whose_replay_gives_nothing_twice(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    trading(rig)
    o = order()
    routed_and_sent(rig, o)
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="880001"))
    rig.spi.OnRtnTrade(rtn_trade("55001", "880001", volume=1))
    assert [type(e) for e in drained(rig)] == [Accepted, Traded]
    rig.spi.OnFrontDisconnected(0x1001)
    rig.poll()
    assert rig.api.released
    drained(rig)
    assert rig.adapter.status == "disconnected"
    assert "disconnected (reason 0x1001: network read failed)" in rig.adapter.reason
    late = order(2)
    assert rig.adapter.route(late) is None  # refused with the reason, never routed
    rig.adapter.submit(late, NOW)
    rig.adapter.cancel(o, NOW)
    refused = drained(rig)
    assert [type(e) for e in refused] == [Rejected, CancelRefused]
    assert refused[0].code == "DISCONNECTED" and "0x1001" in refused[0].text
    assert refused[1].text.startswith("DISCONNECTED: the cancel did not leave")
    # the next round after the backoff (1 s +-20 %): a new API, which resumes the private flow
    rig.poll(0.5)
    assert len(rig.apis) == 1
    rig.poll(1.0)
    assert len(rig.apis) == 2
    assert rig.api.topics[0] == ("private", tdapi.THOST_TERT_RESUME)
    rig.spi.OnFrontConnected()
    rig.poll()
    rig.spi.OnRspAuthenticate(None, rsp_info(), 1, True)
    rig.poll()
    rig.spi.OnRspUserLogin(
        struct(
            "CThostFtdcRspUserLoginField",
            FrontID=2,
            SessionID=9002,
            MaxOrderRef="1",
            TradingDay="20210105",
        ),
        rsp_info(),
        2,
        True,
    )
    # CTP replays the flow: the order's returns and its first trade again, and the second
    # trade, which happened while the line was down
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="880001"))
    rig.spi.OnRtnTrade(rtn_trade("55001", "880001", volume=1))
    rig.spi.OnRtnTrade(rtn_trade("55002", "880001", volume=2))
    rig.spi.OnRtnOrder(
        rtn_order(13, sys_id="880001", traded=3, status=tdapi.THOST_FTDC_OST_AllTraded)
    )
    rig.poll()
    rig.spi.OnRspSettlementInfoConfirm(None, rsp_info(), 3, True)
    rig.answer_queries(
        {"order": [rtn_order(13, sys_id="880001", traded=3, status=tdapi.THOST_FTDC_OST_AllTraded)]}
    )
    events = drained(rig)
    assert [type(e) for e in events] == [Traded, BrokerState]
    assert (events[0].trade_id, events[0].volume) == ("SHFE:55002", 2)
    # the new session's refs continue above the old ones, though its MaxOrderRef is 1
    rig.adapter.reconciled(True, NOW)
    assert rig.adapter.route(order(3)) == (2, 9002, 14)


def test_cancels_while_disconnected_can_wait_for_the_next_session(tmp_path: Path) -> None:
    rig = Rig(tmp_path, cancel_while_disconnected="queue")
    trading(rig)
    o = order()
    routed_and_sent(rig, o)
    rig.spi.OnFrontDisconnected(0x1001)
    drained(rig)
    rig.adapter.cancel(o, NOW)
    assert drained(rig) == []
    rig.poll(2.0)
    rig.log_in(front_id=1, session_id=7002, max_order_ref="20")
    drained(rig)
    assert rig.api.sent("ReqOrderAction") == []  # not before the reconciliation
    rig.adapter.reconciled(True, NOW)
    rig.poll()
    (cancel,) = rig.api.sent("ReqOrderAction")
    assert (cancel["FrontID"], cancel["SessionID"], cancel["OrderRef"]) == (1, 7001, "13")


def test_an_external_order_is_journaled_for_the_monitor_and_gives_the_engine_nothing(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    trading(rig)
    # another terminal of the account: another session, its own refs (even the same number)
    other: dict[str, Any] = {"session_id": 5555, "instrument": "m2105", "exchange": "DCE",
                             "price": 2800.0, "volume": 5}  # fmt: skip
    rig.spi.OnRtnOrder(rtn_order(13, **other))  # not numbered yet: nothing to show
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="990001", **other))
    rig.spi.OnRtnTrade(rtn_trade("77001", "990001", volume=2, instrument="m2105",
                                 exchange="DCE"))  # fmt: skip
    part = tdapi.THOST_FTDC_OST_PartTradedQueueing
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="990001", traded=2, text="部分成交", status=part,
                                 **other))  # fmt: skip
    # a replay after a reconnect shows nothing twice
    rig.spi.OnRtnOrder(rtn_order(13, sys_id="990001", **other))
    rig.spi.OnRtnTrade(rtn_trade("77001", "990001", volume=2, instrument="m2105",
                                 exchange="DCE"))  # fmt: skip
    items = drained(rig)
    assert items == [
        m.ExternalOrder(0, NOW, "ext:DCE:990001", "m2105", "DCE", "buy", "open", 2800.0, 5, 0,
                        "working", "未成交"),
        m.ExternalTrade(0, NOW, "ext:DCE:990001", "DCE:77001", "m2105", "buy", "open", 4300.0,
                        2),
        m.ExternalOrder(0, NOW, "ext:DCE:990001", "m2105", "DCE", "buy", "open", 2800.0, 5, 2,
                        "working", "部分成交"),
    ]  # fmt: skip
    assert not any(isinstance(x, Accepted | Traded) for x in items)  # no agent's order
    (ext,) = rig.adapter.external.values()
    assert ext.key == "DCE:990001" and ext.ret.VolumeTraded == 2


def test_a_restart_recognises_the_earlier_session_s_returns(tmp_path: Path) -> None:
    """The journal of the day (as the engine wrote it before a restart) gives the new adapter
    the earlier session's refs; the new session's returns of those orders are recognised, and
    an order journaled but never routed is rejected, since it never left."""
    early, accepted, unsent = order(1), order(2), order(3)
    journal: list[m.EngineMessage] = [
        m.OrderRequested(
            5, NOW, early.order_id, "mm", "rb2105", "SHFE", "buy", "open", 4300.0, 3, "limit"
        ),
        m.OrderRouted(5, NOW, early.order_id, 1, 7001, 13),
        m.OrderRequested(
            6, NOW, accepted.order_id, "mm", "rb2105", "SHFE", "buy", "open", 4300.0, 3, "limit"
        ),
        m.OrderRouted(6, NOW, accepted.order_id, 1, 7001, 14),
        m.OrderAccepted(6, NOW, accepted.order_id, "SHFE:880002"),
        m.Trade(7, NOW, accepted.order_id, "SHFE:55001", 4300.0, 1, 1.3),
        m.OrderRequested(
            8, NOW, unsent.order_id, "mm", "rb2105", "SHFE", "buy", "open", 4300.0, 3, "limit"
        ),
    ]
    rig = Rig(tmp_path)
    rig.adapter.restore(journal, {o.order_id: o for o in (early, accepted, unsent)})
    rig.log_in(
        front_id=3,
        session_id=8123,
        max_order_ref="1",
        broker={"order": [rtn_order(13, sys_id="880001"), rtn_order(14, sys_id="880002")]},
    )
    rig.spi.OnRtnTrade(rtn_trade("55001", "880002"))  # replayed: booked already
    rig.spi.OnRtnTrade(rtn_trade("55002", "880001", volume=2))
    events = drained(rig)
    assert events[0] == Rejected(
        unsent.order_id,
        "NOT_SENT",
        "the engine stopped before the order left: it never reached the broker",
        0,
    )
    assert events[1] == Accepted(early.order_id, "SHFE:880001", NOW, 1_609_765_201_000_000_000)
    assert isinstance(events[2], BrokerState)
    assert events[3] == Traded(
        early.order_id, "SHFE:55002", 4300.0, 2, NOW, 1_609_765_202_000_000_000
    )
    assert len(events) == 4
    rig.adapter.reconciled(True, NOW)
    assert rig.adapter.route(order(4)) == (3, 8123, 15)  # above every ref of the day


def test_an_order_routed_that_the_broker_never_saw_is_rejected_at_the_login(
    tmp_path: Path,
) -> None:
    lost = order(1)
    lost.apply(Event.SUBMIT)  # working in the engine: it left, as far as the engine knows
    journal: list[m.EngineMessage] = [
        m.OrderRequested(
            5, NOW, lost.order_id, "mm", "rb2105", "SHFE", "buy", "open", 4300.0, 3, "limit"
        ),
        m.OrderRouted(5, NOW, lost.order_id, 1, 7001, 13),
    ]
    rig = Rig(tmp_path)
    rig.adapter.restore(journal, {lost.order_id: lost})
    rig.log_in(session_id=7100)
    events = drained(rig)
    assert events[0].code == "NOT_AT_BROKER" and events[0].order_id == lost.order_id
    assert isinstance(events[1], BrokerState)


def test_a_cancel_journaled_before_a_crash_is_sent_again_if_the_order_still_works(
    tmp_path: Path,
) -> None:
    """The engine journaled the cancel and stopped before the broker had it: at the restart the
    broker's order list shows the order working, so the cancel goes again once trading starts;
    an order whose cancel the broker did take (cancelled there) is only booked."""
    waiting, done = order(1), order(2)
    for o in (waiting, done):
        o.apply(Event.SUBMIT)
        o.apply(Event.CANCEL_REQUEST)
    journal: list[m.EngineMessage] = [
        m.OrderRouted(5, NOW, waiting.order_id, 1, 7001, 13),
        m.OrderRouted(5, NOW, done.order_id, 1, 7001, 14),
    ]
    rig = Rig(tmp_path)
    rig.adapter.restore(journal, {o.order_id: o for o in (waiting, done)})
    cancelled = tdapi.THOST_FTDC_OST_Canceled
    rig.log_in(
        session_id=7100,
        broker={
            "order": [
                rtn_order(13, sys_id="880001"),
                rtn_order(14, sys_id="880002", status=cancelled),
            ]
        },
    )
    events = drained(rig)
    assert [(type(e).__name__, getattr(e, "order_id", "")) for e in events] == [
        ("Accepted", waiting.order_id),
        ("Accepted", done.order_id),
        ("Cancelled", done.order_id),
        ("BrokerState", ""),
    ]
    assert rig.api.sent("ReqOrderAction") == []
    rig.adapter.reconciled(True, NOW)
    rig.poll()
    (again,) = rig.api.sent("ReqOrderAction")
    assert again["OrderSysID"] == f"{'880001':>20}"


def test_the_adapter_keeps_the_working_orders_not_the_day_s(tmp_path: Path) -> None:
    """A quoter sends a million orders a day: the adapter forgets the finished ones as the
    engine does, and keeps those still working."""
    rig = Rig(tmp_path)
    trading(rig)
    working = order(0)
    routed_and_sent(rig, working)
    for n in range(1, 10_000):
        o = order(n)
        rig.adapter.route(o)
        rig.adapter.submit(o, NOW)
        o.apply(Event.SUBMIT)
        o.apply(Event.REJECT)  # finished in the engine
    working.apply(Event.SUBMIT)
    assert working.order_id in rig.adapter.orders
    assert len(rig.adapter.orders) < 5_000
