"""Commands from the monitor to a real ``hft engine``: an admin's halt reaches the engine, comes
back as the engine's acknowledgement and as the account's new risk state, and the engine journals
it with who asked; a viewer's command is refused by the monitor and never reaches the engine."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from contracts import messages as m
from services.engine.journals import read_journal
from tests.helpers import ROOT, import_market
from tests.services.engine.test_command_socket import running_engine
from tests.services.monitor.harness import ADMIN, VIEWER_A, subscribe

pytestmark = pytest.mark.timeout(300)
DAY = 20210104


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


def start_monitor(root: Path, journal_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``hft monitor`` watching the engine whose ``suite.journal_dir`` is ``journal_dir`` as the
    account "paper"; an admin ("ops") and a viewer ("desk-a") of it."""
    creds = root / "monitor-credentials.toml"
    creds.write_text(
        f'[[monitor_tokens]]\nname = "desk-a"\ntoken = "{VIEWER_A}"\nrole = "viewer"\n'
        f'accounts = ["paper"]\n\n[[monitor_tokens]]\nname = "ops"\ntoken = "{ADMIN}"\n'
        'role = "admin"\n'
    )
    creds.chmod(0o600)
    config = root / "monitor.toml"
    config.write_text(
        f'[suite]\nname = "m"\nmode = "paper"\njournal_dir = "{root / "monitor"}"\n'
        f'shm_dir = "{root / "mshm"}"\ncredentials_file = "{creds}"\n\n'
        '[md_recorder]\nsource = "sim"\ninstruments = ["IF2101"]\n[md_recorder.sim]\n\n'
        '[engine]\nadapter = "paper"\n\n[monitor]\nport = 0\n'
        'zmq_pub = "tcp://127.0.0.1:0"\nzmq_snapshot = "tcp://127.0.0.1:0"\n'
        f'[[monitor.accounts]]\nname = "paper"\njournal_dir = "{journal_dir}"\n'
    )
    endpoint = root / "monitor" / "monitor" / "endpoint"
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    with (root / "monitor.log").open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "monitor", "--config", str(config)],
            stdout=out, stderr=out, cwd=ROOT, env=env,
        )  # fmt: skip
    deadline = time.monotonic() + 30
    while not endpoint.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    return proc, endpoint.read_text().strip()


def wait_for(ws: Any, found: Any) -> dict[str, Any]:
    """The first message for which ``found(message)`` holds."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=30))
        if found(message):
            return message  # type: ignore[no-any-return]
    raise AssertionError("the message never came")


def test_an_admin_halts_the_account_and_a_viewer_cannot(tmp_path: Path, recording: Path) -> None:
    with running_engine(tmp_path, recording) as run:
        proc, url = start_monitor(tmp_path, tmp_path / "journal")
        try:
            viewer, _ = subscribe(url, VIEWER_A)
            viewer.send(json.dumps({"type": "command", "account": "paper", "action": "halt",
                                    "command_id": "v1"}))  # fmt: skip
            refused = wait_for(viewer, lambda x: x["type"] == "error")
            assert refused["text"] == "a viewer token cannot send commands"
            viewer.close()
            admin, _ = subscribe(url, ADMIN)
            health = wait_for(admin, lambda x: x["type"] == "health")
            assert health["engines"]["paper"]["state"] == "open"  # the engine heartbeats
            assert health["engines"]["paper"]["trading_day"] == DAY
            assert health["market"]["state"] == "absent"  # no md_recorder in this deployment
            figures = health["engines"]["paper"]["status"]  # the engine's own status file
            assert figures["service"] == "engine" and figures["ticks"] >= 40, figures
            assert figures["trading_day"] == DAY and figures["feed"] == "live"
            admin.send(json.dumps({"type": "command", "account": "paper", "action": "halt",
                                   "command_id": "h1"}))  # fmt: skip
            run.feed(5)
            got: dict[str, dict[str, Any]] = {}  # the reply and the risk delta, in either order
            deadline = time.monotonic() + 60
            while len(got) < 2:
                assert time.monotonic() < deadline, got
                message = json.loads(admin.recv(timeout=30))
                if message["type"] == "reply":
                    got["reply"] = message
                for delta in message["deltas"] if message["type"] == "deltas" else ():
                    if delta["topic"] == "risk":
                        got["delta"] = delta
            reply, halted = got["reply"], got["delta"]
            assert (reply["account"], reply["command_id"], reply["ok"]) == ("paper", "h1", True)
            assert halted["key"] == "account/" and halted["value"]["state"] == "halted"
            admin.send(json.dumps({"type": "command", "account": "nowhere", "action": "halt"}))
            assert wait_for(admin, lambda x: x["type"] == "error")["text"] == (
                "no account 'nowhere' for this token"
            )
            admin.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    commands = [
        x
        for x in journal
        if isinstance(x, m.Command) and not x.requester.startswith("engine: stopping")
    ]  # not its own at the stop
    assert [(type(x).__name__, x.requester, x.command_id) for x in commands] == [
        ("Halt", "monitor.ops", "h1")
    ]
    log = (tmp_path / "monitor.log").read_text()
    assert ADMIN not in log and VIEWER_A not in log
