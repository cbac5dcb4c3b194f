"""Continuous contracts for research (docs/backtest.md, "Continuous contracts"): a product's main
contract day by day, chosen by open interest, recorded as one instrument (``IF888``) that a
backtest trades as any other, and the rolls a position carried across a change of contract takes.

The rule: the main contract of a trading day is the product's contract with the largest open
interest at the previous day's close (each contract's ``pre_open_interest`` in its first tick of
the day: known before the day trades, so nothing is looked ahead), never one that expires before
the current main (a roll only goes forward). On the day the main changes, a position held in the
continuous instrument is rolled at the previous day's close: closed in the old contract at its
closing price and opened in the new one at its own (each the settlement if the recording has it,
else the last price, as the engine's roll marks it), both fees paid; the roll is one row of the
backtest's ``rolls``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import numpy as np

from contracts.calendar import product_code
from contracts.errors import UserError
from contracts.ticks import TickStore
from libshm import TICK_DTYPE, TICK_LAYOUT, JournalWriter

__all__ = ["SUFFIX", "Continuous", "Roll", "build_continuous", "continuous_name"]

SUFFIX: Final = "888"
"""The continuous instrument of product ``IF`` is ``IF888`` (the usual name in China)."""


def continuous_name(product: str) -> str:
    return product + SUFFIX


@dataclass(frozen=True)
class Roll:
    """The main contract changes on ``day``: positions move from ``old`` to ``new`` at their
    prices at the previous day's close."""

    day: int
    old: str
    new: str
    old_price: float
    new_price: float


@dataclass
class Continuous:
    """A product's continuous instrument over some days: its recordings and its rolls."""

    product: str
    instrument: str
    recordings: Path
    mains: dict[int, str] = field(default_factory=dict)
    rolls: dict[int, Roll] = field(default_factory=dict)  # by the day the new contract starts


def _month(contract: str, product: str) -> int:
    digits = contract[len(product) :]
    return int(digits) if digits.isdigit() else 0


def _close(records: np.ndarray) -> float:
    last = records[-1]
    price = float(last["settlement"])
    return price if not math.isnan(price) else float(last["last"])


def build_continuous(store: TickStore, products: Iterable[str], days: Iterable[int],
                     out: Path) -> dict[str, Continuous]:  # fmt: skip
    """The continuous instruments of ``products`` over ``days`` of ``store``, by instrument
    (``IF888``), their recordings written to ``out``: one journal a day with the ticks of each
    product's main contract, in the order recorded, renamed to its continuous instrument."""
    found = {continuous_name(p): Continuous(p, continuous_name(p), out) for p in products}
    closes: dict[str, float] = {}  # the previous day's closing price of each contract
    for day in sorted(days):
        ticks = _read_day(store, day)
        names = np.char.decode(np.char.rstrip(ticks["instrument"], b"\0"), "ascii")
        keep = np.zeros(len(ticks), dtype=bool)
        renamed = ticks["instrument"].copy()
        today: dict[str, float] = {}
        for name, series in found.items():
            previous = series.mains[max(series.mains)] if series.mains else ""
            chosen, contracts = _main(series, previous, ticks, names, store.where(day))
            if previous and chosen != previous:
                new_price = closes.get(chosen)
                if new_price is None:  # not recorded the day before: its previous settlement
                    new_price = float(ticks[names == chosen][0]["pre_settlement"])
                series.rolls[day] = Roll(day, previous, chosen, closes[previous], new_price)
            series.mains[day] = chosen
            rows = names == chosen
            keep |= rows
            renamed[rows] = name.encode()
            today |= {c: _close(ticks[names == c]) for c in contracts}
        closes = today
        mine = ticks[keep]
        mine["instrument"] = renamed[keep]
        writer = JournalWriter(out / str(day), layout=TICK_LAYOUT, prepare_ahead=False)
        try:
            writer.append_array(mine, mine["local_time_ns"])
        finally:
            writer.close()
    return found


def _main(series: Continuous, main: str, ticks: np.ndarray, names: np.ndarray,
          where: Path) -> tuple[str, list[str]]:  # fmt: skip
    """The day's main contract of ``series`` by the rule, after ``main`` (the previous day's,
    "" on the first), and the product's contracts in the day's ticks."""
    product = series.product
    contracts = sorted({n for n in set(names.tolist())
                        if product_code(n) == product and n != series.instrument})  # fmt: skip
    if not contracts:
        raise UserError(f"{where}: no contract of product {product!r}; a continuous "
                        f"{series.instrument} needs the product's contracts recorded")  # fmt: skip
    interest = {}
    for contract in contracts:
        first = ticks[names == contract][0]
        value = float(first["pre_open_interest"])
        interest[contract] = value if not math.isnan(value) else float(first["open_interest"])
    eligible = [c for c in contracts if not main or _month(c, product) >= _month(main, product)]
    chosen = max(eligible or contracts, key=lambda c: (interest[c], -_month(c, product)))
    return chosen, contracts


def _read_day(store: TickStore, day: int) -> np.ndarray:
    """Every tick of the day, in the order recorded."""
    reader = store.open(day)
    try:
        parts = [np.empty(0, dtype=TICK_DTYPE)]
        while len(batch := reader.read_array()):
            parts.append(batch["payload"].copy())
    finally:
        reader.close()
    return np.concatenate(parts)
