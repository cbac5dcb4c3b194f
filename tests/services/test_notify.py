"""Each real service under a fake systemd: a Unix datagram socket the test binds, named by
``NOTIFY_SOCKET``, with ``WATCHDOG_USEC`` set. Each sends READY=1 only once it is ready (its
snapshot table, journal or endpoint exists), WATCHDOG=1 at half the interval from its main loop,
and STOPPING=1 on SIGTERM; the engine's pings stop while an agent holds its main loop."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.helpers import ROOT, import_market, log_lines
from tests.services.engine.test_live import DAY, deployment
from tests.services.md_recorder.test_sim import sim_config
from tests.services.monitor.harness import ADMIN

pytestmark = pytest.mark.timeout(180)
WATCHDOG_USEC = 400_000  # pings every 200 ms


@dataclass
class FakeSystemd:
    """Collects what a service sends, each message with its arrival time and what ``probe``
    found at that moment (is the service's ready-made file there?)."""

    probe: Callable[[], bool]
    got: list[tuple[float, str, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="hft-n-", dir="/tmp")  # AF_UNIX paths are short
        self.path = os.path.join(self.dir, "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._collect, daemon=True)
        self.thread.start()

    def _collect(self) -> None:
        while not self.done.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            for line in data.decode().splitlines():
                self.got.append((time.monotonic(), line, self.probe()))

    def lines(self, prefix: str) -> list[tuple[float, str, bool]]:
        return [g for g in list(self.got) if g[1].startswith(prefix)]

    def wait(
        self, prefix: str, proc: subprocess.Popen[bytes], log: Path
    ) -> tuple[float, str, bool]:
        deadline = time.monotonic() + 60
        while not (found := self.lines(prefix)):
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, (prefix, self.got, log.read_text()[-2000:])
            time.sleep(0.02)
        return found[0]

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        self.sock.close()
        os.unlink(self.path)
        os.rmdir(self.dir)


@pytest.fixture
def systemd_with(
    request: pytest.FixtureRequest,
) -> Iterator[Callable[[Callable[[], bool]], FakeSystemd]]:
    made: list[FakeSystemd] = []

    def make(probe: Callable[[], bool]) -> FakeSystemd:
        made.append(FakeSystemd(probe))
        return made[-1]

    yield make
    for fake in made:
        fake.close()


def start(args: list[str], fake: FakeSystemd, log: Path, **env: str) -> subprocess.Popen[bytes]:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("HFT_", "NOTIFY_", "WATCHDOG_"))
    }
    base |= {"NOTIFY_SOCKET": fake.path, "WATCHDOG_USEC": str(WATCHDOG_USEC), **env}
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.cli", *args], cwd=ROOT,
                                stdout=out, stderr=out, env=base)  # fmt: skip


def pings_then_stops_on_sigterm(
    fake: FakeSystemd, proc: subprocess.Popen[bytes], log: Path
) -> None:
    ready = fake.wait("READY=1", proc, log)
    assert ready[2], "READY=1 came before the service was ready"
    assert [g[1] for g in fake.got].count("READY=1") == 1
    assert fake.lines("STATUS=") and fake.lines("MAINPID=")[0][1] == f"MAINPID={proc.pid}"
    deadline = time.monotonic() + 30
    while len(pings := [t for t, line, _ in fake.got if line == "WATCHDOG=1"]) < 6:
        assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
        time.sleep(0.05)
    gaps = [b - a for a, b in itertools.pairwise(pings)]
    assert max(gaps) < 0.6 and min(gaps) > 0.1, gaps  # about every 200 ms
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0, log.read_text()[-2000:]
    assert fake.lines("STOPPING=1")


def test_md_recorder_is_ready_once_its_table_is_open_and_pings_from_its_loop(
    tmp_path: Path, systemd_with: Callable[[Callable[[], bool]], FakeSystemd]
) -> None:
    config = sim_config(tmp_path, "10.0")
    fake = systemd_with((tmp_path / "shm" / "snapshot").exists)
    log = tmp_path / "md.log"
    pings_then_stops_on_sigterm(
        fake, start(["md-recorder", "--config", str(config)], fake, log), log
    )


