"""Running agents: a strategy whose constructor or ``on_stop`` raises is stopped alone, its
error journaled; the others trade on, and the engine's own stop never raises."""

from __future__ import annotations

from typing import Any

import structlog

from contracts import messages as m
from libshm import Tick
from services.engine import Strategy, StrategyContext
from tests.services.engine.test_core import DAY, DEFAULT_AGENTS, make_engine, run


class WontStart(Strategy):
    def __init__(self, context: StrategyContext, params: dict[str, Any]) -> None:
        super().__init__(context, params)
        raise KeyError("no such parameter file: model.bin")


class BadStop(Strategy):
    """Trades a lot, fails on the 100th tick, and fails again in ``on_stop``."""

    def on_tick(self, tick: Tick) -> None:
        self.seen = getattr(self, "seen", 0) + 1
        if not self.open_orders() and self.position("IF2101").net == 0:
            self.buy("IF2101", tick.bid_price1, 1)
        if self.seen == 100:
            raise RuntimeError("lost the model")

    def on_stop(self) -> None:
        raise RuntimeError("cannot save the model")


def test_a_strategy_whose_constructor_raises_is_stopped_and_the_others_trade(
    ticks: list[tuple[int, Tick]],
) -> None:
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal, [("wont", WontStart, {}), DEFAULT_AGENTS[0]])
    with structlog.testing.capture_logs() as logs:
        engine.open_day(DAY, ticks[0][1].local_time_ns)
    started_stopped = [(type(x).__name__, x.agent) for x in journal
                       if isinstance(x, (m.AgentStarted, m.AgentStopped))]  # fmt: skip
    # stopped as it starts, before the next agent starts
    assert started_stopped == [("AgentStarted", "wont"), ("AgentStopped", "wont"),
                               ("AgentStarted", "mm")]  # fmt: skip
    (stopped,) = [x for x in journal if isinstance(x, m.AgentStopped)]
    assert "KeyError: 'no such parameter file: model.bin'" in stopped.error
    assert [x["event"] for x in logs if x.get("agent") == "wont"] == ["agent_create_failed"]
    assert not engine.agents["wont"].running and engine.agents["wont"].strategy is None
    run(engine, ticks[:2000])
    orders = {x.agent for x in journal if isinstance(x, m.OrderRequested)}
    assert orders == {"mm"}


def test_a_strategy_whose_on_stop_raises_is_stopped_all_the_same(
    ticks: list[tuple[int, Tick]],
) -> None:
    journal: list[m.EngineMessage] = []
    engine = make_engine(journal, [("bad", BadStop, {}), DEFAULT_AGENTS[0]])
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    with structlog.testing.capture_logs() as logs:
        run(engine, ticks[:2000])
    (stopped,) = [x for x in journal if isinstance(x, m.AgentStopped)]
    assert stopped.agent == "bad" and "RuntimeError: lost the model" in stopped.error
    events = [x["event"] for x in logs if x.get("agent") == "bad"]
    assert events == ["agent_failed", "agent_on_stop_failed"]
    after = journal[journal.index(stopped) :]
    assert [x for x in after if isinstance(x, m.OrderRequested) and x.agent == "mm"]
    assert not [x for x in after if isinstance(x, m.OrderRequested) and x.agent == "bad"]
    # the engine's own stop calls on_stop of the agents still running, and never raises
    engine2 = make_engine([], [("bad", BadStop, {}), DEFAULT_AGENTS[0]])
    engine2.open_day(DAY, ticks[0][1].local_time_ns)
    run(engine2, ticks[:50])
    with structlog.testing.capture_logs() as logs:
        engine2.stop()
    assert not any(h.running for h in engine2.agents.values())
    assert [x["event"] for x in logs if x.get("agent") == "bad"] == ["agent_on_stop_failed"]
