"""Trading sessions and products: when each product trades, and trading-day arithmetic.

The facts live in ``configs/calendar.toml`` (sessions, products, the dated changes of a
product's hours, the periods without night sessions) and ``configs/holidays.toml`` (the weekdays
the exchanges are closed); this module validates them (strictly, like every config) and answers,
per second of the exchange's day, whether a product is in continuous trading, in a call auction
or closed, by the hours in force on a given trading day. Times are exchange time (China, UTC+8,
no daylight saving).

Trading days: a weekday that is not an exchange holiday. A night session belongs to the next
trading day and is held on the evening of the trading day before it, and only if no holiday
lies between the two (the exchanges hold no night session before a holiday): so trading day T
has a night session when the weekday before T is a trading day, T is not in a period without
night sessions, and its product's session has a night section.
"""

from __future__ import annotations

import datetime as dt
import enum
import re
import tomllib
from pathlib import Path
from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.config import format_validation_error
from contracts.errors import UserError

__all__ = [
    "CHINA_OFFSET_S",
    "DAY_SECONDS",
    "DEFAULT_CALENDAR",
    "DEFAULT_HOLIDAYS",
    "Calendar",
    "CalendarFile",
    "Change",
    "Day",
    "HolidaysFile",
    "Phase",
    "Product",
    "Session",
    "as_date",
    "china_second",
    "load_calendar",
    "load_holidays",
    "next_weekday",
    "previous_weekday",
    "product_code",
    "window_seconds",
]

DEFAULT_CALENDAR: Final = Path(__file__).resolve().parent.parent / "configs" / "calendar.toml"
DEFAULT_HOLIDAYS: Final = DEFAULT_CALENDAR.with_name("holidays.toml")
NIGHT_STARTS: Final = 18 * 3600  # a section or auction starting at or after 18:00 is the night's
DAY_SECONDS: Final = 86_400
CHINA_OFFSET_S: Final = 8 * 3600  # China time is UTC+8 all year


