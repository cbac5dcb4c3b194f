"""The session calendar: phases per second, night sections across midnight, strict loading."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from contracts.calendar import (
    Phase,
    load_calendar,
    load_holidays,
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


# -- holidays, checked against the exchanges' own notices ----------------------------------------

D = dt.date


@pytest.mark.parametrize(
    ("last_before", "first_after", "notice"),
    [
        (D(2015, 6, 19), D(2015, 6, 23), "CZCE 郑商函〔2015〕128号: no night on 2015-06-19"),
        (D(2017, 3, 31), D(2017, 4, 5), "SHFE, 2017-03-24: no night on 2017-03-31"),
        (D(2018, 4, 4), D(2018, 4, 9), "DCE 大商所发〔2018〕125号: no night on 2018-04-04"),
        (D(2018, 6, 15), D(2018, 6, 19), "DCE 大商所发〔2018〕238号: no night on 2018-06-15"),
        (D(2018, 12, 28), D(2019, 1, 2), "CZCE 郑商函〔2018〕503号: no night on 2018-12-28"),
        (D(2019, 12, 31), D(2020, 1, 2), "DCE, 2019-12-25: no night on 2019-12-31"),
        (D(2020, 1, 23), D(2020, 2, 3), "CZCE, 2020-01-27: closed 2020-01-24 to 2020-02-02"),
        (D(2020, 12, 31), D(2021, 1, 4), "CZCE, 2020-12-25 (2021 schedule): New Year"),
        (D(2021, 2, 10), D(2021, 2, 18), "CZCE, 2020-12-25: Spring Festival 2021"),
        (D(2021, 4, 2), D(2021, 4, 6), "CZCE, 2020-12-25: Qingming 2021"),
        (D(2021, 4, 30), D(2021, 5, 6), "CZCE, 2020-12-25: Labour Day 2021"),
        (D(2021, 6, 11), D(2021, 6, 15), "CZCE, 2020-12-25: Dragon Boat 2021"),
        (D(2021, 9, 17), D(2021, 9, 22), "CZCE, 2020-12-25: Mid-Autumn 2021"),
        (D(2023, 4, 28), D(2023, 5, 4), "CZCE, 2023-04-24: Labour Day 2023"),
        (D(2023, 9, 28), D(2023, 10, 9), "CZCE, 2023: Mid-Autumn and National Day"),
        (D(2023, 12, 29), D(2024, 1, 2), "CZCE, 2023-12-28: no night on 2023-12-29"),
        (D(2024, 2, 8), D(2024, 2, 19), "CZCE: no night on 2024-02-08, resumed 2024-02-19"),
    ],
)
def test_closures_are_the_exchanges(
    last_before: dt.date, first_after: dt.date, notice: str
) -> None:
    """Each notice names the last trading day before a closure (no night session that
    evening) and the first after it (an 08:55 call auction, no night session before it)."""
    assert CAL.is_trading_day(last_before) and CAL.is_trading_day(first_after), notice
    assert CAL.next_trading_day(last_before) == first_after, notice
    assert CAL.previous_trading_day(first_after) == last_before, notice
    assert not CAL.night_held(first_after), notice
    day = last_before + dt.timedelta(days=1)
    while day < first_after:
        assert not CAL.is_trading_day(day), f"{day}: {notice}"
        day += dt.timedelta(days=1)
    # the night session resumes on the evening of the first day after (but in 2020: suspended)
    resumed = CAL.night_held(CAL.next_trading_day(first_after))
    assert resumed is (first_after != D(2020, 2, 3)), notice


def test_an_ordinary_weekend_keeps_the_friday_night() -> None:
    assert CAL.night_held(D(2017, 4, 17))  # Monday: Friday 2017-04-14's night
    assert CAL.next_trading_day(D(2017, 4, 14)) == D(2017, 4, 17)
    assert CAL.night_held(20240415)  # the journals' YYYYMMDD form too


def test_the_shipped_holidays_cover_2010_to_2026_and_cite_their_sources() -> None:
    holidays = load_holidays()
    assert set(holidays.years) == {str(y) for y in range(2010, 2027)}
    for year, entry in holidays.years.items():
        assert f"{year}年部分节假日安排" in entry.source
        assert entry.closed == sorted(set(entry.closed))
        # every year closes for New Year's Day or the day in lieu, Spring Festival, National Day
        assert any(d.month == 10 and d.day <= 8 for d in entry.closed), year


# -- trading hours by trading day -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("instrument", "day", "at", "phase"),
    [
        # CZCE night to 23:30 until the night of 2019-12-12, to 23:00 after
        ("SR709", 20170414, hms(23, 15), Phase.OPEN),
        ("SR709", 20170414, hms(23, 30), Phase.OPEN),  # the closing snapshot's second
        ("SR709", 20191212, hms(23, 29, 59), Phase.OPEN),
        ("SR001", 20191213, hms(23, 15), Phase.CLOSED),
        ("SR405", 20240416, hms(23, 15), Phase.CLOSED),
        ("SR405", 20240416, hms(22, 59, 59), Phase.OPEN),
        # CZCE before its night sessions began (2014-12-12)
        ("SR505", 20141212, hms(21, 30), Phase.CLOSED),
        ("SR505", 20141215, hms(21, 30), Phase.OPEN),
        # DCE: to 02:30, to 23:30 from 2015-05-08's night, to 23:00 from 2019-03-29's
        ("m1509", 20150508, hms(1, 30), Phase.OPEN),
        ("m1509", 20150511, hms(1, 30), Phase.CLOSED),
        ("m1509", 20150511, hms(23, 15), Phase.OPEN),
        ("m1909", 20190329, hms(23, 15), Phase.OPEN),
        ("m1909", 20190401, hms(23, 15), Phase.CLOSED),
        ("c1909", 20190329, hms(21, 30), Phase.CLOSED),  # corn: no night before 2019-03-29
        ("c1909", 20190401, hms(21, 30), Phase.OPEN),
        # SHFE rebar: to 01:00 until the night of 2016-05-03
        ("rb1610", 20160428, hms(0, 30), Phase.OPEN),
        ("rb1610", 20160504, hms(0, 30), Phase.CLOSED),
        # CFFEX index futures 09:15-15:15 until 2016, treasury futures until 2020-07-20
        ("IF1512", 20151231, hms(9, 20), Phase.OPEN),
        ("IF1512", 20151231, hms(15, 10), Phase.OPEN),
        ("IF1603", 20160104, hms(9, 20), Phase.CLOSED),
        ("IF1603", 20160104, hms(15, 10), Phase.CLOSED),
        ("T2009", 20200717, hms(9, 20), Phase.OPEN),
        ("T2009", 20200720, hms(9, 20), Phase.CLOSED),
        ("T2409", 20240415, hms(15, 10), Phase.OPEN),  # treasury futures close at 15:15
        # no night sessions from the night of 2020-02-03 to that of 2020-05-05
        ("SR009", 20200303, hms(21, 30), Phase.CLOSED),
        ("SR009", 20200303, hms(20, 59, 30), Phase.CLOSED),  # nor its call auction
        ("SR009", 20200303, hms(8, 59, 30), Phase.AUCTION),  # the day's auction instead
        ("SR009", 20200507, hms(21, 30), Phase.OPEN),
        # no night session before a holiday: Friday 2017-04-28, before 2017-05-01
        ("SR709", 20170502, hms(21, 30), Phase.CLOSED),
        ("SR709", 20170502, hms(9, 30), Phase.OPEN),
    ],
)
def test_hours_are_those_of_the_trading_day(
    instrument: str, day: int, at: int, phase: Phase
) -> None:
    assert CAL.phase(instrument, at, day) is phase


def test_without_a_day_the_hours_are_todays_with_the_night() -> None:
    sr = CAL.product("SR405")
    assert sr is not None
    assert CAL.phase_table(sr) == CAL.phase_table(sr, 20240416)
    assert CAL.phase("SR405", hms(21, 30)) is Phase.OPEN


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[changes]]\ntrading_day = 2019-12-13\nproducts = ["x"]\nbefore = "B"\nsource = "n"\n',
         "session 'B' is not defined"),
        ('[[changes]]\ntrading_day = 2019-12-13\nproducts = ["y"]\nbefore = "A"\nsource = "n"\n',
         "product y is not under [products]"),
        ('[[changes]]\ntrading_day = 2019-12-13\nproducts = ["x"]\nbefore = "A"\n',
         "changes[0].source: required value missing"),
        ('[[no_night]]\nfirst = 2020-05-06\nlast = 2020-02-04\nsource = "n"\n',
         "last (2020-02-04) is before first (2020-05-06)"),
    ],
)  # fmt: skip
def test_bad_changes_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "calendar.toml"
    path.write_text('[sessions.A]\nsections = ["09:00-10:00"]\n[products.x]\nexchange = "SHFE"\n'
                    'session = "A"\nprice_tick = 1.0\nmultiplier = 1\n' + text)  # fmt: skip
    with pytest.raises(UserError) as info:
        load_calendar(path)
    assert message in str(info.value) and str(path) in str(info.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[years.2017]\nsource = "s"\nclosed = [2017-04-15]\n', "2017-04-15 is a Saturday"),
        ('[years.2017]\nsource = "s"\nclosed = [2018-01-01]\n', "2018-01-01 is not in 2017"),
        ("[years.2017]\nclosed = [2017-05-01]\n", "years.2017.source: required value missing"),
    ],
)
def test_bad_holidays_are_one_clear_error(tmp_path: Path, text: str, message: str) -> None:
    holidays = tmp_path / "holidays.toml"
    holidays.write_text(text)
    path = tmp_path / "calendar.toml"
    path.write_text('holidays_file = "holidays.toml"\n[sessions.A]\nsections = ["09:00-10:00"]\n'
                    "[products]\n")  # fmt: skip
    with pytest.raises(UserError) as info:
        load_calendar(path)
    assert message in str(info.value) and str(holidays) in str(info.value)
    holidays.unlink()
    with pytest.raises(UserError, match="no such holidays file"):
        load_calendar(path)
