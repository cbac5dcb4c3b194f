"""The engine core on the real IF2101 day: agents, gate, paper fills, journal, exact recovery."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

import numpy as np
import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts import messages as m
from contracts.calendar import load_calendar
from contracts.config import PaperConfig, ProductRates, RiskConfig
from contracts.logs import register_secret
from libshm import Tick, book_tick
from services.engine.adapter import Accepted, Adapter, CancelRefused, Traded
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine, RecoveryDiverged
from services.engine.orders import Order
from services.engine.products import specs_for
from services.engine.risk import RiskLimits
from services.engine.strategy import OrderView, Strategy, TradeView
from strategies.follower import Follower
from strategies.quoter import Quoter

RATES = {
    "IF": ProductRates(margin_rate=0.12, open_rate=0.000023, close_rate=0.000023,
                       close_today_rate=0.000345),
    "default": ProductRates(margin_rate=0.1, open_per_lot=1.0, close_per_lot=1.0,
                            close_today_per_lot=2.0),
}  # fmt: skip
DAY = 20210104
RISK = RiskConfig(max_position=5, max_net_position=5, cancel_limit=5000, cancel_reserve=20,
                  max_cancel_ratio=2.0, duplicate_window_ms=0, max_daily_loss=1e9)  # fmt: skip


INSTANT = PaperConfig.instant()
AgentSpec = tuple[str, Callable[..., Strategy], dict[str, Any]]
DEFAULT_AGENTS: list[AgentSpec] = [
    ("mm", Quoter, {"spread_ticks": 1, "size": 1, "max_position": 3}),
    ("trend", Follower, {"fast": 10, "slow": 60, "size": 2}),
]


def make_engine(journal: list[m.EngineMessage], agents: list[AgentSpec] | None = None,
                risk: RiskConfig = RISK) -> Engine:  # fmt: skip
    specs, phases = specs_for(["IF2101", "cu2102"], load_calendar(), RATES)
    engine = Engine(
        specs=specs, gate_config=risk, adapter=PaperBroker(specs, phases, INSTANT), phases=phases,
        journal=lambda data, _t: journal.append(m.decode(data)),
    )  # fmt: skip
    for name, cls, params in agents or DEFAULT_AGENTS:
        engine.add_agent(name, cls, ["IF2101"], 1_000_000.0, RiskLimits.from_config(risk), params)
    return engine


def run(engine: Engine, ticks: list[tuple[int, Tick]], *, timer_every: int = 50) -> None:
    for i, (seq, tick) in enumerate(ticks):
        engine.on_tick(tick, seq)
        if i % timer_every == timer_every - 1:
            engine.on_timer(tick.local_time_ns + 1)


def run_on(engine: Engine, ticks: list[tuple[int, Tick]]) -> None:
    """``run`` from where a recovered engine stands (its ticks done, and the timer call after the
    last one unless the crash came before it)."""
    for i, (seq, tick) in enumerate(ticks):
        if seq < engine.ticks:
            if seq == engine.ticks - 1 and i % 50 == 49 and engine.now <= tick.local_time_ns:
                engine.on_timer(tick.local_time_ns + 1)
            continue
        engine.on_tick(tick, seq)
        if i % 50 == 49:
            engine.on_timer(tick.local_time_ns + 1)


def recover_and_run(again: Engine, journal: list[m.EngineMessage],
                    day: list[tuple[int, Tick]]) -> None:  # fmt: skip
    """Recover ``again`` from ``journal`` (a cut of a run over ``day``), check that it sends
    nothing the journal holds, and carry it on over the rest of the day's ticks."""
    cut = len(journal)
    source: Iterator[tuple[int, Tick]] = iter(day)
    again.recover(list(journal), partial(next, source))
    assert again.sent == sum(isinstance(x, m.OrderRequested) for x in journal[cut:])
    for seq, tick in day:
        if seq >= again.ticks:
            again.on_tick(tick, seq)


def state(engine: Engine) -> dict[object, Any]:
    """Everything that must be the same after a recovery."""
    out: dict[object, Any] = {"ticks": engine.ticks, "sent_ids": engine.ids._next}
    for name, account in engine.ledger.accounts.items():
        out[name] = (round(account.cash, 6), round(account.realised(), 6),
                     round(account.unrealised(), 6), round(account.fees(), 6))  # fmt: skip
        for instrument, line in account.lines.items():
            out[(name, instrument)] = (line.position, round(line.long_open_cost, 6),
                                       round(line.short_open_cost, 6))  # fmt: skip
    out["orders"] = {
        oid: (o.state, o.filled, round(o.fill_cost, 6), sorted(o.trade_ids))
        for oid, o in engine.orders.items()
    }
    out["risk"] = (dict(engine.gate.states), dict(engine.gate._cancels))
    return out


