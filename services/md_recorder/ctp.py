"""CTP market-data source: openctp-ctp's ``MdApi`` with front failover and reconnect backoff.

Import this module only in CTP mode, after the zh_CN.GB18030 locale check: importing
openctp-ctp without that locale aborts the process.

CTP calls the SPI on its own thread. The SPI touches nothing shared: it copies each depth-market
field into a tuple of plain values (``CTP_FIELDS`` order) with the receive time and puts it, or
an event, on a ``SimpleQueue``. The service thread drains the queue, sends login and subscribe
requests, and feeds ticks to the recorder.

CTP retries a dead front silently and calls no callback while nothing answers, so the source has
its own connect timeout: after ``connect_timeout_s`` without a login it releases the API and
tries the next front, waiting 1, 2, 4 ... up to 60 s between rounds, and says so in the log.
"""

from __future__ import annotations

import ctypes
import enum
import operator
import queue
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from openctp_ctp import mdapi

from contracts.errors import UserError
from services.md_recorder.normalise import CTP_FIELDS, RawTick

__all__ = [
    "LAYOUT_MATCHES",
    "CtpMdSource",
    "Event",
    "MdSpi",
    "raw_from_attributes",
    "raw_from_field",
    "raw_from_memory",
]

raw_from_attributes: Callable[[Any], RawTick] = operator.attrgetter(*CTP_FIELDS)
"""The raw tick of a ``CThostFtdcDepthMarketDataField`` through its 41 SWIG attributes (about
250 ns each): the reference for :func:`raw_from_memory`."""

# The C layout of CThostFtdcDepthMarketDataField (ThostFtdcUserApiStruct.h, API 6.7.x) with the
# platform's alignment: TradingDay, reserve1, ExchangeID, reserve2, 7 prices, Volume, Turnover,
# OpenInterest, 4 prices, PreDelta, CurrDelta, UpdateTime, UpdateMillisec, 5 x (bid price,
# bid volume, ask price, ask volume), AveragePrice, ActionDay, InstrumentID, ExchangeInstID,
# BandingUpperPrice, BandingLowerPrice. Checked against the attributes when this module loads.
_LAYOUT: Final = struct.Struct("@9s31s9s31s7di2d4d2d9si" + "didi" * 5 + "d9s81s81s2d")
_NUMBER_INDEX: Final = (*range(4, 18), 42, *range(22, 42))  # CTP_FIELDS[6:] in the layout
_NUMBERS: Final[Callable[[tuple[Any, ...]], tuple[Any, ...]]] = operator.itemgetter(*_NUMBER_INDEX)
_NAMES: dict[bytes, str] = {}


def _text(raw: bytes) -> str:
    text = _NAMES.get(raw)
    if text is None:
        text = raw.split(b"\0", 1)[0].decode("ascii", "replace")
        if len(_NAMES) < 100_000:
            _NAMES[raw] = text
    return text


def raw_from_memory(field: Any) -> RawTick:
    """The raw tick of a ``CThostFtdcDepthMarketDataField`` read in one copy of its memory
    (about 1.5 µs instead of 10 µs); same values as :func:`raw_from_attributes`."""
    v = _LAYOUT.unpack(ctypes.string_at(int(field.this), _LAYOUT.size))
    return (_text(v[0]), _text(v[43]), _text(v[20]), v[21], _text(v[44]), _text(v[2]), *_NUMBERS(v))


def _layout_matches() -> bool:
    """Fill every field with a distinct value through SWIG and read it back from memory."""
    field = mdapi.CThostFtdcDepthMarketDataField()
    for i, name in enumerate(CTP_FIELDS):
        if name in ("TradingDay", "ActionDay"):
            setattr(field, name, f"2020{i:04d}")
        elif name == "UpdateTime":
            setattr(field, name, "12:34:56")
        elif name in ("InstrumentID", "ExchangeID"):
            setattr(field, name, f"X{i}")
        elif name == "UpdateMillisec" or "Volume" in name:
            setattr(field, name, 1000 + i)
        else:
            setattr(field, name, 0.5 + i)
    try:
        return raw_from_memory(field) == raw_from_attributes(field)
    except (struct.error, ValueError, TypeError):
        return False


