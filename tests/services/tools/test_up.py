"""``hft up`` on a replay deployment: supervisor starts md_recorder, the engine and the monitor
with their lines prefixed by name, starts the engine again after a SIGKILL, and Ctrl-C (SIGINT)
stops all three cleanly with exit 0; a deployment whose monitor has no token is refused in one
line before anything starts; and the demo's deployment shows trades in a real browser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from contracts.status import EngineStatus, read_status, status_path
from libshm.process import pid_alive
from tests.helpers import ROOT, import_market, run_hft
from tests.services.monitor.harness import ADMIN
from tests.services.monitor.test_dashboard import browser, shot, sign_in

__all__ = ["browser"]  # the fixture, shared with the dashboard's tests

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


def replay_config(tmp_path: Path, recording: Path) -> Path:
    config = tmp_path / "deploy.toml"
    config.write_text(
        (ROOT / "configs" / "replay.toml").read_text()
        .replace('"../var/replay/journal"', f'"{tmp_path / "journal"}"')
        .replace('"/dev/shm/hft-replay"', f'"{tmp_path / "shm"}"')
        .replace('"../var/recordings/20210104"', f'"{recording / "20210104"}"')
        .replace("tcp://127.0.0.1:5561", "tcp://127.0.0.1:0")
        .replace("port = 8766", "port = 0")
        .replace('"127.0.0.1:9105"', '""').replace('"127.0.0.1:9106"', '""')
        .replace("tcp://127.0.0.1:5580", "tcp://127.0.0.1:0")
        .replace("tcp://127.0.0.1:5579", "tcp://127.0.0.1:0")
    )  # fmt: skip
    return config


def start_up(config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``hft up --config CONFIG`` with the admin token in its environment, its output in
    ``log``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    env["HFT_MONITOR_ADMIN_TOKEN"] = ADMIN
    with log.open("wb") as out:
        argv = [sys.executable, "-m", "services.cli", "up", "--config", str(config)]
        return subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=out, env=env)


def until(what: str, check: Callable[[], object], proc: subprocess.Popen[bytes], log: Path
          ) -> object:  # fmt: skip
    deadline = time.monotonic() + 60
    while not (found := check()):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {what}: {log.read_text()[-3000:]}"
        time.sleep(0.05)
    return found


def test_up_starts_all_three_restarts_a_killed_engine_and_stops_all_on_ctrl_c(
    tmp_path: Path, recording: Path
) -> None:
    config = replay_config(tmp_path, recording)
    log = tmp_path / "up.log"
    proc = start_up(config, log)
    try:
        journal = tmp_path / "journal"
        until("monitor endpoint", (journal / "monitor" / "endpoint").exists, proc, log)

        def engine_pid() -> int:
            status = read_status(status_path(journal, "engine"))
            return status.pid if isinstance(status, EngineStatus) and status.ticks else 0

        first = int(until("a trading engine", engine_pid, proc, log))  # type: ignore[call-overload]
        os.kill(first, signal.SIGKILL)
        second = int(until("a new engine", lambda: (p := engine_pid()) != first and p, proc, log))  # type: ignore[call-overload]
        assert pid_alive(second) and not pid_alive(first)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    text = log.read_text()
    assert code == 0, text[-3000:]
    lines = text.splitlines()
    for name in ("md-recorder", "engine", "monitor"):  # each service's lines, by name
        assert any(line.startswith(f"{name:<12}| ") for line in lines), name
    # (the restart is proven by the pids above: supervisor may drop what a killed process left
    # unread in its pipe, so its lines are not counted)
    assert any("engine_stopped" in line for line in lines)
    assert any("monitor_stopped" in line for line in lines)
    assert not pid_alive(second)


def test_a_monitor_without_a_token_is_refused_before_anything_starts(
    tmp_path: Path, recording: Path
) -> None:
    done = run_hft("up", "--config", str(replay_config(tmp_path, recording)))
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hft up: error: hft up: the monitor has no token, so it would not start; export "
        "HFT_MONITOR_ADMIN_TOKEN (and HFT_MONITOR_TOKEN for viewers) or add [[monitor_tokens]] "
        "to the credentials file named by suite.credentials_file"
    ]
    assert not (tmp_path / "journal" / "up").exists()


def test_the_demo_under_hft_up_shows_trades_on_the_dashboard_within_a_minute(
    tmp_path: Path, recording: Path, browser: Any
) -> None:
    """What ``make demo`` runs (``hft up`` on configs/replay.toml: the bundled day at 10x, the
    example agent on the paper simulator, the monitor), in a temporary directory: a real
    Chromium signs in with the admin token and sees the agent's trades within 60 s."""
    config = replay_config(tmp_path, recording)
    log = tmp_path / "up.log"
    proc = start_up(config, log)
    try:
        endpoint = tmp_path / "journal" / "monitor" / "endpoint"
        until("monitor endpoint", endpoint.exists, proc, log)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.goto(endpoint.read_text().strip().replace("ws://", "http://") + "/")
        sign_in(page, ADMIN)
        page.wait_for_selector("#mode.replay")
        page.wait_for_selector("#trades tbody tr", timeout=60_000)
        assert "IF2101" in (page.text_content("#trades tbody tr") or "")
        shot(page, "6-demo-trades")
        page.close()
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-3000:]


def test_a_relay_section_adds_the_relay_server_and_needs_its_key(
    tmp_path: Path, recording: Path
) -> None:
    from services.tools.up import supervisor_config

    text = supervisor_config(
        tmp_path / "deploy.toml",
        tmp_path,
        hft=Path("/x/hft"),
        level="info",
        color=False,
        programs=("md-recorder", "engine", "monitor", "relay"),
    )
    assert f"command=/x/hft relay serve --config {tmp_path / 'deploy.toml'} --log-level info" \
        in text.splitlines()  # fmt: skip
    config = replay_config(tmp_path, recording)
    config.write_text(config.read_text() + '\n[relay]\nclients = ["' + "k" * 40 + '"]\n')
    done = run_hft("up", "--config", str(config), env={"HFT_MONITOR_ADMIN_TOKEN": ADMIN})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hft up: error: secret 'relay_secret_key' is not set; export HFT_RELAY_SECRET_KEY=... or "
        'put relay_secret_key = "..." in the credentials file named by suite.credentials_file'
    ]
    assert not (tmp_path / "journal" / "up").exists()  # nothing started