def test_agents_trade_the_real_day_through_the_gate_and_the_ledger_reconciles(
    ticks: list[tuple[int, Tick]],
) -> None:
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal)
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    run(engine, ticks)
    kinds = {type(x).__name__ for x in journal}
    assert {"DayOpened", "AgentStarted", "OrderRequested", "OrderAccepted", "Trade",
            "CancelRequested", "OrderCancelled", "TimerFired"} <= kinds  # fmt: skip
    trades = [x for x in journal if isinstance(x, m.Trade)]
    assert len(trades) > 20
    # positions and cash reconcile with the journaled trades
    requested = {x.order_id: x for x in journal if isinstance(x, m.OrderRequested)}
    for name, account in engine.ledger.accounts.items():
        mine = [t for t in trades if requested[t.order_id].agent == name]
        net = sum(t.volume if requested[t.order_id].direction == "buy" else -t.volume for t in mine)
        line = account.lines["IF2101"]
        assert line.position.net == net
        flows = sum((t.price if requested[t.order_id].direction == "sell" else -t.price) * t.volume
                    for t in mine) * 300  # fmt: skip
        fees = sum(t.fee for t in mine)
        assert fees > 0
        equity = 1_000_000.0 + flows - fees + net * line.mark * 300
        assert account.equity() == pytest.approx(equity, abs=1e-6)
    # every order is in a state of the table, and no id was issued twice
    ids = [x.order_id for x in journal if isinstance(x, (m.OrderRequested, m.RiskRefused))]
    assert len(ids) == len(set(ids))


def test_warming_the_order_path_changes_nothing(ticks: list[tuple[int, Tick]]) -> None:
    day = ticks[:6000]
    plain: list[m.EngineMessage] = []
    engine = make_engine(plain)
    assert not engine.warm()  # no agent running yet: nothing to warm
    engine.open_day(DAY, day[0][1].local_time_ns)
    run(engine, day)

    warmed: list[m.EngineMessage] = []
    other = make_engine(warmed)
    other.open_day(DAY, day[0][1].local_time_ns)
    calls = 0
    for i, (seq, tick) in enumerate(day):
        other.on_tick(tick, seq)
        calls += other.warm() + other.warm()  # between every two ticks, as a quiet market would
        if i % 50 == 49:
            other.on_timer(tick.local_time_ns + 1)
    assert calls == 2 * len(day)
    assert warmed == plain  # not one message more, less or different
    assert state(other) == state(engine)
    assert other.sent == engine.sent


@pytest.mark.parametrize("seed", range(6))
def test_recovery_from_any_point_of_the_journal_ends_exactly_like_an_uninterrupted_run(
    ticks: list[tuple[int, Tick]],
    seed: int,
) -> None:
    day = ticks[:6000]
    full: list[m.EngineMessage] = []
    engine = make_engine(full)
    engine.open_day(DAY, day[0][1].local_time_ns)
    run(engine, day)
    expected = state(engine)

    cut = random.Random(seed).randrange(1, len(full))  # a crash after any journaled message
    journal = full[:cut]
    again = make_engine(journal)
    source: Iterator[tuple[int, Tick]] = iter(day)
    replayed = again.recover(list(journal), lambda: next(source))
    assert replayed == cut
    # nothing journaled was sent again; what the rest of an interrupted tick sent is new
    assert again.sent == sum(isinstance(x, m.OrderRequested) for x in journal[cut:])
    # carry on live with the ticks after the recovered position (and the same timer calls)
    run_on(again, day)
    assert journal == full  # the same messages, none twice
    assert state(again) == expected


def test_acknowledgements_between_ticks_arrive_when_due_and_recovery_repeats_them(
    ticks: list[tuple[int, Tick]],
) -> None:
    specs, phases = specs_for(["IF2101", "cu2102"], load_calendar(), RATES)
    latency = PaperConfig(entry_latency_us=1000, cancel_latency_us=1000, ack_latency_us=500)

    def engine_into(journal: list[m.EngineMessage]) -> Engine:
        engine = Engine(specs=specs, gate_config=RISK, adapter=PaperBroker(specs, phases, latency),
                        phases=phases,
                        journal=lambda d, _t: journal.append(m.decode(d)))  # fmt: skip
        for name, cls, params in DEFAULT_AGENTS:
            engine.add_agent(name, cls, ["IF2101"], 1_000_000.0, RiskLimits.from_config(RISK),
                             params)  # fmt: skip
        return engine

    day = ticks[:5000]
    full: list[m.EngineMessage] = []
    engine = engine_into(full)
    engine.open_day(DAY, day[0][1].local_time_ns)
    run(engine, day)
    assert sum(isinstance(x, m.Wake) for x in full) > 20
    # every order is acknowledged 1.5 ms after it left (entry 1 ms + ack 0.5 ms), not at the
    # next snapshot half a second later
    sent = {x.order_id: x.time_ns for x in full if isinstance(x, m.OrderRequested)}
    acks = [x for x in full if isinstance(x, (m.OrderAccepted, m.OrderRejected))]
    assert len(acks) == len(sent) > 20
    assert {x.time_ns - sent[x.order_id] for x in acks} == {1_500_000}
    tick_times = {t.local_time_ns for _, t in day}
    assert any(x.time_ns not in tick_times for x in acks)

    for seed in range(3):  # a crash after any journaled message, Wake included
        cut = random.Random(seed).randrange(1, len(full))
        journal = full[:cut]
        again = engine_into(journal)
        source: Iterator[tuple[int, Tick]] = iter(day)
        again.recover(list(journal), partial(next, source))
        run_on(again, day)
        assert journal == full
        assert state(again) == state(engine)


def test_a_diverging_agent_stops_recovery(ticks: list[tuple[int, Tick]]) -> None:
    day = ticks[:3000]
    full: list[m.EngineMessage] = []
    engine = make_engine(full)
    engine.open_day(DAY, day[0][1].local_time_ns)
    run(engine, day)
    other = make_engine([], [("mm", Quoter, {"spread_ticks": 3}), DEFAULT_AGENTS[1]])
    source = iter(day)
    with pytest.raises(RecoveryDiverged, match="not deterministic"):
        other.recover(list(full), lambda: next(source))


