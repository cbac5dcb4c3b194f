"""The CTP trading session (docs/ctp-trading.md, "Threads" and "Reconnect"): openctp-ctp's
``TraderApi`` with its SPI, the fronts and failover, authentication, login, the settlement
confirmation, the start-up queries, the query and order flow limits, and reconnects.

Import this module only in CTP mode, after the zh_CN.GB18030 locale check: importing openctp-ctp
without that locale aborts the process.

Three threads meet here, through queues only:

- CTP's thread calls the SPI (:class:`TraderSpi`), which copies each callback's fields into a
  plain tuple and puts it on ``inbox``; it touches nothing else.
- The session's thread (:meth:`CtpSession.run`, or a test calling :meth:`CtpSession.poll`)
  drains ``inbox``, runs the login sequence and the queries, sends the engine's requests
  (``requests``) at the pace CTP allows, and puts what the engine must know on ``outbox``.
- The engine's thread (the adapter, ``adapter.py``) puts requests on ``requests`` and drains
  ``outbox``.

Each connect: ``SubscribePrivateTopic(THOST_TERT_RESUME)`` before ``Init`` (CTP replays every
order and trade return since the last one this flow directory received), authenticate when an
AuthCode is configured, log in, confirm the settlement statement, query the traded instruments,
their margin and commission rates, the account, the positions, the orders and the trades, and
hand the whole to the engine's thread as one :class:`BrokerState`. A front that does not connect
within ``connect_timeout_s`` (CTP retries silently, calling nothing) or drops the connection is
left for the next; rounds of the fronts wait 1, 2, 4 ... 60 s (+-20 % jitter). A login error that
retrying cannot fix (:data:`PERMANENT_LOGIN_ERRORS`) is reported once and ends the session.

Size: over 550 lines, since the session is one state machine (connect, authenticate, log in,
confirm, query, trade, fail over) over one API object, and the SPI's callbacks are one line each.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from openctp_ctp import tdapi

from contracts.errors import UserError

if TYPE_CHECKING:
    from contracts.config import CtpTradeConfig
    from contracts.credentials import Credentials
from services.engine.adapters.ctp.items import BrokerState, Cancel, Kind
from services.engine.adapters.ctp.translate import (
    InputOrder,
    error_text,
    fill,
    order_return,
    trade_return,
)

__all__ = ["PERMANENT_LOGIN_ERRORS", "CtpSession", "SessionConfig", "TraderSpi"]

MAX_BACKOFF_S: Final = 60.0
JITTER: Final = 0.2
QUERY_TIMEOUT_S: Final = 30.0
PERMANENT_LOGIN_ERRORS: Final = {
    3: "invalid login (broker, user or password)",
    4: "the user is not active",
    11: "no such user",
    12: "no such broker",
    13: "no such investor",
    48: "wrong investor id or password",
    49: "logins from this IP address are not allowed",
    63: "client authentication failed (AppID or AuthCode)",
    64: "the client is not authenticated",
    131: "the weak password expired: change it (in another terminal), then start again",
    140: "first login: change the password (in another terminal), then start again",
    141: "the password expired: change it (in another terminal), then start again",
}
"""CTP's error ids (its ``error.xml``) for an authentication or login that retrying cannot fix:
reported once, never retried. Any other error retries with backoff."""
DISCONNECT_REASONS: Final = {
    0x1001: "network read failed",
    0x1002: "network write failed",
    0x2001: "heartbeat timed out",
    0x2002: "heartbeat could not be sent",
    0x2003: "the front sent an error packet",
}
"""``OnFrontDisconnected``'s reasons (``ThostFtdcTraderApi.h``)."""
BUSY: Final = (-2, -3)
"""What a ``Req*`` call returns when CTP's flow control holds it (requests in flight, requests
per second): sent again later."""

INSTRUMENT_FIELDS: Final = ("InstrumentID", "ExchangeID", "ProductID", "PriceTick",
                            "VolumeMultiple", "ExpireDate", "IsTrading")  # fmt: skip
MARGIN_FIELDS: Final = ("InstrumentID", "LongMarginRatioByMoney", "LongMarginRatioByVolume",
                        "ShortMarginRatioByMoney", "ShortMarginRatioByVolume")  # fmt: skip
COMMISSION_FIELDS: Final = ("InstrumentID", "OpenRatioByMoney", "OpenRatioByVolume",
                            "CloseRatioByMoney", "CloseRatioByVolume", "CloseTodayRatioByMoney",
                            "CloseTodayRatioByVolume")  # fmt: skip
