"""Conditional orders held by the engine, on the real IF2101 day (docs/toolkit.md): each kind
triggers at the tick the test finds independently in the day's prices, releases its orders
through the risk gate, follows their fills, and recovers exactly after a restart between
placing and triggering."""

from __future__ import annotations

import random
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from contracts import messages as m
from contracts.calendar import load_calendar
from contracts.config import PaperConfig, RiskConfig
from libshm import FLAG_SETTLEMENT, Tick
from services.engine import ConditionalView, Strategy
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine
from services.engine.products import specs_for
from services.engine.risk import RiskLimits
from services.engine.strategy import Trigger
from tests.services.engine.test_core import INSTANT, RATES, recover_and_run, state

DAY = 20210104
TICK = 0.2  # IF's price step
RISK = RiskConfig(max_position=1000, max_net_position=1000, cancel_limit=5000, cancel_reserve=20,
                  max_cancel_ratio=5.0, duplicate_window_ms=0, max_daily_loss=1e12,
                  max_order_volume=1000)  # fmt: skip
LATENCY = PaperConfig(entry_latency_us=1000, cancel_latency_us=1000, ack_latency_us=500)
AT = 200  # the tick on which the agents place their orders


class Places(Strategy):
    """On tick ``AT`` calls ``params["place"](self, tick)``; keeps every conditional update and
    every order it is told of."""

    def on_start(self) -> None:
        self.seen = 0
        self.updates: list[ConditionalView] = []
        self.ids: list[str] = []

    def on_tick(self, tick: Tick) -> None:
        self.seen += 1
        if self.seen == AT:
            self.ids.append(self.params["place"](self, tick))

    def on_conditional(self, conditional: ConditionalView) -> None:
        self.updates.append(conditional)


def engine_with(place: Callable[[Strategy, Tick], str], journal: list[m.EngineMessage],
                paper: PaperConfig = INSTANT, risk: RiskConfig = RISK) -> Engine:  # fmt: skip
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    engine = Engine(specs=specs, gate_config=risk, adapter=PaperBroker(specs, phases, paper),
                    phases=phases, journal=lambda d, _t: journal.append(m.decode(d)))  # fmt: skip
    engine.add_agent("a", Places, ["IF2101"], 1e9, RiskLimits.from_config(risk),
                     {"place": place})  # fmt: skip
    return engine


def run(place: Callable[[Strategy, Tick], str], day: list[tuple[int, Tick]],
        paper: PaperConfig = INSTANT, risk: RiskConfig = RISK,
        ) -> tuple[Engine, list[m.EngineMessage]]:  # fmt: skip
    journal: list[m.EngineMessage] = []
    engine = engine_with(place, journal, paper, risk)
    engine.open_day(DAY, day[0][1].local_time_ns)
    for seq, tick in day:
        engine.on_tick(tick, seq)
    return engine, journal


@pytest.fixture(scope="module")
def day(ticks: list[tuple[int, Tick]]) -> list[tuple[int, Tick]]:
    return [(s, t) for s, t in ticks if not t.flags & FLAG_SETTLEMENT]


def first(day: list[tuple[int, Tick]], reached: Callable[[Tick], bool]) -> int:
    """The position in ``day`` of the first tick after the placing one that ``reached``."""
    return next(i for i in range(AT, len(day)) if reached(day[i][1]))


def of(journal: list[m.EngineMessage], kind: type[Any]) -> list[Any]:
    return [x for x in journal if isinstance(x, kind)]


def agent(engine: Engine) -> Places:
    strategy = engine.agents["a"].strategy
    assert isinstance(strategy, Places)
    return strategy


# -- each kind on the real day -------------------------------------------------------------------


def test_a_buy_stop_triggers_on_the_first_last_price_at_its_trigger_and_buys_through_the_ask(
    day: list[tuple[int, Tick]],
) -> None:
    placed_at = day[AT - 1][1]
    trigger = placed_at.last + 10 * TICK
    engine, journal = run(lambda s, t: s.stop("IF2101", "buy", 2, trigger), day)
    i = first(day, lambda t: t.last >= trigger)
    (triggered,) = of(journal, m.ConditionalTriggered)
    assert (triggered.time_ns, triggered.price) == (day[i][1].local_time_ns, day[i][1].last)
    (order,) = of(journal, m.OrderRequested)
    assert order.time_ns == day[i][1].local_time_ns and order.volume == 2
    assert order.price == pytest.approx(day[i][1].ask_price1 + 5 * TICK)  # slip_ticks=5
    assert sum(x.volume for x in of(journal, m.Trade)) == 2
    (ended,) = of(journal, m.ConditionalEnded)
    assert ended.state == "done" and agent(engine).position("IF2101").long == 2
    assert [u.state for u in agent(engine).updates] == ["waiting", "working", "done"]


