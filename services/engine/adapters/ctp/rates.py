"""Margin and fees as the broker charges them (docs/ctp-trading.md, "Margin and fees"): the
rates its queries return (``CThostFtdcInstrumentMarginRateField``,
``CThostFtdcInstrumentCommissionRateField``), and what they make of positions and fills. A core
with no I/O.

A CTP broker states each rate twice, by money (a share of price x multiplier x lots) and by
volume (an amount per lot), and charges their sum (one of the two is usually 0); margin per side
(long, short), fees per open, close and close today. Margin is on the price the configuration
names: ``last`` (the latest price), ``pre_settlement`` (the previous settlement), or ``open``
(each lot's own open price; a lot carried from yesterday is on yesterday's settlement, as the
ledger carries it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, Literal, NamedTuple

__all__ = ["BrokerRates", "MarginPrice", "fee", "ledger_rates", "margin", "rates_from_rows"]

MarginPrice = Literal["last", "pre_settlement", "open"]
UNSET: Final = 1e300
"""CTP sends an unset double as DBL_MAX (1.797e308): a rate at or above this is none."""


class BrokerRates(NamedTuple):
    """One instrument's rates, as the broker's two queries give them."""

    long_margin_by_money: float = 0.0
    long_margin_by_volume: float = 0.0
    short_margin_by_money: float = 0.0
    short_margin_by_volume: float = 0.0
    open_by_money: float = 0.0
    open_by_volume: float = 0.0
    close_by_money: float = 0.0
    close_by_volume: float = 0.0
    close_today_by_money: float = 0.0
    close_today_by_volume: float = 0.0


_MARGIN_FIELDS = ("LongMarginRatioByMoney", "LongMarginRatioByVolume", "ShortMarginRatioByMoney",
                  "ShortMarginRatioByVolume")  # fmt: skip
_FEE_FIELDS = ("OpenRatioByMoney", "OpenRatioByVolume", "CloseRatioByMoney", "CloseRatioByVolume",
               "CloseTodayRatioByMoney", "CloseTodayRatioByVolume")  # fmt: skip


def rates_from_rows(margin_row: Mapping[str, object],
                    commission_row: Mapping[str, object]) -> BrokerRates:  # fmt: skip
    """The rates of the two query rows (by CTP's field names). A rate that is not a number
    from 0 below CTP's unset value (DBL_MAX) is refused: the broker's answer is damaged, and
    trading on it would misstate margin and fees."""
    values = []
    for name in (*_MARGIN_FIELDS, *_FEE_FIELDS):
        row = margin_row if name in _MARGIN_FIELDS else commission_row
        value = row[name]
        if not isinstance(value, (int, float)) or not 0.0 <= float(value) < UNSET:
            raise ValueError(f"the broker's {name} is {value!r}, not a rate at or above 0")
        values.append(float(value))
    return BrokerRates(*values)


def margin(rates: BrokerRates, multiplier: int, side: Literal["long", "short"], lots: int,
           price: float) -> float:  # fmt: skip
    """The margin of ``lots`` on one side at ``price`` (by money on the value, plus by volume
    per lot)."""
    if side == "long":
        by_money, by_volume = rates.long_margin_by_money, rates.long_margin_by_volume
    else:
        by_money, by_volume = rates.short_margin_by_money, rates.short_margin_by_volume
    return lots * (price * multiplier * by_money + by_volume)


def fee(rates: BrokerRates, multiplier: int,
        offset: Literal["open", "close", "close_today", "close_yesterday"], lots: int,
        price: float) -> float:  # fmt: skip
    """The fee of a fill (close and close-yesterday at the close rates)."""
    if offset == "open":
        by_money, by_volume = rates.open_by_money, rates.open_by_volume
    elif offset == "close_today":
        by_money, by_volume = rates.close_today_by_money, rates.close_today_by_volume
    else:
        by_money, by_volume = rates.close_by_money, rates.close_by_volume
    return lots * (price * multiplier * by_money + by_volume)


def ledger_rates(rates: BrokerRates) -> dict[str, float]:
    """The broker's rates as the ledger's ``Rates`` fields (and ``InstrumentSet``'s): by money
    is a rate, by volume an amount per lot."""
    return {
        "long_margin_rate": rates.long_margin_by_money,
        "short_margin_rate": rates.short_margin_by_money,
        "long_margin_per_lot": rates.long_margin_by_volume,
        "short_margin_per_lot": rates.short_margin_by_volume,
        "open_rate": rates.open_by_money, "open_per_lot": rates.open_by_volume,
        "close_rate": rates.close_by_money, "close_per_lot": rates.close_by_volume,
        "close_today_rate": rates.close_today_by_money,
        "close_today_per_lot": rates.close_today_by_volume,
    }  # fmt: skip
