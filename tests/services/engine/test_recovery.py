"""Recovery with an adapter that is not deterministic (the CTP path): the journaled adapter events
are fed back, nothing journaled reaches the exchange again, and the day goes on as if no crash
had happened. The deterministic path (the paper simulator fed again) is in test_core."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from contracts import messages as m
from contracts.calendar import load_calendar
from contracts.config import PaperConfig
from libshm import Tick
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine
from services.engine.products import specs_for
from services.engine.risk import RiskLimits
from tests.services.engine.remote import Remote, settle, step
from tests.services.engine.test_core import DAY, DEFAULT_AGENTS, RATES, RISK, state

SPECS, PHASES = specs_for(["IF2101"], load_calendar(), RATES)


def engine_on(remote: Remote, journal: list[m.EngineMessage]) -> Engine:
    engine = Engine(specs=SPECS, gate_config=RISK, adapter=remote, phases=PHASES,
                    journal=lambda data, _t: journal.append(m.decode(data)))  # fmt: skip
    for name, cls, params in DEFAULT_AGENTS:
        engine.add_agent(name, cls, ["IF2101"], 1_000_000.0, RiskLimits.from_config(RISK), params)
    return engine


def new_venue() -> PaperBroker:
    venue = PaperBroker(SPECS, PHASES, PaperConfig.instant())
    venue.open_day(DAY, [], 2_000_000.0)
    return venue


def drive(engine: Engine, remote: Remote, day: list[tuple[int, Tick]]) -> None:
    for i, (seq, tick) in enumerate(day):
        if seq < engine.ticks:
            continue
        step(engine, remote, tick, seq)
        if i % 50 == 49:
            engine.on_timer(tick.local_time_ns + 1)
            settle(engine, remote, tick.local_time_ns + 1)


@pytest.mark.parametrize("seed", range(4))
def test_recovery_feeds_the_journaled_events_back_and_sends_nothing_again(
    ticks: list[tuple[int, Tick]], seed: int
) -> None:
    day = ticks[:4000]
    full: list[m.EngineMessage] = []
    remote = Remote(new_venue())
    engine = engine_on(remote, full)
    engine.open_day(DAY, day[0][1].local_time_ns)
    drive(engine, remote, day)
    assert not engine.adapter.deterministic
    kinds = {type(x) for x in full}
    assert {m.OrderAccepted, m.Trade, m.OrderCancelled, m.CancelRequested} <= kinds
    expected = state(engine)

    # the engine dies after tick `cut` (the venue, an exchange, lives on); a new one recovers
    cut = random.Random(seed).randrange(100, len(day) - 100)
    journal: list[m.EngineMessage] = []
    remote = Remote(new_venue())
    first = engine_on(remote, journal)
    first.open_day(DAY, day[0][1].local_time_ns)
    drive(first, remote, day[: cut + 1])
    sent_before = list(remote.requests)
    assert sent_before and any(isinstance(x, m.Trade) for x in journal)

    again_remote = Remote(remote.venue, remote.market)
    again = engine_on(again_remote, journal)
    source: Iterator[tuple[int, Tick]] = iter(day)
    replayed = again.recover(list(journal), lambda: next(source))
    assert replayed == len(journal)
    # not one order or cancel of the journal went to the exchange again
    assert again_remote.requests == [] and again.data_to_send() == [] and again.sent == 0
    # it stands at its last journaled message: the ticks after it changed nothing but marks,
    # and reading them again brings it to where the first engine died
    assert again.ticks <= first.ticks
    drive(again, again_remote, day[: cut + 1])
    assert state(again) == state(first) and again_remote.requests == []
    drive(again, again_remote, day)
    assert journal == full  # the day as if nothing had happened
    assert state(again) == expected
    assert sent_before + again_remote.requests == requests_of(full)


def requests_of(journal: list[m.EngineMessage]) -> list[tuple[str, str]]:
    """What the engine sent to the exchange, by its journal: each order and each cancel once."""
    return [
        ("submit", x.order_id) if isinstance(x, m.OrderRequested) else ("cancel", x.order_id)
        for x in journal
        if isinstance(x, (m.OrderRequested, m.CancelRequested))
    ]
