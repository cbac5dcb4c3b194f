"""The simulated exchange on rows of the real recordings, each step checked by hand.

IF2101, 2021-01-04 (level 1, multiplier 300). Rows used (index: last, cumulative volume delta dV,
interval average price vwap = d(turnover) / (dV x 300), best bid, best ask):

    335: last 5222.8                               bid 5221.8 x1  ask 5222.6 x9
    336: last 5222.0  dV 8  vwap 5222.55           bid 5221.8 x2  ask 5222.4 x3
    337: last 5222.6  dV 5  vwap 5222.48           bid 5221.8 x2  ask 5223.0 x5
    338: last 5222.0  dV 2  vwap 5222.40           bid 5222.0 x2  ask 5222.8 x4
    339: last 5222.6  dV 3  vwap 5222.40           bid 5222.2 x1  ask 5222.6 x2
"""

from __future__ import annotations

import math

import pytest

from libshm import Tick
from services.engine.adapters.paper.exchange import Exchange, _levels
from services.engine.adapters.paper.queues import Conservative, Probabilistic, QueueModel
from services.engine.ledger import Rates, Spec
from services.engine.orders import Order

IF = Spec("IF2101", "CFFEX", 300, 0.2, Rates(margin_rate=0.12))
CU = Spec("cu1909", "SHFE", 5, 10.0, Rates(margin_rate=0.1))


def order(direction: str, price: float, volume: int, kind: str = "limit", oid: str = "o1") -> Order:
    return Order(oid, "a", "IF2101", direction, "open", price, volume, kind)


def arrive(ex: Exchange, o: Order, now_ns: int) -> list[tuple[object, ...]]:
    """An order reaching the exchange as the broker hands it over: checked, then matched."""
    refusal = ex.check(o, now_ns)
    if refusal is not None:
        return [("rejected", o.order_id, *refusal)]
    return ex.match(o)


def at(ex: Exchange, tick: Tick) -> Exchange:
    ex.on_tick(tick)
    return ex


def test_the_rows_are_what_the_scenarios_say(if_day: list[Tick]) -> None:
    rows = {i: (if_day[i].last, if_day[i].volume - if_day[i - 1].volume, if_day[i].bid_price1,
                if_day[i].bid_volume1, if_day[i].ask_price1, if_day[i].ask_volume1)
            for i in range(336, 340)}  # fmt: skip
    assert rows == {
        336: (5222.0, 8, 5221.8, 2, 5222.4, 3),
        337: (5222.6, 5, 5221.8, 2, 5223.0, 5),
        338: (5222.0, 2, 5222.0, 2, 5222.8, 4),
        339: (5222.6, 3, 5222.2, 1, 5222.6, 2),
    }
    assert (if_day[335].ask_price1, if_day[335].ask_volume1) == (5222.6, 9)


def test_a_limit_order_joins_the_queue_advances_as_volume_trades_and_fills_partly_then_fully(
    if_day: list[Tick],
) -> None:
    ex = at(Exchange(IF, Conservative()), if_day[335])
    assert arrive(ex, order("sell", 5222.6, 3), if_day[335].local_time_ns) == []
    rest = ex.resting["o1"]
    assert rest.ahead == 9  # the 9 lots displayed at 5222.6 are in front of it

    # 336: the last prices 5222.8 -> 5222.0 are not 5222.6: nothing traded at the order's price;
    # the best ask 5222.4 x3 means 5222.6 is beyond the displayed depth: the queue is unknown,
    # kept at 9
    assert ex.on_tick(if_day[336]) == []
    assert rest.ahead == 9

    # 337: last 5222.0 -> 5222.6, 5 lots at 5222.48 on average: n(5222.6) = 5 x (5222.0 -
    # 5222.48) / (5222.0 - 5222.6) = 4 lots traded at the order's price, all from the 9 ahead
    # (5 left); but the best ask is now 5223.0, so nobody is left at 5222.6: nothing is ahead
    assert ex.on_tick(if_day[337]) == []
    assert rest.ahead == 0

    # 338: last 5222.6 -> 5222.0, 2 lots at 5222.4: n(5222.6) = 2 x (5222.0 - 5222.4) /
    # (5222.0 - 5222.6) = 1.33: one whole lot reaches the order
    assert ex.on_tick(if_day[338]) == [("fill", "o1", 5222.6, 1)]
    assert rest.left == 2

    # 339: last 5222.0 -> 5222.6, 3 lots at 5222.4: n(5222.6) = 3 x 0.4 / 0.6 = 2: the rest
    assert ex.on_tick(if_day[339]) == [("fill", "o1", 5222.6, 2)]
    assert "o1" not in ex.resting


