"""Engine orders into openctp-ctp's own ``CThostFtdcInputOrderField``, and its own order, trade
and error structs back into adapter events (docs/ctp-trading.md, "Orders")."""

from __future__ import annotations

import ctypes
import math

import pytest

from contracts.ctp_locale import has_locale
from tests.helpers import require_ctp_locale

if not has_locale():  # importing openctp-ctp without it aborts the process
    require_ctp_locale()  # skips the module, or fails it under CI

from openctp_ctp import tdapi

from services.engine.adapters.ctp import translate as t
from services.engine.events import Accepted, Cancelled, Rejected, Traded
from services.engine.orders import Order
from tests.services.engine.adapters.ctp.front import put_gb18030

CODES = {
    "D_BUY": "THOST_FTDC_D_Buy", "D_SELL": "THOST_FTDC_D_Sell",
    "OPT_ANY_PRICE": "THOST_FTDC_OPT_AnyPrice", "OPT_LIMIT_PRICE": "THOST_FTDC_OPT_LimitPrice",
    "OPT_FIVE_LEVEL_PRICE": "THOST_FTDC_OPT_FiveLevelPrice", "TC_IOC": "THOST_FTDC_TC_IOC",
    "TC_GFD": "THOST_FTDC_TC_GFD", "VC_AV": "THOST_FTDC_VC_AV", "VC_CV": "THOST_FTDC_VC_CV",
    "HF_SPECULATION": "THOST_FTDC_HF_Speculation", "CC_IMMEDIATELY": "THOST_FTDC_CC_Immediately",
    "FCC_NOT_FORCE_CLOSE": "THOST_FTDC_FCC_NotForceClose",
    "OSS_INSERT_REJECTED": "THOST_FTDC_OSS_InsertRejected",
    "OST_CANCELED": "THOST_FTDC_OST_Canceled",
}  # fmt: skip
OFFSETS = {"open": "THOST_FTDC_OF_Open", "close": "THOST_FTDC_OF_Close",
           "close_today": "THOST_FTDC_OF_CloseToday",
           "close_yesterday": "THOST_FTDC_OF_CloseYesterday"}  # fmt: skip


def test_the_codes_are_openctp_ctp_s() -> None:
    for ours, theirs in CODES.items():
        assert getattr(t, ours) == getattr(tdapi, theirs), ours
    assert {k: getattr(tdapi, v) for k, v in OFFSETS.items()} == t.OFFSET


def order(kind: str, direction: str = "buy", offset: str = "open") -> Order:
    return Order("mm-20210104-7", "mm", "rb2105", direction, offset, 4321.0, 3, kind)


@pytest.mark.parametrize(("kind", "exchange", "want"), [
    ("limit", "SHFE", ("2", 4321.0, "3", "1")),
    ("fak", "DCE", ("2", 4321.0, "1", "1")),
    ("fok", "CZCE", ("2", 4321.0, "1", "3")),
    ("market", "DCE", ("1", 0.0, "1", "1")),
    ("market", "CZCE", ("1", 0.0, "1", "1")),
    ("market", "GFEX", ("1", 0.0, "1", "1")),
    ("market", "CFFEX", ("G", 0.0, "1", "1")),
    ("market", "SHFE", ("2", 4700.0, "1", "1")),  # a FAK at the day's upper limit
    ("market", "INE", ("2", 4700.0, "1", "1")),
])  # fmt: skip
def test_each_order_type_fills_a_real_input_order_field(
    kind: str, exchange: str, want: tuple[str, float, str, str]
) -> None:
    values = t.input_order(order(kind), exchange, 1001, 4700.0, 3900.0)
    field = tdapi.CThostFtdcInputOrderField()
    t.fill(field, values)
    got = (field.OrderPriceType, field.LimitPrice, field.TimeCondition, field.VolumeCondition)
    assert got == want
    assert (field.InstrumentID, field.ExchangeID, field.OrderRef, field.Direction,
            field.CombOffsetFlag, field.CombHedgeFlag, field.VolumeTotalOriginal,
            field.MinVolume, field.ContingentCondition, field.ForceCloseReason) == (
        "rb2105", exchange, "1001", tdapi.THOST_FTDC_D_Buy, tdapi.THOST_FTDC_OF_Open,
        tdapi.THOST_FTDC_HF_Speculation, 3, 1, tdapi.THOST_FTDC_CC_Immediately,
        tdapi.THOST_FTDC_FCC_NotForceClose)  # fmt: skip


@pytest.mark.parametrize("offset", list(OFFSETS))
def test_offsets_and_a_sell(offset: str) -> None:
    values = t.input_order(order("limit", "sell", offset), "SHFE", 7, 4700.0, 3900.0)
    assert values.Direction == tdapi.THOST_FTDC_D_Sell
    assert values.CombOffsetFlag == getattr(tdapi, OFFSETS[offset])
    # a market sell on SHFE goes at the lower limit
    market = t.input_order(order("market", "sell", offset), "SHFE", 8, 4700.0, 3900.0)
    assert market.LimitPrice == 3900.0


