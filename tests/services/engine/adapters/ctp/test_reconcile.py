"""Reconciliation that fails closed: a matching broker state lets trading start, a difference
explained by missed trades of the engine's own orders is repaired with exactly those, anything
else halts with a report naming instrument, side, expected and found; the broker's position rows
read from openctp-ctp's own ``CThostFtdcInvestorPositionField``."""

from __future__ import annotations

import pytest

from services.engine.adapters.ctp.reconcile import (
    BrokerTrade,
    Lots,
    Verdict,
    positions_from_rows,
    reconcile,
)
from tests.helpers import require_ctp_locale

EXCHANGES = {"rb2105": "SHFE", "IF2101": "CFFEX", "m2105": "DCE"}
LEDGER = {("rb2105", "long"): Lots(2, 3), ("IF2101", "short"): Lots(1, 0)}
OURS = {("SHFE", "5001"): "mm-20210104-1", ("CFFEX", "6001"): "mm-20210104-2"}


def check(broker: dict[tuple[str, str], Lots], trades: list[BrokerTrade],
          known: set[str] | None = None) -> Verdict:  # fmt: skip
    return reconcile(LEDGER, broker, trades, known or set(),  # type: ignore[arg-type]
                     lambda x, s: OURS.get((x, s.strip())), EXCHANGES.__getitem__)  # fmt: skip


def test_a_matching_broker_state_lets_trading_start() -> None:
    verdict = check(dict(LEDGER), [])
    assert verdict == ("agree", [], [])


def test_a_difference_explained_by_missed_trades_is_repaired_with_exactly_those() -> None:
    missed = BrokerTrade("SHFE", "  77", "5001", "rb2105", "buy", "open", 4300.0, 2)
    booked = BrokerTrade("SHFE", "   76", "5001", "rb2105", "buy", "open", 4300.0, 1)  # padded
    external = BrokerTrade("DCE", "99", "8888", "m2105", "buy", "open", 2800.0, 5)
    broker = {("rb2105", "long"): Lots(4, 3), ("IF2101", "short"): Lots(1, 0),
              ("m2105", "long"): Lots(5, 0)}  # fmt: skip
    # the external order's lots are not the engine's to book: they halt, named
    verdict = check(broker, [booked, missed, external], {"SHFE:76"})
    assert verdict.action == "halt"
    assert verdict.report == ["m2105 long: expected 0 lots, found 5"]
    del broker["m2105", "long"]
    verdict = check(broker, [booked, missed, external], {"SHFE:76"})
    assert verdict == ("repair", [("mm-20210104-1", missed)], [])


def test_a_close_the_journal_lacks_is_repaired_too() -> None:
    closed = BrokerTrade("CFFEX", "1", "6001", "IF2101", "buy", "close", 5200.0, 1)
    verdict = check({("rb2105", "long"): Lots(2, 3)}, [closed])
    assert verdict == ("repair", [("mm-20210104-2", closed)], [])


@pytest.mark.parametrize(("broker", "trades", "report"), [
    ({("rb2105", "long"): Lots(3, 2), ("IF2101", "short"): Lots(1, 0)}, [],
     ["rb2105 long: expected 2 today and 3 yesterday, found 3 today and 2 yesterday"]),
    ({("rb2105", "long"): Lots(2, 3)}, [], ["IF2101 short: expected 1 lots, found 0"]),
    # a missed trade that does not explain it all: no partial repair, a halt naming the rest
    ({("rb2105", "long"): Lots(9, 3), ("IF2101", "short"): Lots(1, 0)},
     [BrokerTrade("SHFE", "77", "5001", "rb2105", "buy", "open", 4300.0, 2)],
     ["rb2105 long: expected 4 today and 3 yesterday, found 9 today and 3 yesterday"]),
])  # fmt: skip
def test_any_other_difference_halts_with_a_report(
    broker: dict[tuple[str, str], Lots], trades: list[BrokerTrade], report: list[str]
) -> None:
    verdict = check(broker, trades)
    assert verdict == ("halt", [], report)


def test_a_missed_round_trip_is_booked_though_the_positions_agree() -> None:
    opened = BrokerTrade("CFFEX", "2", "6001", "IF2101", "sell", "open", 5210.0, 1)
    closed = BrokerTrade("CFFEX", "3", "6001", "IF2101", "buy", "close", 5200.0, 1)
    verdict = check(dict(LEDGER), [opened, closed])
    assert verdict == ("repair", [("mm-20210104-2", opened), ("mm-20210104-2", closed)], [])


def test_on_cffex_the_split_is_the_broker_s_own_and_only_totals_count() -> None:
    verdict = check({("rb2105", "long"): Lots(2, 3), ("IF2101", "short"): Lots(0, 1)}, [])
    assert verdict.action == "agree"


def test_position_rows_from_openctp_ctp_s_own_struct() -> None:
    require_ctp_locale()
    from openctp_ctp import tdapi

    def row(**values: object) -> dict[str, object]:
        field = tdapi.CThostFtdcInvestorPositionField()
        for name, value in values.items():
            setattr(field, name, value)
        return {n: getattr(field, n) for n in ("InstrumentID", "PosiDirection", "Position",
                                               "TodayPosition")}  # fmt: skip

    rows = [
        # SHFE: today's and yesterday's lots in rows of their own
        row(InstrumentID="rb2105", PosiDirection=tdapi.THOST_FTDC_PD_Long, Position=2,
            TodayPosition=2, PositionDate=tdapi.THOST_FTDC_PSD_Today),
        row(InstrumentID="rb2105", PosiDirection=tdapi.THOST_FTDC_PD_Long, Position=3,
            TodayPosition=0, PositionDate=tdapi.THOST_FTDC_PSD_History),
        # elsewhere one row: Position the total, TodayPosition today's part
        row(InstrumentID="IF2101", PosiDirection=tdapi.THOST_FTDC_PD_Short, Position=1,
            TodayPosition=1),
        row(InstrumentID="m2105", PosiDirection=tdapi.THOST_FTDC_PD_Long, Position=0,
            TodayPosition=0),  # closed out: no position
    ]  # fmt: skip
    assert positions_from_rows(rows) == LEDGER
    assert tdapi.THOST_FTDC_PD_Long == "2" and tdapi.THOST_FTDC_PD_Short == "3"