@pytest.mark.parametrize("on", ["last", "bid", "ask", "mid"])
def test_a_sell_stop_limit_watches_the_price_it_names(day: list[tuple[int, Tick]],
                                                     on: Trigger) -> None:  # fmt: skip
    trigger = day[AT - 1][1].last - 6 * TICK

    def price(t: Tick) -> float:
        return {"last": t.last, "bid": t.bid_price1, "ask": t.ask_price1,
                "mid": (t.bid_price1 + t.ask_price1) / 2}[on]  # fmt: skip

    _, journal = run(lambda s, t: s.stop("IF2101", "sell", 1, trigger, price=trigger - 1.0,
                                              trigger_on=on, offset="open"), day)  # fmt: skip
    i = first(day, lambda t: price(t) <= trigger)
    (triggered,) = of(journal, m.ConditionalTriggered)
    assert triggered.time_ns == day[i][1].local_time_ns and triggered.price == price(day[i][1])
    (order,) = of(journal, m.OrderRequested)
    assert (order.direction, order.offset, order.price, order.kind) == (
        "sell", "open", trigger - 1.0, "limit")  # fmt: skip


def test_a_take_profit_sells_when_the_price_rises_to_it(day: list[tuple[int, Tick]]) -> None:
    trigger = day[AT - 1][1].last + 12 * TICK

    def place(s: Strategy, t: Tick) -> str:
        s.buy("IF2101", t.ask_price1, 1)
        return s.take_profit("IF2101", "sell", 1, trigger, price=trigger, offset="close")

    _, journal = run(place, day)
    i = first(day, lambda t: t.last >= trigger)
    assert of(journal, m.ConditionalTriggered)[0].time_ns == day[i][1].local_time_ns
    closing = [x for x in of(journal, m.OrderRequested) if x.direction == "sell"]
    assert [(x.offset, x.price) for x in closing] == [("close", trigger)]  # CFFEX: one close


@pytest.mark.parametrize(("trail", "steps"), [(None, 25), (3.0, None)])
def test_a_trailing_stop_follows_the_lowest_ask_and_buys_when_it_rises_the_distance_back(
    day: list[tuple[int, Tick]], trail: float | None, steps: int | None
) -> None:
    distance = trail if trail is not None else steps * TICK  # type: ignore[operator]
    engine, journal = run(lambda s, t: s.trailing_stop(
        "IF2101", "buy", 1, trail=trail, trail_ticks=steps, trigger_on="ask",
        offset="open"), day)  # fmt: skip
    low, at = 1e12, None
    for i in range(AT - 1, len(day)):  # the placing tick itself counts: it is the start
        ask = day[i][1].ask_price1
        low = min(low, ask)
        if ask >= low + distance - 1e-9:
            at = i
            break
    assert at is not None
    assert low < day[AT - 1][1].ask_price1 - 5.0  # it trailed the ask down a long way first
    (triggered,) = of(journal, m.ConditionalTriggered)
    assert triggered.time_ns == day[at][1].local_time_ns
    assert triggered.price >= low + distance - 1e-9
    assert agent(engine).position("IF2101").long == 1


def test_oco_the_first_to_trigger_ends_the_other(day: list[tuple[int, Tick]]) -> None:
    last = day[AT - 1][1].last

    def place(s: Strategy, t: Tick) -> str:
        s.buy("IF2101", t.ask_price1, 1)
        s.take_profit("IF2101", "sell", 1, last + 40 * TICK, offset="close", oco="exit")
        return s.stop("IF2101", "sell", 1, last - 15 * TICK, offset="close", oco="exit")

    engine, journal = run(place, day)
    up = first(day, lambda t: t.last >= last + 40 * TICK)
    down = first(day, lambda t: t.last <= last - 15 * TICK)
    (triggered,) = of(journal, m.ConditionalTriggered)
    winner = "a-20210104-C1" if up < down else "a-20210104-C2"
    assert triggered.cond_id == winner
    ends = {x.cond_id: (x.state, x.text) for x in of(journal, m.ConditionalEnded)}
    loser = ({"a-20210104-C1", "a-20210104-C2"} - {winner}).pop()
    assert ends[loser] == ("cancelled", f"OCO: {winner} triggered")
    assert ends[winner][0] == "done" and agent(engine).position("IF2101").net == 0


