"""Playing a CTP front for the contract tests: no front can run here, so :class:`Front` stands in
for openctp-ctp's ``TraderApi`` object (it takes the session's real request structs, built by
openctp-ctp, and keeps a copy of each), and the test answers as the front would by calling the
session's real SPI with openctp-ctp's own return structs (the builders below), exactly as CTP's
thread does. Import only after the locale check (openctp-ctp aborts without it)."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from openctp_ctp import tdapi

from contracts.logs import get_logger
from services.engine.adapters.ctp.adapter import CtpAdapter
from services.engine.adapters.ctp.session import CtpSession, SessionConfig

BROKER, USER, APP = "9999", "000123", "client_hft_1.0"
PASSWORD, AUTH_CODE = "s3cret-pass", "0000000000000000"


def put_gb18030(field: object, name: str, text: str) -> None:
    """Write ``text`` into a struct's char field as CTP sends it, GB18030 bytes (openctp-ctp's
    setter would write UTF-8): the field is found by a marker set through the setter."""
    marker = "Q" * 20
    setattr(field, name, marker)
    memory = ctypes.string_at(int(field.this), 1024)  # type: ignore[attr-defined]
    at = memory.index(marker.encode())
    raw = text.encode("gb18030") + b"\0"
    ctypes.memmove(int(field.this) + at, raw, len(raw))  # type: ignore[attr-defined]


def struct(name: str, **values: object) -> Any:
    """An openctp-ctp struct with ``values`` (a str with characters beyond ASCII is written as
    GB18030 bytes, as a front sends it)."""
    field = getattr(tdapi, name)()
    for key, value in values.items():
        if isinstance(value, str) and not value.isascii():
            put_gb18030(field, key, value)
        else:
            setattr(field, key, value)
    return field


def rsp_info(error_id: int = 0, text: str = "") -> Any:
    return struct("CThostFtdcRspInfoField", ErrorID=error_id, ErrorMsg=text or "CTP:正确")


class Front:
    """Stands in for ``CThostFtdcTraderApi``: every request with a copy of its fields."""

    def __init__(self, results: Callable[[str], int] | None = None) -> None:
        self.requests: list[tuple[str, dict[str, object]]] = []
        self.spi: Any = None
        self.fronts: list[str] = []
        self.topics: list[tuple[str, int]] = []
        self.released = False
        self.refused: list[int] = []  # the requests whose call returned non-zero
        self.results = results or (lambda method: 0)

    def RegisterSpi(self, spi: Any) -> None:
        if spi is not None:
            self.spi = spi

    def RegisterFront(self, front: str) -> None:
        self.fronts.append(front)

    def SubscribePrivateTopic(self, how: int) -> None:
        self.topics.append(("private", how))

    def SubscribePublicTopic(self, how: int) -> None:
        self.topics.append(("public", how))

    def Init(self) -> None:
        pass

    def Release(self) -> None:
        self.released = True

    def __getattr__(self, method: str) -> Callable[[Any, int], int]:
        if not method.startswith("Req"):
            raise AttributeError(method)

        def request(fields: Any, request_id: int) -> int:
            names = [n for n in dir(fields) if n[:1].isupper() and n != "this"]
            result = self.results(method)
            self.requests.append((method, {n: getattr(fields, n) for n in names}))
            if result:
                self.refused.append(len(self.requests) - 1)
            return result

        return request

    def sent(self, method: str) -> list[dict[str, object]]:
        return [fields for name, fields in self.requests if name == method]


class Clock:
    """The session's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Rig:
    """A session over :class:`Front` stand-ins (one per connect) and the adapter on its queues,
    driven by the test: ``poll`` is one turn of the session's thread."""

    def __init__(
        self,
        tmp: Path,
        *,
        auth_code: str = AUTH_CODE,
        fronts: list[str] | None = None,
        instruments: list[str] | None = None,
        results: Callable[[str], int] | None = None,
        cancel_while_disconnected: Literal["queue", "refuse"] = "refuse",
    ) -> None:
        self.clock = Clock()
        self.apis: list[Front] = []
        self.results = results
        config = SessionConfig(
            fronts or ["tcp://127.0.0.1:1"],
            BROKER,
            USER,
            PASSWORD,
            APP,
            auth_code,
            tmp / "flow",
            instruments or ["rb2105"],
            connect_timeout_s=5.0,
            query_gap_s=1.0,
        )
        self.session = CtpSession(
            config, log=get_logger(), api_factory=self._api, monotonic=self.clock
        )
        self.adapter = CtpAdapter(
            self.session.requests,
            self.session.outbox,
            {"rb2105": "SHFE", "m2105": "DCE", "IF2101": "CFFEX"},
            log=get_logger(),
            cancel_while_disconnected=cancel_while_disconnected,
        )
        self.adapter.session = self.session

    def _api(self, flow_path: str) -> Front:
        self.flow_path = flow_path
        api = Front(self.results)
        self.apis.append(api)
        return api

    @property
    def api(self) -> Front:
        return self.apis[-1]

    @property
    def spi(self) -> Any:
        return self.session.spi

    def poll(self, seconds: float = 0.0) -> None:
        self.clock.now += seconds
        self.session.poll()

    def log_in(
        self,
        front_id: int = 1,
        session_id: int = 7001,
        max_order_ref: str = "       12",
        *,
        day: str = "20210105",
        broker: dict[str, list[Any]] | None = None,
    ) -> None:
        """Connect, authenticate, log in, confirm, and answer every start-up query (``broker``:
        rows by query name, real structs; the rest answer with no row)."""
        self.session.start(threaded=False)
        self.spi.OnFrontConnected()
        self.poll()
        if self.session.config.auth_code:
            self.spi.OnRspAuthenticate(
                struct("CThostFtdcRspAuthenticateField"), rsp_info(), 1, True
            )
            self.poll()
        self.spi.OnRspUserLogin(
            struct(
                "CThostFtdcRspUserLoginField",
                FrontID=front_id,
                SessionID=session_id,
                MaxOrderRef=max_order_ref,
                TradingDay=day,
            ),
            rsp_info(),
            2,
            True,
        )
        self.poll()
        self.spi.OnRspSettlementInfoConfirm(
            struct("CThostFtdcSettlementInfoConfirmField"), rsp_info(), 3, True
        )
        self.answer_queries(broker or {})

    def answer_queries(self, broker: dict[str, list[Any]]) -> None:
        """Answer each query the session sends, in turn, a second apart."""
        callbacks = {
            "ReqQryInstrument": "OnRspQryInstrument",
            "ReqQryInstrumentMarginRate": "OnRspQryInstrumentMarginRate",
            "ReqQryInstrumentCommissionRate": "OnRspQryInstrumentCommissionRate",
            "ReqQryTradingAccount": "OnRspQryTradingAccount",
            "ReqQryInvestorPosition": "OnRspQryInvestorPosition",
            "ReqQryOrder": "OnRspQryOrder",
            "ReqQryTrade": "OnRspQryTrade",
        }
        names = {
            "OnRspQryInstrument": "instrument",
            "OnRspQryInstrumentMarginRate": "margin",
            "OnRspQryInstrumentCommissionRate": "commission",
            "OnRspQryTradingAccount": "account",
            "OnRspQryInvestorPosition": "position",
            "OnRspQryOrder": "order",
            "OnRspQryTrade": "trade",
        }
        while self.session.state == "querying":
            before = len(self.api.requests)
            self.poll(1.0)
            new = [
                r
                for i, r in enumerate(self.api.requests)
                if i >= before and r[0] in callbacks and i not in self.api.refused
            ]
            if not new:
                continue
            method, fields = new[-1]
            callback = callbacks[method]
            rows = broker.get(names[callback], [])
            asked = str(fields.get("InstrumentID", ""))
            if asked:  # a query of one instrument: its rows, or its product's (rates by product)
                rows = [r for r in rows if asked.startswith(r.InstrumentID)]
            fn = getattr(self.spi, callback)
            if not rows:
                fn(None, None, 0, True)
            for i, row in enumerate(rows):
                fn(row, None, 0, i == len(rows) - 1)
            self.poll()


