"""The import's fast path: whole files as columns, normalised and filtered with numpy.

Two readers give a file as ``Columns``: the scanner (``scanned.py``, C, plain files, numbers
straight into the records) and pyarrow's CSV reader (``arrow.py``, every file). Everything that
has few distinct values (dates, times of day, instruments, exchanges and their combinations) is
worked out once per distinct value by the per-row ``Normaliser`` itself (``date_of``,
``seconds_of``, ``calendar_date``, ``phase_table``, ``close_second``), then spread over the rows.
So the rules live in one place; this module applies them to many rows at a time.

A row the columns cannot take as they are (a value that is not a number, an impossible date or
time, a volume that is not a finite number the record can hold, a name it cannot hold, a wrong
exchange) is handed back by its index, and the per-row path decides it as it decides every row.
A file no reader takes whole is read by the per-row path from the start.
``tests/services/md_recorder/test_columnar.py`` compares the three paths on every bundled file
and on random rows: the same journals, the same drops.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from contracts.calendar import Phase
from libshm import FLAG_AUCTION, FLAG_SETTLEMENT, TICK_DTYPE
from services.md_recorder.mapping import (
    Mapping,
    Reject,
    millis_of,
    parser_of,
)
from services.md_recorder.normalise import (
    ABSENT_ABOVE,
    CTP_FIELDS,
    NIGHT_FROM,
    NIGHT_UNTIL,
    Normaliser,
    RawTick,
)

__all__ = [
    "FACT_AVERAGE_BIG",
    "FACT_CROSSED",
    "FACT_OUTSIDE",
    "FACT_SETTLES",
    "NUMBERS",
    "STATELESS",
    "TEXTS",
    "Columns",
    "Normalised",
    "mapped_names",
    "mapped_times",
    "normalise_columns",
]

NUMBERS: Final = CTP_FIELDS[6:]
TEXTS: Final = ("TradingDay", "ActionDay", "UpdateTime", "InstrumentID", "ExchangeID")
STATELESS: Final = ("", "outside_hours", "crossed_book", "outside_limits")
"""Codes of ``Normalised.drop``: the drops of ``TickFilter.stateless``."""
_AUCTION: Final = int(Phase.AUCTION)
_CLOSED: Final = int(Phase.CLOSED)
_NO_PHASE: Final = 255
LIMIT_SLACK: Final = 1e-6
I32: Final = 2.0**31
I64: Final = 2.0**63
DAY: Final = 86_400
FACT_CROSSED: Final = 1
"""Bid1 >= ask1."""
FACT_OUTSIDE: Final = 2
"""The last price, bid1 or ask1 beyond a limit (with ``LIMIT_SLACK``)."""
FACT_AVERAGE_BIG: Final = 4
"""Average > 2 x last: the average is in money (price x multiplier), not in price."""
FACT_SETTLES: Final = 8
"""A settlement price."""


@dataclass
class Columns:
    """One file's rows in ``CTP_FIELDS`` terms. Each text field as (distinct values, the code
    of each row); ``millis`` -1 where not a whole number; ``bad`` marks rows where some
    number's text was not one (or, from the scanner, did not fit its field). The numbers come
    either as float64 (``numbers``: rows x 35, ``NUMBERS`` order; pyarrow's reader) or already
    in their record fields (``records``; the scanner), with ``written``: the text fields whose
    raw values (distinct, in code order) the scanner copied into the records."""

    texts: dict[str, tuple[list[str], np.ndarray]]
    millis: np.ndarray
    numbers: np.ndarray | None
    bad: np.ndarray
    raw: Callable[[int], RawTick | Reject]
    """Row ``i`` as its reader gives it to the per-row path (from the file's text)."""
    records: np.ndarray | None = None
    written: dict[str, list[str]] | None = None
    facts: np.ndarray | None = None
    """With ``records``: each row's ``FACT_*`` bits, worked out by the scanner."""

    def __len__(self) -> int:
        return len(self.millis)


def mapped_times(
    encoded: Callable[[str], tuple[list[str], np.ndarray]], rows: int, mapping: Mapping
) -> tuple[dict[str, tuple[list[str], np.ndarray]], np.ndarray, np.ndarray]:
    """(the date and time texts in CTP's form, milliseconds, rows the per-row path takes)."""
    cols, fmt = mapping.columns, mapping.format
    slow = np.zeros(rows, dtype=bool)
    texts: dict[str, tuple[list[str], np.ndarray]] = {}
    millis = np.zeros(rows, dtype=np.int64)
    # -- the exchange time ----------------------------------------------------------------------
    if cols.datetime is not None:
        forms = fmt.datetime.split(" ")
        u, c = encoded(cols.datetime)
        if len(forms) == 2:
            halves = [text.split(" ", 1) for text in u]
            whole = np.array([len(h) == 2 for h in halves], dtype=bool)
            slow |= ~whole[c] if u else slow
            d_u, d_of = _distinct([h[0] if len(h) == 2 else "" for h in halves])
            t_u, t_of = _distinct([h[1] if len(h) == 2 else "" for h in halves])
            (d_c, t_c), (date_form, time_form) = (d_of[c], t_of[c]), forms
        else:
            d_u, d_c, t_u, t_c = u, c, u, c
            date_form = time_form = fmt.datetime
    else:
        assert cols.date is not None and cols.time is not None  # the mapping's check
        (d_u, d_c), (t_u, t_c) = encoded(cols.date), encoded(cols.time)
        date_form, time_form = fmt.date, fmt.time
    day_text = [_strftime(text, date_form, "%Y%m%d") for text in d_u]
    slow |= np.array([t is None for t in day_text], dtype=bool)[d_c] if d_u else slow
    texts["ActionDay"] = ([t or "" for t in day_text], d_c)
    clocks = [_clock(text, time_form) for text in t_u]
    slow |= np.array([c is None for c in clocks], dtype=bool)[t_c] if t_u else slow
    texts["UpdateTime"] = ([c[0] if c else "" for c in clocks], t_c)
    millis = np.array([c[1] if c else 0 for c in clocks], dtype=np.int64)[t_c] if t_u else millis
    if cols.millis is not None:
        m_u, m_c = encoded(cols.millis)
        given = [millis_of(text) for text in m_u]
        slow |= np.array([g is None for g in given], dtype=bool)[m_c] if m_u else slow
        millis = (np.array([g if g is not None else 0 for g in given], dtype=np.int64)[m_c]
                  if m_u else millis)  # fmt: skip
    return texts, millis, slow


def _distinct(values: list[str]) -> tuple[list[str], np.ndarray]:
    """(distinct values in first-seen order, the code of each of ``values``)."""
    codes: dict[str, int] = {}
    of = np.array([codes.setdefault(v, len(codes)) for v in values], dtype=np.int64)
    return list(codes), of


def mapped_names(
    encoded: Callable[[str], tuple[list[str], np.ndarray]], rows: int, mapping: Mapping,
    texts: dict[str, tuple[list[str], np.ndarray]], slow: np.ndarray,
) -> None:  # fmt: skip
    """Trading day, instrument and exchange into ``texts``; rows whose trading day is not in
    its form marked in ``slow``."""
    cols = mapping.columns
    parse = parser_of(mapping)
    if cols.trading_day is not None:
        td_u, td_c = encoded(cols.trading_day)
        days = [parse.trading_day(text.strip()) for text in td_u]
        slow |= np.array([not isinstance(d, str) for d in days], dtype=bool)[td_c] if td_u else slow
        texts["TradingDay"] = ([d if isinstance(d, str) else "" for d in days], td_c)
    else:
        texts["TradingDay"] = ([""], np.zeros(rows, dtype=np.int64))
    for field, column, constant, table_of in (
        ("InstrumentID", cols.instrument, mapping.instrument, mapping.translate.instrument),
        ("ExchangeID", cols.exchange, mapping.exchange, mapping.translate.exchange),
    ):
        if column is None:
            value = constant or ""
            texts[field] = ([table_of.get(value, value)], np.zeros(rows, dtype=np.int64))
        else:
            u, c = encoded(column)
            texts[field] = ([table_of.get(s.strip(), s.strip()) for s in u], c)


def _strftime(text: str, form: str, out: str) -> str | None:
    try:
        return dt.datetime.strptime(text.strip(), form).strftime(out)
    except ValueError:
        return None


def _clock(text: str, form: str) -> tuple[str, int] | None:
    """(``HH:MM:SS``, milliseconds) of a time in ``form``, or None."""
    try:
        t = dt.datetime.strptime(text.strip(), form)
    except ValueError:
        return None
    return f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}", t.microsecond // 1000


@dataclass
class Normalised:
    """What the fast path made of the rows it took: ``index`` (rows of ``Columns``), their
    records, and the per-row checks' verdict on each (``drop``: a code of ``STATELESS``);
    ``slow``: the rows left to the per-row path."""

    index: np.ndarray
    records: np.ndarray
    drop: np.ndarray
    slow: np.ndarray
    instruments: list[str]
    """The file's distinct instrument ids; ``codes`` gives each record's."""
    codes: np.ndarray
    unknown: set[str]
    """Instruments of the records whose product the calendar lacks."""
    scanned: bool = False
    """Whether the scanner read the file (else pyarrow's reader)."""


def normalise_columns(cols: Columns, normaliser: Normaliser) -> Normalised:  # noqa: PLR0915
    """What ``Normaliser.normalise`` and then ``TickFilter.stateless`` make of each row, for the
    rows whose every value the columns can take; the others left in ``slow``."""
    ok = ~cols.bad & (cols.millis >= 0) & (cols.millis < 1000)
    nums = cols.numbers
    calendar = normaliser.calendar
    # -- names: instrument and exchange, decided per distinct pair ------------------------------
    inst_u, inst_c = cols.texts["InstrumentID"]
    exch_u, exch_c = cols.texts["ExchangeID"]
    products = [calendar.product(str(name).strip()) for name in inst_u]
    inst_ok = np.array([bool(s) and s == s.strip() and s.isascii() and len(s) <= 32
                        for s in inst_u], dtype=bool)  # fmt: skip
    ok &= inst_ok[inst_c] if len(inst_u) else ok
    width = len(exch_u) + 1
    pair_u, pair_c = _distinct_codes(inst_c * width + exch_c, max(len(inst_u), 1) * width)
    pair_exchange: list[str] = []
    pair_ok = np.ones(len(pair_u), dtype=bool)
    for k, key in enumerate(pair_u.tolist()):
        product = products[key // width]
        text = exch_u[key % width]
        exchange = text.strip()
        if product is not None and not exchange:
            exchange = product.exchange
        elif product is not None and normaliser.check_exchange and exchange != product.exchange:
            pair_ok[k] = False
        if text != text.strip() or not exchange.isascii() or len(exchange) > 8:
            pair_ok[k] = False
        pair_exchange.append(exchange)
    ok &= pair_ok[pair_c]
    # -- times of day ---------------------------------------------------------------------------
    time_u, time_c = cols.texts["UpdateTime"]
    seconds_u = np.array([_or(normaliser.seconds_of(t), -1) for t in time_u], dtype=np.int64)
    seconds = seconds_u[time_c]
    ok &= seconds >= 0
    # -- trading day and calendar date, per distinct (trading day, date, pair, part of day) ----
    td_u, td_c = cols.texts["TradingDay"]
    ad_u, ad_c = cols.texts["ActionDay"]
    part = np.where(seconds < NIGHT_UNTIL, 2, np.where(seconds >= NIGHT_FROM, 1, 0))
    key = ((td_c * len(ad_u) + ad_c) * len(pair_u) + pair_c) * 3 + part
    key_u, key_c = _distinct_codes(key, max(len(td_u) * len(ad_u), 1) * len(pair_u) * 3)
    day_ns = np.zeros(len(key_u), dtype=np.int64)
    trading_u = np.zeros(len(key_u), dtype=np.int64)
    date_ok = np.ones(len(key_u), dtype=bool)
    trading_dates: list[Any] = []
    for k, value in enumerate(key_u.tolist()):
        rest, p = divmod(value, 3)
        rest, e = divmod(rest, len(pair_u))
        t, a = divmod(rest, len(ad_u))
        given = str(td_u[t]).strip()
        trading = normaliser.date_of(given) if given else None
        dates = None
        if not (given and trading is None):
            probe = (NIGHT_UNTIL, NIGHT_FROM, 0)[p]
            dates = normaliser.calendar_date(ad_u[a], pair_exchange[e], trading, probe)
        if dates is None:
            date_ok[k] = False
            trading_dates.append(None)
            continue
        day, trading = dates
        day_ns[k] = normaliser.midnight_ns(day)
        trading_u[k] = trading.year * 10_000 + trading.month * 100 + trading.day
        trading_dates.append(trading)
    ok &= date_ok[key_c]
    # -- volumes: finite numbers the record can hold (the scanner checked its own) ----------
    if nums is not None:
        volume = nums[7]
        ok &= np.isfinite(volume) & (np.abs(volume) < I64)
        for j in range(15, 35, 2):  # bid and ask levels: price, volume
            level_price, v = nums[j], nums[j + 1]
            present = (level_price > 0.0) & (level_price < ABSENT_ABOVE)
            ok &= ~present | (np.isfinite(v) & (np.abs(v) < I32))
    slow = np.flatnonzero(~ok)
    every = not len(slow)
    take = np.arange(len(ok)) if every else np.flatnonzero(ok)

    # -- phases: one table per distinct (product, trading day); few distinct tables -----------
    rows_key = key_c[take]
    secs = seconds[take]
    group = inst_c[take] * len(key_u) + rows_key
    g_u, g_c = _distinct_codes(group, max(len(inst_u), 1) * len(key_u))
    tables: dict[bytes, int] = {}
    stacked: list[np.ndarray] = []
    closes: list[int] = []
    g_table = np.zeros(len(g_u), dtype=np.int64)
    g_multiplier = np.zeros(len(g_u), dtype=np.float64)
    for k, value in enumerate(g_u.tolist()):
        product = products[value // len(key_u)]
        if product is None:
            table = b""
        else:
            table = normaliser.phase_table(product, trading_dates[value % len(key_u)])
            g_multiplier[k] = product.multiplier
        index = tables.get(table)
        if index is None:
            index = tables[table] = len(stacked)
            if table:
                stacked.append(np.frombuffer(table, dtype=np.uint8))
                closes.append(normaliser.close_second(table))
            else:
                stacked.append(np.full(DAY, _NO_PHASE, dtype=np.uint8))
                closes.append(NIGHT_FROM)
        g_table[k] = index
    row_table = g_table[g_c]
    phase = np.stack(stacked)[row_table, secs] if len(take) else np.zeros(0, dtype=np.uint8)
    close = np.array(closes, dtype=np.int64)[row_table] if len(take) else np.zeros(0, np.int64)
    post_close = (phase == _CLOSED) & (secs >= close) & (secs < NIGHT_FROM)
    multiplier = g_multiplier[g_c]
    # -- the records ----------------------------------------------------------------------------
    if cols.records is not None and cols.facts is not None:  # the scanner's: numbers in place
        out = cols.records if every else cols.records[take]
        facts = cols.facts if every else cols.facts[take]
    else:
        out = _records(cols, take, every)
        facts = _facts(out)
    written = cols.written or {}
    if len(inst_u) and written.get("InstrumentID") != inst_u:
        out["instrument"] = np.array([s.encode() for s in inst_u], dtype="S32")[inst_c[take]]
    raw_exchange = written.get("ExchangeID")
    if raw_exchange is None or any(raw_exchange[key % width] != pair_exchange[k]
                                   for k, key in enumerate(pair_u.tolist())):  # fmt: skip
        out["exchange"] = np.array([s.encode() for s in pair_exchange], dtype="S8")[pair_c[take]]
    out["trading_day"] = trading_u[rows_key]
    auction, closed = phase == _AUCTION, phase == _CLOSED
    settles = post_close & ((facts & FACT_SETTLES) != 0)
    flags = auction.astype(np.uint32) * FLAG_AUCTION
    np.putmask(flags, settles, FLAG_SETTLEMENT)
    out["flags"] = flags
    exchange_ns = day_ns[rows_key] + secs * 1_000_000_000 + cols.millis[take] * 1_000_000
    out["exchange_time_ns"] = exchange_ns
    out["local_time_ns"] = exchange_ns
    scale = (multiplier > 0) & ((facts & FACT_AVERAGE_BIG) != 0)
    if scale.any():
        average = out["average"]
        np.divide(average, multiplier, out=average, where=scale)
    # -- the checks that need no earlier tick (TickFilter.stateless), in its order -----------
    drop = ((facts & FACT_OUTSIDE) != 0).astype(np.uint8) * np.uint8(3)
    np.putmask(drop, ~auction & ((facts & FACT_CROSSED) != 0), 2)
    np.putmask(drop, closed, 1)
    np.putmask(drop, settles, 0)
    taken = _distinct_codes(inst_c[take], max(len(inst_u), 1))[0].tolist()
    unknown = {inst_u[k] for k in taken if products[k] is None}
    return Normalised(take, out, drop, slow, inst_u, inst_c[take], unknown,
                      cols.records is not None)  # fmt: skip


def _distinct_codes(values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` of whole numbers in ``[0, size)``: by a table
    of the size where it is small (no sort), else by ``np.unique``."""
    if size > max(4 * len(values), 1 << 16):
        distinct, inverse = np.unique(values, return_inverse=True)
        return distinct, inverse.reshape(-1)
    present = np.zeros(size, dtype=bool)
    present[values] = True
    code = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present), code[values]


def _facts(out: np.ndarray) -> np.ndarray:
    """Each record's ``FACT_*`` bits (the scanner's ``facts_of``, for pyarrow's path)."""
    last, settlement, average = out["last"], out["settlement"], out["average"]
    bid1, ask1 = out["bid_price"][:, 0], out["ask_price"][:, 0]
    upper = out["upper_limit"] + LIMIT_SLACK
    lower = out["lower_limit"] - LIMIT_SLACK
    outside = np.zeros(len(out), dtype=bool)
    for value in (last, bid1, ask1):
        outside |= (value > upper) | (value < lower)
    facts = np.where(bid1 >= ask1, FACT_CROSSED, 0) | np.where(outside, FACT_OUTSIDE, 0)
    with np.errstate(invalid="ignore"):
        facts |= np.where(average > 2 * last, FACT_AVERAGE_BIG, 0)
    facts |= np.where(np.isnan(settlement), 0, FACT_SETTLES)
    return facts.astype(np.uint8)


def _records(cols: Columns, take: np.ndarray, every: bool) -> np.ndarray:
    """The records of the rows taken, their number fields from ``cols.numbers`` (the fields
    ``normalise_columns`` fills itself left zero)."""
    nums = cols.numbers
    assert nums is not None

    def number(j: int) -> np.ndarray:
        """Column ``j`` of the numbers, for the rows taken."""
        column: np.ndarray = nums[j] if every else nums[j][take]
        return column

    def price(j: int) -> np.ndarray:
        """A price column: absent (NaN) unless a positive number below CTP's DBL_MAX."""
        x = number(j)
        return np.where((x > 0.0) & (x < ABSENT_ABOVE), x, np.nan)

    out = np.zeros(len(take), dtype=TICK_DTYPE)
    out["last"], out["settlement"], out["average"] = price(0), price(11), price(14)
    for field, j in (("open", 4), ("high", 5), ("low", 6), ("close", 10), ("pre_close", 2),
                     ("pre_settlement", 1), ("upper_limit", 12), ("lower_limit", 13),
                     ("pre_open_interest", 3)):  # fmt: skip
        out[field] = price(j)
    out["volume"] = number(7).astype(np.int64)
    turnover, oi = number(8), number(9)
    out["turnover"] = np.where(np.isfinite(turnover) & (turnover < ABSENT_ABOVE), turnover, np.nan)
    out["open_interest"] = np.where((oi >= 0) & (oi < ABSENT_ABOVE), oi, np.nan)
    for level in range(5):
        bid, ask = price(15 + 4 * level), price(17 + 4 * level)
        out["bid_price"][:, level], out["ask_price"][:, level] = bid, ask
        bid_volume = np.where(np.isnan(bid), 0.0, number(16 + 4 * level))
        ask_volume = np.where(np.isnan(ask), 0.0, number(18 + 4 * level))
        out["bid_volume"][:, level] = np.trunc(bid_volume).astype(np.int32)
        out["ask_volume"][:, level] = np.trunc(ask_volume).astype(np.int32)
    return out


def _or(value: int | None, default: int) -> int:
    return default if value is None else value