def test_a_bracket_whose_entry_fills_partly_closes_what_filled(
    day: list[tuple[int, Tick]],
) -> None:
    """A 100-lot sell entry at the ask fills in parts as buyers trade through it (the
    simulator's conservative queue) while the price rises to the stop 1.0 above: the stop
    triggers with part of the entry filled, the entry's rest is cancelled first (an exit sent
    before would cross the account's own resting entry: SELF_TRADE), then the exit buys back
    exactly the lots filled, and the position ends flat."""
    last = day[AT - 1][1].last
    engine, journal = run(lambda s, t: s.bracket(
        "IF2101", "sell", 100, t.ask_price1, take_profit=last - 10.0, stop=last + 1.0), day,
        paper=LATENCY)  # fmt: skip
    entry_id = of(journal, m.OrderRequested)[0].order_id
    entry_fills = [x for x in of(journal, m.Trade) if x.order_id == entry_id]
    filled = sum(x.volume for x in entry_fills)
    assert len(entry_fills) > 3 and 0 < filled < 100  # filled in parts, not whole
    (triggered,) = of(journal, m.ConditionalTriggered)
    assert triggered.cond_id == "a-20210104-C3"  # the stop (C2 is the take-profit)
    assert triggered.time_ns == day[first(day, lambda t: t.last >= last + 1.0)][1].local_time_ns
    (cancel,) = [x for x in of(journal, m.OrderCancelled) if x.order_id == entry_id]
    exits = [x for x in of(journal, m.OrderRequested) if x.direction == "buy"]
    assert sum(x.volume for x in exits) == filled and {x.offset for x in exits} == {"close"}
    assert exits[0].time_ns >= cancel.time_ns > triggered.time_ns  # after the entry's rest
    assert not of(journal, m.RiskRefused)
    ends = {x.cond_id: (x.state, x.text) for x in of(journal, m.ConditionalEnded)}
    assert ends == {
        "a-20210104-C2": ("cancelled", "OCO: a-20210104-C3 triggered"),
        "a-20210104-C3": ("done", f"{filled} lots closed"),
        "a-20210104-C1": ("done", f"entry {filled} lots, closed by a-20210104-C3"),
    }
    assert agent(engine).position("IF2101").net == 0


def test_an_iceberg_shows_its_slice_and_sends_the_next_when_one_fills(
    day: list[tuple[int, Tick]],
) -> None:
    engine, journal = run(lambda s, t: s.iceberg("IF2101", "buy", 7, t.ask_price1 + 1.0, 3),
                          day, paper=LATENCY)  # fmt: skip
    orders = of(journal, m.OrderRequested)
    assert [x.volume for x in orders] == [3, 3, 1]
    fills = of(journal, m.Trade)
    for before, after in pairwise(orders):  # each after the last filled
        done = [x for x in fills if x.order_id == before.order_id]
        assert sum(x.volume for x in done) == before.volume
        assert after.time_ns >= done[-1].time_ns
    assert of(journal, m.ConditionalEnded)[0].state == "done"
    assert agent(engine).position("IF2101").long == 7


def test_twap_sends_its_slices_on_time_with_no_tick_then(day: list[tuple[int, Tick]]) -> None:
    engine, journal = run(lambda s, t: s.twap("IF2101", "buy", 10, 60.0, slices=4), day[:2000],
                          paper=LATENCY)  # fmt: skip
    placed = of(journal, m.ConditionalPlaced)[0].time_ns
    orders = of(journal, m.OrderRequested)
    # slices at 0, 15, 30 and 45 s, as FAKs: each what 10·k//4 wants filled by then, less what
    # filled before (a slice's unfilled lots join the next)
    assert [x.time_ns - placed for x in orders] == [0, 15 * 10**9, 30 * 10**9, 45 * 10**9]
    fills = of(journal, m.Trade)
    for k, order in enumerate(orders, 1):
        before = sum(x.volume for x in fills if x.time_ns < order.time_ns)
        assert order.volume == 10 * k // 4 - before
    assert {x.kind for x in orders} == {"fak"}
    wakes = {x.time_ns for x in of(journal, m.Wake)}
    assert {x.time_ns for x in orders[1:]} <= wakes  # by the engine's clock, no tick then
    assert agent(engine).position("IF2101").long == 10