def test_the_monitor_is_ready_once_it_listens_and_pings_from_its_loop(
    tmp_path: Path, systemd_with: Callable[[Callable[[], bool]], FakeSystemd]
) -> None:
    config = sim_config(tmp_path, "10.0")
    config.write_text(config.read_text().replace("port = 8765", "port = 0")
                      .replace("tcp://127.0.0.1:5570", "tcp://127.0.0.1:0")
                      .replace("tcp://127.0.0.1:5569", "tcp://127.0.0.1:0"))  # fmt: skip
    endpoint = tmp_path / "journal" / "monitor" / "endpoint"
    fake = systemd_with(endpoint.exists)
    log = tmp_path / "monitor.log"
    proc = start(["monitor", "--config", str(config)], fake, log, HFT_MONITOR_ADMIN_TOKEN=ADMIN)
    pings_then_stops_on_sigterm(fake, proc, log)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


def test_the_engine_is_ready_with_its_journal_open_and_its_pings_stop_while_its_loop_is_held(
    tmp_path: Path, recording: Path, systemd_with: Callable[[Callable[[], bool]], FakeSystemd]
) -> None:
    config = deployment(tmp_path, recording)
    config.write_text(
        config.read_text()
        + """
[[engine.agents]]
name = "stuck"
strategy = "tests.services.engine.agents:Blocks"
instruments = ["IF2101"]
capital = 1000000.0
params = { at = 3000 }
"""
    )
    journal = tmp_path / "journal" / "engine" / str(DAY)
    fake = systemd_with(lambda: journal.is_dir() and any(journal.iterdir()))
    log = tmp_path / "engine.log"
    proc = start(["engine", "--config", str(config), "--log-level", "info"], fake, log)
    try:
        ready = fake.wait("READY=1", proc, log)
        assert ready[2], "READY=1 came before the day's journal was open"
        fake.wait("WATCHDOG=1", proc, log)
        deadline = time.monotonic() + 60
        while not any(x["event"] == "agent_blocked" for x in log_lines(log)):
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-2000:]
            time.sleep(0.05)
        blocked_at = time.monotonic()  # the loop has been held for 1 s by now
        time.sleep(5 * WATCHDOG_USEC / 1e6)  # an absence: five intervals with no ping
        late = [t for t, line, _ in fake.got if line == "WATCHDOG=1" and t > blocked_at - 0.5]
        assert late == [], "the watchdog was pinged while the main loop was held"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 0, log.read_text()[-2000:]
    assert fake.lines("STOPPING=1")


def test_the_relay_is_ready_once_bound_and_its_mirror_once_the_server_answers(
    tmp_path: Path, systemd_with: Callable[[Callable[[], bool]], FakeSystemd]
) -> None:
    import zmq

    server_key, server_secret = (k.decode() for k in zmq.curve_keypair())
    mirror_key, mirror_secret = (k.decode() for k in zmq.curve_keypair())
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = sim_config(tmp_path, "10.0").read_text()
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    serve = a / "deploy.toml"
    serve.write_text(base.replace(str(tmp_path), str(a)) + f'\n[relay]\nbind = "tcp://127.0.0.1:'
                     f'{port}"\nclients = ["{mirror_key}"]\n')  # fmt: skip
    mirror = b / "deploy.toml"
    mirror.write_text(f"""
[suite]
name = "b"
mode = "paper"
journal_dir = "{b}/journal"
shm_dir = "{b}/shm"
[md_recorder]
source = "relay"
[md_recorder.relay]
connect = "tcp://127.0.0.1:{port}"
server_key = "{server_key}"
[engine]
adapter = "paper"
""")
    endpoint = a / "journal" / "relay" / "endpoint"
    # the mirror first, alone: it may say READY only once the server (started next) answers
    fake_b = systemd_with(endpoint.exists)
    log_b = tmp_path / "mirror.log"
    mirror_proc = start(["md-recorder", "--config", str(mirror)], fake_b, log_b,
                        HFT_RELAY_SECRET_KEY=mirror_secret)  # fmt: skip
    try:
        fake_b.wait("WATCHDOG=1", mirror_proc, log_b)  # its loop runs, with no server yet
        fake_a = systemd_with(endpoint.exists)
        log_a = tmp_path / "server.log"
        server = start(["relay", "serve", "--config", str(serve)], fake_a, log_a,
                       HFT_RELAY_SECRET_KEY=server_secret)  # fmt: skip
        pings_then_stops_on_sigterm(fake_b, mirror_proc, log_b)
        pings_then_stops_on_sigterm(fake_a, server, log_a)
    finally:
        for proc in (mirror_proc, *([server] if "server" in locals() else [])):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
