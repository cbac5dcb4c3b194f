"""An agent whose callback never returns, in a real ``hft engine``: the watchdog logs it with the
agent's name, SIGTERM stops that agent (journaled) and the engine exits 0, and a restart's
recovery stops the agent at the same place instead of blocking there again."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from contracts import messages as m
from services.engine.core import INTERRUPTED
from services.engine.journals import read_journal
from tests.helpers import import_market
from tests.services.engine.test_feed import events, spawn, wait_for
from tests.services.engine.test_live import DAY, deployment, run_to_end_of_day

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


@pytest.mark.parametrize("spin", [False, True], ids=["sleeps", "calls-the-engine"])
def test_sigterm_stops_a_blocked_agent_and_recovery_does_not_block_again(
    tmp_path: Path, recording: Path, spin: bool
) -> None:
    config = deployment(tmp_path, recording)
    config.write_text(
        config.read_text()
        + f"""
[[engine.agents]]
name = "stuck"
strategy = "tests.services.engine.agents:Blocks"
instruments = ["IF2101"]
capital = 1000000.0
params = {{ at = 300, spin = {str(spin).lower()} }}
"""
    )
    log = tmp_path / "first.log"
    proc = spawn("engine", "--config", str(config), "--log-level", "info", log=log)
    try:
        blocked = wait_for("agent_blocked", lambda: events(log, "agent_blocked"), proc, log)
        assert blocked[0]["agent"] == "stuck" and blocked[0]["callback"] == "on_tick"
        assert "SIGTERM stops that agent" in blocked[0]["text"]
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()
    path = tmp_path / "journal" / "engine" / str(DAY)
    first = read_journal(path)
    stopped = [x for x in first if isinstance(x, m.AgentStopped)]
    assert [x.agent for x in stopped] == ["stuck"]
    assert stopped[0].error.startswith(f"{INTERRUPTED}stuck.on_tick had run ")
    assert stopped[0].error.endswith("when the engine was asked to stop")
    assert any(isinstance(x, m.OrderRequested) and x.agent == "stuck" for x in first)

    # the restart replays the day: the agent blocks at the same tick and is stopped there again
    run_to_end_of_day(config, tmp_path / "second.log")
    journal = read_journal(path)
    assert journal[: len(first)] == first
    assert [x for x in journal if isinstance(x, m.AgentStopped)] == stopped
    after = journal[len(first) :]
    assert any(isinstance(x, m.OrderRequested) and x.agent == "mm" for x in after)
    assert not any(isinstance(x, m.OrderRequested) and x.agent == "stuck" for x in after)
