"""The filters on real rows and on real rows altered one field at a time: each drop counted."""

from __future__ import annotations

from contracts.calendar import Phase
from libshm import FLAG_SETTLEMENT, Tick
from services.md_recorder.filters import TickFilter
from services.md_recorder.normalise import Drop, Normaliser
from tests.services.md_recorder.test_normalise import CAL, IF_ROWS, make

SECOND = 1_000_000_000


def tick_of(raw: tuple[object, ...]) -> tuple[Tick, Phase | None]:
    out = Normaliser(CAL).normalise(raw, 0)
    assert not isinstance(out, Drop)
    tick, phase = out
    return tick._replace(local_time_ns=tick.exchange_time_ns), phase


def test_real_day_keeps_the_first_settlement_record_and_drops_the_repeat() -> None:
    """The real day's two post-close rows both carry the settlement price 5278.6: the first is
    kept as the day's settlement record, the second says nothing new."""
    normaliser, filters = Normaliser(CAL), TickFilter()
    dropped, settled = [], []
    for raw in IF_ROWS:
        out = normaliser.normalise(raw, 0)
        assert not isinstance(out, Drop)
        tick, phase = out
        tick = tick._replace(local_time_ns=tick.exchange_time_ns)
        if filters.check(tick, phase) is not None:
            dropped.append(raw[2])
        elif tick.flags & FLAG_SETTLEMENT:
            settled.append((raw[2], tick.settlement, phase))
    assert dropped == ["15:35:19"]
    assert settled == [("15:30:48", 5278.6, Phase.CLOSED)]
    assert filters.summary() == {"kept": len(IF_ROWS) - 1, "outside_hours": 1}


def test_a_post_close_row_without_a_settlement_price_is_outside_hours() -> None:
    filters = TickFilter()
    tick, phase = tick_of(make(IF_ROWS[-2], SettlementPrice="0.0"))
    assert phase is Phase.CLOSED and not tick.flags & FLAG_SETTLEMENT
    assert filters.check(tick, phase) is Drop.OUTSIDE_HOURS
    # nor is a pre-open row that carries one (a vendor's copy of the day before's)
    early, phase = tick_of(make(IF_ROWS[-2], UpdateTime="08:55:00"))
    assert phase is Phase.CLOSED and not early.flags & FLAG_SETTLEMENT
    assert filters.check(early, phase) is Drop.OUTSIDE_HOURS


def test_exact_duplicate() -> None:
    filters = TickFilter()
    tick, phase = tick_of(IF_ROWS[100])
    assert filters.check(tick, phase) is None
    again, _ = tick_of(IF_ROWS[100])
    assert filters.check(again._replace(local_time_ns=again.local_time_ns + 5), phase) is (
        Drop.DUPLICATE
    )
    assert filters.dropped == {"duplicate": 1}


def test_volume_going_backwards_on_the_same_trading_day() -> None:
    filters = TickFilter()
    first, phase = tick_of(IF_ROWS[100])
    assert filters.check(first, phase) is None
    earlier_volume = make(IF_ROWS[101], Volume=str(first.volume - 1))
    tick, _ = tick_of(earlier_volume)
    assert filters.check(tick, phase) is Drop.VOLUME_BACKWARDS
    next_day, _ = tick_of(make(earlier_volume, TradingDay="20210105", ActionDay="20210105"))
    assert filters.check(next_day, phase) is None  # volume restarts with the trading day


def test_crossed_book_outside_the_auction() -> None:
    filters = TickFilter()
    crossed = make(IF_ROWS[100], BidPrice1="5300.0", AskPrice1="5299.8")
    tick, phase = tick_of(crossed)
    assert phase is Phase.OPEN
    assert filters.check(tick, phase) is Drop.CROSSED_BOOK
    auction, auction_phase = tick_of(make(crossed, UpdateTime="09:29:00"))
    assert auction_phase is Phase.AUCTION
    assert filters.check(auction, auction_phase) is None


def test_price_outside_the_limits() -> None:
    filters = TickFilter()
    tick, phase = tick_of(make(IF_ROWS[100], LastPrice="5737.9"))  # upper limit 5737.8
    assert filters.check(tick, phase) is Drop.OUTSIDE_LIMITS
    at_limit, _ = tick_of(make(IF_ROWS[100], LastPrice="5737.8"))
    assert filters.check(at_limit, phase) is None


def test_exchange_time_far_after_receive_time() -> None:
    tick, phase = tick_of(IF_ROWS[100])
    future = tick._replace(local_time_ns=tick.exchange_time_ns - 11 * 60 * SECOND)
    assert TickFilter(max_future_s=600).check(future, phase) is Drop.IMPOSSIBLE_TIME
    assert TickFilter(check_local_time=False).check(future, phase) is None
