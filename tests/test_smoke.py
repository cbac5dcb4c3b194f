"""The paper-trading smoke test: the three real services from one deployment file under
``hft up``, on the bundled day replayed at 10x, with an agent that trades. Orders and trades
reach the engine journal and a WebSocket client sees the positions. SIGKILL the engine: the
one started again recovers the same day, and no order is sent twice. SIGKILL md_recorder: its
recording is intact after the restart, the replay goes on where it stopped, and the engine
keeps trading. SIGKILL the monitor: the client reconnects to the new one and resumes with no gap
and no duplicate. Ctrl-C stops all three with exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from contracts import messages as m
from contracts.status import EngineStatus, RecorderStatus, read_status, status_path
from libshm.process import pid_alive
from services.engine.journals import read_journal
from tests.helpers import run_hft
from tests.services.monitor.harness import ADMIN, Mirror, subscribe
from tests.services.tools.test_up import recording, replay_config, start_up

__all__ = ["recording"]
pytestmark = pytest.mark.timeout(300)
DAY = 20210104


class Suite:
    def __init__(self, tmp_path: Path, recording: Path) -> None:
        self.config = replay_config(tmp_path, recording)
        self.journal = tmp_path / "journal"
        self.log = tmp_path / "up.log"
        self.proc = start_up(self.config, self.log)

    def until(self, what: str, check: Callable[[], Any], timeout_s: float = 90) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (found := check()):
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, f"no {what}: {self.log.read_text()[-3000:]}"
            time.sleep(0.05)
        return found

    def engine(self) -> EngineStatus | None:
        s = read_status(status_path(self.journal, "engine"))
        return s if isinstance(s, EngineStatus) else None

    def recorder(self) -> RecorderStatus | None:
        s = read_status(status_path(self.journal, "md_recorder"))
        return s if isinstance(s, RecorderStatus) else None

    def url(self) -> str:
        return (self.journal / "monitor" / "endpoint").read_text().strip()

    def orders(self) -> list[m.OrderRequested]:
        day = read_journal(self.journal / "engine" / str(DAY))
        return [x for x in day if isinstance(x, m.OrderRequested)]


def drain(ws: Any, mirror: Mirror) -> None:
    """What the monitor has sent so far, for at most a second: on a slow machine the deltas can
    come faster than they are read here, and a drain until quiet then never ends."""
    until = time.monotonic() + 1.0
    while (left := until - time.monotonic()) > 0:
        try:
            mirror.take(json.loads(ws.recv(timeout=min(left, 0.2))))
        except TimeoutError:
            break


def test_three_services_trade_survive_a_kill_of_each_and_stop_on_ctrl_c(
    tmp_path: Path, recording: Path
) -> None:
    suite = Suite(tmp_path, recording)
    try:
        suite.until("monitor endpoint", (suite.journal / "monitor" / "endpoint").exists)
        ws, _ = subscribe(suite.url(), ADMIN)
        mirror = Mirror()

        def positions() -> dict[str, Any]:
            drain(ws, mirror)
            topics = mirror.accounts.get("replay", {}).get("topics", {})
            return topics.get("positions", {})  # type: ignore[no-any-return]

        held = suite.until("a position seen over WebSocket", positions)
        assert all(p["instrument"] == "IF2101" for p in held.values())
        assert suite.orders() and any(isinstance(x, m.Trade) for x in read_journal(
            suite.journal / "engine" / str(DAY)))  # fmt: skip

        # -- the engine, killed: started again, it recovers the day and sends nothing twice
        before = suite.until("a trading engine", lambda: (e := suite.engine()) and e.orders and e)
        os.kill(before.pid, signal.SIGKILL)
        after = suite.until("the engine started again",
                            lambda: (e := suite.engine()) and e.pid != before.pid
                            and e.ticks > before.ticks and e)  # fmt: skip
        assert after.orders >= before.orders and not pid_alive(before.pid)
        ids = [o.order_id for o in suite.orders()]
        assert len(ids) == len(set(ids)), "an order was sent twice"

        # -- md_recorder, killed: its recording is intact, the replay and the engine go on
        md = suite.until("md_recorder's figures", suite.recorder)
        os.kill(md.pid, signal.SIGKILL)
        md2 = suite.until("md_recorder started again",
                          lambda: (r := suite.recorder()) and r.pid != md.pid and r)  # fmt: skip
        assert not pid_alive(md.pid) and pid_alive(md2.pid)
        engine_ticks = suite.engine().ticks  # type: ignore[union-attr]
        suite.until("the engine trading on",
                    lambda: (e := suite.engine()) and e.ticks > engine_ticks + 50)  # fmt: skip
        ring = suite.journal.parent / "shm" / "ticks" / str(DAY)  # the live ring, being written
        verify = run_hft("journal", "verify", str(ring))
        assert verify.returncode == 0, verify.stdout + verify.stderr

        # -- the monitor, killed: the client reconnects to the new one and resumes
        positions()
        seq = mirror.accounts["replay"]["seq"]
        old_url = suite.url()
        found = subprocess.check_output(["pgrep", "-f", f"monitor --config {suite.config}"])
        (monitor_pid,) = [int(p) for p in found.split()]
        os.kill(monitor_pid, signal.SIGKILL)
        with pytest.raises(ConnectionClosed):
            while True:
                mirror.take(json.loads(ws.recv(timeout=30)))
        suite.until("a new monitor", lambda: suite.url() != old_url or None)
        since = {"replay": [DAY, mirror.accounts["replay"]["seq"]]}
        ws, _ = subscribe(suite.until("its endpoint", suite.url), ADMIN, since=since)
        suite.until(
            "deltas after the resume",  # Mirror checks each: no gap, no duplicate
            lambda: positions() is not None and mirror.accounts["replay"]["seq"] > seq + 5,
        )
        ws.close()
    finally:
        suite.proc.send_signal(signal.SIGINT)
        code = suite.proc.wait(timeout=90)
    assert code == 0, suite.log.read_text()[-3000:]
    for name in ("engine_stopped", "monitor_stopped", "md_recorder_stopped"):
        assert name in suite.log.read_text(), name
