"""Trading sessions and products: when each product trades, and trading-day arithmetic.

The facts live in ``configs/calendar.toml``; this module validates them (strictly, like every
config) and answers, per second of the exchange's day, whether a product is in continuous
trading, in a call auction or closed. Times are exchange time (China, UTC+8, no daylight saving).
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
    "Calendar",
    "CalendarFile",
    "Phase",
    "Product",
    "Session",
    "china_second",
    "load_calendar",
    "next_weekday",
    "previous_weekday",
    "product_code",
    "window_seconds",
]

DEFAULT_CALENDAR: Final = Path(__file__).resolve().parent.parent / "configs" / "calendar.toml"
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


class CalendarFile(_Strict):
    sessions: dict[str, Session]
    products: dict[str, Product]

    @model_validator(mode="after")
    def _sessions_exist(self) -> CalendarFile:
        for code, product in self.products.items():
            if product.session not in self.sessions:
                raise ValueError(
                    f"product {code} names session {product.session!r}, which is not defined; "
                    f"defined: {', '.join(sorted(self.sessions))}"
                )
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


def _phase_table(session: Session) -> bytes:
    """The phase of every second of the day. A section includes its end minute's first second
    (the closing snapshot is stamped 15:00:00.x); an auction window is [start, end)."""
    table = bytearray(DAY_SECONDS)
    for window in session.auctions:
        start, end = window_seconds(window)
        for sec in _seconds(start, end):
            table[sec] = Phase.AUCTION
    for window in session.sections:
        start, end = window_seconds(window)
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


class Calendar:
    """Sessions and products, with per-second phase tables built once."""

    def __init__(self, data: CalendarFile, source: str = "calendar") -> None:
        self.data = data
        self.source = source
        self._tables = {name: _phase_table(s) for name, s in data.sessions.items()}
        self._folded: dict[str, str] = {}
        for code in data.products:
            key = code.lower()
            # a code that differs only in case from another stays exact-match only
            self._folded[key] = "" if key in self._folded else code
        self._cache: dict[str, Product | None] = {}

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

    def phase_table(self, product: Product) -> bytes:
        """The product's phase per second of the day, indexable by seconds since midnight."""
        return self._tables[product.session]

    def phase(self, instrument: str, second_of_day: int) -> Phase | None:
        """The phase at ``second_of_day`` (exchange time); None for an unknown product."""
        product = self.product(instrument)
        if product is None:
            return None
        return Phase(self._tables[product.session][second_of_day % DAY_SECONDS])

    def has_night(self, product: Product) -> bool:
        sections = self.data.sessions[product.session].sections
        return any(window_seconds(w)[0] >= 18 * 3600 for w in sections)


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
    return Calendar(data, str(path))


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
