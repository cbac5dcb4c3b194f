"""Helpers shared by the tests: running ``hft`` as a real process, writing configs."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from contracts.ctp_locale import has_locale
from libshm import TICK_LAYOUT, JournalWriter

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
MARKET = ROOT / "data" / "market"


def run_hft(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``hft`` command in a child process, the way a user does."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
        check=False,
    )


def require_ctp_locale() -> None:
    """Skip a test (or, at module level, a module) that imports openctp-ctp where the
    zh_CN.GB18030 locale is missing (the import would abort the process); fail under CI, whose
    ``.ci/run`` installs it."""
    if has_locale():
        return
    if os.environ.get("CI"):
        pytest.fail("no zh_CN.GB18030 locale under CI: .ci/run should have made it", False)
    pytest.skip("no zh_CN.GB18030 locale (.ci/run installs it)", allow_module_level=True)


def import_market(out: Path, *names: str) -> Path:
    """``hft import`` of bundled CTP CSV files (``data/market``) into ``out``, one journal per
    trading day, as a user runs it."""
    files = [str(MARKET / name) for name in names]
    done = run_hft("import", "-f", "ctp-csv", *files, "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out


PAPER_CONFIG = """\
[suite]
name = "t"
mode = "paper"
journal_dir = "journal"
shm_dir = "shm"

[md_recorder]
source = "sim"
instruments = ["IF2101"]

[md_recorder.sim]
seed = 1

[engine]
adapter = "paper"
command_endpoint = "tcp://127.0.0.1:0"

[monitor]
port = 0
zmq_pub = "tcp://127.0.0.1:0"
zmq_snapshot = "tcp://127.0.0.1:0"
"""


def write_config(directory: Path, text: str = PAPER_CONFIG, name: str = "deploy.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def live_tick_journal(path: Path) -> Iterator[JournalWriter]:
    """A tick journal written by this process as md_recorder writes one: heartbeats every 0.2 s
    from a thread while the test appends ticks, so an engine reading it sees a live feed."""
    with JournalWriter(path, layout=TICK_LAYOUT) as writer:
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(0.2):
                writer.heartbeat()

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()
        try:
            yield writer
        finally:
            stop.set()
            thread.join()


def in_small_tmpfs(
    mount: Path, size: str, *commands: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run shell ``commands`` in a private mount namespace where ``mount`` is a fresh tmpfs of
    ``size`` (a real full disk, for this process tree only); ``mount`` must exist."""
    script = " && ".join([f"mount -t tmpfs -o size={size} none {mount}", *commands])
    return subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=ROOT,
        check=False, timeout=timeout,
    )  # fmt: skip


def log_lines(log: Path) -> list[dict[str, Any]]:
    """The JSON lines a service has written to ``log`` so far; a line it is still writing (no
    newline yet) is left for the next read."""
    complete = log.read_text(encoding="utf-8").split("\n")[:-1]
    return [json.loads(line) for line in complete if line.startswith("{")]


def logged(event: str) -> Callable[[list[dict[str, Any]]], bool]:
    """``until`` for :func:`run_hft_until`: the service has logged ``event``."""
    return lambda lines: any(line.get("event") == event for line in lines)


def run_hft_until(
    *args: str, until: Callable[[list[dict[str, Any]]], bool],
    env: Mapping[str, str] | None = None, timeout: float = 60,
) -> tuple[int, str]:  # fmt: skip
    """Run ``hft ARGS`` until its log lines satisfy ``until`` (waited for, never guessed), stop
    it with SIGTERM; its exit code and everything it printed. Fails if it exits first or takes
    longer than ``timeout`` s."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    full_env.update(env or {})
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "out.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", *args], stdout=out, stderr=out,
                cwd=ROOT, env=full_env,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + timeout
            while not until(log_lines(log)):
                assert proc.poll() is None, log.read_text()[-3000:]
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return proc.returncode, log.read_text()


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed again): a CTP front
    there never answers, and the library retries silently."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@contextlib.contextmanager
def dropping_server() -> Iterator[tuple[int, list[int]]]:
    """A TCP server on 127.0.0.1 that accepts every connection and closes it at once (a CTP
    API then reports ``OnFrontDisconnected``); yields its port and the count of connections
    taken so far."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    server.settimeout(0.2)
    taken = [0]
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            taken[0] += 1
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], taken
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()
