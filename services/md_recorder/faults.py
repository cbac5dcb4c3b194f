"""Which column and value made the import drop a row, found again on a slow path only for the
rows dropped: the reasons an import gives in its bad-row lines and ``--rejects``."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Final

import numpy as np

from contracts.calendar import Phase
from libshm import Tick
from services.md_recorder.mapping import Reject
from services.md_recorder.normalise import CTP_FIELDS, Drop, Normaliser, RawTick

__all__ = ["fault", "filtered", "judged", "out_of_range", "value_of"]

_FIELD: Final = {name: i for i, name in enumerate(CTP_FIELDS)}
# tick field (libshm's names, as encode_tick's errors give them) -> CTP field
_TICK_TO_CTP: Final = {
    "instrument": "InstrumentID", "exchange": "ExchangeID", "volume": "Volume",
    "turnover": "Turnover", "open_interest": "OpenInterest",
    **{f"{side}_volume{k}": f"{side.title()}Volume{k}" for side in ("bid", "ask")
       for k in range(1, 6)},
}  # fmt: skip
_TICK_FIELD: Final = re.compile(r"tick field '(\w+)'")


def value_of(raw: RawTick, name: str) -> str:
    return str(raw[_FIELD[name]])


def fault(normaliser: Normaliser, raw: RawTick, reason: Drop) -> Reject:
    """The column (CTP field) and value that made the normaliser drop ``raw``, found again on
    this slow path only for the rows it dropped."""
    if reason is Drop.WRONG_EXCHANGE:
        product = normaliser.calendar.product(str(raw[4]).strip())
        home = product.exchange if product is not None else "?"
        return Reject(reason, "ExchangeID", value_of(raw, "ExchangeID"),
                      f"the calendar has {raw[4]} on {home}; translate the file's code in the "
                      "mapping ([translate.exchange], docs/import-mapping.md)")  # fmt: skip
    if reason is Drop.IMPOSSIBLE_TIME:
        given = str(raw[0]).strip()
        if given and normaliser.date_of(given) is None:
            return Reject(reason, "TradingDay", given, "not a trading day (YYYYMMDD)")
        if normaliser.seconds_of(raw[2]) is None:
            return Reject(reason, "UpdateTime", value_of(raw, "UpdateTime"),
                          "not a time of day (HH:MM:SS)")  # fmt: skip
        return Reject(reason, "UpdateMillisec", value_of(raw, "UpdateMillisec"),
                      "not milliseconds 0 to 999, or no date to place the time on")  # fmt: skip
    if not str(raw[4]).strip():
        return Reject(reason, "InstrumentID", "", "no instrument")
    try:
        int(raw[3])  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return Reject(reason, "UpdateMillisec", value_of(raw, "UpdateMillisec"), "not a number")
    for name in CTP_FIELDS[6:]:
        text = value_of(raw, name)
        try:
            float(text)
        except ValueError:
            what = (
                "empty: a row needs its last price"
                if not text and name == "LastPrice"
                else "not a number"
            )
            return Reject(reason, name, text, what)
    return Reject(reason, "", "", "a value the tick cannot take")


def out_of_range(raw: RawTick, exc: BaseException) -> Reject:
    found = _TICK_FIELD.search(str(exc))
    name = _TICK_TO_CTP.get(found.group(1), "") if found else ""
    return Reject(Drop.OUT_OF_RANGE, name, value_of(raw, name) if name else "", str(exc))


def filtered(raw: RawTick, tick: Tick, reason: Drop, phase: Phase | None) -> Reject:
    """Why the per-row checks dropped a tick, with the column at fault."""
    if reason is Drop.OUTSIDE_HOURS:
        day = tick[2]
        return Reject(reason, "UpdateTime", value_of(raw, "UpdateTime"),
                      f"{tick[0]} is closed then on trading day {day}")  # fmt: skip
    if reason is Drop.CROSSED_BOOK:
        return Reject(reason, "BidPrice1", value_of(raw, "BidPrice1"),
                      f"bid {tick[21]} at or above ask {tick[26]}")  # fmt: skip
    if reason is Drop.OUTSIDE_LIMITS:
        lower, upper = tick[15], tick[14]
        for name, price in (("LastPrice", tick[6]), ("BidPrice1", tick[21]),
                            ("AskPrice1", tick[26])):  # fmt: skip
            if price > upper or price < lower:
                return Reject(reason, name, value_of(raw, name),
                              f"outside the day's limits {lower} to {upper}")  # fmt: skip
    return Reject(reason, "", "", f"phase {phase}")


def judged(  # noqa: PLR0917
    record: np.ndarray,
    file: int,
    reason: Drop | None,
    other: np.ndarray,
    other_file: int,
    other_line: int,
    paths: list[Path],
) -> Reject:
    """Why the day's sequence dropped ``record``, judged by ``other``."""
    at = f"line {other_line}" if other_file == file else f"{paths[other_file]}:{other_line}"
    volume = str(int(record["volume"]))
    if reason is Drop.DUPLICATE:
        return Reject(reason, "", "", f"the same tick as {at}")
    if reason is Drop.VOLUME_BACKWARDS:
        below = f"below {int(other['volume'])} at {at}, earlier in its trading day"
        return Reject(reason, "Volume", volume, below)
    if reason is Drop.STALE:
        return Reject(reason, "Volume", volume,
                      f"above {int(other['volume'])} at {at}, later in its trading day "
                      f"{int(record['trading_day'])}: a copy of another moment")  # fmt: skip
    return Reject(Drop.OUTSIDE_HOURS, "SettlementPrice", repr(float(record["settlement"])),
                  f"the same settlement as {at}")  # fmt: skip