SECRET = "hunter2-broker-password"
RAISED: dict[str, Callable[[], BaseException]] = {
    "RuntimeError": lambda: RuntimeError(f"boom: login with {SECRET} failed"),
    "SystemExit": lambda: SystemExit(f"boom: login with {SECRET} failed"),
    "KeyboardInterrupt": lambda: KeyboardInterrupt(f"boom: login with {SECRET} failed"),
}


class Boom(Strategy):
    def on_tick(self, tick: Tick) -> None:
        if not self.open_orders() and self.position("IF2101").net == 0:
            self.buy("IF2101", tick.bid_price1, 1)
        if self.position("IF2101").net == 0 and len(self.open_orders()) == 1:
            self.seen = getattr(self, "seen", 0) + 1
            if self.seen == 5:
                raise RAISED[self.params.get("raise", "RuntimeError")]()


@pytest.mark.parametrize("raised", sorted(RAISED))
def test_an_agent_that_raises_is_stopped_its_orders_cancelled_and_the_others_go_on(
    ticks: list[tuple[int, Tick]], raised: str
) -> None:
    """Whatever the agent raises (``sys.exit()`` and ``KeyboardInterrupt`` too: the engine's
    signal handlers only set a flag, so these come from agent code) stops that agent alone, and
    the error it journals has the registered secrets redacted, like the log."""
    register_secret(SECRET)
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal, [("boom", Boom, {"raise": raised}), DEFAULT_AGENTS[0]])
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    run(engine, ticks[:3000])
    stopped = [x for x in journal if isinstance(x, m.AgentStopped)]
    assert len(stopped) == 1 and stopped[0].agent == "boom"
    assert f"{raised}: boom: login with *** failed" in stopped[0].error
    assert SECRET not in stopped[0].error
    at = journal.index(stopped[0])
    cancels = [x for x in journal[at:] if isinstance(x, m.CancelRequested) and x.agent == "boom"]
    assert cancels and all(c.protective for c in cancels)
    assert not engine.agents["boom"].orders or all(
        o.state.value == "pending_cancel" for o in engine.agents["boom"].orders.values()
    )
    later = [x for x in journal[at:] if isinstance(x, m.OrderRequested)]
    assert later and all(x.agent == "mm" for x in later)


class Sends(Strategy):
    """Sends on every tick."""

    def on_tick(self, tick: Tick) -> None:
        self.buy("IF2101", tick.bid_price1, 1)


class Swallows(Strategy):
    """Sends on every tick and catches whatever its send raises."""

    def on_tick(self, tick: Tick) -> None:
        try:
            self.buy("IF2101", tick.bid_price1, 1)
        except Exception:  # what a careless strategy does
            self.caught = True


@pytest.mark.parametrize("where", ["journal", "observer"])
@pytest.mark.parametrize("agent", [Swallows, Sends])
def test_a_journal_that_fails_in_an_agent_s_send_stops_the_engine_not_the_agent(
    ticks: list[tuple[int, Tick]], agent: type[Strategy], where: str
) -> None:
    """A full disk while an agent sends (under the journal, or under a backtest's results, the
    observer): the error goes up to the engine's caller (the shell stops, the day recovers),
    even from an agent that catches it; the agent is not stopped for it, and nothing after the
    failed write is journaled."""
    journal: list[bytes] = []

    def write(data: bytes, _time: int) -> None:
        if where == "journal" and len(journal) == 40:
            raise OSError(28, "No space left on device")
        journal.append(bytes(data))

    def observe(_msg: m.EngineMessage) -> None:
        if len(journal) == 41:  # the 41st is journaled, then its observer fails
            raise OSError(28, "No space left on device")

    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    engine = Engine(specs=specs, gate_config=RISK, adapter=PaperBroker(specs, phases, INSTANT),
                    phases=phases, journal=write,
                    observer=observe if where == "observer" else None)  # fmt: skip
    engine.add_agent("a", agent, ["IF2101"], 1e6, RiskLimits.from_config(RISK))
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    with pytest.raises(OSError, match="No space left"):
        run(engine, ticks[:3000])
    failed = engine.journal_failed
    assert isinstance(failed, OSError)
    assert engine.agents["a"].running
    assert len(journal) == (40 if where == "journal" else 41)
    assert not any(isinstance(m.decode(f), m.AgentStopped) for f in journal)
    if agent is Swallows:
        assert engine.agents["a"].strategy.caught  # type: ignore[union-attr]


class Crosser(Strategy):
    """Rests a bid, then tries to sell into it from another agent of the same account."""

    def on_order(self, order: OrderView) -> None:
        self.last = order

    def on_tick(self, tick: Tick) -> None:
        if getattr(self, "done", False):
            return
        self.done = True
        self.ids = self.send_order("IF2101", self.params["side"], self.params["price"], 1)


def test_self_trade_across_two_agents_is_refused_and_reaches_on_order(
    ticks: list[tuple[int, Tick]],
) -> None:
    journal: list[m.EngineMessage] = []
    first = ticks[100][1]
    bid = round(first.bid_price1 - 2.0, 1)
    agents: list[AgentSpec] = [
        ("bidder", Crosser, {"side": "buy", "price": bid}),
        ("seller", Crosser, {"side": "sell", "price": bid}),
    ]
    engine = make_engine(journal, agents)
    engine.open_day(DAY, first.local_time_ns)
    engine.on_tick(first, 100)
    refused = [x for x in journal if isinstance(x, m.RiskRefused)]
    assert [(x.agent, x.code) for x in refused] == [("seller", "SELF_TRADE")]
    seller = engine.agents["seller"].strategy
    assert seller.last.state == "rejected" and seller.last.reason.startswith("SELF_TRADE")  # type: ignore[union-attr]