ACCOUNT_FIELDS: Final = ("Balance", "Available", "CurrMargin", "FrozenMargin", "Commission",
                         "CloseProfit", "PositionProfit")  # fmt: skip
POSITION_FIELDS: Final = ("InstrumentID", "PosiDirection", "Position", "TodayPosition",
                          "YdPosition")  # fmt: skip


def _info(info: Any) -> tuple[int, str]:
    """(ErrorID, ErrorMsg) of a ``CThostFtdcRspInfoField`` (none: success)."""
    if info is None or not info.ErrorID:
        return 0, ""
    return int(info.ErrorID), error_text(info)


def _row(fields: Any, names: Iterable[str]) -> dict[str, object] | None:
    return None if fields is None else {name: getattr(fields, name) for name in names}


class TraderSpi(tdapi.CThostFtdcTraderSpi):  # type: ignore[misc]
    """Runs on CTP's thread: copies values and queues them, nothing else."""

    def __init__(self, inbox: queue.SimpleQueue[tuple[Any, ...]],
                 wake: threading.Event | None = None) -> None:  # fmt: skip
        super().__init__()
        put, wake_up = inbox.put, (wake or threading.Event()).set

        def put_and_wake(item: tuple[Any, ...]) -> None:
            put(item)
            wake_up()

        self._put = put_and_wake

    def OnFrontConnected(self) -> None:
        self._put((Kind.CONNECTED,))

    def OnFrontDisconnected(self, reason: int) -> None:
        self._put((Kind.DISCONNECTED, reason))

    def OnHeartBeatWarning(self, lapse: int) -> None:
        self._put((Kind.HEARTBEAT, lapse))

    def OnRspAuthenticate(self, fields: Any, info: Any, request: int, last: bool) -> None:
        self._put((Kind.AUTHENTICATED, *_info(info)))

    def OnRspUserLogin(self, fields: Any, info: Any, request: int, last: bool) -> None:
        error, text = _info(info)
        if fields is None:
            self._put((Kind.LOGGED_IN, error or -1, text or "no login answer", 0, 0, "", ""))
            return
        self._put((Kind.LOGGED_IN, error, text, fields.FrontID, fields.SessionID,
                   fields.MaxOrderRef, fields.TradingDay))  # fmt: skip

    def OnRspSettlementInfoConfirm(self, fields: Any, info: Any, request: int, last: bool
                                   ) -> None:  # fmt: skip
        self._put((Kind.CONFIRMED, *_info(info)))

    def _rows(self, query: str, row: dict[str, object] | None, info: Any, last: bool) -> None:
        self._put((Kind.ROWS, query, row, *_info(info), last))

    def OnRspQryInstrument(self, fields: Any, info: Any, request: int, last: bool) -> None:
        self._rows("instrument", _row(fields, INSTRUMENT_FIELDS), info, last)

    def OnRspQryInstrumentMarginRate(self, fields: Any, info: Any, request: int, last: bool
                                     ) -> None:  # fmt: skip
        self._rows("margin", _row(fields, MARGIN_FIELDS), info, last)

    def OnRspQryInstrumentCommissionRate(self, fields: Any, info: Any, request: int, last: bool
                                         ) -> None:  # fmt: skip
        self._rows("commission", _row(fields, COMMISSION_FIELDS), info, last)

    def OnRspQryTradingAccount(self, fields: Any, info: Any, request: int, last: bool) -> None:
        self._rows("account", _row(fields, ACCOUNT_FIELDS), info, last)

    def OnRspQryInvestorPosition(self, fields: Any, info: Any, request: int, last: bool) -> None:
        self._rows("position", _row(fields, POSITION_FIELDS), info, last)

    def OnRspQryOrder(self, fields: Any, info: Any, request: int, last: bool) -> None:
        row = None if fields is None else order_return(fields)._asdict()
        self._rows("order", row, info, last)

    def OnRspQryTrade(self, fields: Any, info: Any, request: int, last: bool) -> None:
        row = None if fields is None else trade_return(fields)._asdict()
        self._rows("trade", row, info, last)

    def OnRtnOrder(self, fields: Any) -> None:
        if fields is not None:
            self._put((Kind.ORDER, order_return(fields)))

    def OnRtnTrade(self, fields: Any) -> None:
        if fields is not None:
            self._put((Kind.TRADE, trade_return(fields)))

    def OnRspOrderInsert(self, fields: Any, info: Any, request: int, last: bool) -> None:
        self._insert_error(fields, info)

    def OnErrRtnOrderInsert(self, fields: Any, info: Any) -> None:
        self._insert_error(fields, info)

    def _insert_error(self, fields: Any, info: Any) -> None:
        error, text = _info(info)
        if fields is not None and error:
            self._put((Kind.INSERT_ERROR, fields.OrderRef, error, text))

    def OnRspOrderAction(self, fields: Any, info: Any, request: int, last: bool) -> None:
        self._action_error(fields, info)

    def OnErrRtnOrderAction(self, fields: Any, info: Any) -> None:
        self._action_error(fields, info)

    def _action_error(self, fields: Any, info: Any) -> None:
        error, text = _info(info)
        if fields is not None and error:
            self._put((Kind.ACTION_ERROR, fields.FrontID, fields.SessionID, fields.OrderRef,
                       fields.ExchangeID, fields.OrderSysID, error, text))  # fmt: skip

    def OnRspError(self, info: Any, request: int, last: bool) -> None:
        error, text = _info(info)
        if error:
            self._put((Kind.ERROR, error, text))


