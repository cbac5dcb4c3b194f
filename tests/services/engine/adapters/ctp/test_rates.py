"""Margin and fees as a broker charges them, on a day of trades worked by hand: per-side rates by
money, margin per lot, fees by money and per lot with a separate close-today rate, and margin on
each of the three price bases (docs/ctp-trading.md, "Margin and fees")."""

from __future__ import annotations

import math

import pytest

from services.engine.adapters.ctp.rates import BrokerRates, fee, margin, rates_from_rows
from tests.helpers import require_ctp_locale

RB = BrokerRates(long_margin_by_money=0.10, short_margin_by_money=0.12, open_by_money=0.0001,
                 close_by_money=0.0001, close_today_by_money=0.0003)  # fmt: skip
AG = BrokerRates(long_margin_by_money=0.11, short_margin_by_volume=1000.0, open_by_volume=2.0,
                 close_by_volume=2.0)  # fmt: skip


def test_a_day_of_trades_gives_the_statement_s_fees_and_margin() -> None:
    """rb2105 (x10): 2 lots long carried from yesterday at its settlement 4,300; buy open 3 at
    4,310; sell close today 1 at 4,320; sell open 2 at 4,330. ag2106 (x15): buy open 1 at
    5,500; sell open 3 at 5,510. Last prices 4,325 and 5,505; rb's previous settlement 4,300.
    By hand:
      fees: 3 x 43,100 x 0.0001 = 12.93; 1 x 43,200 x 0.0003 = 12.96; 2 x 43,300 x 0.0001 = 8.66;
            1 x 2 = 2; 3 x 2 = 6: 42.55 in all;
      margin on the last price: rb long 4 x 43,250 x 10% = 17,300; rb short 2 x 43,250 x 12% =
            10,380; ag long 1 x 82,575 x 11% = 9,083.25; ag short 3 x 1,000 = 3,000: 39,763.25;
      on the previous settlement: rb long 4 x 43,000 x 10% = 17,200, short 2 x 43,000 x 12% =
            10,320;
      on each lot's open price: rb long 2 x 43,000 x 10% + 2 x 43,100 x 10% = 17,220, short
            2 x 43,300 x 12% = 10,392."""
    fees = [fee(RB, 10, "open", 3, 4310.0), fee(RB, 10, "close_today", 1, 4320.0),
            fee(RB, 10, "open", 2, 4330.0), fee(AG, 15, "open", 1, 5500.0),
            fee(AG, 15, "open", 3, 5510.0)]  # fmt: skip
    assert [round(f, 2) for f in fees] == [12.93, 12.96, 8.66, 2.0, 6.0]
    assert round(sum(fees), 2) == 42.55
    on_last = [margin(RB, 10, "long", 4, 4325.0), margin(RB, 10, "short", 2, 4325.0),
               margin(AG, 15, "long", 1, 5505.0), margin(AG, 15, "short", 3, 5505.0)]  # fmt: skip
    assert [round(x, 2) for x in on_last] == [17_300.0, 10_380.0, 9_083.25, 3_000.0]
    assert round(sum(on_last), 2) == 39_763.25
    pre = margin(RB, 10, "long", 4, 4300.0) + margin(RB, 10, "short", 2, 4300.0)
    assert round(pre, 2) == 27_520.0
    opened = (margin(RB, 10, "long", 2, 4300.0) + margin(RB, 10, "long", 2, 4310.0)
              + margin(RB, 10, "short", 2, 4330.0))  # fmt: skip
    assert round(opened, 2) == 17_220.0 + 10_392.0
    # a close (yesterday's lots) is at the close rate, not the close-today one
    assert fee(RB, 10, "close_yesterday", 1, 4320.0) == fee(RB, 10, "close", 1, 4320.0)
    assert round(fee(RB, 10, "close", 1, 4320.0), 2) == 4.32


def test_rates_from_openctp_ctp_s_query_structs() -> None:
    require_ctp_locale()
    from openctp_ctp import tdapi

    m = tdapi.CThostFtdcInstrumentMarginRateField()
    m.LongMarginRatioByMoney, m.ShortMarginRatioByVolume = 0.11, 1000.0
    c = tdapi.CThostFtdcInstrumentCommissionRateField()
    c.OpenRatioByVolume, c.CloseRatioByVolume = 2.0, 2.0

    def row(field: object) -> dict[str, object]:
        return {n: getattr(field, n) for n in dir(field) if "Ratio" in n}

    assert rates_from_rows(row(m), row(c)) == AG
    c.CloseTodayRatioByMoney = 1.7976931348623157e308  # CTP's unset double
    with pytest.raises(ValueError, match=r"CloseTodayRatioByMoney is 1\.797"):
        rates_from_rows(row(m), row(c))
    c.CloseTodayRatioByMoney = -0.1
    with pytest.raises(ValueError, match="not a rate at or above 0"):
        rates_from_rows(row(m), row(c))
    assert not math.isnan(fee(AG, 15, "open", 1, 5500.0))