def test_commands_halt_resume_cancel_all_and_flatten(ticks: list[tuple[int, Tick]]) -> None:
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal)
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    run(engine, ticks[:2000])
    ack = engine.command(m.Halt(0, 0, "agent", "mm", "ops", "c1"))
    assert ack.ok and ack.command_id == "c1"
    halted_at = len(journal)
    before = len([x for x in journal if isinstance(x, m.OrderRequested) and x.agent == "mm"])
    run(engine, ticks[2000:2400])
    refused = [x for x in journal[halted_at:] if isinstance(x, m.RiskRefused) and x.agent == "mm"]
    assert refused and {x.code for x in refused} == {"HALTED"}
    after = len([x for x in journal if isinstance(x, m.OrderRequested) and x.agent == "mm"])
    assert after == before
    assert engine.command(m.Resume(0, 0, "agent", "mm", "ops", "c2")).ok
    bad = engine.command(m.Halt(0, 0, "agent", "nobody", "ops", "c3"))
    assert not bad.ok and "nobody" in bad.text
    run(engine, ticks[2400:2600])
    ack = engine.command(m.CancelAll(0, 0, "account", "", "ops", "c4"))
    assert ack.ok
    assert all(o.state.value in ("pending_cancel", "cancelled", "filled", "rejected")
               for o in engine.orders.values())  # fmt: skip
    engine.command(m.Flatten(0, 0, "account", "", "ops", "c5"))
    run(engine, ticks[2600:2700])
    for account in engine.ledger.accounts.values():
        assert account.lines["IF2101"].position.net == 0
    assert engine.gate.state("account", "") == "reducing"


def test_cancel_order_cancels_that_order_alone(ticks: list[tuple[int, Tick]]) -> None:
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal)
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    run(engine, ticks[:2000])
    working = [o.order_id for o in engine.orders.values() if o.state.value == "accepted"]
    assert working, "the quoter keeps orders working"
    states = {i: o.state.value for i, o in engine.orders.items()}
    at = len(journal)
    ack = engine.command(m.CancelOrder(0, 0, "account", working[0], "monitor.ops", "k1"))
    assert (ack.ok, ack.text) == (True, f"cancel sent for {working[0]}")
    cancels = [x for x in journal[at:] if isinstance(x, m.CancelRequested)]
    assert [(x.order_id, x.protective) for x in cancels] == [(working[0], True)]
    changed = {i for i, o in engine.orders.items() if o.state.value != states[i]}
    assert changed == {working[0]}  # the others untouched
    unknown = engine.command(m.CancelOrder(0, 0, "account", "no-such-order", "ops", "k2"))
    assert (unknown.ok, unknown.text) == (False, "no working order 'no-such-order'")
    run(engine, ticks[2000:2100])
    done = engine.command(m.CancelOrder(0, 0, "account", working[0], "ops", "k3"))
    assert (done.ok, done.text) == (False, f"order {working[0]} is no longer working")


def test_flatten_reports_what_the_gate_refused_and_the_positions_left_open(
    ticks: list[tuple[int, Tick]],
) -> None:
    journal: list[m.EngineMessage] = []
    first = ticks[100][1]
    risk = RiskConfig(max_orders_per_second=1, duplicate_window_ms=0, max_daily_loss=1e9)
    agents: list[AgentSpec] = [("buyer", Crosser, {"side": "buy", "price": first.ask_price1})]
    engine = make_engine(journal, agents, risk=risk)
    engine.open_day(DAY, first.local_time_ns)
    engine.on_tick(first, 100)
    assert engine.ledger.accounts["buyer"].lines["IF2101"].position.net == 1
    # within the same second: the agent's one order a second is used, so the gate refuses
    ack = engine.command(m.Flatten(0, 0, "account", "", "ops", "f1"))
    refused = [x for x in journal if isinstance(x, m.RiskRefused)]
    assert [x.code for x in refused] == ["ORDER_RATE"]
    assert not ack.ok
    assert "0 closing order(s) sent" in ack.text and "ORDER_RATE" in ack.text
    assert ack.text.endswith("positions left open: buyer IF2101 long 1")
    # a second later the same flatten closes it and says so
    later = ticks[100][1].local_time_ns + 2_000_000_000
    engine.on_timer(later)
    ack = engine.command(m.Flatten(0, 0, "account", "", "ops", "f2"))
    assert ack.ok and ack.text == "0 cancel(s) and 1 closing order(s) sent", ack.text


def test_flatten_without_a_price_says_so(ticks: list[tuple[int, Tick]]) -> None:
    journal: list[m.EngineMessage] = []
    first = ticks[100][1]
    agents: list[AgentSpec] = [("buyer", Crosser, {"side": "buy", "price": first.ask_price1})]
    engine = make_engine(journal, agents)
    engine.open_day(DAY, first.local_time_ns)
    engine.on_tick(first, 100)
    del engine.latest["IF2101"]
    ack = engine.command(m.Flatten(0, 0, "agent", "buyer", "ops", "f1"))
    assert not ack.ok and "no price for IF2101 yet" in ack.text, ack.text
    assert "positions left open: buyer IF2101 long 1" in ack.text


