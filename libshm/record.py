"""The normalised tick record: one fixed 304-byte layout, its ``struct`` codec and numpy dtype.

The layout is described in ``docs/journal-format.md`` (tick record, layout 1). Prices are float64
and NaN when absent; volumes are integers; times are ns since the epoch (UTC).
"""

from __future__ import annotations

import math
import struct
from typing import Final, NamedTuple

import numpy as np

from libshm import accel
from libshm.layout import Layout

__all__ = [
    "FLAG_AUCTION",
    "FLAG_OUTSIDE_HOURS",
    "FLAG_SETTLEMENT",
    "FLAG_SYNTHETIC",
    "TICK_DTYPE",
    "TICK_LAYOUT",
    "TICK_LAYOUT_ID",
    "TICK_LAYOUT_VERSION",
    "TICK_SIZE",
    "TICK_STRUCT",
    "Tick",
    "book_tick",
    "decode_tick",
    "encode_tick",
    "pack_args",
    "tick_from_row",
]

TICK_LAYOUT_ID: Final = 1
TICK_LAYOUT_VERSION: Final = 1

FLAG_AUCTION: Final = 1
FLAG_OUTSIDE_HOURS: Final = 2
FLAG_SYNTHETIC: Final = 4
FLAG_SETTLEMENT: Final = 8
"""A day's settlement record: a row after the day session's close that carries the exchange's
settlement price (and the close). Not market activity: the engine marks positions with it and
neither the simulator nor the agents see it."""

NAN: Final = math.nan


class Tick(NamedTuple):
    """One normalised market-data snapshot. Field order is the binary layout's order."""

    instrument: str
    exchange: str
    trading_day: int
    flags: int
    exchange_time_ns: int
    local_time_ns: int
    last: float
    open: float
    high: float
    low: float
    close: float
    pre_close: float
    pre_settlement: float
    settlement: float
    upper_limit: float
    lower_limit: float
    average: float
    volume: int
    turnover: float
    open_interest: float
    pre_open_interest: float
    bid_price1: float
    bid_price2: float
    bid_price3: float
    bid_price4: float
    bid_price5: float
    ask_price1: float
    ask_price2: float
    ask_price3: float
    ask_price4: float
    ask_price5: float
    bid_volume1: int
    bid_volume2: int
    bid_volume3: int
    bid_volume4: int
    bid_volume5: int
    ask_volume1: int
    ask_volume2: int
    ask_volume3: int
    ask_volume4: int
    ask_volume5: int

    @property
    def bids(self) -> list[tuple[float, int]]:
        """Present bid levels, best first, as (price, volume)."""
        return [
            (p, v)
            for p, v in zip(self[21:26], self[31:36], strict=True)
            if not math.isnan(p) and v > 0
        ]

    @property
    def asks(self) -> list[tuple[float, int]]:
        """Present ask levels, best first, as (price, volume)."""
        return [
            (p, v)
            for p, v in zip(self[26:31], self[36:41], strict=True)
            if not math.isnan(p) and v > 0
        ]


TICK_FORMAT: Final = "<32s8sIIqq11dqddd5d5d5i5i"
TICK_STRUCT: Final = struct.Struct(TICK_FORMAT)
TICK_SIZE: Final = TICK_STRUCT.size
assert TICK_SIZE == 304

TICK_LAYOUT: Final = Layout(TICK_LAYOUT_ID, TICK_LAYOUT_VERSION, TICK_SIZE, TICK_FORMAT[1:])

TICK_DTYPE: Final = np.dtype(
    [
        ("instrument", "S32"),
        ("exchange", "S8"),
        ("trading_day", "<u4"),
        ("flags", "<u4"),
        ("exchange_time_ns", "<i8"),
        ("local_time_ns", "<i8"),
        *[
            (name, "<f8")
            for name in (
                "last", "open", "high", "low", "close", "pre_close", "pre_settlement",
                "settlement", "upper_limit", "lower_limit", "average",
            )
        ],
        ("volume", "<i8"),
        ("turnover", "<f8"),
        ("open_interest", "<f8"),
        ("pre_open_interest", "<f8"),
        ("bid_price", "<f8", (5,)),
        ("ask_price", "<f8", (5,)),
        ("bid_volume", "<i4", (5,)),
        ("ask_volume", "<i4", (5,)),
    ]
)  # fmt: skip
assert TICK_DTYPE.itemsize == TICK_SIZE