def rtn_order(
    ref: int | str,
    *,
    front_id: int = 1,
    session_id: int = 7001,
    sys_id: str = "",
    status: str = tdapi.THOST_FTDC_OST_NoTradeQueueing,
    submit: str = tdapi.THOST_FTDC_OSS_Accepted,
    traded: int = 0,
    text: str = "",
    instrument: str = "rb2105",
    exchange: str = "SHFE",
    direction: str = "0",
    price: float = 4300.0,
    volume: int = 3,
) -> Any:
    """An ``OnRtnOrder`` (or a row of ``ReqQryOrder``'s answer) as a front sends it."""
    return struct(
        "CThostFtdcOrderField",
        FrontID=front_id,
        SessionID=session_id,
        OrderRef=f"{ref:>12}",
        ExchangeID=exchange,
        OrderSysID=f"{sys_id:>20}" if sys_id else "",
        OrderSubmitStatus=submit,
        OrderStatus=status,
        VolumeTraded=traded,
        StatusMsg=text or "未成交",
        InsertDate="20210104",
        InsertTime="21:00:01",
        InstrumentID=instrument,
        Direction=direction,
        CombOffsetFlag="0",
        LimitPrice=price,
        VolumeTotalOriginal=volume,
        BrokerID=BROKER,
        InvestorID=USER,
    )


def rtn_trade(
    trade_id: str,
    sys_id: str,
    *,
    price: float = 4300.0,
    volume: int = 1,
    ref: int | str = "",
    instrument: str = "rb2105",
    exchange: str = "SHFE",
    direction: str = "0",
    offset: str = "0",
) -> Any:
    """An ``OnRtnTrade`` (or a row of ``ReqQryTrade``'s answer)."""
    return struct(
        "CThostFtdcTradeField",
        ExchangeID=exchange,
        TradeID=f"{trade_id:>20}",
        OrderSysID=f"{sys_id:>20}",
        OrderRef=f"{ref:>12}",
        Price=price,
        Volume=volume,
        TradeDate="20210104",
        TradeTime="21:00:02",
        InstrumentID=instrument,
        Direction=direction,
        OffsetFlag=offset,
    )