def test_daily_loss_moves_the_agent_to_reducing(ticks: list[tuple[int, Tick]]) -> None:
    journal: list[m.EngineMessage] = []
    risk = RiskConfig(max_daily_loss=1.0, duplicate_window_ms=0, cancel_limit=5000,
                      max_cancel_ratio=2.0)  # fmt: skip
    engine = make_engine(journal, [DEFAULT_AGENTS[1]], risk=risk)
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    run(engine, ticks)
    changed = [x for x in journal if isinstance(x, m.StateChanged)]
    assert changed and changed[0].state == "reducing" and "DAILY_LOSS" in changed[0].reason
    at = journal.index(changed[0])
    opens = [x for x in journal[at:] if isinstance(x, m.OrderRequested) and x.offset == "open"]
    assert not opens


class NightCu(Strategy):
    """Buys in the night session, sells the next trading day."""

    def on_tick(self, tick: Tick) -> None:
        if self.params["action"] == "buy":
            self.buy("cu2102", tick.ask_price1, 2)
        else:
            self.trades: list[TradeView] = []
            self.ids = self.sell("cu2102", tick.bid_price1, 3)

    def on_trade(self, trade: TradeView) -> None:
        getattr(self, "trades", []).append(trade)


def _cu_tick(day: int, when_ns: int, price: float) -> Tick:
    return book_tick("cu2102", "SHFE", day, when_ns, last=price, bid=price - 10, ask=price + 10,
                     upper=price * 1.08, lower=price * 0.92)  # fmt: skip


def test_shfe_close_today_and_yesterday_across_the_roll_with_a_night_position() -> None:
    cu_rates = {"default": RATES["default"]}
    specs, phases = specs_for(["cu2102"], load_calendar(), cu_rates)
    journal: list[m.EngineMessage] = []

    def engine_with(action: str) -> Engine:
        engine = Engine(specs=specs, gate_config=RISK, adapter=PaperBroker(specs, phases, INSTANT),
                        phases=phases,
                        journal=lambda d, _t: journal.append(m.decode(d)))  # fmt: skip
        engine.add_agent("cu", NightCu, ["cu2102"], 1_000_000.0, RiskLimits.from_config(RISK),
                         {"action": action})  # fmt: skip
        return engine

    # Monday 2021-01-04 21:30 China time: the night session of trading day 20210105
    night = 1_609_767_000 * 1_000_000_000
    monday = engine_with("buy")
    monday.open_day(20210105, night)
    monday.on_tick(_cu_tick(20210105, night, 50_000.0), 0)
    line = monday.ledger.accounts["cu"].lines["cu2102"]
    assert (line.position.long_today, line.position.long_yesterday) == (2, 0)
    # still today's in Tuesday's day session (same trading day): one more lot today
    monday.roll_day(night + 3600 * 10**9, 20210106, {"cu2102": 50_100.0})
    holdings, cash = monday.holdings()
    assert [(h.long, h.settlement) for h in holdings] == [(2, 50_100.0)]

    # Tuesday night (trading day 20210106): buy 2 today, then sell 3: close 2 yesterday + 1 today
    tuesday_night = night + 86_400 * 10**9
    tuesday = engine_with("buy")
    tuesday.open_day(20210106, tuesday_night, 0, holdings, cash)
    tuesday.on_tick(_cu_tick(20210106, tuesday_night, 50_200.0), 0)
    line = tuesday.ledger.accounts["cu"].lines["cu2102"]
    assert (line.position.long_yesterday, line.position.long_today) == (2, 2)
    tuesday.agents["cu"].strategy.params["action"] = "sell"  # type: ignore[union-attr]
    tuesday.on_tick(_cu_tick(20210106, tuesday_night + 10**9, 50_200.0), 1)
    legs = [(x.offset, x.volume) for x in journal
            if isinstance(x, m.OrderRequested) and x.direction == "sell"]  # fmt: skip
    assert legs == [("close_yesterday", 2), ("close_today", 1)]
    assert (line.position.long_yesterday, line.position.long_today) == (0, 1)
    # yesterday's lots realise against the settlement, today's against their open price
    assert line.realised == pytest.approx((50_190.0 - 50_100.0) * 2 * 5 + (50_190.0 - 50_210.0) * 5)


SPECIAL = [math.nan, math.inf, -math.inf, -4800.0, 0.0, True, False, np.float64("nan"),
           np.float64(4800.2), np.int64(2), np.int32(1), 2**70, -(2**70), 2**31, -1, 1.0, None,
           "1", b"1", "", [1]]  # fmt: skip
WILD = st.one_of(
    st.sampled_from(SPECIAL), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=3)
)
NEAR = st.integers(-3, 3).map(lambda k: ("near", k))  # k price ticks from the last price
VALID = st.tuples(
    st.sampled_from(["IF2101", "IF2101", "IF2101", "cu2102", "XX999"]),
    st.sampled_from(["buy", "sell"]),
    st.one_of(NEAR, NEAR.map(lambda n: ("numpy", n[1]))),
    st.integers(1, 3),
    st.sampled_from(["auto", "open", "close"]),
    st.sampled_from(["limit", "market", "fak", "fok"]),
)


def _one_wild(call: tuple[Any, ...], which: int, wild: Any) -> tuple[Any, ...]:
    return call if which >= len(call) else (*call[:which], wild, *call[which + 1 :])


# a valid call with (mostly) one argument replaced by something wild
CALLS = st.lists(st.builds(_one_wild, VALID, st.integers(0, 7), WILD), min_size=1, max_size=12)