LAYOUT_MATCHES: Final = _layout_matches()
raw_from_field: Callable[[Any], RawTick] = (
    raw_from_memory if LAYOUT_MATCHES else raw_from_attributes
)
"""What the SPI uses: the memory read when this library's layout was verified, else the
attributes (slower, always right)."""

MAX_BACKOFF_S: Final = 60.0


class Event(enum.Enum):
    TICK = "tick"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    HEARTBEAT_WARNING = "heartbeat_warning"
    LOGIN = "login"
    SUBSCRIBED = "subscribed"
    ERROR = "error"


class MdSpi(mdapi.CThostFtdcMdSpi):  # type: ignore[misc]
    """Runs on CTP's thread: copies values and queues them, nothing else."""

    def __init__(self, events: queue.SimpleQueue[tuple[Any, ...]], clock: Callable[[], int]):
        super().__init__()
        self._put = events.put
        self._clock = clock

    def OnRtnDepthMarketData(self, field: Any) -> None:
        if field is not None:
            self._put((Event.TICK, raw_from_field(field), self._clock()))

    def OnFrontConnected(self) -> None:
        self._put((Event.CONNECTED,))

    def OnFrontDisconnected(self, reason: int) -> None:
        self._put((Event.DISCONNECTED, reason))

    def OnHeartBeatWarning(self, lapse: int) -> None:
        self._put((Event.HEARTBEAT_WARNING, lapse))

    def OnRspUserLogin(self, field: Any, info: Any, request: int, last: bool) -> None:
        error = (info.ErrorID, info.ErrorMsg) if info is not None else (0, "")
        day = field.TradingDay if field is not None else ""
        self._put((Event.LOGIN, error[0], error[1], day))

    def OnRspSubMarketData(self, field: Any, info: Any, request: int, last: bool) -> None:
        instrument = field.InstrumentID if field is not None else ""
        error = (info.ErrorID, info.ErrorMsg) if info is not None else (0, "")
        self._put((Event.SUBSCRIBED, instrument, error[0], error[1]))

    def OnRspError(self, info: Any, request: int, last: bool) -> None:
        if info is not None:
            self._put((Event.ERROR, info.ErrorID, info.ErrorMsg))


@dataclass
class State:
    front: str = ""
    connected: bool = False
    logged_in: bool = False
    subscribed: int = 0
    attempt: int = 0
    trading_day: str = ""