def test_a_fak_fills_what_is_displayed_and_the_rest_is_cancelled(if_day: list[Tick]) -> None:
    ex = at(Exchange(IF, Conservative()), if_day[336])  # ask 5222.4 x3
    out = arrive(ex, order("buy", 5222.4, 5, "fak"), if_day[336].local_time_ns)
    assert out == [("fill", "o1", 5222.4, 3), ("cancelled", "o1", "FAK: rest cancelled")]
    # the 3 lots are taken until the next snapshot: a second FAK finds nothing
    out = arrive(ex, order("buy", 5222.4, 1, "fak", "o2"), if_day[336].local_time_ns)
    assert out == [("cancelled", "o2", "FAK: rest cancelled")]


def test_a_fok_that_cannot_fill_whole_is_cancelled_whole(if_day: list[Tick]) -> None:
    ex = at(Exchange(IF, Conservative()), if_day[336])  # ask 5222.4 x3
    out = arrive(ex, order("buy", 5222.4, 4, "fok"), if_day[336].local_time_ns)
    assert out == [("cancelled", "o1", "FOK: not filled whole")]
    assert arrive(ex, order("buy", 5222.4, 3, "fok", "o2"), 0) == [("fill", "o2", 5222.4, 3)]


def test_a_market_order_is_any_price_immediate_or_cancel(if_day: list[Tick]) -> None:
    ex = at(Exchange(IF, Conservative()), if_day[337])  # bid 5221.8 x2
    out = arrive(ex, order("sell", math.nan, 3, "market"), if_day[337].local_time_ns)
    assert out == [("fill", "o1", 5221.8, 2), ("cancelled", "o1", "MARKET: rest cancelled")]


def test_a_marketable_order_walks_the_levels_up_to_its_limit(cu_day: list[Tick]) -> None:
    tick = cu_day[0]  # asks 47820 x10, 47830 x10, 47850 x5, 47860 x5, 47950 x20
    assert (tick.ask_price1, tick.ask_volume1, tick.ask_price3, tick.ask_volume3) == (
        47820.0, 10, 47850.0, 5,
    )  # fmt: skip
    ex = at(Exchange(CU, Conservative()), tick)
    out = arrive(ex, order("buy", 47850.0, 30), tick.local_time_ns)
    # 10 + 10 + 5 lots up to the limit 47850, the other 5 rest at 47850 (better than the best bid
    # 47780, so nothing is ahead of them)
    assert out == [("fill", "o1", 47820.0, 10), ("fill", "o1", 47830.0, 10),
                   ("fill", "o1", 47850.0, 5)]  # fmt: skip
    assert ex.resting["o1"].left == 5
    assert ex.resting["o1"].ahead == 0


def test_prices_at_and_beyond_the_limit_prices(if_day: list[Tick]) -> None:
    tick = if_day[336]  # limits 4694.6 .. 5737.8
    ex = at(Exchange(IF, Conservative()), tick)
    assert arrive(ex, order("buy", 5738.0, 1), tick.local_time_ns) == [
        ("rejected", "o1", "91", "CTP:交易所返回错误: 价格超出涨跌停板")
    ]
    assert arrive(ex, order("sell", 4694.4, 1, oid="o2"), tick.local_time_ns) == [
        ("rejected", "o2", "91", "CTP:交易所返回错误: 价格超出涨跌停板")
    ]
    assert arrive(ex, order("buy", 5222.3, 1, oid="o3"), tick.local_time_ns) == [
        ("rejected", "o3", "15", "CTP:报单字段有误")
    ]
    # at the limit itself the order is valid: it rests (far from the market)
    assert arrive(ex, order("sell", 5737.8, 1, oid="o4"), tick.local_time_ns) == []
    assert "o4" in ex.resting