class Wild(Strategy):
    """Sends whatever it is given, one call a tick; an argument the engine refuses raises
    ``TypeError`` or ``ValueError`` in the agent, which it records and goes on."""

    def on_start(self) -> None:
        self.calls = list(self.params["calls"])
        self.errors: list[str] = []

    def on_tick(self, tick: Tick) -> None:
        if not self.calls:
            return
        instrument, direction, price, volume, offset, kind = self.calls.pop(0)
        if isinstance(price, tuple):
            value = tick.last + price[1] * 0.2
            price = np.float64(value) if price[0] == "numpy" else value
        try:
            self.send_order(instrument, direction, price, volume, offset, kind)
        except (TypeError, ValueError) as exc:
            self.errors.append(type(exc).__name__)


def test_any_arguments_to_send_leave_a_journal_that_recovers(
    ticks: list[tuple[int, Tick]],
) -> None:
    """Random arguments of random types (NaN and infinite prices, bools, numpy scalars, 2**70
    lots, strings, None) through ``send``: whatever was journaled (orders, refusals) recovers
    to exactly the same state."""

    @settings(max_examples=60, deadline=None)
    @given(calls=CALLS)
    def check(calls: list[tuple[Any, ...]]) -> None:
        day = ticks[1000 : 1000 + len(calls) + 40]
        agents: list[AgentSpec] = [("wild", Wild, {"calls": calls})]
        full: list[m.EngineMessage] = []
        engine = make_engine(full, agents)
        engine.open_day(DAY, day[0][1].local_time_ns)
        run(engine, day)
        assert engine.agents["wild"].running  # every refusal reached the agent as an exception
        for msg in full:  # every journaled price and volume is a finite float and an int
            price, volume = getattr(msg, "price", 0.0), getattr(msg, "volume", 0)
            assert type(price) is float and math.isfinite(price)
            assert type(volume) is int and 0 <= volume < 2**31
        again = list(full)
        recovered = make_engine(again, agents)
        source = iter(day)
        assert recovered.recover(list(full), lambda: next(source)) == len(full)
        run_on(recovered, day)
        assert again == full
        assert state(recovered) == state(engine)

    check()


class SlowOnce(Strategy):
    """Its second tick takes ``params["ms"]`` milliseconds of ``params["clock"]``."""

    def on_start(self) -> None:
        self.seen = 0

    def on_tick(self, tick: Tick) -> None:
        self.seen += 1
        if self.seen == 2:
            self.params["clock"].ns += self.params["ms"] * 1_000_000


class Clock:
    def __init__(self) -> None:
        self.ns = 0

    def __call__(self) -> int:
        return self.ns


def test_a_callback_over_its_budget_is_logged_with_the_agent_s_name(
    ticks: list[tuple[int, Tick]],
) -> None:
    journal: list[m.EngineMessage] = []
    clock = Clock()
    agents: list[AgentSpec] = [("slow", SlowOnce, {"ms": 30, "clock": clock}),
                               ("quick", SlowOnce, {"ms": 20, "clock": clock})]  # fmt: skip
    engine = make_engine(journal, agents)
    engine.clock, engine.callback_budget_ns = clock, 20_000_000
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    with structlog.testing.capture_logs() as logs:
        run(engine, ticks[:5])
    slow = [e for e in logs if e["event"] == "agent_callback_slow"]
    assert [(e["agent"], e["callback"], e["ms"]) for e in slow] == [("slow", "on_tick", 30.0)]
    assert slow[0]["text"] == (
        "slow.on_tick took 30.0 ms (budget 20 ms); 1 callback(s) over budget since the last "
        "such line; every agent waits while one runs"
    )


def test_a_strategy_holds_a_context_not_the_engine(ticks: list[tuple[int, Tick]]) -> None:
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal, [("bidder", Crosser, {"side": "buy", "price": 5000.0})])
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    strategy = engine.agents["bidder"].strategy
    assert strategy is not None
    context = strategy._h
    assert not hasattr(context, "engine") and not hasattr(context, "__dict__")
    # its fields, and nothing else (slots in Python, a struct when compiled: native.py)
    assert sorted(a for a in dir(context) if not a.startswith("_")) == sorted(
        ("account", "cancel", "cancel_all", "cancel_conditional", "conditionals", "factor",
         "instruments",
         "log", "modify_conditional", "name", "now", "open_orders", "place", "position",
         "price_tick", "send", "snapshot", "subscribe_bars"))  # fmt: skip
    engine.on_tick(ticks[5][1], 5)
    assert strategy.now == ticks[5][1].local_time_ns
    assert strategy.price_tick("IF2101") == 0.2


class Probe(Strategy):
    """On the first tick, orders that no exchange would take: each must be refused with its code
    (and come back to ``on_order``) or raise with a message naming the argument."""

    def on_start(self) -> None:
        self.views: list[OrderView] = []
        self.errors: list[str] = []
        self.ids: list[str] = []

    def on_order(self, order: OrderView) -> None:
        self.views.append(order)

    def on_tick(self, tick: Tick) -> None:
        if self.ids or self.errors:
            return
        self.ids += self.send_order("IF2109", "buy", 5000.0, 1)  # no product facts for it
        self.ids += self.send_order("IF2101", "sell", tick.bid_price1, 1, "close")  # flat
        wrong: list[tuple[Any, ...]] = [
            ("IF2101", "long", tick.bid_price1, 1, "open", "limit"),
            ("IF2101", "buy", tick.bid_price1, 1, "open", "ioc"),
            ("IF2101", "buy", tick.bid_price1, 0, "open", "limit"),
            ("IF2101", "buy", tick.bid_price1, -3, "open", "limit"),
            ("IF2101", "buy", tick.bid_price1, 1.5, "open", "limit"),
            ("IF2101", "buy", tick.bid_price1, True, "open", "limit"),
            ("IF2101", "buy", math.nan, 1, "open", "limit"),
            ("IF2101", "buy", tick.bid_price1, 1, "today", "limit"),
        ]
        for call in wrong:
            try:
                self.send_order(*call)
            except (TypeError, ValueError) as exc:
                self.errors.append(str(exc))
        for view_call in (lambda: self.cancel(7), lambda: self.position(None),  # type: ignore[arg-type]
                          lambda: self.open_orders(b"IF2101"), lambda: self.snapshot(2101)):  # type: ignore[arg-type]  # fmt: skip
            try:
                view_call()
            except TypeError as exc:
                self.errors.append(str(exc))


