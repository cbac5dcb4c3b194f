"""Offsets: close before open, SHFE/INE close-today vs close-yesterday, frozen volume."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.engine.offsets import Leg, Offset, Position, plan


def test_shfe_splits_closes_yesterday_first() -> None:
    pos = Position(long_today=2, long_yesterday=3)
    assert plan(pos, "sell", 4, "SHFE") == [
        Leg(Offset.CLOSE_YESTERDAY, 3), Leg(Offset.CLOSE_TODAY, 1),
    ]  # fmt: skip
    assert plan(pos, "sell", 4, "SHFE", today_first=True) == [
        Leg(Offset.CLOSE_TODAY, 2), Leg(Offset.CLOSE_YESTERDAY, 2),
    ]  # fmt: skip
    legs = plan(pos, "sell", 7, "INE")
    assert legs == [
        Leg(Offset.CLOSE_YESTERDAY, 3), Leg(Offset.CLOSE_TODAY, 2), Leg(Offset.OPEN, 2),
    ]  # fmt: skip
    # the offset as messages spell it, which plan() gives each leg
    assert [leg.text for leg in legs] == ["close_yesterday", "close_today", "open"]
    assert plan(pos, "sell", 1, "DCE")[0].text == "close"


def test_other_exchanges_take_one_close() -> None:
    pos = Position(short_today=1, short_yesterday=4)
    assert plan(pos, "buy", 3, "DCE") == [Leg(Offset.CLOSE, 3)]
    assert plan(pos, "buy", 8, "CFFEX") == [Leg(Offset.CLOSE, 5), Leg(Offset.OPEN, 3)]
    assert plan(pos, "buy", 8, "CZCE", open_rest=False) == [Leg(Offset.CLOSE, 5)]
    assert plan(pos, "sell", 2, "DCE") == [Leg(Offset.OPEN, 2)]  # nothing long to close


def test_frozen_volume_is_not_closed_twice() -> None:
    pos = Position(long_yesterday=3, frozen_long_yesterday=2, long_today=1)
    assert plan(pos, "sell", 3, "SHFE") == [
        Leg(Offset.CLOSE_YESTERDAY, 1), Leg(Offset.CLOSE_TODAY, 1), Leg(Offset.OPEN, 1),
    ]  # fmt: skip


def test_night_session_position_is_today_until_the_trading_day_rolls() -> None:
    """Opened in Monday's night session (trading day Tuesday): on Tuesday's day session it is
    today's, so SHFE needs close-today; after Tuesday's roll it is yesterday's, also in
    Tuesday evening's night session (trading day Wednesday)."""
    pos = Position()
    pos.long_today += 2  # Monday 21:05, trading day 20210105
    assert plan(pos, "sell", 2, "SHFE") == [Leg(Offset.CLOSE_TODAY, 2)]  # Tuesday 10:00
    pos.roll()  # Tuesday's trading day ends (15:00)
    assert plan(pos, "sell", 2, "SHFE") == [Leg(Offset.CLOSE_YESTERDAY, 2)]  # Tuesday 21:05


@given(
    st.integers(0, 5), st.integers(0, 5), st.integers(0, 5), st.integers(0, 5),
    st.sampled_from(["buy", "sell"]), st.integers(1, 20), st.sampled_from(["SHFE", "DCE"]),
    st.booleans(),
)  # fmt: skip
def test_plans_cover_the_volume_and_never_close_more_than_held(  # noqa: PLR0917
    lt: int, ly: int, st_: int, sy: int, direction: str, volume: int, exchange: str,
    today_first: bool,
) -> None:  # fmt: skip
    pos = Position(long_today=lt, long_yesterday=ly, short_today=st_, short_yesterday=sy)
    legs = plan(pos, direction, volume, exchange, today_first=today_first)
    assert sum(leg.volume for leg in legs) == volume
    closes = sum(leg.volume for leg in legs if leg.offset is not Offset.OPEN)
    assert closes == min(volume, pos.short if direction == "buy" else pos.long)
    assert all(leg.volume > 0 for leg in legs)
    assert [leg.offset for leg in legs].count(Offset.OPEN) <= 1
    assert legs[-1].offset is Offset.OPEN or closes == volume


def test_bad_requests() -> None:
    with pytest.raises(ValueError, match="direction must be buy or sell"):
        plan(Position(), "long", 1, "SHFE")
    with pytest.raises(ValueError, match="volume must be positive"):
        plan(Position(), "buy", 0, "SHFE")
