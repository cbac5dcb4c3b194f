"""Ledger: positions and cash reconcile with the trades at every step; fees, margin, the roll."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.engine.ledger import Ledger, Rates, Spec
from services.engine.offsets import Leg, Offset, plan

RATES = Rates(
    margin_rate=0.1, open_per_lot=1.5, open_rate=0.00005, close_per_lot=1.5,
    close_rate=0.00005, close_today_per_lot=3.0, close_today_rate=0.00023,
)  # fmt: skip
CU = Spec("cu2102", "SHFE", 5, 10.0, RATES)
IF = Spec("IF2101", "CFFEX", 300, 0.2, RATES)
CAPITAL = 1_000_000.0


def test_open_close_realises_against_the_average_and_charges_fees() -> None:
    ledger = Ledger()
    account = ledger.open_account("a", CAPITAL)
    line = ledger.line("a", CU)
    ledger.fill(line, "buy", "open", 50_000.0, 1, fee=0.0)
    ledger.fill(line, "buy", "open", 50_100.0, 1, fee=0.0)
    assert line.long_average == pytest.approx(50_050.0)
    fee = ledger.fee(line, "sell", "close_today", 50_200.0, 1)
    assert fee == pytest.approx(3.0 + 0.00023 * 50_200.0 * 5)
    realised = ledger.fill(line, "sell", "close_today", 50_200.0, 1, fee=fee)
    assert realised == pytest.approx((50_200.0 - 50_050.0) * 5)
    assert line.position.long_today == 1 and line.long_average == pytest.approx(50_050.0)
    ledger.mark("cu2102", 50_000.0)
    assert line.unrealised() == pytest.approx((50_000.0 - 50_050.0) * 5)
    assert line.margin() == pytest.approx(50_000.0 * 5 * 0.1)
    assert account.equity() == pytest.approx(CAPITAL + realised + line.unrealised() - fee)


def test_a_plain_close_on_cffex_takes_yesterday_first_and_charges_close_today_for_the_rest() -> (
    None
):
    ledger = Ledger()
    ledger.open_account("a", CAPITAL)
    line = ledger.line("a", IF)
    ledger.fill(line, "sell", "open", 5000.0, 1, fee=0.0)
    ledger.roll({"IF2101": 5010.0})
    ledger.fill(line, "sell", "open", 5020.0, 1, fee=0.0)
    p = line.position
    assert (p.short_yesterday, p.short_today) == (1, 1)
    fee = ledger.fee(line, "buy", "close", 5000.0, 2)
    turnover = 5000.0 * 300
    assert fee == pytest.approx((1.5 + 0.00005 * turnover) + (3.0 + 0.00023 * turnover))
    realised = ledger.fill(line, "buy", "close", 5000.0, 2, fee=fee, frozen=False)
    # yesterday's lot against the settlement 5010, today's against its open 5020
    assert realised == pytest.approx((5010.0 - 5000.0) * 300 + (5020.0 - 5000.0) * 300)


def test_the_roll_marks_to_settlement_moves_pnl_to_cash_and_keeps_the_average_open_price() -> None:
    ledger = Ledger()
    account = ledger.open_account("a", CAPITAL)
    line = ledger.line("a", CU)
    ledger.fill(line, "buy", "open", 50_000.0, 2, fee=10.0)
    ledger.mark("cu2102", 50_300.0)
    ledger.roll({"cu2102": 50_200.0})
    assert account.cash == pytest.approx(CAPITAL + 200.0 * 2 * 5 - 10.0)
    assert (line.position.long_today, line.position.long_yesterday) == (0, 2)
    assert line.long_average == pytest.approx(50_000.0)  # what was paid, for the user
    assert line.unrealised() == 0.0  # the basis is now the settlement
    assert account.day_pnl() == 0.0


def test_frozen_volume_is_released_by_the_fill_of_its_close() -> None:
    ledger = Ledger()
    ledger.open_account("a", CAPITAL)
    line = ledger.line("a", IF)
    ledger.fill(line, "buy", "open", 5000.0, 3, fee=0.0)
    ledger.roll({})
    ledger.fill(line, "buy", "open", 5000.0, 1, fee=0.0)
    ledger.freeze(line, "sell", "close", 4)
    p = line.position
    assert (p.frozen_long_yesterday, p.frozen_long_today) == (3, 1)
    # every long lot is frozen by the working close: a further sell can only open a short
    assert plan(p, "sell", 1, "CFFEX") == [Leg(Offset.OPEN, 1)]
    ledger.fill(line, "sell", "close", 5000.0, 2, fee=0.0)
    assert (p.frozen_long_yesterday, p.frozen_long_today) == (1, 1)
    ledger.freeze(line, "sell", "close", 2, sign=-1)  # the rest was cancelled
    assert (p.frozen_long_yesterday, p.frozen_long_today) == (0, 0)
    assert (p.long_yesterday, p.long_today) == (1, 1)


# -- the reconciliation property -----------------------------------------------------------------

step = st.one_of(
    st.tuples(st.just("trade"), st.sampled_from([CU, IF]), st.sampled_from(["buy", "sell"]),
              st.integers(1, 6), st.integers(-30, 30), st.booleans()),
    st.tuples(st.just("cancel"), st.sampled_from([CU, IF]), st.sampled_from(["buy", "sell"]),
              st.integers(1, 6), st.integers(-30, 30), st.booleans()),
    st.tuples(st.just("mark"), st.sampled_from([CU, IF]), st.just("buy"), st.just(0),
              st.integers(-30, 30), st.booleans()),
    st.tuples(st.just("roll"), st.sampled_from([CU, IF]), st.just("buy"), st.just(0),
              st.integers(-30, 30), st.booleans()),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(st.lists(step, max_size=60))
def test_positions_and_cash_reconcile_with_the_trades_at_every_step(
    steps: list[tuple[str, Spec, str, int, int, bool]],
) -> None:
    ledger = Ledger()
    account = ledger.open_account("a", CAPITAL)
    base = {"cu2102": 50_000.0, "IF2101": 5000.0}
    for spec in (CU, IF):
        ledger.line("a", spec)
        ledger.mark(spec.instrument, base[spec.instrument])
    trades: list[tuple[Spec, str, str, float, int, float]] = []
    for kind, spec, direction, volume, move, today_first in steps:
        price = base[spec.instrument] + move * spec.price_tick
        line = ledger.line("a", spec)
        if kind in {"trade", "cancel"}:
            # freeze every leg as the engine does when it sends the order, then fill or cancel
            legs = plan(line.position, direction, volume, spec.exchange, today_first=today_first)
            for leg in legs:
                ledger.freeze(line, direction, leg.offset, leg.volume)
            for leg in legs:
                if kind == "cancel":
                    ledger.freeze(line, direction, leg.offset, leg.volume, sign=-1)
                    continue
                fee = ledger.fee(line, direction, leg.offset, price, leg.volume)
                ledger.fill(line, direction, leg.offset, price, leg.volume, fee=fee)
                trades.append((spec, direction, leg.offset, price, leg.volume, fee))
        elif kind == "mark":
            ledger.mark(spec.instrument, price)
        else:
            ledger.roll({spec.instrument: price})
        _check(ledger, account, trades)


def _check(ledger: Ledger, account: object, trades: list[tuple[Spec, str, str, float, int, float]]
           ) -> None:  # fmt: skip
    expected_equity = CAPITAL
    for spec in (CU, IF):
        mine = [t for t in trades if t[0] is spec]
        long = sum(v for _, d, o, _, v, _ in mine if d == "buy" and o == "open") - sum(
            v for _, d, o, _, v, _ in mine if d == "sell" and o != "open"
        )
        short = sum(v for _, d, o, _, v, _ in mine if d == "sell" and o == "open") - sum(
            v for _, d, o, _, v, _ in mine if d == "buy" and o != "open"
        )
        line = ledger.line("a", spec)
        p = line.position
        assert (p.long, p.short) == (long, short)
        assert min(p.long_today, p.long_yesterday, p.short_today, p.short_yesterday) >= 0
        assert p.frozen_long_today == p.frozen_long_yesterday == 0
        assert p.frozen_short_today == p.frozen_short_yesterday == 0
        flows = sum((p_ if d == "sell" else -p_) * v for _, d, _, p_, v, _ in mine)
        fees = sum(f for *_, f in mine)
        assert not math.isnan(line.mark)
        expected_equity += (flows + (long - short) * line.mark) * spec.multiplier - fees
        if long:
            opens = [(p_, v) for _, d, o, p_, v, _ in mine if d == "buy" and o == "open"]
            lo, hi = min(x for x, _ in opens), max(x for x, _ in opens)
            assert lo - 1e-6 <= line.long_average <= hi + 1e-6
    assert account.equity() == pytest.approx(expected_equity, rel=1e-12, abs=1e-6)  # type: ignore[attr-defined]


def test_per_side_and_per_lot_margin_on_each_price_basis_give_the_statement_s_figures() -> None:
    """The day of trades worked by hand in tests/services/engine/adapters/ctp/test_rates.py,
    through the ledger: rb2105 (x10, long 10% and short 12% by money, fees by money with close
    today at 0.0003) and ag2106 (x15, long 11% by money, short 1,000 a lot, fees 2 a lot)."""
    from contracts import messages as m

    def specs(basis: str) -> tuple[Spec, Spec]:
        rb = Spec("rb2105", "SHFE", 10, 1.0, Rates(
            margin_rate=0.10, short_margin_rate=0.12, open_rate=0.0001, close_rate=0.0001,
            close_today_rate=0.0003, margin_price=basis))  # fmt: skip
        ag = Spec("ag2106", "SHFE", 15, 1.0, Rates(
            margin_rate=0.11, short_margin_rate=0.0, short_margin_per_lot=1000.0,
            open_per_lot=2.0, close_per_lot=2.0, margin_price=basis))  # fmt: skip
        return rb, ag

    margins = {}
    for basis in ("last", "pre_settlement", "open"):
        rb, ag = specs(basis)
        ledger = Ledger()
        account = ledger.open_account("a", 1e7)
        ledger.carry("a", rb, m.Holding("a", "rb2105", 2, 0, 8600.0, 0.0, 4300.0))
        ledger.pre_settle("rb2105", 4300.0)
        ledger.pre_settle("ag2106", 5480.0)
        fees = 0.0
        for spec, direction, offset, price, volume in (
            (rb, "buy", "open", 4310.0, 3), (rb, "sell", "close_today", 4320.0, 1),
            (rb, "sell", "open", 4330.0, 2), (ag, "buy", "open", 5500.0, 1),
            (ag, "sell", "open", 5510.0, 3),
        ):  # fmt: skip
            line = ledger.line("a", spec)
            fee = ledger.fee(line, direction, offset, price, volume)
            fees += fee
            ledger.fill(line, direction, offset, price, volume, fee=fee)
        ledger.mark("rb2105", 4325.0)
        ledger.mark("ag2106", 5505.0)
        assert round(fees, 2) == 42.55
        margins[basis] = round(account.margin(), 2)
    # rb: long 4 and short 2; ag: long 1 and short 3 (by the lot whatever the price)
    assert margins["last"] == 17_300.0 + 10_380.0 + 9_083.25 + 3_000.0
    assert margins["pre_settlement"] == 17_200.0 + 10_320.0 + 1 * 5480 * 15 * 0.11 + 3_000.0
    assert margins["open"] == 17_220.0 + 10_392.0 + 1 * 5500 * 15 * 0.11 + 3_000.0
    # an order's margin, as the risk gate counts it: by side, by money and by the lot
    rb, ag = specs("last")
    assert rb.order_margin(False, 4330.0, 2) == pytest.approx(2 * 43_300 * 0.12)
    assert ag.order_margin(False, 5510.0, 3) == 3_000.0 and ag.has_margin
