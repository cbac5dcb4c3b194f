"""The engine's Prometheus metrics (``engine.metrics``; docs/OPERATIONS.md, "Metrics").

``Health`` builds an ``EngineFigures`` once a second on the engine's loop (counts of what this
process journaled, each agent's account, the risk states, the tick-to-order histogram) and hands
it over; :func:`families` turns it into metric families on prometheus_client's thread, reading
nothing of the engine itself."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import NamedTuple

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from contracts.metrics import labelled
from contracts.status import EngineStatus

__all__ = ["STATES", "AgentFigures", "EngineFigures", "families"]

STATES = {"active": 0, "reducing": 1, "halted": 2}


class AgentFigures(NamedTuple):
    day_pnl: float
    realised: float
    fees: float
    margin: float
    working: int
    positions: tuple[tuple[str, int, int], ...]  # instrument, long, short


class EngineFigures(NamedTuple):
    status: EngineStatus
    counts: Mapping[tuple[str, ...], int]  # ("orders", agent), ("refusals", agent, code), ...
    agents: Mapping[str, AgentFigures]
    states: tuple[tuple[str, str, str], ...]  # scope, target, state
    adapter_queue: int
    tick_to_order: tuple[list[tuple[str, float]], float]  # cumulative buckets, sum (seconds)


def _counter(figures: EngineFigures, kind: str, name: str, text: str, labels: list[str]
             ) -> CounterMetricFamily:  # fmt: skip
    rows = ((key[1:], n) for key, n in figures.counts.items() if key[0] == kind)
    return labelled(CounterMetricFamily(name, text, labels=labels), rows)  # type: ignore[no-any-return]


def families(figures: EngineFigures) -> Iterator[Metric]:
    s = figures.status
    yield GaugeMetricFamily("hft_engine_trading_day", "Trading day (YYYYMMDD)", value=s.trading_day)
    yield GaugeMetricFamily("hft_engine_ticks_today", "Ticks handled today", value=s.ticks)
    yield GaugeMetricFamily("hft_engine_orders_today", "Orders sent today (every agent)",
                            value=s.orders)  # fmt: skip
    yield GaugeMetricFamily("hft_engine_behind_ticks", "Ticks committed to the feed and not yet "
                            "handled (the engine's journal lag)", value=s.behind_ticks)  # fmt: skip
    yield GaugeMetricFamily("hft_engine_behind_seconds", "How far the newest committed tick is "
                            "ahead of the last handled", value=s.behind_s)  # fmt: skip
    yield GaugeMetricFamily("hft_engine_feed_up", "1 while the tick feed is live (0: lost or "
                            "ended)", value=1 if s.feed == "live" else 0)  # fmt: skip
    yield GaugeMetricFamily("hft_engine_adapter_queue", "Orders and cancels decided and not yet "
                            "handed to the adapter", value=figures.adapter_queue)  # fmt: skip
    yield _counter(figures, "orders", "hft_engine_orders", "Orders journaled by this process",
                   ["agent"])  # fmt: skip
    yield _counter(figures, "cancels", "hft_engine_cancels", "Cancels journaled by this process",
                   ["agent"])  # fmt: skip
    yield _counter(figures, "refusals", "hft_engine_refusals", "Orders the risk gate refused "
                   "(this process), by reason", ["agent", "reason"])  # fmt: skip
    yield _counter(figures, "rejections", "hft_engine_rejections", "Orders the exchange or "
                   "broker rejected (this process), by reason", ["agent", "reason"])  # fmt: skip
    yield _counter(figures, "fills", "hft_engine_fills", "Fills (this process)", ["agent"])
    yield _counter(figures, "lots", "hft_engine_filled_lots", "Lots filled (this process)",
                   ["agent"])  # fmt: skip
    agents = figures.agents.items()
    for name, field, text in (
        ("hft_engine_pnl", "day_pnl", "Today's PnL: realised plus unrealised minus fees (yuan)"),
        ("hft_engine_realised", "realised", "Today's realised PnL (yuan)"),
        ("hft_engine_fees", "fees", "Today's fees (yuan)"),
        ("hft_engine_margin", "margin", "Margin held (yuan)"),
        ("hft_engine_working_orders", "working", "Orders working at the exchange"),
    ):
        yield labelled(GaugeMetricFamily(name, text, labels=["agent"]),
                       (([a], getattr(f, field)) for a, f in agents))  # fmt: skip
    yield labelled(GaugeMetricFamily("hft_engine_position_lots", "Open lots by side",
                                     labels=["agent", "instrument", "side"]),
                   (row for a, f in agents for i, long, short in f.positions
                    for row in (([a, i, "long"], long), ([a, i, "short"], short))))  # fmt: skip
    yield labelled(
        GaugeMetricFamily(
            "hft_engine_risk_state",
            "Risk state of a scope (0 active, 1 reducing, 2 halted)",
            labels=["scope", "target"],
        ),
        (([scope, target], STATES[state]) for scope, target, state in figures.states),
    )
    buckets, total = figures.tick_to_order
    yield HistogramMetricFamily("hft_engine_tick_to_order_seconds", "From reading a tick to "
                                "handing the orders it caused to the adapter (this process)",
                                buckets=buckets, sum_value=total)  # fmt: skip
