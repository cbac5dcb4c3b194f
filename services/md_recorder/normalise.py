"""CTP depth-market-data values to the libshm tick record: dates, times and absent prices.

A core with no I/O: it takes the raw values of one ``CThostFtdcDepthMarketDataField`` (in
``CTP_FIELDS`` order, as the CTP source copies them off the API thread or an import reads them
from a file) and the local receive time, and returns a ``Tick`` or the reason it cannot make one.

Rules (docs/md_recorder.md has the reasoning and the real-feed facts behind them):

- Exchange time is China time (UTC+8) from the calendar date of the tick, ``UpdateTime`` and
  ``UpdateMillisec``. The calendar date of a day-session tick is its trading day. A night tick
  (18:00 and later, or before 06:00 after midnight) belongs to the evening of the trading day
  before its trading day: on DCE ``ActionDay`` is the trading day at night, so the evening is
  computed; elsewhere ``ActionDay`` is the calendar date and is used when present.
- A night tick whose ``TradingDay`` is not after its evening (CZCE sends the calendar date) or is
  not a trading day (a file's calendar date after midnight on a Saturday) gets the evening's
  next trading day (the calendar's holidays skipped) as its trading day.
- An empty ``TradingDay`` (a vendor file without a trading-day column) is derived: the calendar
  date (``ActionDay``) by day, the evening's next trading day by night.
- The phase (and so the outside-hours filter) is by the hours in force on the tick's trading
  day, without a night session on a day that had none (before a holiday, in a suspension).
- CZCE sends no milliseconds: ticks sharing a second keep their arrival order (the journal's
  sequence), and nothing here reorders them (an import orders them by cumulative volume).
- A row after the day session's close (before 18:00) that carries a settlement price is the
  day's settlement record: flagged ``FLAG_SETTLEMENT`` (the filters keep it, not as market
  activity). Its phase is still closed.
- With ``check_exchange`` (imports), a row whose exchange is not the calendar's for its product
  is dropped as ``wrong_exchange``: a vendor's own code (``XDCE``) needs translating, or the
  rules that depend on the exchange would silently not apply.
- A price that is not a positive finite number below 1e300 (CTP's DBL_MAX, 0 for "unset") is
  absent (NaN); a depth level without a price has volume 0.
- ``AveragePrice`` is turnover / volume; SHFE, DCE, INE and CFFEX include the contract multiplier
  in it, so an average above twice the last price is divided by the multiplier.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
from math import isfinite, isnan
from typing import Any, Final

from contracts.calendar import Calendar, Phase, Product
from contracts.clock import CHINA
from libshm import FLAG_AUCTION, FLAG_SETTLEMENT, Tick

__all__ = ["CHINA", "CTP_FIELDS", "Drop", "Normaliser", "RawTick"]

CTP_FIELDS: Final = (
    "TradingDay", "ActionDay", "UpdateTime", "UpdateMillisec", "InstrumentID", "ExchangeID",
    "LastPrice", "PreSettlementPrice", "PreClosePrice", "PreOpenInterest", "OpenPrice",
    "HighestPrice", "LowestPrice", "Volume", "Turnover", "OpenInterest", "ClosePrice",
    "SettlementPrice", "UpperLimitPrice", "LowerLimitPrice", "AveragePrice",
    "BidPrice1", "BidVolume1", "AskPrice1", "AskVolume1",
    "BidPrice2", "BidVolume2", "AskPrice2", "AskVolume2",
    "BidPrice3", "BidVolume3", "AskPrice3", "AskVolume3",
    "BidPrice4", "BidVolume4", "AskPrice4", "AskVolume4",
    "BidPrice5", "BidVolume5", "AskPrice5", "AskVolume5",
)  # fmt: skip
"""The fields of ``CThostFtdcDepthMarketDataField`` the recorder reads, in the order of a raw
tick (also the column order of the CTP CSV files)."""

RawTick = tuple[object, ...]

NIGHT_FROM: Final = 18 * 3600
NIGHT_UNTIL: Final = 6 * 3600
NAN: Final = math.nan
ABSENT_ABOVE: Final = 1e300
_ONE_DAY: Final = dt.timedelta(days=1)


class Drop(enum.StrEnum):
    """Why a tick was not recorded; every drop is counted under one of these."""

    MALFORMED = "malformed"
    IMPOSSIBLE_TIME = "impossible_time"
    OUTSIDE_HOURS = "outside_hours"
    DUPLICATE = "duplicate"
    VOLUME_BACKWARDS = "volume_backwards"
    CROSSED_BOOK = "crossed_book"
    OUTSIDE_LIMITS = "outside_limits"
    OUT_OF_RANGE = "out_of_range"  # a value the record cannot hold (1e30 lots, a 40-byte id)
    STALE = "stale"  # volume ahead of the rest of its trading day's sequence (imports)
    WRONG_EXCHANGE = "wrong_exchange"  # not the calendar's exchange for the product (imports)


class Normaliser:
    """Raw CTP values -> ``Tick`` plus the tick's trading phase (for the filters)."""

    def __init__(self, calendar: Calendar, check_exchange: bool = False) -> None:
        self.calendar = calendar
        self.check_exchange = check_exchange
        self._closes: dict[bytes, int] = {}
        self._dates: dict[object, dt.date | None] = {}
        self._times: dict[object, int | None] = {}
        self._midnights: dict[dt.date, int] = {}
        self._tables: dict[tuple[int, dt.date], bytes] = {}
        self.unknown_products: set[str] = set()

    # -- parsing with caches: a day has few distinct dates and at most 86,400 times ---------

    def date_of(self, value: object) -> dt.date | None:
        try:
            return self._dates[value]
        except KeyError:
            pass
        text = str(value).strip()
        try:
            day = dt.date(int(text[:4]), int(text[4:6]), int(text[6:8])) if len(text) == 8 else None
        except ValueError:
            day = None
        if len(self._dates) < 10_000:
            self._dates[value] = day
        return day

    def seconds_of(self, value: object) -> int | None:
        try:
            return self._times[value]
        except KeyError:
            pass
        text = str(value).strip()
        seconds: int | None = None
        if len(text) == 8 and text[2] == ":" and text[5] == ":":
            try:
                h, m, s = int(text[:2]), int(text[3:5]), int(text[6:8])
            except ValueError:
                pass
            else:
                if 0 <= h < 24 and 0 <= m < 60 and 0 <= s < 60:
                    seconds = h * 3600 + m * 60 + s
        if len(self._times) < 100_000:
            self._times[value] = seconds
        return seconds

    def midnight_ns(self, day: dt.date) -> int:
        ns = self._midnights.get(day)
        if ns is None:
            midnight = dt.datetime(day.year, day.month, day.day, tzinfo=CHINA)
            ns = int(midnight.timestamp()) * 1_000_000_000
            self._midnights[day] = ns
        return ns

    # -- the record ------------------------------------------------------------------------

    def normalise(self, raw: RawTick, local_time_ns: int) -> tuple[Tick, Phase | None] | Drop:
        """The tick of ``raw`` and its phase (None: product not in the calendar), or a drop."""
        try:
            instrument = str(raw[4]).strip()
            exchange = str(raw[5]).strip()
            given = str(raw[0]).strip()
            trading = self.date_of(given) if given else None
            seconds = self.seconds_of(raw[2])
            millis = int(raw[3])  # type: ignore[call-overload]
        except (TypeError, ValueError, IndexError):
            return Drop.MALFORMED
        if not instrument or len(raw) != len(CTP_FIELDS):
            return Drop.MALFORMED
        if (given and trading is None) or seconds is None or not 0 <= millis < 1000:
            return Drop.IMPOSSIBLE_TIME
        product = self.calendar.product(instrument)
        if product is None:
            self.unknown_products.add(instrument)
        elif not exchange:
            exchange = product.exchange  # CTP leaves ExchangeID empty on some fronts
        elif self.check_exchange and exchange != product.exchange:
            return Drop.WRONG_EXCHANGE
        dates = self.calendar_date(raw[1], exchange, trading, seconds)
        if dates is None:
            return Drop.IMPOSSIBLE_TIME
        day, trading = dates
        exchange_ns = self.midnight_ns(day) + seconds * 1_000_000_000 + millis * 1_000_000
        phase = None
        multiplier = 0
        post_close = False
        if product is not None:
            table = self.phase_table(product, trading)
            phase = _PHASES[table[seconds]]
            multiplier = product.multiplier
            post_close = phase is Phase.CLOSED and self.close_second(table) <= seconds < NIGHT_FROM
        try:
            tick = _tick(
                raw,
                instrument,
                exchange,
                trading,
                phase,
                exchange_ns,
                local_time_ns,
                multiplier,
                post_close,
            )
        except (TypeError, ValueError, OverflowError):
            return Drop.MALFORMED
        return tick, phase

    def phase_table(self, product: Product, trading: dt.date) -> bytes:
        """The product's phases on its trading day (the hours then in force), cached."""
        key = (id(product), trading)
        table = self._tables.get(key)
        if table is None:
            if len(self._tables) > 10_000:
                self._tables.clear()
            table = self._tables[key] = self.calendar.phase_table(product, trading)
        return table

    def close_second(self, table: bytes) -> int:
        """The first second after the day session's last open one, in ``table``'s day."""
        close = self._closes.get(table)
        if close is None:
            day = table[NIGHT_UNTIL:NIGHT_FROM].rstrip(_CLOSED)
            close = self._closes[table] = NIGHT_UNTIL + len(day) if day else NIGHT_FROM
        return close

    def calendar_date(
        self, action: object, exchange: str, trading: dt.date | None, seconds: int
    ) -> tuple[dt.date, dt.date] | None:
        """(calendar date of the tick, corrected trading day); None if neither the trading day
        nor the calendar date is known."""
        if NIGHT_UNTIL <= seconds < NIGHT_FROM:
            day = trading if trading is not None else self.date_of(action)
            return None if day is None else (day, day)
        after_midnight = seconds < NIGHT_UNTIL
        # DCE's ActionDay is the trading day at night; without a TradingDay it is all there is
        action_day = None if exchange == "DCE" and trading is not None else self.date_of(action)
        calendar = self.calendar
        if action_day is not None:
            evening = action_day - _ONE_DAY if after_midnight else action_day
        elif trading is not None:
            evening = calendar.previous_trading_day(trading)
        else:
            return None
        # CZCE sends the calendar date as TradingDay at night; a file's date column after
        # midnight is a Saturday's, or a holiday's
        if trading is None or trading <= evening or not calendar.is_trading_day(trading):
            trading = calendar.next_trading_day(evening)
        return (evening + _ONE_DAY if after_midnight else evening), trading