def china_second(time_ns: int) -> int:
    """Seconds since midnight, China time, of an epoch time in nanoseconds: the index into a
    ``phase_table``."""
    return (time_ns // 1_000_000_000 + CHINA_OFFSET_S) % DAY_SECONDS


_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def _window(text: str) -> str:
    if not _WINDOW.match(text):
        raise ValueError(f'expected "HH:MM-HH:MM", found {text!r}')
    return text


Window = Annotated[str, AfterValidator(_window)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Session(_Strict):
    description: str = ""
    auctions: list[Window] = Field(default_factory=list)
    sections: Annotated[list[Window], Field(min_length=1)]


class Product(_Strict):
    exchange: str = Field(pattern=r"^[A-Z]{3,5}$")
    session: str
    price_tick: float = Field(gt=0)
    multiplier: int = Field(gt=0)
    close_today: bool = False


class Change(_Strict):
    """A change of hours: on trading days before ``trading_day`` the ``products`` traded the
    session ``before`` (unless an earlier change of theirs says otherwise); from it on, the
    session of the next change, or the product's own ``session`` after the last."""

    trading_day: dt.date
    products: Annotated[list[str], Field(min_length=1)]
    before: str
    source: Annotated[str, Field(min_length=1)]


class NoNight(_Strict):
    """Trading days ``first`` to ``last`` (inclusive) had no night session (a suspension)."""

    first: dt.date
    last: dt.date
    source: Annotated[str, Field(min_length=1)]


class CalendarFile(_Strict):
    holidays_file: str | None = None
    """The exchange holidays, relative to this file; the bundled ``configs/holidays.toml``
    when not given."""
    sessions: dict[str, Session]
    products: dict[str, Product]
    changes: list[Change] = Field(default_factory=list)
    no_night: list[NoNight] = Field(default_factory=list)

    @model_validator(mode="after")
    def _sessions_exist(self) -> CalendarFile:
        defined = ", ".join(sorted(self.sessions))
        for code, product in self.products.items():
            if product.session not in self.sessions:
                raise ValueError(
                    f"product {code} names session {product.session!r}, which is not defined; "
                    f"defined: {defined}"
                )
        seen: set[tuple[str, dt.date]] = set()
        for i, change in enumerate(self.changes):
            where = f"changes[{i}] ({change.trading_day})"
            if change.before not in self.sessions:
                raise ValueError(f"{where}: session {change.before!r} is not defined; "
                                 f"defined: {defined}")  # fmt: skip
            for code in change.products:
                if code not in self.products:
                    raise ValueError(f"{where}: product {code} is not under [products]")
                if (code, change.trading_day) in seen:
                    raise ValueError(f"{where}: product {code} changes twice on that day")
                seen.add((code, change.trading_day))
        for i, period in enumerate(self.no_night):
            if period.last < period.first:
                raise ValueError(f"no_night[{i}]: last ({period.last}) is before first "
                                 f"({period.first})")  # fmt: skip
        return self


class HolidayYear(_Strict):
    source: Annotated[str, Field(min_length=1)]
    closed: list[dt.date]


class HolidaysFile(_Strict):
    """``configs/holidays.toml``: per year, the weekdays the exchanges are closed."""

    years: dict[str, HolidayYear]

    @model_validator(mode="after")
    def _dates_fit(self) -> HolidaysFile:
        for year, entry in self.years.items():
            if not (year.isdigit() and len(year) == 4):
                raise ValueError(f"years.{year}: a year is four digits")
            for day in entry.closed:
                if day.year != int(year):
                    raise ValueError(f"years.{year}: {day} is not in {year}")
                if day.weekday() >= 5:
                    raise ValueError(f"years.{year}: {day} is a {day:%A}; list only weekdays "
                                     "(the exchanges never trade on a weekend)")  # fmt: skip
        return self


class Phase(enum.IntEnum):
    CLOSED = 0
    AUCTION = 1
    OPEN = 2


def window_seconds(window: str) -> tuple[int, int]:
    """(start, end) of an ``"HH:MM-HH:MM"`` window in seconds since midnight."""
    start, end = window.split("-")
    return _minute(start) * 60, _minute(end) * 60


def _minute(hhmm: str) -> int:
    hours, minutes = hhmm.split(":")
    return int(hours) * 60 + int(minutes)


def _phase_table(session: Session, night: bool = True) -> bytes:
    """The phase of every second of the day. A section includes its end minute's first second
    (the closing snapshot is stamped 15:00:00.x); an auction window is [start, end). Without
    ``night``, the sections and auctions that start at 18:00 or later are left out."""
    table = bytearray(DAY_SECONDS)
    for window in session.auctions:
        start, end = window_seconds(window)
        if night or start < NIGHT_STARTS:
            for sec in _seconds(start, end):
                table[sec] = Phase.AUCTION
    for window in session.sections:
        start, end = window_seconds(window)
        if night or start < NIGHT_STARTS:
            for sec in _seconds(start, end + 1):
                table[sec] = Phase.OPEN
    return bytes(table)


def _seconds(start: int, end: int) -> range | list[int]:
    if end > start:
        return range(start, end)
    return [*range(start, DAY_SECONDS), *range(end)]  # crosses midnight


def product_code(instrument: str) -> str:
    """The product of an instrument id: its leading letters (``rb2105`` -> ``rb``)."""
    end = 0
    while end < len(instrument) and instrument[end].isalpha():
        end += 1
    return instrument[:end]


Day = dt.date | int
"""A trading day as a date or as the journals' ``YYYYMMDD`` integer."""


def as_date(day: Day) -> dt.date:
    """A ``YYYYMMDD`` integer (or a date) as a date."""
    if isinstance(day, dt.date):
        return day
    return dt.date(day // 10_000, day // 100 % 100, day % 100)


class Calendar:
    """Sessions, products and holidays, with per-second phase tables built once per version."""

    def __init__(
        self, data: CalendarFile, source: str = "calendar",
        holidays: HolidaysFile | None = None,
    ) -> None:  # fmt: skip
        self.data = data
        self.source = source
        self._tables: dict[tuple[str, bool], bytes] = {
            (name, True): _phase_table(s) for name, s in data.sessions.items()
        }
        self._folded: dict[str, str] = {}
        for code in data.products:
            key = code.lower()
            # a code that differs only in case from another stays exact-match only
            self._folded[key] = "" if key in self._folded else code
        self._cache: dict[str, Product | None] = {}
        # each product's earlier sessions, by the first trading day after each (in date order)
        self._changes: dict[int, list[tuple[dt.date, str]]] = {}
        for change in sorted(data.changes, key=lambda c: c.trading_day):
            for code in change.products:
                earlier = self._changes.setdefault(id(data.products[code]), [])
                earlier.append((change.trading_day, change.before))
        self.holidays: frozenset[dt.date] = frozenset(
            day for year in (holidays.years.values() if holidays else ()) for day in year.closed
        )
        self.holiday_years: frozenset[int] = frozenset(
            int(year) for year in (holidays.years if holidays else ())
        )

    def product(self, instrument: str) -> Product | None:
        """The product of ``instrument``, or None if the calendar does not know it."""
        found = self._cache.get(instrument, False)
        if found is not False:
            return found  # type: ignore[return-value]
        code = product_code(instrument)
        product = self.data.products.get(code)
        if product is None and self._folded.get(code.lower()):
            product = self.data.products[self._folded[code.lower()]]
        self._cache[instrument] = product
        return product

    # -- hours by trading day ----------------------------------------------------------------

    def session_name(self, product: Product, trading_day: Day | None = None) -> str:
        """The session ``product`` traded on ``trading_day`` (None: the session in force now)."""
        if trading_day is not None:
            day = as_date(trading_day)
            for changed, before in self._changes.get(id(product), ()):
                if day < changed:
                    return before
        return product.session

    def phase_table(self, product: Product, trading_day: Day | None = None) -> bytes:
        """The product's phase per second of the day, indexable by seconds since midnight: by
        the hours in force on ``trading_day`` and without night sections if that day had no
        night session; None: the hours in force now, night included."""
        name = self.session_name(product, trading_day)
        night = trading_day is None or self.night_held(trading_day)
        table = self._tables.get((name, night))
        if table is None:
            table = self._tables[name, night] = _phase_table(self.data.sessions[name], night)
        return table

    def phase(self, instrument: str, second_of_day: int, trading_day: Day | None = None
              ) -> Phase | None:  # fmt: skip
        """The phase at ``second_of_day`` (exchange time); None for an unknown product."""
        product = self.product(instrument)
        if product is None:
            return None
        return Phase(self.phase_table(product, trading_day)[second_of_day % DAY_SECONDS])

    def day_sections(self, product: Product, trading_day: Day) -> tuple[tuple[int, int, bool], ...]:
        """The continuous-trading sections of ``product`` on ``trading_day`` as ``(start, end,
        night)`` in nanoseconds since the epoch (exchange time), in trading order: by the hours
        in force that day, the night's held on the evening of the weekday before it (and left
        out if that day had no night session), a section whose end is before its start ending
        the next calendar day. The K-lines' trading clock (docs/toolkit.md)."""
        day = as_date(trading_day)
        session = self.data.sessions[self.session_name(product, day)]
        held = self.night_held(day)
        out: list[tuple[int, int, bool]] = []
        for window in session.sections:
            start, end = window_seconds(window)
            night = start >= NIGHT_STARTS
            if night and not held:
                continue
            midnight = _china_midnight_s(previous_weekday(day) if night else day)
            first = midnight + start
            last = midnight + end + (DAY_SECONDS if end <= start else 0)
            if out and first < out[-1][1] // _NS:
                raise ValueError(f"session {self.session_name(product, day)}: section {window} "
                                 "starts before the one listed before it ends")  # fmt: skip
            out.append((first * _NS, last * _NS, night))
        return tuple(out)

    def has_night(self, product: Product, trading_day: Day | None = None) -> bool:
        """Whether the product's session (on ``trading_day``, or now) has a night section."""
        sections = self.data.sessions[self.session_name(product, trading_day)].sections
        return any(window_seconds(w)[0] >= NIGHT_STARTS for w in sections)

    # -- trading days ------------------------------------------------------------------------

    def is_trading_day(self, day: Day) -> bool:
        """A weekday that is not an exchange holiday."""
        day = as_date(day)
        return day.weekday() < 5 and day not in self.holidays

    def next_trading_day(self, day: Day) -> dt.date:
        """The first trading day after ``day``."""
        day = as_date(day) + _ONE_DAY
        while not self.is_trading_day(day):
            day += _ONE_DAY
        return day

    def previous_trading_day(self, day: Day) -> dt.date:
        """The last trading day before ``day``."""
        day = as_date(day) - _ONE_DAY
        while not self.is_trading_day(day):
            day -= _ONE_DAY
        return day

    def night_held(self, trading_day: Day) -> bool:
        """Whether the exchanges held night sessions for ``trading_day``: on the evening of the
        weekday before it, which must be a trading day (no night before a holiday), and not in
        a period without night sessions (``no_night``)."""
        day = as_date(trading_day)
        if not self.is_trading_day(previous_weekday(day)):
            return False
        return not any(p.first <= day <= p.last for p in self.data.no_night)


_ONE_DAY: Final = dt.timedelta(days=1)
_NS: Final = 1_000_000_000
_EPOCH_ORDINAL: Final = dt.date(1970, 1, 1).toordinal()


def _china_midnight_s(day: dt.date) -> int:
    """Seconds since the epoch at 00:00 China time of ``day``."""
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY_SECONDS - CHINA_OFFSET_S


def load_calendar(path: str | Path = DEFAULT_CALENDAR) -> Calendar:
    """Read and check a calendar file; any problem is one ``UserError`` naming the file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such calendar file (see configs/calendar.toml)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the calendar: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    try:
        data = CalendarFile.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, str(path), CalendarFile)) from None
    holidays = DEFAULT_HOLIDAYS if data.holidays_file is None else path.parent / data.holidays_file
    return Calendar(data, str(path), load_holidays(holidays))


def load_holidays(path: str | Path = DEFAULT_HOLIDAYS) -> HolidaysFile:
    """Read and check a holidays file; any problem is one ``UserError`` naming the file."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path}: no such holidays file (see configs/holidays.toml; a calendar "
                        "names its own with holidays_file)") from None  # fmt: skip
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the holidays: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{path}: not valid TOML: {exc}") from None
    try:
        return HolidaysFile.model_validate(raw)
    except ValidationError as exc:
        raise UserError(format_validation_error(exc, str(path), HolidaysFile)) from None


def next_weekday(day: dt.date) -> dt.date:
    """The first Monday-to-Friday date after ``day`` (holidays have no night session before
    them, so a night session's trading day is always its evening's next weekday)."""
    day += dt.timedelta(days=1)
    while day.weekday() >= 5:
        day += dt.timedelta(days=1)
    return day


def previous_weekday(day: dt.date) -> dt.date:
    """The last Monday-to-Friday date before ``day``."""
    day -= dt.timedelta(days=1)
    while day.weekday() >= 5:
        day -= dt.timedelta(days=1)
    return day