def test_cancellations_move_an_order_forward_only_as_far_as_the_model_says(
    if_day: list[Tick],
) -> None:
    # rows 1890-1892: the bid stays at 5227.4 with 6, 7, then 1 lot displayed while every trade
    # is above it (last 5227.8 throughout): the order joins behind 6 lots, one more lot joins
    # behind it, then 6 of the 7 are cancelled
    rows = [
        (if_day[i].bid_price1, if_day[i].bid_volume1, if_day[i].last) for i in (1890, 1891, 1892)
    ]
    assert rows == [(5227.4, 6, 5227.8), (5227.4, 7, 5227.8), (5227.4, 1, 5227.8)]

    def run(model: QueueModel) -> list[float | None]:
        ex = at(Exchange(IF, model), if_day[1890])
        arrive(ex, order("buy", 5227.4, 1), if_day[1890].local_time_ns)
        seen = [ex.resting["o1"].ahead]
        for i in (1891, 1892):
            assert ex.on_tick(if_day[i]) == []
            seen.append(ex.resting["o1"].ahead)
        return seen

    # none of the 6 cancelled lots helps: the order is still behind the one displayed lot
    assert run(Conservative()) == [6.0, 6.0, 1.0]
    # all of them were ahead of it (the one left is the lot that joined behind it)
    assert run(Conservative(1.0)) == [6.0, 6.0, 0.0]
    # each cancelled lot was ahead with probability 6/7: the order is first in the queue when all
    # six were (about 40% of seeds), else still behind the one lot shown; the same seed, the
    # same outcome
    outcomes = [run(Probabilistic(seed))[-1] for seed in range(40)]
    assert outcomes == [run(Probabilistic(seed))[-1] for seed in range(40)]
    assert set(outcomes) == {0.0, 1.0}
    assert 8 <= outcomes.count(0.0) <= 26  # 20 with these seeds


def test_an_order_below_the_book_waits_out_of_reach_until_its_level_shows(
    if_day: list[Tick],
) -> None:
    # rows 322-332: a buy at 5221.8 while the best bid moves between 5222.0 and 5223.4 and every
    # trade is at 5222.4 or above; row 331 shows a bid of 5221.8 x1 (last 5223.0), row 332 moves
    # the bid back up to 5222.4
    rows = [(t.last, t.bid_price1, t.bid_volume1) for t in if_day[322:333]]
    assert min(last for last, _, _ in rows) == 5222.4
    assert [bid for _, bid, _ in rows[1:9]] == [5222.2, 5222.2, 5223.4, 5222.0, 5222.2, 5222.4,
                                                5223.0, 5222.2]  # fmt: skip
    assert rows[9:] == [(5223.0, 5221.8, 1), (5223.0, 5222.4, 1)]
    ex = at(Exchange(IF, Conservative()), if_day[322])
    assert arrive(ex, order("buy", 5221.8, 1), if_day[322].local_time_ns) == []
    for i in range(323, 331):  # beyond the displayed depth, nothing traded there: no place yet
        assert ex.on_tick(if_day[i]) == []
        assert ex.resting["o1"].ahead is None
    assert ex.on_tick(if_day[331]) == []
    assert ex.resting["o1"].ahead == 1.0  # behind the one lot shown at its price
    assert ex.on_tick(if_day[332]) == []
    assert ex.resting["o1"].ahead == 1.0  # out of sight again: nothing is known to have changed


@pytest.mark.parametrize("share", [0.0, 0.5, 1.0])
def test_the_conservative_share_of_cancellations(share: float) -> None:
    model = Conservative(share)
    assert model.cancelled_ahead(ahead=10, behind=5, cancelled=4) == 4 * share
    assert model.cancelled_ahead(ahead=1, behind=5, cancelled=4) == min(1, 4 * share)


def test_the_probabilistic_model_is_seeded_and_favours_orders_at_the_back() -> None:
    a, b = Probabilistic(7), Probabilistic(7)
    draws = [a.cancelled_ahead(ahead=5, behind=5, cancelled=10) for _ in range(50)]
    assert draws == [b.cancelled_ahead(ahead=5, behind=5, cancelled=10) for _ in range(50)]
    assert all(0 <= d <= 5 for d in draws)
    front = Probabilistic(1)
    back = Probabilistic(1)
    near = sum(front.cancelled_ahead(ahead=1, behind=99, cancelled=10) for _ in range(200))
    far = sum(back.cancelled_ahead(ahead=99, behind=1, cancelled=10) for _ in range(200))
    assert far > near


def test_the_books_read_the_levels_the_tick_shows(if_day: list[Tick], cu_day: list[Tick]) -> None:
    """The simulator's own reading of a snapshot's levels (field by field, compiled) is the
    tick's ``bids`` and ``asks`` on every real tick (one level of IF, five of cu), and with a
    level gone (NaN price, or no volume) at each place on either side."""
    gone = [
        cu_day[0]._replace(**{f"{side}_{what}{level}": value})  # type: ignore[arg-type]
        for side in ("bid", "ask") for level in range(1, 6)
        for what, value in (("price", math.nan), ("volume", 0))
    ]  # fmt: skip
    assert all(len(t.bids) == len(t.asks) == 5 for t in cu_day[:1])
    assert all(len(t.bids) + len(t.asks) == 9 for t in gone)
    assert all(_levels(t) == (t.bids, t.asks) for t in [*if_day, *cu_day, *gone])