# -- restart, refusal, cancel, modify, the day's end --------------------------------------------


def every_kind(s: Strategy, t: Tick) -> str:
    last = t.last
    s.stop("IF2101", "buy", 1, last + 8 * TICK)
    s.stop("IF2101", "sell", 1, last - 8 * TICK, price=last - 10 * TICK, trigger_on="mid")
    s.trailing_stop("IF2101", "sell", 1, trail_ticks=20, trigger_on="bid")
    s.take_profit("IF2101", "sell", 1, last + 20 * TICK, oco="g")
    s.stop("IF2101", "sell", 1, last - 20 * TICK, oco="g")
    s.iceberg("IF2101", "buy", 5, t.bid_price1, 2)
    s.twap("IF2101", "sell", 6, 120.0, slices=3)
    return s.bracket("IF2101", "buy", 20, t.bid_price1, take_profit=last + 5.0, stop=last - 5.0)


@pytest.mark.parametrize("seed", range(5))
def test_a_restart_anywhere_between_placing_and_the_end_recovers_exactly(
    day: list[tuple[int, Tick]], seed: int
) -> None:
    part = day[:6000]
    engine, full = run(every_kind, part, paper=LATENCY)
    kinds = {type(x) for x in full}
    assert {m.ConditionalPlaced, m.ConditionalTriggered, m.ConditionalEnded} <= kinds
    placed = next(i for i, x in enumerate(full) if isinstance(x, m.ConditionalPlaced))
    triggered = next(i for i, x in enumerate(full) if isinstance(x, m.ConditionalTriggered))
    # the first seed cuts between placing and the first trigger; the others anywhere after
    lo, hi = (placed + 1, triggered) if seed == 0 else (placed + 1, len(full))
    cut = random.Random(seed).randrange(lo, hi)
    journal = full[:cut]
    again = engine_with(every_kind, journal, LATENCY)
    recover_and_run(again, journal, part)
    assert journal == full  # nothing sent twice, nothing lost
    assert state(again) == state(engine)
    assert [c.view() for c in again.conds.values()] == [c.view() for c in engine.conds.values()]


def test_a_released_order_passes_the_risk_gate(day: list[tuple[int, Tick]]) -> None:
    small = RISK.model_copy(update={"max_position": 2, "max_net_position": 2})
    trigger = day[AT - 1][1].last + 5 * TICK
    _, journal = run(lambda s, t: s.stop("IF2101", "buy", 3, trigger), day, risk=small)
    (refused,) = of(journal, m.RiskRefused)
    (ended,) = of(journal, m.ConditionalEnded)
    assert refused.code == "MAX_POSITION" and ended.state == "refused"
    assert ended.text.startswith("MAX_POSITION: ") and not of(journal, m.OrderRequested)


def test_cancel_and_modify_act_on_the_children(day: list[tuple[int, Tick]]) -> None:
    class Manages(Places):
        def on_tick(self, tick: Tick) -> None:
            super().on_tick(tick)
            if self.seen == AT:
                self.stop_id = self.stop("IF2101", "buy", 1, tick.last + 50.0)
            if self.seen == AT + 1:
                self.modify_conditional(self.stop_id, trigger=tick.last + 2 * TICK)
                self.modify_conditional(self.ids[0], price=tick.bid_price1 - 31.0)
            if self.seen == AT + 400:
                self.cancel_conditional(self.ids[0])

    journal: list[m.EngineMessage] = []
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    engine = Engine(specs=specs, gate_config=RISK, adapter=PaperBroker(specs, phases, LATENCY),
                    phases=phases, journal=lambda d, _t: journal.append(m.decode(d)))  # fmt: skip
    engine.add_agent("a", Manages, ["IF2101"], 1e9, RiskLimits.from_config(RISK), {
        "place": lambda s, t: s.iceberg("IF2101", "buy", 50, t.bid_price1 - 30.0, 5)})  # fmt: skip
    engine.open_day(DAY, day[0][1].local_time_ns)
    for seq, tick in day[: AT + 600]:
        engine.on_tick(tick, seq)
    orders = of(journal, m.OrderRequested)
    iceberg = [x for x in orders if x.volume == 5]
    # the modify re-sent the working slice at the new price, after cancelling the old one
    assert len(iceberg) >= 2 and iceberg[1].price == day[AT][1].bid_price1 - 31.0
    assert iceberg[0].order_id in {x.order_id for x in of(journal, m.OrderCancelled)}
    # the stop moved to 2 ticks above the next last price, and triggered there
    (triggered,) = of(journal, m.ConditionalTriggered)
    assert triggered.price >= day[AT][1].last + 2 * TICK
    # cancelling the iceberg cancelled its working slice
    ends = {x.cond_id: x.state for x in of(journal, m.ConditionalEnded)}
    assert ends["a-20210104-C1"] == "cancelled" and not engine.agents["a"].orders