@pytest.mark.parametrize(("make", "says"), [
    (lambda: t.input_order(order("market"), "SHFE", 1, math.nan, math.nan),
     "SHFE takes no market order, and rb2105 has no limit price yet today"),
    (lambda: t.input_order(order("market"), "XYZ", 1, 1.0, 1.0), "no market order form"),
    (lambda: t.input_order(order("iceberg"), "SHFE", 1, 1.0, 1.0), "order type 'iceberg'"),
    (lambda: t.input_order(order("limit", offset="hedge"), "SHFE", 1, 1.0, 1.0),
     "offset 'hedge'"),
])  # fmt: skip
def test_what_ctp_cannot_take_is_one_clear_refusal(make: object, says: str) -> None:
    with pytest.raises(t.Untranslatable, match=says):
        make()  # type: ignore[operator]


def rtn_order(**values: object) -> object:
    field = tdapi.CThostFtdcOrderField()
    defaults = {"FrontID": 1, "SessionID": -17, "OrderRef": "1001", "ExchangeID": "SHFE",
                "OrderSubmitStatus": tdapi.THOST_FTDC_OSS_InsertSubmitted,
                "OrderStatus": tdapi.THOST_FTDC_OST_Unknown, "InsertDate": "20210104",
                "InsertTime": "21:00:01"}  # fmt: skip
    for name, value in {**defaults, **values}.items():
        if name == "StatusMsg":
            put_gb18030(field, name, str(value))
        else:
            setattr(field, name, value)
    return field


NOW = 1_609_765_200_000_000_000


def test_order_returns_become_events_once() -> None:
    submitted = t.order_return(rtn_order())
    assert t.events_of(submitted, "o1", False, NOW) == []  # at the front, not the exchange
    queued = t.order_return(rtn_order(
        OrderSysID="      123456", OrderSubmitStatus=tdapi.THOST_FTDC_OSS_Accepted,
        OrderStatus=tdapi.THOST_FTDC_OST_NoTradeQueueing))  # fmt: skip
    at = t.china_time_ns("20210104", "21:00:01")
    assert t.events_of(queued, "o1", False, NOW) == [Accepted("o1", "SHFE:123456", NOW, at)]
    assert t.events_of(queued, "o1", True, NOW) == []  # a replay after a reconnect
    part = t.order_return(rtn_order(
        OrderSysID="123456", OrderSubmitStatus=tdapi.THOST_FTDC_OSS_Accepted,
        OrderStatus=tdapi.THOST_FTDC_OST_PartTradedQueueing, VolumeTraded=1))  # fmt: skip
    assert t.events_of(part, "o1", True, NOW) == []  # the trade comes as its own return
    # a FAK's rest cancelled by the exchange, seen first in this one return
    cancelled = t.order_return(rtn_order(
        OrderSysID="777", OrderSubmitStatus=tdapi.THOST_FTDC_OSS_Accepted,
        OrderStatus=tdapi.THOST_FTDC_OST_Canceled, StatusMsg="已撤单"))  # fmt: skip
    assert t.events_of(cancelled, "o2", False, NOW) == [
        Accepted("o2", "SHFE:777", NOW, at), Cancelled("o2", "已撤单", NOW, at)]  # fmt: skip
    rejected = t.order_return(rtn_order(
        OrderSubmitStatus=tdapi.THOST_FTDC_OSS_InsertRejected,
        OrderStatus=tdapi.THOST_FTDC_OST_Canceled, StatusMsg="资金不足"))  # fmt: skip
    assert t.events_of(rejected, "o3", False, NOW) == [
        Rejected("o3", "EXCHANGE", "资金不足", NOW, at)]  # fmt: skip


def test_a_trade_return_is_a_fill_whose_id_names_its_exchange() -> None:
    field = tdapi.CThostFtdcTradeField()
    for name, value in {"ExchangeID": "DCE", "TradeID": "   98765", "OrderSysID": "123",
                        "OrderRef": "1001", "Price": 2801.0, "Volume": 2,
                        "TradeDate": "20210105", "TradeTime": "09:00:03"}.items():  # fmt: skip
        setattr(field, name, value)
    fill = t.traded(t.trade_return(field), "o1", NOW)
    assert fill == Traded("o1", "DCE:98765", 2801.0, 2, NOW,
                          t.china_time_ns("20210105", "09:00:03"))  # fmt: skip
    assert fill.exchange_time_ns == 1_609_808_403 * 1_000_000_000  # 2021-01-05 01:00:03 UTC
    assert t.china_time_ns("", "09:00:03") == 0 and t.china_time_ns("20210105", "9:0") == 0


def test_an_error_message_keeps_bytes_that_are_not_gb18030() -> None:
    info = tdapi.CThostFtdcRspInfoField()
    info.ErrorID = 22
    text = "报单字段有误".encode("gb18030")
    ctypes.memmove(int(info.this) + 4, text + b"\0", len(text) + 1)
    assert t.error_text(info) == info.ErrorMsg == "报单字段有误"
    broken = b"\xff\xfe bad \x81"  # not GB18030: openctp-ctp's attribute gives ""
    ctypes.memmove(int(info.this) + 4, broken + b"\0", len(broken) + 1)
    assert info.ErrorMsg == ""
    assert "bad" in t.error_text(info) and "\ufffd" in t.error_text(info)