@dataclass(frozen=True)
class SessionConfig:
    """Where and as whom the session logs in (``[engine.ctp]`` and the credentials)."""

    fronts: list[str]
    broker_id: str
    user_id: str
    password: str
    app_id: str
    auth_code: str  # "": log in without authenticating (a front that does not ask for it)
    flow_dir: Path
    instruments: list[str]
    connect_timeout_s: float = 10.0
    query_gap_s: float = 1.0
    orders_per_s: float = 20.0
    account_only: bool = False  # the start-up queries are the account's alone (``hft doctor``)

    @classmethod
    def of(cls, ctp: CtpTradeConfig, credentials: Credentials,
           instruments: Iterable[str] = ()) -> SessionConfig:  # fmt: skip
        """A deployment's ``[engine.ctp]`` with its password and AuthCode (none: the session
        logs in without authenticating); a ``UserError`` that says where to put a missing
        password."""
        auth = credentials.ctp_auth_code
        return cls([str(f) for f in ctp.fronts], ctp.broker_id, ctp.user_id,
                   credentials.require("ctp_password"), ctp.app_id,
                   auth.get_secret_value() if auth is not None else "", ctp.flow_dir,
                   list(instruments), ctp.connect_timeout_s, ctp.query_gap_s,
                   ctp.orders_per_s)  # fmt: skip


