"""The session calendar: phases per second, night sections across midnight, strict loading."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from contracts.calendar import (
    Phase,
    load_calendar,
    next_weekday,
    previous_weekday,
    product_code,
)
from contracts.errors import UserError


def hms(h: int, m: int, s: int = 0) -> int:
    return h * 3600 + m * 60 + s


CAL = load_calendar()


@pytest.mark.parametrize(
    ("instrument", "at", "phase"),
    [
        ("IF2101", hms(9, 28, 59), Phase.CLOSED),
        ("IF2101", hms(9, 29), Phase.AUCTION),  # the real 09:29:00.400 auction tick
        ("IF2101", hms(9, 30), Phase.OPEN),
        ("IF2101", hms(11, 30), Phase.OPEN),  # closing second of the morning is inside
        ("IF2101", hms(11, 30, 1), Phase.CLOSED),
        ("IF2101", hms(15, 0), Phase.OPEN),
        ("IF2101", hms(15, 0, 1), Phase.CLOSED),  # the real 15:30:48 post-close tick is out
        ("IF2101", hms(21, 30), Phase.CLOSED),  # CFFEX has no night session
        ("cu2102", hms(20, 59, 30), Phase.AUCTION),
        ("cu2102", hms(23, 59, 59), Phase.OPEN),
        ("cu2102", hms(0, 30), Phase.OPEN),  # the 01:00 night session crosses midnight
        ("cu2102", hms(1, 0), Phase.OPEN),
        ("cu2102", hms(1, 0, 1), Phase.CLOSED),
        ("cu2102", hms(8, 59), Phase.AUCTION),
        ("cu2102", hms(10, 20), Phase.CLOSED),  # the 10:15-10:30 break
        ("rb2105", hms(23, 0), Phase.OPEN),
        ("rb2105", hms(23, 0, 1), Phase.CLOSED),
        ("sc2103", hms(2, 30), Phase.OPEN),
        ("RM705", hms(21, 0), Phase.OPEN),
        ("m2105", hms(14, 59, 59), Phase.OPEN),
        ("jd2105", hms(21, 0), Phase.CLOSED),  # day-only DCE product
    ],
)
def test_phase(instrument: str, at: int, phase: Phase) -> None:
    assert CAL.phase(instrument, at) is phase


def test_products_and_unknown_instruments() -> None:
    assert product_code("rb2105") == "rb"
    assert product_code("IO2101-C-5000") == "IO"
    product = CAL.product("RM705")
    assert product is not None
    assert (product.exchange, product.price_tick, product.multiplier) == ("CZCE", 1.0, 10)
    assert CAL.product("rm705") == product  # case folded when unambiguous
    assert CAL.product("IO2101-C-5000") is None
    assert CAL.phase("XX999", 0) is None
    cu = CAL.product("cu2102")
    assert cu is not None
    assert cu.close_today
    assert CAL.has_night(cu)
    jd = CAL.product("jd2105")
    assert jd is not None
    assert not CAL.has_night(jd)


def test_weekdays() -> None:
    friday, monday = dt.date(2021, 1, 8), dt.date(2021, 1, 11)
    assert next_weekday(friday) == monday
    assert previous_weekday(monday) == friday
    assert next_weekday(dt.date(2021, 1, 4)) == dt.date(2021, 1, 5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[sessions.A]\nsections = ["09:00-10:00"]\nsectionz = 1\n', "sessions.A.sectionz"),
        ('[sessions.A]\nsections = ["9:00-10:00"]\n', 'expected "HH:MM-HH:MM"'),
        (
            '[sessions.A]\nsections = ["09:00-10:00"]\n[products.x]\nexchange = "SHFE"\n'
            'session = "B"\nprice_tick = 1.0\nmultiplier = 1\n',
            "names session 'B', which is not defined",
        ),
        ("[sessions\n", "not valid TOML"),
    ],
)
def test_bad_calendar_is_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "calendar.toml"
    path.write_text(text + ("" if "products" in text else "[products]\n"))
    with pytest.raises(UserError) as info:
        load_calendar(path)
    assert message in str(info.value)
    assert str(path) in str(info.value)


def test_missing_calendar(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such calendar file"):
        load_calendar(tmp_path / "nope.toml")