_PHASES: Final = tuple(Phase)
_CLOSED: Final = bytes([_PHASES.index(Phase.CLOSED)])
_new_tick = tuple.__new__


def _tick(  # noqa: PLR0917
    raw: RawTick,
    instrument: str,
    exchange: str,
    trading: dt.date,
    phase: Phase | None,
    exchange_ns: int,
    local_ns: int,
    multiplier: int,
    post_close: bool = False,
) -> Tick:
    # raw[6:]: last, pre_settlement, pre_close, pre_oi, open, high, low, volume, turnover, oi,
    # close, settlement, upper, lower, average, then (bid, bid volume, ask, ask volume) x 5
    nums: Any = raw[6:]
    if type(nums[0]) is not float:  # text from a file; the CTP source hands floats and ints
        nums = [float(x) for x in nums]
    p = [x if 0.0 < x < ABSENT_ABOVE else NAN for x in nums]
    bids, asks = p[15::4], p[17::4]
    bid_volumes = [0 if isnan(b) else int(v) for b, v in zip(bids, nums[16::4], strict=True)]
    ask_volumes = [0 if isnan(a) else int(v) for a, v in zip(asks, nums[18::4], strict=True)]
    average = p[14]
    if multiplier and average > 2 * p[0]:  # turnover / volume including the multiplier
        average /= multiplier
    turnover, open_interest = nums[8], nums[9]
    flags = FLAG_AUCTION if phase is Phase.AUCTION else 0
    if post_close and not isnan(p[11]):
        flags = FLAG_SETTLEMENT
    return _new_tick(
        Tick, (
            instrument, exchange, trading.year * 10_000 + trading.month * 100 + trading.day,
            flags, exchange_ns, local_ns,
            p[0], p[4], p[5], p[6], p[10], p[2], p[1], p[11], p[12], p[13], average,
            int(nums[7]), turnover if isfinite(turnover) and turnover < ABSENT_ABOVE else NAN,
            open_interest if 0 <= open_interest < ABSENT_ABOVE else NAN, p[3],
            *bids, *asks, *bid_volumes, *ask_volumes,
        ),
    )  # fmt: skip