class CtpSession:
    """The session's state and its thread's work (see the module doc)."""

    def __init__(
        self, config: SessionConfig, *, log: Any,
        api_factory: Callable[[str], Any] | None = None,
        monotonic: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
    ) -> None:  # fmt: skip
        """``api_factory(flow_path)``: the ``TraderApi`` (openctp-ctp's by default; a test's
        stand-in for a front takes the same requests)."""
        self.config = config
        self.log = log
        self.inbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.requests: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.outbox: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.wake = threading.Event()
        """Set by CTP's callbacks and by the engine's requests: the session's thread sleeps on
        it, so either is handled at once."""
        self.spi = TraderSpi(self.inbox, self.wake)
        self._factory = api_factory or tdapi.CThostFtdcTraderApi.CreateFtdcTraderApi
        self._monotonic = monotonic
        self._rng = rng or random.Random()
        self._api: Any = None
        self.state = "idle"  # idle, connecting, connected, logging_in, querying, ready, failed
        self.front = ""
        self.attempt = 0
        self._attempts_before_login = 0
        self._deadline = 0.0
        self._retry_at = 0.0
        self._request_id = 0
        self.front_id = self.session_id = 0
        self._queries: deque[tuple[str, str, Any]] = deque()  # (name, Req method, its field)
        self._query_sent = False
        self._next_query_at = 0.0
        self._broker = BrokerState()
        self._held: deque[tuple[Any, ...]] = deque()  # requests waiting for the order rate
        self._order_times: deque[float] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread ----------------------------------------------------------------------------

    def start(self, threaded: bool = True) -> None:
        """Connect to the first front; with ``threaded``, run :meth:`poll` on a thread of its
        own until :meth:`stop`."""
        try:
            self.config.flow_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"{self.config.flow_dir}: cannot create the CTP flow directory "
                            f"({exc.strerror}); check engine.ctp.flow_dir") from None  # fmt: skip
        self._connect()
        if threaded:
            self._thread = threading.Thread(target=self.run, name="ctp-session", daemon=True)
            self._thread.start()

    def run(self) -> None:
        while not self._stop.is_set():
            self.poll(0.05)  # the timers' resolution; callbacks and requests wake it at once

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
            self._thread = None
        self._release()
        self.state = "idle"

    def poll(self, timeout_s: float = 0.0) -> None:
        """One turn of the session's thread: CTP's callbacks, the engine's requests, the
        timers. Waits up to ``timeout_s`` for a callback or a request when there is nothing to
        do."""
        if timeout_s:
            self.wake.wait(timeout_s)
            self.wake.clear()  # before draining: a later set is for a later item
        while True:
            try:
                self._handle(self.inbox.get_nowait())
            except queue.Empty:
                break
        self._send_requests()
        self._timers()

    # -- connecting ----------------------------------------------------------------------------

    def _connect(self) -> None:
        fronts = self.config.fronts
        # a fresh queue and SPI each connect: what a released API queued is never read
        self.inbox = queue.SimpleQueue()
        self.spi = TraderSpi(self.inbox, self.wake)
        self.front = fronts[self.attempt % len(fronts)]
        self.attempt += 1
        api = self._factory(str(self.config.flow_dir) + "/")
        api.RegisterSpi(self.spi)
        api.RegisterFront(self.front)
        api.SubscribePrivateTopic(tdapi.THOST_TERT_RESUME)  # every return since the last seen
        api.SubscribePublicTopic(tdapi.THOST_TERT_QUICK)
        api.Init()
        self._api = api
        self.state = "connecting"
        self._deadline = self._monotonic() + self.config.connect_timeout_s
        self._publish("connecting", f"connecting to {self.front} (attempt {self.attempt})")

    def _release(self) -> None:
        if self._api is not None:
            self._api.RegisterSpi(None)
            self._api.Release()
            self._api = None

    def backoff_s(self) -> float:
        """The wait before the next round of fronts: 1, 2, 4 ... 60 s, +-20 % jitter, counted
        since the last login."""
        tries = self.attempt - self._attempts_before_login
        base = min(2.0 ** ((tries - 1) // len(self.config.fronts)), MAX_BACKOFF_S)
        return base * (1.0 + self._rng.uniform(-JITTER, JITTER))

    def _give_up_front(self, why: str) -> None:
        """Leave this front for the next: at once within a round, after the backoff between
        rounds."""
        self._release()
        round_done = (self.attempt - self._attempts_before_login) % len(self.config.fronts) == 0
        wait = self.backoff_s() if round_done else 0.0
        self._retry_at = self._monotonic() + wait
        self.state = "waiting"
        self._publish("disconnected", f"{why}; trying {'again' if round_done else 'the next front'}"
                      f" in {wait:.1f} s")  # fmt: skip
        self.log.warning(
            "ctp_trade_not_connected", front=self.front, attempt=self.attempt, reason=why,
            retry_in_s=round(wait, 2),
            hint="check the front address, the network and that the front is up",
        )  # fmt: skip

    def _timers(self) -> None:
        now = self._monotonic()
        if self.state == "waiting" and now >= self._retry_at:
            self._connect()
        elif self.state in ("connecting", "connected", "logging_in") and now >= self._deadline:
            self._give_up_front(f"no login at {self.front} within "
                                f"{self.config.connect_timeout_s:g} s")  # fmt: skip
        elif self.state == "querying" and self._query_sent and now >= self._deadline:
            self._give_up_front(f"no answer to the {self._queries[0][0]} query within "
                                f"{QUERY_TIMEOUT_S:g} s")  # fmt: skip

    def _publish(self, state: str, text: str) -> None:
        self.outbox.put((Kind.STATE, state, text))

    def _fail(self, text: str) -> None:
        """A login that retrying cannot fix: said once, and the session stops here."""
        self._release()
        self.state = "failed"
        self.log.error(
            "ctp_trade_login_refused", front=self.front, reason=text,
            hint="fix the credentials or the account, then restart the engine",
        )  # fmt: skip
        self._publish("failed", text)

    # -- CTP's callbacks -------------------------------------------------------------------------

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind is Kind.CONNECTED:
            if self.state == "failed":
                return
            self.state = "connected"
            self.log.info("ctp_trade_connected", front=self.front)
            self._publish("connected", f"connected to {self.front}")
            self._authenticate()
        elif kind is Kind.DISCONNECTED:
            if self.state in ("failed", "idle"):
                return
            self._queries.clear()
            self._query_sent = False
            why = DISCONNECT_REASONS.get(event[1], "unknown reason")
            self._give_up_front(f"front {self.front} disconnected (reason {event[1]:#x}: {why})")
        elif kind is Kind.AUTHENTICATED:
            _, error, text = event
            if error:
                self._refused("authentication", error, text)
            else:
                self._publish("authenticated", f"AppID {self.config.app_id} accepted")
                self._login()
        elif kind is Kind.LOGGED_IN:
            self._logged_in(*event[1:])
        elif kind is Kind.CONFIRMED:
            _, error, text = event
            if error:
                self.log.warning("ctp_settlement_not_confirmed", error_id=error, message=text)
            self._publish("confirmed", f"CTP error {error}: {text}" if error else "confirmed")
            self._start_queries()
        elif kind is Kind.ROWS:
            self._rows(*event[1:])
        elif kind in (Kind.ORDER, Kind.TRADE, Kind.INSERT_ERROR, Kind.ACTION_ERROR):
            self.outbox.put(event)
        elif kind is Kind.HEARTBEAT:
            self.log.warning("ctp_trade_heartbeat_late", seconds=event[1])
        elif kind is Kind.ERROR:
            self.log.error("ctp_trade_error", error_id=event[1], message=event[2])

    def _refused(self, step: str, error: int, text: str) -> None:
        why = f"{step} refused: CTP error {error}: {text}"
        if error in PERMANENT_LOGIN_ERRORS:
            self._fail(f"{why} ({PERMANENT_LOGIN_ERRORS[error]}); not retried")
        else:
            self._give_up_front(why)

    def _call(self, method: str, fields: Any) -> int:
        self._request_id += 1
        result: int = getattr(self._api, method)(fields, self._request_id)
        return result

    def _authenticate(self) -> None:
        c = self.config
        if not c.auth_code:
            self._login()
            return
        req = tdapi.CThostFtdcReqAuthenticateField()
        req.BrokerID, req.UserID, req.AppID, req.AuthCode = (c.broker_id, c.user_id, c.app_id,
                                                             c.auth_code)  # fmt: skip
        self.state = "logging_in"
        self._call("ReqAuthenticate", req)

    def _login(self) -> None:
        c = self.config
        req = tdapi.CThostFtdcReqUserLoginField()
        req.BrokerID, req.UserID, req.Password = c.broker_id, c.user_id, c.password
        self.state = "logging_in"
        self._call("ReqUserLogin", req)

    def _logged_in(  # noqa: PLR0917 (the login answer's fields, as queued)
        self, error: int, text: str, front_id: int, session_id: int,
        max_order_ref: str, trading_day: str,
    ) -> None:  # fmt: skip
        if error:
            self._refused("login", error, text)
            return
        self.front_id, self.session_id = front_id, session_id
        self._attempts_before_login = self.attempt - 1
        self._broker = BrokerState(trading_day)
        self.log.info("ctp_trade_logged_in", front=self.front, front_id=front_id,
                      session_id=session_id, max_order_ref=max_order_ref.strip(),
                      trading_day=trading_day)  # fmt: skip
        self.outbox.put((Kind.LOGGED_IN, front_id, session_id, max_order_ref, trading_day))
        self._publish("logged_in", f"front {front_id}, session {session_id}, trading day "
                      f"{trading_day}")  # fmt: skip
        req = tdapi.CThostFtdcSettlementInfoConfirmField()
        req.BrokerID, req.InvestorID = self.config.broker_id, self.config.user_id
        self.state = "querying"
        self._call("ReqSettlementInfoConfirm", req)

    # -- queries -------------------------------------------------------------------------------

    def _start_queries(self) -> None:
        """The start-up queries, in the order reconciliation reads them (positions before the
        trades, so a trade between the two shows in the trades)."""
        c = self.config
        q = self._queries
        q.clear()
        for instrument in () if c.account_only else c.instruments:
            q.append(("instrument", "ReqQryInstrument",
                      self._field("CThostFtdcQryInstrumentField",
                                  InstrumentID=instrument)))  # fmt: skip
            q.append(("margin", "ReqQryInstrumentMarginRate",
                      self._field("CThostFtdcQryInstrumentMarginRateField", InstrumentID=instrument,
                                  HedgeFlag=tdapi.THOST_FTDC_HF_Speculation)))  # fmt: skip
            q.append(("commission", "ReqQryInstrumentCommissionRate",
                      self._field("CThostFtdcQryInstrumentCommissionRateField",
                                  InstrumentID=instrument)))  # fmt: skip
        q.append(
            ("account", "ReqQryTradingAccount", self._field("CThostFtdcQryTradingAccountField"))
        )
        if c.account_only:
            self._query_sent, self._next_query_at = False, self._monotonic()
            return
        q.append(("position", "ReqQryInvestorPosition",
                  self._field("CThostFtdcQryInvestorPositionField")))  # fmt: skip
        q.append(("order", "ReqQryOrder", self._field("CThostFtdcQryOrderField")))
        q.append(("trade", "ReqQryTrade", self._field("CThostFtdcQryTradeField")))
        self._query_sent = False
        self._next_query_at = self._monotonic()

    def _field(self, struct: str, **values: object) -> Any:
        fields = getattr(tdapi, struct)()
        fields.BrokerID, fields.InvestorID = self.config.broker_id, self.config.user_id
        for name, value in values.items():
            setattr(fields, name, value)
        return fields

    def _rows(self, query: str, row: dict[str, object] | None, error: int, text: str,
              last: bool) -> None:  # fmt: skip
        if not self._queries or self._queries[0][0] != query:
            return  # an answer to a query of a session given up
        if error:
            self.log.warning("ctp_query_failed", query=query, error_id=error, message=text)
        elif row is not None:
            self._broker.rows.setdefault(query, []).append(row)
        if not last:
            return
        self._queries.popleft()
        self._query_sent = False
        self._next_query_at = self._monotonic() + self.config.query_gap_s
        if not self._queries:
            self.state = "ready"
            self.outbox.put((Kind.BROKER, self._broker))
            self._publish("ready", f"logged in at {self.front}, session {self.session_id}")

    def _send_query(self) -> None:
        if self._query_sent or not self._queries or self._monotonic() < self._next_query_at:
            return
        _, method, fields = self._queries[0]
        result = self._call(method, fields)
        if result in BUSY:  # CTP's flow control: the same query again after the gap
            self._next_query_at = self._monotonic() + self.config.query_gap_s
            return
        if result != 0:
            self._give_up_front(f"{method} could not be sent (CTP returned {result})")
            return
        self._query_sent = True
        self._deadline = self._monotonic() + QUERY_TIMEOUT_S

    # -- the engine's requests -------------------------------------------------------------------

    def _send_requests(self) -> None:
        if self.state == "querying":
            self._send_query()
        while True:
            try:
                self._held.append(self.requests.get_nowait())
            except queue.Empty:
                break
        window = self._order_times
        while self._held:
            now = self._monotonic()
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= self.config.orders_per_s:
                return  # the rest waits for the order rate
            request = self._held.popleft()
            if self.state not in ("querying", "ready") or self._api is None:
                self.outbox.put((Kind.NOT_SENT, *request, "not connected to a front"))
                continue
            result = self._send(request)
            if result in BUSY:
                self._held.appendleft(request)
                return
            window.append(now)
            if result != 0:
                self.outbox.put((Kind.NOT_SENT, *request, f"CTP returned {result}"))

    def _send(self, request: tuple[Any, ...]) -> int:
        c = self.config
        if request[0] == "insert":
            values: InputOrder = request[1]
            req = tdapi.CThostFtdcInputOrderField()
            fill(req, values)
            req.BrokerID, req.InvestorID, req.UserID = c.broker_id, c.user_id, c.user_id
            return self._call("ReqOrderInsert", req)
        cancel: Cancel = request[1]
        req = tdapi.CThostFtdcInputOrderActionField()
        req.BrokerID, req.InvestorID, req.UserID = c.broker_id, c.user_id, c.user_id
        req.ActionFlag = tdapi.THOST_FTDC_AF_Delete
        req.InstrumentID, req.ExchangeID = cancel.instrument, cancel.exchange_id
        if cancel.order_sys_id:
            req.OrderSysID = cancel.order_sys_id
        else:
            req.FrontID, req.SessionID = cancel.front_id, cancel.session_id
            req.OrderRef = str(cancel.order_ref)
        return self._call("ReqOrderAction", req)
