"""Engine orders to CTP's order fields, and CTP's order and trade returns to adapter events
(docs/ctp-trading.md, "Orders"). A core with no I/O: it never imports openctp-ctp (whose import
aborts a process without the zh_CN.GB18030 locale), so it holds CTP's one-character codes itself
(``ThostFtdcUserApiDataType.h``); ``tests/services/engine/adapters/ctp/test_translate.py`` checks
each against openctp-ctp's ``tdapi``, and fills and reads the real structs.
"""

from __future__ import annotations

import ctypes
import datetime as dt
from typing import Any, Final, NamedTuple

from services.engine.events import Accepted, AdapterEvent, Cancelled, Rejected, Traded
from services.engine.orders import Order

__all__ = [
    "MARKET_AS_FAK", "InputOrder", "OrderReturn", "TradeReturn", "Untranslatable",
    "china_time_ns", "error_text", "events_of", "input_order", "order_return", "trade_return",
    "traded",
]  # fmt: skip

# -- CTP's codes ---------------------------------------------------------------------------------

D_BUY: Final = "0"
D_SELL: Final = "1"
OFFSET: Final = {"open": "0", "close": "1", "close_today": "3", "close_yesterday": "4"}
OPT_ANY_PRICE: Final = "1"
OPT_LIMIT_PRICE: Final = "2"
OPT_FIVE_LEVEL_PRICE: Final = "G"
TC_IOC: Final = "1"
TC_GFD: Final = "3"
VC_AV: Final = "1"
VC_CV: Final = "3"
HF_SPECULATION: Final = "1"
CC_IMMEDIATELY: Final = "1"
FCC_NOT_FORCE_CLOSE: Final = "0"
OSS_INSERT_REJECTED: Final = "4"
OST_CANCELED: Final = "5"

MARKET_FORMS: Final = {
    "DCE": OPT_ANY_PRICE, "CZCE": OPT_ANY_PRICE, "GFEX": OPT_ANY_PRICE,
    "CFFEX": OPT_FIVE_LEVEL_PRICE,
}  # fmt: skip
"""The market order each exchange takes (with IOC): any price, or CFFEX's best five levels."""
MARKET_AS_FAK: Final = frozenset({"SHFE", "INE"})
"""Exchanges that take no market order: one is sent as a FAK at the day's limit price."""
_CHINA: Final = dt.timezone(dt.timedelta(hours=8))


class Untranslatable(ValueError):
    """An order CTP cannot be given as it is (the adapter refuses it with this text)."""


class InputOrder(NamedTuple):
    """The fields of ``CThostFtdcInputOrderField`` an order sets (the session adds BrokerID,
    InvestorID and UserID), named as CTP names them."""

    InstrumentID: str
    ExchangeID: str
    OrderRef: str
    Direction: str
    CombOffsetFlag: str
    CombHedgeFlag: str
    LimitPrice: float
    VolumeTotalOriginal: int
    OrderPriceType: str
    TimeCondition: str
    VolumeCondition: str
    MinVolume: int
    ContingentCondition: str
    ForceCloseReason: str
    IsAutoSuspend: int
    UserForceClose: int


def input_order(order: Order, exchange: str, order_ref: int, upper_limit: float,
                lower_limit: float) -> InputOrder:  # fmt: skip
    """The fields of ``order`` for CTP (the table in docs/ctp-trading.md). ``upper_limit`` and
    ``lower_limit``: the day's price limits, for a market order on an exchange that takes
    none."""
    buy = order.direction == "buy"
    price, price_type, time_cond, volume_cond = order.price, OPT_LIMIT_PRICE, TC_GFD, VC_AV
    if order.kind == "fak":
        time_cond = TC_IOC
    elif order.kind == "fok":
        time_cond, volume_cond = TC_IOC, VC_CV
    elif order.kind == "market":
        time_cond = TC_IOC
        form = MARKET_FORMS.get(exchange)
        if form is not None:
            price_type, price = form, 0.0
        elif exchange in MARKET_AS_FAK:
            price = upper_limit if buy else lower_limit
            if not price > 0.0:  # NaN or unset: no tick of the day yet
                raise Untranslatable(
                    f"{exchange} takes no market order, and {order.instrument} has no limit "
                    "price yet today to send it as a FAK at; send a limit order"
                )
        else:
            raise Untranslatable(f"no market order form is known for exchange {exchange}")
    elif order.kind != "limit":
        raise Untranslatable(f"order type {order.kind!r} has no CTP form")
    offset = OFFSET.get(order.offset)
    if offset is None:
        raise Untranslatable(f"offset {order.offset!r} has no CTP form")
    return InputOrder(
        order.instrument, exchange, str(order_ref), D_BUY if buy else D_SELL, offset,
        HF_SPECULATION, price, order.volume, price_type, time_cond, volume_cond, 1,
        CC_IMMEDIATELY, FCC_NOT_FORCE_CLOSE, 0, 0,
    )  # fmt: skip


