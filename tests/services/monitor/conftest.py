"""Fixtures of the monitor tests (tests/services/monitor/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.calendar import load_calendar
from contracts.config import PaperConfig
from libshm import JournalReader, decode_tick
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine
from services.engine.products import specs_for
from services.engine.risk import RiskLimits
from strategies.follower import Follower
from strategies.quoter import Quoter
from tests.helpers import import_market
from tests.services.monitor.harness import DAY, RATES, RISK, Deployment


@pytest.fixture(scope="session")
def frames(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[bytes, int]]]:
    """Engine journal frames (bytes, time) of the real day for two accounts, as the engine
    writes them: A trades with a quoter and a follower, B with a follower alone."""
    recording = import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")
    reader = JournalReader(recording / str(DAY))
    ticks = [(f.seq, decode_tick(f.payload)) for f in iter(reader.read, None)]
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    out: dict[str, list[tuple[bytes, int]]] = {}
    for account in ("A", "B"):
        journal: list[tuple[bytes, int]] = []

        def keep(data: bytes, t: int, journal: list[tuple[bytes, int]] = journal) -> None:
            journal.append((bytes(data), t))

        engine = Engine(specs=specs, gate_config=RISK,
                        adapter=PaperBroker(specs, phases, PaperConfig()), phases=phases,
                        journal=keep)  # fmt: skip
        limits = RiskLimits.from_config(RISK)
        if account == "A":
            engine.add_agent("mm", Quoter, ["IF2101"], 1e6, limits,
                             {"spread_ticks": 1, "size": 1, "max_position": 3})  # fmt: skip
        engine.add_agent(f"trend-{account.lower()}", Follower, ["IF2101"], 1e6, limits,
                         {"fast": 10, "slow": 60, "size": 1})  # fmt: skip
        engine.open_day(DAY, ticks[0][1].local_time_ns)
        for i, (seq, tick) in enumerate(ticks):
            engine.on_tick(tick, seq)
            if i % 50 == 49:
                engine.on_timer(tick.local_time_ns + 1)
        out[account] = journal
    return out


@pytest.fixture
def deployment(
    tmp_path: Path, frames: dict[str, list[tuple[bytes, int]]], request: pytest.FixtureRequest
) -> Iterator[Deployment]:
    """The two accounts with their first 3,000 frames; ``client_queue`` from a ``queue`` mark
    (default: large enough that a test reading at its own pace is never coalesced)."""
    mark = request.node.get_closest_marker("queue")
    d = Deployment(tmp_path, frames, *(mark.args if mark else ()))
    for account in ("A", "B"):
        d.write(account, 3000)
    try:
        yield d
    finally:
        d.close()
