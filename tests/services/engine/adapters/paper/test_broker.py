"""The paper simulator as the engine's adapter: latency, the front's refusals, the cancel race."""

from __future__ import annotations

from contracts.calendar import china_second, load_calendar
from contracts.config import PaperConfig, ProductRates
from contracts.messages import Holding
from libshm import Tick
from services.engine.adapter import Accepted, CancelRefused, Rejected, Traded
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.ledger import Rates, Spec
from services.engine.orders import Order
from services.engine.products import specs_for

IF = Spec("IF2101", "CFFEX", 300, 0.2, Rates(margin_rate=0.12, open_rate=0.000023))
CU = Spec("cu1909", "SHFE", 5, 10.0, Rates(margin_rate=0.1, close_today_per_lot=3.0))
MS = 1_000_000
SECOND = 1_000_000_000


def test_a_cancel_loses_the_race_to_a_fill_under_latency(if_day: list[Tick]) -> None:
    # the sell of test_exchange's queue scenario, one lot: it fills at row 338 (1.33 lots trade at
    # 5222.6 with nothing left ahead of it)
    broker = PaperBroker({"IF2101": IF}, {}, PaperConfig(
        entry_latency_us=0, cancel_latency_us=1000, ack_latency_us=0))  # fmt: skip
    broker.open_day(20210104, [], 10_000_000.0)
    t = {i: if_day[i].local_time_ns for i in range(335, 339)}
    broker.on_tick(if_day[335], t[335])
    order = Order("o1", "a", "IF2101", "sell", "open", 5222.6, 1)
    broker.submit(order, t[335])
    assert broker.events(t[335]) == [Accepted("o1", "E1", t[335], t[335])]
    for i in (336, 337):
        broker.on_tick(if_day[i], t[i])
        assert broker.events(t[i]) == []
    # the agent cancels 0.3 ms before row 338 reaches the engine; the cancel needs 1 ms
    broker.cancel(order, t[338] - MS * 3 // 10)
    assert broker.events(t[338] - MS * 3 // 10) == []
    broker.on_tick(if_day[338], t[338])
    assert broker.events(t[338]) == [
        Traded("o1", "P1", 5222.6, 1, t[338], t[338])
    ]  # the fill first
    assert broker.events(t[338] + MS * 7 // 10) == [
        CancelRefused("o1", "CTP:报单已全成交或已撤销，不能再撤 (26)", *[t[338] + MS * 7 // 10] * 2)
    ]


def test_acknowledgements_arrive_after_their_latency(if_day: list[Tick]) -> None:
    broker = PaperBroker({"IF2101": IF}, {}, PaperConfig(
        entry_latency_us=1000, cancel_latency_us=1000, ack_latency_us=500))  # fmt: skip
    broker.open_day(20210104, [], 10_000_000.0)
    now = if_day[336].local_time_ns
    broker.on_tick(if_day[336], now)  # ask 5222.4 x3
    broker.submit(Order("o1", "a", "IF2101", "buy", "open", 5222.4, 2, "fak"), now)
    assert broker.events(now) == []
    assert broker.events(now + 1_499_999) == []  # reached the exchange at +1 ms, not back yet
    back = now + 1_500_000
    there = now + 1_000_000  # the exchange's time of both: 0.5 ms before they reach the engine
    assert broker.events(back) == [
        Accepted("o1", "E1", back, there),
        Traded("o1", "P1", 5222.4, 2, back, there),
    ]


def test_the_front_refuses_what_a_ctp_front_refuses(cu_day: list[Tick]) -> None:
    instant = PaperConfig.instant()
    broker = PaperBroker({"cu1909": CU}, {}, instant)
    # two lots long carried from yesterday, nothing opened today
    broker.open_day(20190916, [Holding("a", "cu1909", 2, 0, 95_600.0, 0.0, 47_800.0)], 100_000.0)
    tick = cu_day[0]  # bid 47780 x10, ask 47820 x10
    now = tick.local_time_ns
    broker.on_tick(tick, now)

    def send(oid: str, direction: str, offset: str, price: float, volume: int) -> list[object]:
        broker.submit(Order(oid, "a", "cu1909", direction, offset, price, volume), now)
        return list(broker.events(now))

    # SHFE: close-today with no position opened today
    assert send("c1", "sell", "close_today", 47780.0, 1) == [
        Rejected("c1", "50", "CTP:平今仓位不足", now, now)
    ]
    # close-yesterday beyond the two lots
    assert send("c2", "sell", "close_yesterday", 47780.0, 3) == [
        Rejected("c2", "51", "CTP:平昨仓位不足", now, now)
    ]
    # a plain close is a close of yesterday's lots on SHFE: accepted and filled at the bid
    assert send("c3", "sell", "close", 47780.0, 2) == [
        Accepted("c3", "E1", now, now), Traded("c3", "P1", 47780.0, 2, now, now),
    ]  # fmt: skip
    # now nothing is left to close
    assert send("c4", "sell", "close", 47780.0, 1) == [
        Rejected("c4", "51", "CTP:平昨仓位不足", now, now)
    ]
    # an open needs margin: 47820 x 5 x 0.1 = 23,910 a lot; the account has about 100,000
    assert send("o1", "buy", "open", 47820.0, 5) == [Rejected("o1", "31", "CTP:资金不足", now, now)]
    assert send("o2", "buy", "open", 47820.0, 1)[:1] == [Accepted("o2", "E2", now, now)]


def test_a_plain_close_beyond_the_position_elsewhere(if_day: list[Tick]) -> None:
    instant = PaperConfig.instant()
    broker = PaperBroker({"IF2101": IF}, {}, instant)
    broker.open_day(20210104, [], 10_000_000.0)
    tick = if_day[336]
    broker.on_tick(tick, tick.local_time_ns)
    broker.submit(Order("c1", "a", "IF2101", "sell", "close", 5221.8, 1), tick.local_time_ns)
    assert broker.events(tick.local_time_ns) == [
        Rejected("c1", "30", "CTP:平仓量超过持仓量", tick.local_time_ns, tick.local_time_ns)
    ]


def test_an_order_that_reaches_the_exchange_after_the_session_is_refused(
    if_day: list[Tick],
) -> None:
    """The exchange's own hours check, by the time the order arrives there: sent 0.5 ms before
    the morning session's end (the end of its last second, 11:30:00) with 1 ms of entry
    latency, it arrives in the lunch break and is refused as CTP's front refuses it; sent
    1.5 ms before, it arrives in time."""
    specs, phases = specs_for(
        ["IF2101"], load_calendar(), {"default": ProductRates(margin_rate=0.12)}
    )
    broker = PaperBroker(specs, phases, PaperConfig(
        entry_latency_us=1000, cancel_latency_us=1000, ack_latency_us=0))  # fmt: skip
    broker.open_day(20210104, [], 10_000_000.0)
    morning = [t for t in if_day if china_second(t.exchange_time_ns) < 11 * 3600 + 30 * 60]
    last = morning[-1]  # the last tick of the morning session
    broker.on_tick(last, last.local_time_ns)
    # the session's last second is 11:30:00 (the calendar's windows include their end, as the
    # exchanges stamp the closing ticks): the local time the exchange clock reads 11:30:01
    closed = 11 * 3600 + 30 * 60 + 1
    end = last.local_time_ns + (closed - china_second(last.exchange_time_ns)) * SECOND - (
        last.exchange_time_ns % SECOND
    )  # fmt: skip
    assert china_second(last.exchange_time_ns + end - last.local_time_ns) == closed
    assert (last.exchange_time_ns + end - last.local_time_ns) % SECOND == 0
    late = Order("late", "a", "IF2101", "buy", "open", last.bid_price1, 1)
    broker.submit(late, end - MS // 2)
    in_time = Order("in-time", "a", "IF2101", "buy", "open", last.bid_price1, 1)
    broker.submit(in_time, end - MS * 3 // 2)
    back = end + MS
    assert broker.events(back) == [
        Accepted("in-time", "E1", end - MS // 2, end - MS // 2),  # no ack latency
        Rejected("late", "91", "CTP:交易所返回错误: 非交易时段", end + MS // 2, end + MS // 2),
    ]
