"""The relay (docs/relay.md) with two real processes on loopback and CURVE: ``hft relay serve``
on host A's deployment and the mirror (``hft md-recorder`` with ``source = "relay"``) on host
B's, while this test writes A's live tick ring as md_recorder does (the bundled real day, in
bursts). The mirror is SIGKILLed and started again, then the server, then the mirror is stopped
cleanly (SIGTERM) mid-day and started again, all while frames flow; when A's day closes, B's
journal holds every frame with the same sequence number, time and payload, verifies, and is
closed too; an engine on host B handled every tick of it, and B's snapshot table holds the
day's last tick. A mirror
whose key the server does not list gets nothing, and both sides say why."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from contracts.status import EngineStatus, read_status, status_path
from contracts.ticks import TickStore
from libshm import (
    TICK_LAYOUT,
    JournalReader,
    JournalWriter,
    NotAJournal,
    SnapshotReader,
)
from tests.helpers import ROOT, import_market, log_lines, run_hft

pytestmark = pytest.mark.timeout(240)
DAY = 20210104


@pytest.fixture(scope="module")
def day_frames(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    """The bundled day's frames as md_recorder recorded them (sequence, time, tick record)."""
    out = import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")
    return frames_of(JournalReader(out / str(DAY)))


def frames_of(reader: JournalReader) -> np.ndarray:
    try:
        parts = []
        while len(batch := reader.read_array()):
            parts.append(batch[["seq", "time_ns", "payload"]].copy())
    finally:
        reader.close()
    return np.concatenate(parts) if parts else np.empty(0)


def keys() -> tuple[str, str]:
    public, secret = zmq.curve_keypair()
    return public.decode(), secret.decode()


HOST = """\
[suite]
name = "{name}"
mode = "paper"
journal_dir = "{root}/journal"
shm_dir = "{root}/shm"

[md_recorder]
segment_mb = {segment_mb}
{source}

[engine]
adapter = "paper"
command_endpoint = "tcp://127.0.0.1:0"

[engine.products.default]
margin_rate = 0.12
open_per_lot = 3.0
close_per_lot = 3.0
close_today_per_lot = 3.0

[[engine.agents]]
name = "trend-if"
strategy = "strategies.follower:Follower"
instruments = ["IF2101"]
capital = 1000000.0

[monitor]
port = 0
zmq_pub = "tcp://127.0.0.1:0"
zmq_snapshot = "tcp://127.0.0.1:0"
"""


