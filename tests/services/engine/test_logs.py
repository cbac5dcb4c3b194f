"""What the operator reads in a real ``hft engine``'s log: every order and fill at info, the risk
gate's refusals once per agent and then summed (none lost), and nothing of the day's earlier
events again after a crash and recovery."""

from __future__ import annotations

import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from contracts import messages as m
from services.engine.journals import read_journal
from tests.helpers import import_market
from tests.services.engine.test_feed import events, spawn, status, wait_for
from tests.services.engine.test_live import DAY, TICKS_IN_DAY, deployment, frames

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


def test_orders_fills_and_refusals_are_logged_once_each_and_recovery_repeats_none(
    tmp_path: Path, recording: Path
) -> None:
    config = deployment(tmp_path, recording)
    # one lot of position at most: the quoter is refused MAX_POSITION over and over
    config.write_text(config.read_text().replace("max_position = 5", "max_position = 1"))
    journal_path = tmp_path / "journal" / "engine" / str(DAY)
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"

    proc = spawn("engine", "--config", str(config), "--log-level", "info", log=first_log)
    deadline = time.monotonic() + 60
    while frames(journal_path) < 3000 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = read_journal(journal_path)
    assert len(before) >= 3000 and not isinstance(before[-1], m.DayClosed)

    proc = spawn("engine", "--config", str(config), "--log-level", "info", log=second_log)
    try:
        wait_for("the end of the day",
                 lambda: (second_log.exists() and "engine_started" in second_log.read_text()
                          and status(config).get("ticks") == TICKS_IN_DAY),
                 proc, second_log, 120.0)  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    journal = read_journal(journal_path)
    assert journal[: len(before)] == before
    new = journal[len(before) :]  # what the second run journaled

    # every order and fill the second run journaled is logged once, and nothing earlier
    orders = [e["order_id"] for e in events(second_log, "order")]
    assert orders == [x.order_id for x in new if isinstance(x, m.OrderRequested)]
    assert orders, "no order after the restart"
    fills = [(e["order_id"], e["trade_id"]) for e in events(second_log, "fill")]
    assert fills == [(x.order_id, x.trade_id) for x in new if isinstance(x, m.Trade)]
    first = {e["order_id"] for e in events(first_log, "order")}
    assert first.isdisjoint(orders)
    logged_changes = events(second_log, "state_changed")
    assert len(logged_changes) == len([x for x in new if isinstance(x, m.StateChanged)])

    # refusals: a line for the first of each agent's windows, the rest summed, none lost
    refused = Counter(x.agent for x in new if isinstance(x, m.RiskRefused))
    assert refused["mm"] > 100
    lines = Counter(e["agent"] for e in events(second_log, "order_refused"))
    summed: Counter[str] = Counter()
    for e in events(second_log, "orders_refused"):
        summed[e["agent"]] += e["count"]
        assert e["text"].startswith(f"{e['count']} more orders of {e['agent']} refused")
    assert lines + summed == refused
    assert lines["mm"] <= 20  # one per 10 s window: a day replayed in well under 200 s