def test_orders_no_exchange_would_take_are_refused_or_raise(ticks: list[tuple[int, Tick]]) -> None:
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal, [("probe", Probe, {})])
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    engine.on_tick(ticks[0][1], ticks[0][0])
    probe = engine.agents["probe"].strategy
    assert isinstance(probe, Probe)
    refused = [x for x in journal if isinstance(x, m.RiskRefused)]
    assert [(x.order_id, x.code) for x in refused] == [
        (probe.ids[0], "UNKNOWN_INSTRUMENT"), (probe.ids[1], "NOTHING_TO_CLOSE"),
    ]  # fmt: skip
    assert [(v.order_id, v.state, v.reason.split(":")[0]) for v in probe.views] == [
        (probe.ids[0], "rejected", "UNKNOWN_INSTRUMENT"),
        (probe.ids[1], "rejected", "NOTHING_TO_CLOSE"),
    ]
    assert probe.errors == [
        "direction must be 'buy' or 'sell', not 'long'",
        "type must be limit, market, fak or fok, not 'ioc'",
        "volume must be a whole number of lots from 1 to 2147483647, not 0",
        "volume must be a whole number of lots from 1 to 2147483647, not -3",
        "volume must be a whole number of lots (int), not 1.5",
        "volume must be a whole number of lots (int), not True",
        "price must be a finite number, not nan",
        "offset must be auto, open or close, not 'today'",
        "order_id must be a str, not int",
        "instrument must be a str, not NoneType",
        "instrument must be a str, not bytes",
        "instrument must be a str, not int",
    ]
    assert not [x for x in journal if isinstance(x, m.OrderRequested)]
    assert engine.agents["probe"].running  # it caught them: a mistake is not a crash


class Venue(Adapter):
    """An adapter that runs on its own and answers only what the test tells it to."""

    def submit(self, order: Order, now_ns: int) -> None: ...

    def cancel(self, order: Order, now_ns: int) -> None: ...

    def on_tick(self, tick: Tick, now_ns: int) -> None: ...

    def open_day(self, trading_day: int, holdings: Any, cash: float) -> None: ...

    def events(self, now_ns: int) -> list[Any]:
        return []


class RestsAndCancels(Strategy):
    """Rests one bid; cancels it once it is accepted."""

    def on_start(self) -> None:
        self.views: list[OrderView] = []
        self.sent = False

    def on_order(self, order: OrderView) -> None:
        self.views.append(order)
        if order.state == "accepted" and not order.reason:
            self.cancel(order.order_id)

    def on_tick(self, tick: Tick) -> None:
        if not self.sent:
            self.sent = True
            self.buy("IF2101", tick.bid_price1, 2)


def test_a_cancel_refused_by_the_exchange_puts_the_order_back_and_it_can_still_fill(
    ticks: list[tuple[int, Tick]],
) -> None:
    journal: list[m.EngineMessage] = []
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    engine = Engine(specs=specs, gate_config=RISK, adapter=Venue(), phases=phases,
                    journal=lambda data, _t: journal.append(m.decode(data)))  # fmt: skip
    engine.add_agent("a", RestsAndCancels, ["IF2101"], 1_000_000.0, RiskLimits.from_config(RISK))
    seq, tick = ticks[0]
    now = tick.local_time_ns
    engine.open_day(DAY, now)
    engine.on_tick(tick, seq)
    (submit,) = engine.data_to_send()
    assert submit.action == "submit" and submit.order.volume == 2
    oid = submit.order.order_id
    engine.adapter_event(Accepted(oid, "X1", now + 1), now + 1)
    (cancel,) = engine.data_to_send()  # the agent cancelled on the acceptance
    assert cancel.action == "cancel" and engine.orders[oid].state.value == "pending_cancel"
    text = "CTP:报单已全成交或已撤销，不能再撤"
    engine.adapter_event(CancelRefused(oid, text, now + 2), now + 2)
    order = engine.orders[oid]
    assert order.state.value == "accepted" and order.reason == f"cancel refused: {text}"
    assert isinstance(journal[-1], m.CancelRefused) and journal[-1].code == "EXCHANGE"
    agent = engine.agents["a"].strategy
    assert isinstance(agent, RestsAndCancels)
    assert [(v.state, v.reason) for v in agent.views] == [
        ("pending_submit", ""), ("accepted", ""), ("pending_cancel", ""),
        ("accepted", f"cancel refused: {text}"),
    ]  # fmt: skip
    engine.adapter_event(Traded(oid, "T1", tick.bid_price1, 2, now + 3), now + 3)
    assert engine.orders[oid].state.value == "filled"
    assert engine.ledger.position("a", "IF2101").long == 2
    assert engine.data_to_send() == []