# Instrument and exchange names repeat endlessly; converting them once per name keeps the codec
# close to the cost of struct alone.
_DECODED: dict[bytes, str] = {}
_ENCODED: dict[str, bytes] = {}  # instrument names, at most 32 bytes
_ENCODED_EXCHANGE: dict[str, bytes] = {}  # exchange names, at most 8 bytes
_CACHE_LIMIT: Final = 100_000


def _text(raw: bytes) -> str:
    text = _DECODED.get(raw)
    if text is None:
        text = raw.rstrip(b"\0").decode("ascii")
        if len(_DECODED) < _CACHE_LIMIT:
            _DECODED[raw] = text
    return text


def _raw(text: str, cache: dict[str, bytes], field: str, limit: int) -> bytes:
    raw = cache.get(text)
    if raw is None:
        if not isinstance(text, str):
            raise TypeError(f"tick field '{field}': expected str, found {type(text).__name__}")
        if not text.isascii():
            raise ValueError(f"tick field '{field}': {text!r} is not ASCII")
        raw = text.encode("ascii")
        if len(raw) > limit:
            raise ValueError(f"tick field '{field}': {text!r} is longer than {limit} bytes")
        if len(cache) < _CACHE_LIMIT:
            cache[text] = raw
    return raw


def pack_args(tick: Tick) -> tuple[object, ...]:
    """The values ``TICK_STRUCT`` packs for ``tick`` (names as bytes), for framing codecs.

    The per-tick paths look names up in ``_ENCODED`` and ``_ENCODED_EXCHANGE`` first and call
    this on a miss, which checks the name and caches it.
    """
    return (
        _raw(tick[0], _ENCODED, "instrument", 32),
        _raw(tick[1], _ENCODED_EXCHANGE, "exchange", 8),
        *tick[2:],
    )


def encode_tick(tick: Tick) -> bytes:
    """The 304-byte record of ``tick``."""
    fast = accel.FAST
    if fast is not None:
        out = bytearray(TICK_SIZE)
        fast.pack_tick(out, 0, tick)
        return bytes(out)
    return TICK_STRUCT.pack(*pack_args(tick))


_new_tick = tuple.__new__


def decode_tick(buffer: bytes | bytearray | memoryview, offset: int = 0) -> Tick:
    """Read one record at ``offset`` of ``buffer``."""
    fast = accel.FAST
    if fast is not None:
        return fast.unpack_tick(buffer, offset, Tick)  # type: ignore[no-any-return]
    values = TICK_STRUCT.unpack_from(buffer, offset)
    return _new_tick(Tick, (_text(values[0]), _text(values[1]), *values[2:]))


def book_tick(
    instrument: str,
    exchange: str,
    trading_day: int,
    time_ns: int,
    *,
    last: float,
    bid: float,
    ask: float,
    upper: float,
    lower: float,
    depth: int = 5,
) -> Tick:
    """A tick with a last price, the day's limits and one level of ``depth`` lots each side
    (the rest NaN or zero): for tests, benchmarks and synthetic markets."""
    nan = NAN
    return Tick(
        instrument, exchange, trading_day, 0, time_ns, time_ns, last, nan, nan, nan, nan, nan,
        nan, nan, upper, lower, nan, 0, 0.0, 0.0, 0.0, bid, nan, nan, nan, nan, ask, nan, nan,
        nan, nan, depth, 0, 0, 0, 0, depth, 0, 0, 0, 0,
    )  # fmt: skip


def tick_from_row(row: np.void) -> Tick:
    """A :class:`Tick` from one element of a ``TICK_DTYPE`` array."""
    values: list[object] = [
        _text(bytes(row["instrument"])),
        _text(bytes(row["exchange"])),
        int(row["trading_day"]),
        int(row["flags"]),
        int(row["exchange_time_ns"]),
        int(row["local_time_ns"]),
        *(float(row[name]) for name in Tick._fields[6:17]),
        int(row["volume"]),
        float(row["turnover"]),
        float(row["open_interest"]),
        float(row["pre_open_interest"]),
        *(float(x) for x in row["bid_price"]),
        *(float(x) for x in row["ask_price"]),
        *(int(x) for x in row["bid_volume"]),
        *(int(x) for x in row["ask_volume"]),
    ]
    return Tick._make(values)