def fill(field: Any, values: NamedTuple) -> None:
    """Set a SWIG struct's fields from ``values`` (a NamedTuple named as the struct's fields)."""
    for name, value in zip(values._fields, values, strict=True):
        setattr(field, name, value)


# -- returns ---------------------------------------------------------------------------------------


class OrderReturn(NamedTuple):
    """What the adapter keeps of an ``OnRtnOrder`` (copied on CTP's thread)."""

    FrontID: int
    SessionID: int
    OrderRef: str
    ExchangeID: str
    OrderSysID: str
    OrderSubmitStatus: str
    OrderStatus: str
    VolumeTraded: int
    StatusMsg: str
    InsertDate: str
    InsertTime: str
    InstrumentID: str
    Direction: str
    CombOffsetFlag: str
    LimitPrice: float
    VolumeTotalOriginal: int


class TradeReturn(NamedTuple):
    """What the adapter keeps of an ``OnRtnTrade``."""

    ExchangeID: str
    TradeID: str
    OrderSysID: str
    OrderRef: str
    Price: float
    Volume: int
    TradeDate: str
    TradeTime: str
    InstrumentID: str
    Direction: str
    OffsetFlag: str


OFFSET_OF: Final = {code: name for name, code in OFFSET.items()}
"""CTP's offset flag -> the engine's offset (``CombOffsetFlag``'s first character for an
order)."""


def order_return(field: Any) -> OrderReturn:
    return OrderReturn(*(getattr(field, name) for name in OrderReturn._fields))


def trade_return(field: Any) -> TradeReturn:
    return TradeReturn(*(getattr(field, name) for name in TradeReturn._fields))


def events_of(ret: OrderReturn, order_id: str, accepted: bool, now_ns: int) -> list[AdapterEvent]:
    """The adapter events an order return means for order ``order_id`` (``accepted``: its
    ``Accepted`` was given already, so a replayed return gives none again). A return that only
    repeats a state (queueing, part traded: the trades come as their own returns) gives none."""
    at = china_time_ns(ret.InsertDate, ret.InsertTime)
    if ret.OrderSubmitStatus == OSS_INSERT_REJECTED:
        return [Rejected(order_id, "EXCHANGE", ret.StatusMsg.strip() or "rejected", now_ns, at)]
    out: list[AdapterEvent] = []
    sys_id = ret.OrderSysID.strip()
    if sys_id and not accepted:
        out.append(Accepted(order_id, f"{ret.ExchangeID}:{sys_id}", now_ns, at))
    if ret.OrderStatus == OST_CANCELED:
        out.append(Cancelled(order_id, ret.StatusMsg.strip() or "cancelled", now_ns, at))
    return out


def traded(ret: TradeReturn, order_id: str, now_ns: int) -> Traded:
    """A fill. Its trade id carries the exchange (trade ids are unique per exchange only)."""
    return Traded(order_id, f"{ret.ExchangeID}:{ret.TradeID.strip()}", ret.Price, ret.Volume,
                  now_ns, china_time_ns(ret.TradeDate, ret.TradeTime))  # fmt: skip


def china_time_ns(date: str, time: str) -> int:
    """``YYYYMMDD`` and ``HH:MM:SS`` of China time as nanoseconds since the epoch; 0 if either
    is missing or malformed (an exchange's time is informative, never relied on)."""
    try:
        when = dt.datetime.strptime(f"{date} {time}", "%Y%m%d %H:%M:%S").replace(tzinfo=_CHINA)
    except ValueError:
        return 0
    return int(when.timestamp()) * 1_000_000_000


_RSP_INFO_MSG_OFFSET: Final = 4  # CThostFtdcRspInfoField: int ErrorID; char ErrorMsg[81]
_RSP_INFO_MSG_SIZE: Final = 81


def error_text(rsp_info: Any) -> str:
    """``ErrorMsg`` of a ``CThostFtdcRspInfoField``, decoded from GB18030 from the struct's own
    bytes: openctp-ctp's attribute gives "" for bytes that are not valid GB18030 (and drops a
    character cut at the end), where this keeps them, replaced, so no refusal loses its text."""
    raw = ctypes.string_at(int(rsp_info.this) + _RSP_INFO_MSG_OFFSET, _RSP_INFO_MSG_SIZE)
    return raw.split(b"\0", 1)[0].decode("gb18030", "replace").strip()