class Rests(Strategy):
    def on_start(self) -> None:
        self.views: list[OrderView] = []

    def on_order(self, order: OrderView) -> None:
        self.views.append(order)

    def on_tick(self, tick: Tick) -> None:
        if not self.open_orders() and not self.views:
            self.buy("IF2101", round(tick.bid_price1 - 10.0, 1), 1)  # far below: it rests


def test_working_orders_expire_at_the_day_roll(ticks: list[tuple[int, Tick]]) -> None:
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal, [("rests", Rests, {})])
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    for seq, tick in ticks[:20]:
        engine.on_tick(tick, seq)
    handle = engine.agents["rests"]
    (working,) = handle.orders.values()
    assert working.state.value == "accepted"
    end = ticks[19][1].local_time_ns + 1
    engine.roll_day(end, 20210105, {"IF2101": 5200.0})
    expired, rolled, closed = journal[-3:]
    assert isinstance(expired, m.OrderCancelled) and expired.order_id == working.order_id
    assert expired.text == "expired at the end of the trading day"
    assert isinstance(rolled, m.DayRolled) and rolled.next_day == 20210105
    assert isinstance(closed, m.DayClosed) and closed.holdings == []
    assert not handle.orders and working.state.value == "cancelled"
    assert isinstance(handle.strategy, Rests) and handle.strategy.views[-1].state == "cancelled"


def test_the_account_s_daily_loss_lets_every_agent_only_reduce(
    ticks: list[tuple[int, Tick]],
) -> None:
    """The account's limit (all agents together), not an agent's: the first fees and marks take
    the account below -1 yuan, and from then on no agent opens."""
    journal: list[m.EngineMessage] = []
    risk = RISK.model_copy(update={"account_max_daily_loss": 1.0})
    engine = make_engine(journal, risk=risk)
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    run(engine, ticks[:3000])
    (changed,) = [x for x in journal if isinstance(x, m.StateChanged)]
    assert (changed.scope, changed.target, changed.state) == ("account", "", "reducing")
    assert changed.reason.startswith("DAILY_LOSS")
    after = journal[journal.index(changed) :]
    assert not [x for x in after if isinstance(x, m.OrderRequested) and x.offset == "open"]
    refused = {x.agent for x in after if isinstance(x, m.RiskRefused) and x.code == "REDUCING_ONLY"}
    assert refused == {"mm", "trend"}
    assert all(h.account().state == "reducing" for h in engine.agents.values())


def test_reduce_lets_an_agent_only_close_and_resume_lets_it_open_again(
    ticks: list[tuple[int, Tick]],
) -> None:
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal)
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    run(engine, ticks[:1500])
    ack = engine.command(m.Reduce(0, 0, "agent", "trend", "ops", "r-1"))
    assert ack.ok and ack.text == "agent trend is reducing"
    start = len(journal)
    run(engine, ticks[1500:3500])
    during = journal[start:]
    assert not [
        x
        for x in during
        if isinstance(x, m.OrderRequested) and x.agent == "trend" and x.offset == "open"
    ]
    assert [
        x
        for x in during
        if isinstance(x, m.RiskRefused) and x.agent == "trend" and x.code == "REDUCING_ONLY"
    ]  # it tried, and was refused
    assert [
        x
        for x in during
        if isinstance(x, m.OrderRequested) and x.agent == "mm" and x.offset == "open"
    ]  # the other agent is untouched
    assert engine.command(m.Resume(0, 0, "agent", "trend", "ops", "r-2")).ok
    start = len(journal)
    run(engine, ticks[3500:6000])
    assert [
        x
        for x in journal[start:]
        if isinstance(x, m.OrderRequested) and x.agent == "trend" and x.offset == "open"
    ]


def test_finished_orders_leave_memory_a_minute_after_they_finish(
    ticks: list[tuple[int, Tick]],
) -> None:
    """The quoter's day: ``Engine.orders`` keeps the working orders and those finished within
    the last minute of engine time, never the rest (the journal has them all)."""
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal)
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    run(engine, ticks)
    requested = {x.order_id: x.volume for x in journal if isinstance(x, m.OrderRequested)}
    assert engine.order_count == len(requested) > 1000
    finished: dict[str, int] = {}  # order id -> the time of its last event
    filled: dict[str, int] = {}
    for x in journal:
        if isinstance(x, m.OrderCancelled | m.OrderRejected):
            finished[x.order_id] = x.time_ns
        elif isinstance(x, m.Trade):
            filled[x.order_id] = filled.get(x.order_id, 0) + x.volume
            if filled[x.order_id] == requested[x.order_id]:
                finished[x.order_id] = x.time_ns
    cutoff = engine.now - 60_000_000_000
    expected = {i for i in requested if i not in finished or finished[i] >= cutoff}
    assert set(engine.orders) == expected
    assert len(engine.orders) < len(requested) / 10


def test_an_adapter_event_for_an_order_the_engine_does_not_know_is_only_logged(
    ticks: list[tuple[int, Tick]],
) -> None:
    """A late return of an order that left memory (or was never the engine's): said in the log,
    nothing journaled, nothing raised."""
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal)
    engine.open_day(DAY, ticks[0][1].local_time_ns, ticks[0][0])
    before = len(journal)
    with structlog.testing.capture_logs() as logs:
        engine.adapter_event(Accepted("mm-20210104-999", "CFFEX:1"), ticks[0][1].local_time_ns)
    assert len(journal) == before
    assert [(x["event"], x["kind"], x["order_id"]) for x in logs] == [
        ("adapter_event_for_unknown_order", "Accepted", "mm-20210104-999")
    ]