class Hosts:
    """Host A (the server, and the ring this test writes) and host B (the mirror) in two
    directories, each with its own deployment file and secret."""

    def __init__(self, tmp_path: Path) -> None:
        self.a, self.b = tmp_path / "a", tmp_path / "b"
        self.server_key, server_secret = keys()
        self.mirror_key, mirror_secret = keys()
        self.port = 0  # the server's first start picks a free one, kept for its restarts
        self.a_config = self.a / "deploy.toml"
        self.a.mkdir()
        self.a_config.write_text(
            HOST.format(
                name="a",
                root=self.a,
                segment_mb=1,
                source='source = "sim"\ninstruments = ["IF2101"]\n[md_recorder.sim]\nseed = 1',
            )
            + f'\n[relay]\nbind = "tcp://127.0.0.1:{self.port}"\nclients = ["{self.mirror_key}"]\n'
        )
        self.b_config = self.b / "deploy.toml"  # written once the server's port is known
        self.env = {"a": server_secret, "b": mirror_secret}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def write_mirror(self, root: Path, server_key: str) -> Path:
        root.mkdir()
        config = root / "deploy.toml"
        config.write_text(HOST.format(
            name=root.name, root=root, segment_mb=2,  # other segments than A's: frames count
            source=f'source = "relay"\n[md_recorder.relay]\nconnect = "tcp://127.0.0.1:'
            f'{self.port}"\nserver_key = "{server_key}"',
        ))  # fmt: skip
        return config

    def start(self, name: str, *argv: str, secret: str) -> subprocess.Popen[bytes]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
        env["HFT_RELAY_SECRET_KEY"] = secret
        with (self.a.parent / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen([sys.executable, "-m", "services.cli", *argv], cwd=ROOT,
                                    stdout=out, stderr=out, env=env)  # fmt: skip
        self.procs[name] = proc
        return proc

    def server(self) -> subprocess.Popen[bytes]:
        proc = self.start("server", "relay", "serve", "--config", str(self.a_config),
                          secret=self.env["a"])  # fmt: skip
        if not self.port:
            endpoint = self.a / "journal" / "relay" / "endpoint"
            self.until("the server's endpoint", endpoint.exists)
            self.port = int(endpoint.read_text().strip().rsplit(":", 1)[1])
            text = self.a_config.read_text()
            self.a_config.write_text(
                text.replace("tcp://127.0.0.1:0", f"tcp://127.0.0.1:{self.port}")
            )
            self.write_mirror(self.b, self.server_key)
        return proc

    def mirror(self) -> subprocess.Popen[bytes]:
        return self.start("mirror", "md-recorder", "--config", str(self.b_config),
                          secret=self.env["b"])  # fmt: skip

    def log(self, name: str) -> Path:
        return self.a.parent / f"{name}.log"

    def until(self, what: str, check: Callable[[], Any], timeout_s: float = 60) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (found := check()):
            for name, proc in self.procs.items():
                assert proc.poll() is None, f"{name} exited: {self.log(name).read_text()[-2000:]}"
            assert time.monotonic() < deadline, f"no {what}: " + "".join(
                f"\n--- {n}\n{self.log(n).read_text()[-1500:]}" for n in self.procs
            )
            time.sleep(0.02)
        return found

    def mirrored(self) -> int:
        """Frames the mirror holds so far (0 before its journal exists)."""
        store = TickStore.of(self.b / "shm", self.b / "journal")
        if DAY not in store.days():
            return 0
        try:
            return len(frames_of(store.open(DAY)))
        except NotAJournal:  # being created this moment: none yet
            return 0

    def stop(self) -> dict[str, int]:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        return {n: p.wait(timeout=60) for n, p in self.procs.items()}


@pytest.fixture
def hosts(tmp_path: Path) -> Iterator[Hosts]:
    h = Hosts(tmp_path)
    yield h
    h.stop()


class Upstream:
    """Host A's live ring, written by this test as md_recorder writes it: a ring of small
    segments archived into the recording, heartbeats from a thread."""

    def __init__(self, root: Path, frames: np.ndarray) -> None:
        store = TickStore.of(root / "shm", root / "journal")
        self.writer = JournalWriter(store.ring(DAY), layout=TICK_LAYOUT, segment_size=1 << 20,
                                    ring_segments=2, archive_dir=store.recording(DAY))  # fmt: skip
        self.frames = frames
        self.done = 0
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._beat = threading.Thread(target=self._heartbeat, daemon=True)
        self._beat.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(0.2):
            with self.lock:
                self.writer.heartbeat()

    def write(self, n: int) -> None:
        chunk = self.frames[self.done : self.done + n]
        with self.lock:
            self.writer.append_array(chunk["payload"], chunk["time_ns"])
        self.done += len(chunk)

    def write_paced(self, n: int, per_burst: int = 20) -> threading.Thread:
        """Write ``n`` more frames in bursts from a thread, as a live feed arrives."""

        def run() -> None:
            end = self.done + n
            while self.done < end:
                self.write(min(per_burst, end - self.done))
                time.sleep(0.01)  # paces the feed (nothing waits on it)

        thread = threading.Thread(target=run)
        thread.start()
        return thread

    def close(self) -> None:
        self._stop.set()
        self._beat.join()
        self.writer.close()


def closed(store: TickStore) -> bool:
    reader = store.open(DAY)
    try:
        return reader.writer_state() == "closed"
    finally:
        reader.close()


def same_frames(hosts: Hosts, store_b: TickStore, day_frames: np.ndarray) -> None:
    """B's journal holds A's frames: sequence numbers, times and payloads; and it verifies."""
    a = frames_of(TickStore.of(hosts.a / "shm", hosts.a / "journal").open(DAY))
    b = frames_of(store_b.open(DAY))
    assert len(a) == len(day_frames) == len(b)
    assert np.array_equal(a["seq"], b["seq"]) and np.array_equal(a["time_ns"], b["time_ns"])
    assert a["payload"].tobytes() == b["payload"].tobytes()
    verify = run_hft("journal", "verify", str(store_b.recording(DAY)))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_the_mirror_is_the_same_journal_after_kills_of_either_side(
    hosts: Hosts, day_frames: np.ndarray
) -> None:
    upstream = Upstream(hosts.a, day_frames)
    try:
        upstream.write(2000)
        hosts.server()
        hosts.mirror()
        hosts.start("engine", "engine", "--config", str(hosts.b_config), secret=hosts.env["b"])
        hosts.until("the first 2000 frames mirrored", lambda: hosts.mirrored() == 2000)

        burst = upstream.write_paced(12_000)  # 2,000 frames a second, for 6 s
        hosts.until("the mirror in the middle of a burst", lambda: hosts.mirrored() > 3000)
        hosts.procs["mirror"].kill()
        hosts.procs["mirror"].wait()
        hosts.mirror()  # recovers its journal and asks from its last frame
        hosts.until("the mirror going on", lambda: hosts.mirrored() > 6000)
        hosts.procs["server"].kill()
        hosts.procs["server"].wait()
        hosts.server()  # the mirror's request went unanswered meanwhile: it asks again
        hosts.until("the mirror going on", lambda: hosts.mirrored() > 9000)
        hosts.procs["mirror"].send_signal(signal.SIGTERM)  # a clean stop mid-day: not the end
        assert hosts.procs["mirror"].wait(timeout=30) == 0
        hosts.mirror()
        burst.join()
        hosts.until("every frame of the bursts", lambda: hosts.mirrored() == 14_000)
        upstream.write(len(day_frames))  # the rest of the day
    finally:
        upstream.close()  # the day is closed on host A
    store_b = TickStore.of(hosts.b / "shm", hosts.b / "journal")
    hosts.until("the mirror's day closed", lambda: closed(store_b))
    same_frames(hosts, store_b, day_frames)

    def engine_done() -> bool:
        s = read_status(status_path(hosts.b / "journal", "engine"))
        return isinstance(s, EngineStatus) and s.ticks == len(day_frames)

    hosts.until("the engine on host B through the mirrored day", engine_done)
    codes = hosts.stop()
    assert codes == {"server": 0, "mirror": 0, "engine": 0}, codes
    table = SnapshotReader(hosts.b / "shm" / "snapshot")  # for host B's monitor, as on A
    slot = table.slot_of("IF2101")
    assert slot is not None and table.read_record(slot) == day_frames["payload"][-1].tobytes()
    table.close()
    starts = [x for x in log_lines(hosts.log("mirror")) if x.get("event") == "relay_mirror_day"]
    resumed = [x["next_seq"] for x in starts]
    assert resumed[0] == 0 and 3000 < resumed[1] < resumed[2], resumed  # each from its journal


def test_a_mirror_whose_key_is_not_listed_gets_nothing(
    hosts: Hosts, day_frames: np.ndarray
) -> None:
    upstream = Upstream(hosts.a, day_frames)
    try:
        upstream.write(100)
        hosts.server()
        stranger_key, stranger_secret = keys()
        config = hosts.write_mirror(hosts.a.parent / "c", hosts.server_key)
        hosts.start("stranger", "md-recorder", "--config", str(config), secret=stranger_secret)

        def refused() -> list[dict[str, Any]]:
            return [x for x in log_lines(hosts.log("server")) if x.get("event") == "relay_refused"]

        (first, *_) = hosts.until("the server's refusal", refused)
        assert first["public_key"] == stranger_key
        hosts.until(
            "the stranger's warning",
            lambda: any(
                x.get("event") == "relay_no_answer" for x in log_lines(hosts.log("stranger"))
            ),
        )
        assert not (hosts.a.parent / "c" / "shm" / "ticks" / str(DAY)).exists()
    finally:
        upstream.close()
