"""Exchange time as the suite prints it."""

from __future__ import annotations

import datetime as dt

from contracts.clock import CHINA, china_iso


def test_china_time_is_utc_plus_8_all_year() -> None:
    for month in (1, 7):  # no daylight saving: the same offset in winter and summer
        assert dt.datetime(2021, month, 4, tzinfo=CHINA).utcoffset() == dt.timedelta(hours=8)


def test_china_iso_prints_china_time_to_the_millisecond() -> None:
    # 2021-01-04 01:30:00.5 UTC is 09:30:00.500 in Shanghai, the CFFEX open
    ns = 1_609_723_800_500_000_000 + 999_999  # the sub-millisecond part is cut, not rounded up
    assert china_iso(ns) == "2021-01-04T09:30:00.500+08:00"
    assert china_iso(0) == "1970-01-01T08:00:00.000+08:00"