def test_modifying_a_bracket_sends_its_entry_again_at_the_new_price(
    day: list[tuple[int, Tick]],
) -> None:
    class Moves(Places):
        def on_tick(self, tick: Tick) -> None:
            super().on_tick(tick)
            if self.seen == AT + 10:
                self.modify_conditional(self.ids[0], price=tick.bid_price1 - 25.0)

    journal: list[m.EngineMessage] = []
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    engine = Engine(specs=specs, gate_config=RISK, adapter=PaperBroker(specs, phases, LATENCY),
                    phases=phases, journal=lambda d, _t: journal.append(m.decode(d)))  # fmt: skip

    def place(s: Strategy, t: Tick) -> str:
        return s.bracket("IF2101", "buy", 3, t.bid_price1 - 30.0, take_profit=t.last + 50.0,
                         stop=t.last - 60.0)  # fmt: skip

    engine.add_agent("a", Moves, ["IF2101"], 1e9, RiskLimits.from_config(RISK), {"place": place})
    engine.open_day(DAY, day[0][1].local_time_ns)
    for seq, tick in day[: AT + 100]:
        engine.on_tick(tick, seq)
    entries = of(journal, m.OrderRequested)
    assert [x.volume for x in entries] == [3, 3]
    assert entries[1].price == day[AT + 9][1].bid_price1 - 25.0
    assert entries[0].order_id in {x.order_id for x in of(journal, m.OrderCancelled)}
    assert not of(journal, m.ConditionalEnded)  # the bracket and its exits go on


def test_the_day_s_roll_expires_what_is_still_waiting(day: list[tuple[int, Tick]]) -> None:
    engine, journal = run(lambda s, t: s.stop("IF2101", "buy", 1, 9999.0), day[:1000])
    engine.roll_day(day[999][1].local_time_ns, 20210105, {"IF2101": 5000.0})
    (ended,) = of(journal, m.ConditionalEnded)
    assert (ended.state, ended.text) == ("expired", "expired at the end of the trading day")
    assert journal.index(ended) < next(i for i, x in enumerate(journal)
                                       if isinstance(x, m.DayRolled))  # fmt: skip


@pytest.mark.parametrize(("place", "message"), [
    (lambda s, t: s.stop("IF2101", "buy", 1, 0.0), "a stop needs a trigger price"),
    (lambda s, t: s.stop("rb2105", "buy", 1, 5000.0), "'rb2105' is not traded by this engine"),
    (lambda s, t: s.stop("IF2101", "hold", 1, 5000.0), "direction must be 'buy' or 'sell'"),
    (lambda s, t: s.stop("IF2101", "buy", 0, 5000.0), "volume must be a whole number of lots"),
    (lambda s, t: s.stop("IF2101", "buy", 1, float("nan")), "trigger must be a finite positive"),
    (lambda s, t: s.stop("IF2101", "buy", 1, 5000.0, trigger_on="close"), "trigger_on must be"),
    (lambda s, t: s.trailing_stop("IF2101", "sell", 1), "a trailing stop needs one of trail"),
    (lambda s, t: s.iceberg("IF2101", "buy", 5, 5000.0, 0), "show must be a whole number"),
    (lambda s, t: s.bracket("IF2101", "buy", 1, 5000.0, 4990.0, 5010.0),
     "a buy bracket's stop and take_profit must lie on either side of its entry price 5000.0"),
    (lambda s, t: s.twap("IF2101", "buy", 1, 0.0), "window_ns must be a whole number"),
    (lambda s, t: s.stop("IF2101", "buy", 1, 5000.0, oco="x" * 40), "oco must be a name"),
])  # fmt: skip
def test_a_bad_conditional_order_stops_the_agent_with_one_line(
    day: list[tuple[int, Tick]], place: Callable[[Strategy, Tick], str], message: str
) -> None:
    _, journal = run(place, day[: AT + 5])
    (stopped,) = of(journal, m.AgentStopped)
    assert f"ValueError: {message}" in stopped.error
    assert not of(journal, m.ConditionalPlaced)
