"""Invariants of the simulator under random orders on the real IF2101 day (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from contracts.config import PaperConfig
from libshm import Tick
from services.engine.adapter import AdapterEvent, Traded
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.ledger import Rates, Spec
from services.engine.orders import Order

RATES = Rates(margin_rate=0.12, open_rate=0.000023, close_rate=0.000023,
              close_today_rate=0.000345)  # fmt: skip
IF = Spec("IF2101", "CFFEX", 300, 0.2, RATES)
START, END = 300, 1300  # 500 s of the morning session

order_plan = st.lists(
    st.tuples(
        st.integers(START, END - 1),  # the tick after which it is sent
        st.sampled_from(["buy", "sell"]),
        st.integers(-3, 3),  # ticks from the near side of the book (positive: more aggressive)
        st.integers(1, 5),
        st.sampled_from(["limit", "fak", "fok"]),
        st.sampled_from(["open", "close"]),
    ),
    min_size=1,
    max_size=25,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(plan=order_plan, cancel_share=st.sampled_from([0.0, 0.5, 1.0]))
def test_fills_never_exceed_what_traded_or_was_shown_nor_beat_the_limit(
    if_day: list[Tick], plan: list[tuple[int, str, int, int, str, str]], cancel_share: float,
) -> None:  # fmt: skip
    config = PaperConfig.instant(cancel_share=cancel_share)
    broker = PaperBroker({"IF2101": IF}, {}, config)
    broker.open_day(20210104, [], 50_000_000.0)
    by_tick: dict[int, list[tuple[str, int, int, str, str]]] = {}
    for at, *rest in plan:
        by_tick.setdefault(at, []).append(tuple(rest))  # type: ignore[arg-type]
    orders: dict[str, Order] = {}
    trades: list[tuple[Order, float, int]] = []
    n = 0
    for i in range(START, END):
        tick = if_day[i]
        now = tick.local_time_ns
        broker.on_tick(tick, now)
        on_tick_fills = _collect(broker.events(now), orders, trades)
        # a resting order fills only from what traded since the last snapshot or what the book
        # now shows through its price
        traded = tick.volume - if_day[i - 1].volume
        shown = sum(v for _, v in tick.bids) + sum(v for _, v in tick.asks)
        assert on_tick_fills <= max(0, traded) + shown
        taken: dict[float, int] = {}
        for direction, offset_ticks, volume, kind, offset in by_tick.get(i, []):
            buy = direction == "buy"
            near = tick.bid_price1 if buy else tick.ask_price1
            price = round(near + (offset_ticks if buy else -offset_ticks) * IF.price_tick, 1)
            n += 1
            order = Order(f"o{n}", "a", "IF2101", direction, offset, price, volume, kind)
            orders[order.order_id] = order
            broker.submit(order, now)
            before = len(trades)
            _collect(broker.events(now), orders, trades)
            for _, fill_price, fill_volume in trades[before:]:
                taken[fill_price] = taken.get(fill_price, 0) + fill_volume
        # what orders took at arrival never exceeds what the snapshot displayed at that price
        book = dict(tick.bids + tick.asks)
        for fill_price, volume in taken.items():
            assert volume <= book.get(fill_price, 0)
    event(f"fills: {'some' if trades else 'none'}")
    for order, price, volume in trades:
        assert volume > 0
        assert (
            price <= order.price + 1e-9 if order.direction == "buy" else price >= order.price - 1e-9
        )
        assert sum(v for o, _, v in trades if o is order) <= order.volume
    # fees, margin and equity of the front, against the rates table by hand: the day starts
    # flat, so every close on CFFEX closes lots opened today (close-today rate); margin is
    # charged on each side's lots at the mark; the day's PnL is the cash flow of the fills
    # plus the open lots at the mark
    mark = if_day[END - 1].last
    broker.front.mark("IF2101", mark)
    fees = flow = 0.0
    long = short = 0
    for order, price, volume in trades:
        turnover = price * volume * IF.multiplier
        fees += turnover * (RATES.open_rate if order.offset == "open" else RATES.close_today_rate)
        flow += turnover if order.direction == "sell" else -turnover
        if order.offset == "open":
            long, short = (
                (long + volume, short) if order.direction == "buy" else (long, short + volume)
            )
        else:
            long, short = (
                (long, short - volume) if order.direction == "buy" else (long - volume, short)
            )
    assert long >= 0 and short >= 0
    front = broker.front.ledger.accounts["account"]
    assert front.fees() == pytest.approx(fees, abs=1e-6)
    assert front.margin() == pytest.approx((long + short) * mark * IF.multiplier * 0.12, abs=1e-6)
    day_pnl = flow + (long - short) * mark * IF.multiplier - fees
    assert front.equity() == pytest.approx(50_000_000.0 + day_pnl, abs=1e-6)


def _collect(events: list[AdapterEvent], orders: dict[str, Order],
             trades: list[tuple[Order, float, int]]) -> int:  # fmt: skip
    filled = 0
    for item in events:
        if isinstance(item, Traded):
            trades.append((orders[item.order_id], item.price, item.volume))
            filled += item.volume
    return filled