class CtpMdSource:
    """Connects, logs in, subscribes, fails over and reconnects; ``poll`` drives it."""

    def __init__(  # noqa: PLR0917 - the CTP login fields
        self,
        fronts: list[str],
        broker_id: str,
        user_id: str,
        password: str,
        instruments: list[str],
        flow_dir: Path,
        *,
        connect_timeout_s: float = 10.0,
        log: Any,
        clock: Callable[[], int] = time.time_ns,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fronts = fronts
        self.broker_id, self.user_id, self._password = broker_id, user_id, password
        self.instruments = instruments
        self.flow_dir = flow_dir
        self.connect_timeout_s = connect_timeout_s
        self.log = log
        self.events: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self.spi = MdSpi(self.events, clock)
        self.state = State()
        self._monotonic = monotonic
        self._api: Any = None
        self._deadline = 0.0
        self._retry_at = 0.0
        self._request = 0
        self._started = False
        self._attempts_before_login = 0
        """``state.attempt`` when the last session logged in, less one: the backoff counts
        the attempts since, so a session lost late in the day starts again at 1 s."""

    # -- connection ----------------------------------------------------------------------

    def start(self) -> None:
        self._started = True
        self._connect()

    def _connect(self) -> None:
        # CTP writes its flow files there and crashes the process if the directory is missing
        try:
            self.flow_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(
                f"{self.flow_dir}: cannot create the CTP flow directory: {exc.strerror}"
            ) from None
        front = self.fronts[self.state.attempt % len(self.fronts)]
        self.state.attempt += 1
        self.state.front = front
        api = mdapi.CThostFtdcMdApi.CreateFtdcMdApi(str(self.flow_dir) + "/")
        api.RegisterSpi(self.spi)
        api.RegisterFront(front)
        api.Init()
        self._api = api
        self._deadline = self._monotonic() + self.connect_timeout_s
        self.log.info("ctp_md_connecting", front=front, attempt=self.state.attempt)

    def _release(self) -> None:
        if self._api is not None:
            self._api.RegisterSpi(None)
            self._api.Release()
            self._api = None
        self.state.connected = self.state.logged_in = False
        self.state.subscribed = 0

    def backoff_s(self) -> float:
        """Wait before the next round of fronts: 1, 2, 4 ... 60 s, counted since the last
        successful login."""
        rounds = (self._tries() - 1) // len(self.fronts)
        return float(min(2.0**rounds, MAX_BACKOFF_S))

    def _tries(self) -> int:
        return self.state.attempt - self._attempts_before_login

    def poll(self, timeout_s: float, on_tick: Callable[[RawTick, int], object]) -> int:
        """Handle queued events for up to ``timeout_s``; ticks go to ``on_tick``. Returns the
        number of ticks handled. Also runs the connect timeout and the reconnect backoff."""
        ticks = 0
        get = self.events.get
        end = self._monotonic() + timeout_s
        while (remaining := end - self._monotonic()) > 0:
            try:
                event = get(timeout=remaining)
            except queue.Empty:
                break
            if event[0] is Event.TICK:
                on_tick(event[1], event[2])
                ticks += 1
            else:
                self._handle(event)
        self._check_timers()
        return ticks

    def _check_timers(self) -> None:
        if not self._started:
            return
        now = self._monotonic()
        if self._api is None:
            if now >= self._retry_at:
                self._connect()
        elif not self.state.logged_in and now >= self._deadline:
            wait = self.backoff_s() if self._tries() % len(self.fronts) == 0 else 0.0
            self.log.warning(
                "ctp_md_not_connected", front=self.state.front, attempt=self.state.attempt,
                waited_s=self.connect_timeout_s, retry_in_s=wait,
                hint="check the front address, the network and that the front is up",
            )  # fmt: skip
            self._release()
            self._retry_at = now + wait

    def _handle(self, event: tuple[Any, ...]) -> None:
        kind = event[0]
        if kind is Event.CONNECTED:
            self.state.connected = True
            self.log.info("ctp_md_connected", front=self.state.front)
            req = mdapi.CThostFtdcReqUserLoginField()
            req.BrokerID, req.UserID, req.Password = self.broker_id, self.user_id, self._password
            self._request += 1
            self._api.ReqUserLogin(req, self._request)
        elif kind is Event.DISCONNECTED:
            self.state.connected = self.state.logged_in = False
            self.state.subscribed = 0
            self._deadline = self._monotonic() + self.connect_timeout_s
            self.log.warning("ctp_md_disconnected", front=self.state.front, reason=hex(event[1]))
        elif kind is Event.LOGIN:
            _, error_id, message, day = event
            if error_id:
                self.log.error("ctp_md_login_failed", error_id=error_id, message=message)
                return
            self.state.logged_in = True
            self.state.trading_day = day
            self._attempts_before_login = self.state.attempt - 1  # this front's try is the first
            self.log.info("ctp_md_logged_in", trading_day=day)
            self._subscribe()
        elif kind is Event.SUBSCRIBED:
            _, instrument, error_id, message = event
            if error_id:
                self.log.error("ctp_md_subscribe_failed", instrument=instrument, message=message)
            else:
                self.state.subscribed += 1
        elif kind is Event.HEARTBEAT_WARNING:
            self.log.warning("ctp_md_heartbeat_late", seconds=event[1])
        elif kind is Event.ERROR:
            self.log.error("ctp_md_error", error_id=event[1], message=event[2])

    def _subscribe(self) -> None:
        """Subscribe every instrument; CTP forgets subscriptions on reconnect, so this runs
        after every login."""
        names = [name.encode() for name in self.instruments]
        for start in range(0, len(names), 500):
            chunk = names[start : start + 500]
            self._api.SubscribeMarketData(chunk, len(chunk))

    def queued(self) -> int:
        """Events CTP's thread queued that the service has not handled yet."""
        return self.events.qsize()

    def describe(self) -> dict[str, object]:
        """Connection state for the metrics log line."""
        return {"source": "ctp", **vars(self.state)}

    def stop(self) -> None:
        self._started = False
        self._release()
