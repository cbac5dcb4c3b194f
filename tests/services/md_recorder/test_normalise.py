"""The normaliser on real CTP rows (data/market) and on rows built to the documented night-session
facts where the bundled data has none (night sessions, DCE, CZCE night dates)."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import math
from pathlib import Path

import pytest

from contracts.calendar import Phase, load_calendar
from libshm import Tick, encode_tick
from libshm.record import FLAG_AUCTION
from services.md_recorder.normalise import CHINA, CTP_FIELDS, Drop, Normaliser, RawTick
from tests.helpers import ROOT

MARKET = ROOT / "data" / "market"
CAL = load_calendar()


def rows(name: str) -> list[tuple[str, ...]]:
    with gzip.open(MARKET / name, "rt", newline="") as f:
        reader = csv.reader(f)
        assert tuple(next(reader)) == CTP_FIELDS
        return [tuple(r) for r in reader]


def normalise(raw: RawTick, local_ns: int = 0) -> tuple[Tick, Phase | None]:
    out = Normaliser(CAL).normalise(raw, local_ns)
    assert not isinstance(out, Drop), out
    return out


def at(tick: Tick) -> dt.datetime:
    return dt.datetime.fromtimestamp(tick.exchange_time_ns / 1e9, CHINA)


def make(base: RawTick, **fields: object) -> RawTick:
    values = list(base)
    for name, value in fields.items():
        values[CTP_FIELDS.index(name)] = value
    return tuple(values)


IF_ROWS = rows("IF2101_20210104.csv.gz")
CU_ROWS = rows("cu1909_20190916.csv.gz")


def test_real_auction_tick() -> None:
    tick, phase = normalise(IF_ROWS[0], local_ns=123)
    assert phase is Phase.AUCTION
    assert tick.flags == FLAG_AUCTION
    assert at(tick) == dt.datetime(2021, 1, 4, 9, 29, 0, 400_000, CHINA)
    assert (tick.instrument, tick.exchange, tick.trading_day) == ("IF2101", "CFFEX", 20210104)
    assert tick.local_time_ns == 123
    assert (tick.last, tick.volume, tick.turnover) == (5230.0, 240, 376560000.0)
    assert (tick.upper_limit, tick.lower_limit, tick.pre_settlement) == (5737.8, 4694.6, 5216.2)
    assert math.isnan(tick.close) and math.isnan(tick.settlement)  # 0.0 in the feed: unset
    assert tick.average == pytest.approx(5230.0)  # 1,569,000 includes the multiplier 300
    assert (tick.bid_price1, tick.bid_volume1, tick.ask_price1, tick.ask_volume1) == (
        5230.0, 1, 5230.8, 2,
    )  # fmt: skip
    assert math.isnan(tick.bid_price2) and tick.bid_volume2 == 0


def test_real_dbl_max_level_is_absent() -> None:
    raw = CU_ROWS[126]  # line 128: bid level 5 is DBL_MAX with volume 0
    assert float(raw[CTP_FIELDS.index("BidPrice5")]) > 1e308
    tick, phase = normalise(raw)
    assert phase is Phase.OPEN
    assert math.isnan(tick.bid_price5) and tick.bid_volume5 == 0
    assert tick.ask_price5 == 47990.0
    assert tick.bids[-1] == (44920.0, 5)
    assert len(tick.bids) == 4 and len(tick.asks) == 5
    assert at(tick) == dt.datetime(2019, 9, 16, 14, 39, 27, 500_000, CHINA)
    assert tick.average == pytest.approx(47733.5859)  # already per unit in this source


def test_every_real_row_normalises() -> None:
    normaliser = Normaliser(CAL)
    for raw in IF_ROWS + CU_ROWS:
        out = normaliser.normalise(raw, 0)
        assert not isinstance(out, Drop), raw
        assert out[0].trading_day == int(raw[0])
    assert not normaliser.unknown_products


CU_NIGHT = make(CU_ROWS[0], InstrumentID="cu2102", TradingDay="20210105", ActionDay="20210104")


def test_shfe_night_session_across_midnight() -> None:
    before, _ = normalise(make(CU_NIGHT, UpdateTime="23:59:59", UpdateMillisec="500"))
    after, phase = normalise(make(CU_NIGHT, ActionDay="20210105", UpdateTime="00:00:00"))
    assert at(before) == dt.datetime(2021, 1, 4, 23, 59, 59, 500_000, CHINA)
    assert at(after) == dt.datetime(2021, 1, 5, 0, 0, 0, tzinfo=CHINA)
    assert before.trading_day == after.trading_day == 20210105
    assert after.exchange_time_ns - before.exchange_time_ns == 500_000_000
    assert phase is Phase.OPEN


def test_friday_night_belongs_to_monday() -> None:
    friday = make(CU_NIGHT, TradingDay="20210111", ActionDay="20210108", UpdateTime="21:00:01")
    saturday = make(friday, ActionDay="20210109", UpdateTime="00:30:00")
    fri, _ = normalise(friday)
    sat, _ = normalise(saturday)
    assert at(fri) == dt.datetime(2021, 1, 8, 21, 0, 1, tzinfo=CHINA)
    assert at(sat) == dt.datetime(2021, 1, 9, 0, 30, tzinfo=CHINA)
    assert fri.trading_day == sat.trading_day == 20210111


def test_dce_night_action_day_is_the_trading_day() -> None:
    """DCE sends the trading day in ActionDay at night: the calendar date is the evening
    before (Friday for a Monday trading day), never the ActionDay."""
    dce = make(
        CU_NIGHT, InstrumentID="m2105", ExchangeID="DCE", TradingDay="20210111",
        ActionDay="20210111", UpdateTime="22:59:59",
    )  # fmt: skip
    tick, phase = normalise(dce)
    assert at(tick) == dt.datetime(2021, 1, 8, 22, 59, 59, tzinfo=CHINA)
    assert tick.trading_day == 20210111
    assert phase is Phase.OPEN
    midweek, _ = normalise(make(dce, TradingDay="20210106", ActionDay="20210106"))
    assert at(midweek).date() == dt.date(2021, 1, 5)
    day, _ = normalise(make(dce, UpdateTime="09:00:01"))
    assert at(day) == dt.datetime(2021, 1, 11, 9, 0, 1, tzinfo=CHINA)


def test_czce_night_trading_day_is_the_calendar_date_in_the_feed() -> None:
    czce = make(
        CU_NIGHT, InstrumentID="RM105", ExchangeID="CZCE", TradingDay="20210104",
        ActionDay="20210104", UpdateTime="21:00:00", UpdateMillisec="0",
    )  # fmt: skip
    tick, _ = normalise(czce)
    assert at(tick) == dt.datetime(2021, 1, 4, 21, 0, tzinfo=CHINA)
    assert tick.trading_day == 20210105


def test_empty_exchange_id_comes_from_the_calendar() -> None:
    tick, _ = normalise(make(IF_ROWS[5], ExchangeID=""))
    assert tick.exchange == "CFFEX"


def test_unknown_product_is_kept_and_noted() -> None:
    normaliser = Normaliser(CAL)
    out = normaliser.normalise(make(IF_ROWS[5], InstrumentID="IO2101-C-5000"), 0)
    assert not isinstance(out, Drop)
    assert out[1] is None
    assert normaliser.unknown_products == {"IO2101-C-5000"}


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"UpdateTime": "25:00:00"}, Drop.IMPOSSIBLE_TIME),
        ({"UpdateTime": "9:30:00"}, Drop.IMPOSSIBLE_TIME),
        ({"UpdateMillisec": "1000"}, Drop.IMPOSSIBLE_TIME),
        ({"TradingDay": "20210230"}, Drop.IMPOSSIBLE_TIME),
        ({"TradingDay": "", "ActionDay": ""}, Drop.IMPOSSIBLE_TIME),
        ({"UpdateMillisec": "x"}, Drop.MALFORMED),
        ({"LastPrice": "abc"}, Drop.MALFORMED),
        ({"Volume": "nan"}, Drop.MALFORMED),
        ({"InstrumentID": ""}, Drop.MALFORMED),
    ],
)
def test_bad_values_give_a_reason(change: dict[str, object], reason: Drop) -> None:
    assert Normaliser(CAL).normalise(make(IF_ROWS[5], **change), 0) is reason


def test_short_row_is_malformed() -> None:
    assert Normaliser(CAL).normalise(IF_ROWS[5][:20], 0) is Drop.MALFORMED


def test_ctp_struct_values_normalise_like_csv_text() -> None:
    """The CTP source hands over typed values (str, float, int), an import hands text."""
    typed = tuple(
        v if i < 6 else (int(v) if "Volume" in CTP_FIELDS[i] or i == 3 else float(v))
        for i, v in enumerate(CU_ROWS[126])
    )
    assert _same(normalise(typed)[0], normalise(CU_ROWS[126])[0])


def _same(a: Tick, b: Tick) -> bool:
    return encode_tick(a) == encode_tick(b)  # NaN-safe: compares the bytes


def test_data_files_are_bundled() -> None:
    names = {p.name for p in Path(MARKET).iterdir()}
    assert {"IF2101_20210104.csv.gz", "cu1909_20190916.csv.gz", "README.md"} <= names
