"""``hft bench relay``: the relay's hop latency (a frame appended to host A's ring to the same
frame readable in host B's mirror) and how fast a mirror catches up a whole day.

A real ``hft relay serve`` and a real mirror (``hft md-recorder`` with ``source = "relay"``) run
as subprocesses on loopback with CURVE, as two hosts would; a writer subprocess appends the
bundled IF2101 day's ticks to A's ring at ``--rate`` a second, each frame stamped with the wall
clock at its append (``time.time_ns``, one clock for every process of the machine); this
process tails B's ring and takes, for each frame, the time from its append to its read. The
catch-up figure: the whole day written to A before the mirror starts, then the time until B
holds all of it. ``--runs`` repeats both with fresh processes; figures are medians over runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from contracts.calendar import load_calendar
from contracts.ticks import TickStore
from libshm import TICK_LAYOUT, JournalReader, JournalWriter, NotAJournal, WaitPolicy
from services.md_recorder.importer import import_files

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "market" / "IF2101_20210104.csv.gz"
DAY = 20210104
DEPLOY = """\
[suite]
name = "{name}"
mode = "paper"
journal_dir = "{root}/journal"
shm_dir = "{root}/shm"

[md_recorder]
{source}

[engine]
adapter = "paper"
"""


def _hosts(root: Path, port: int) -> tuple[Path, Path, dict[str, str]]:
    server_pub, server_sec = (k.decode() for k in zmq.curve_keypair())
    mirror_pub, mirror_sec = (k.decode() for k in zmq.curve_keypair())
    a, b = root / "a", root / "b"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "deploy.toml").write_text(DEPLOY.format(
        name="a", root=a, source='source = "sim"\ninstruments = ["IF2101"]\n[md_recorder.sim]',
    ) + f'\n[relay]\nbind = "tcp://127.0.0.1:{port}"\nclients = ["{mirror_pub}"]\n')  # fmt: skip
    (b / "deploy.toml").write_text(DEPLOY.format(
        name="b", root=b, source=f'source = "relay"\n[md_recorder.relay]\nconnect = '
        f'"tcp://127.0.0.1:{port}"\nserver_key = "{server_pub}"',
    ))  # fmt: skip
    return a, b, {"a": server_sec, "b": mirror_sec}


def _start(argv: list[str], secret: str, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    env["HFT_RELAY_SECRET_KEY"] = secret
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "services.cli", *argv, "--log-level",
                                 "warning"], cwd=ROOT, stdout=out, stderr=out, env=env)  # fmt: skip


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _day(root: Path) -> Any:
    import_files([DATA], "ctp-csv", root / "imported", load_calendar())
    reader = JournalReader(root / "imported" / str(DAY))
    records = reader.read_array(100_000)["payload"].copy()
    reader.close()
    return records


def _writer(root: Path, rate: float, count: int) -> int:
    """The writer subprocess: ``count`` ticks to A's ring at ``rate`` a second."""
    records = _day(root / "w")[:count]
    store = TickStore.of(root / "a" / "shm", root / "a" / "journal")
    with JournalWriter(store.ring(DAY), layout=TICK_LAYOUT, segment_size=64 << 20,
                       ring_segments=4, archive_dir=store.recording(DAY)) as writer:  # fmt: skip
        start = time.perf_counter()
        for i in range(len(records)):
            due = start + i / rate
            while (now := time.perf_counter()) < due:
                if due - now > 0.0005:
                    time.sleep(due - now - 0.0003)
            writer.append_array(records[i : i + 1], time.time_ns())
            if i % 200 == 0:
                writer.heartbeat()
    return 0


def _tail(store: TickStore, count: int, timeout_s: float, day: int = DAY
          ) -> tuple[list[int], list[int]]:  # fmt: skip
    """Read ``count`` frames of B's ring as they come: each one's arrival and hop, in ns."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            reader = store.open(day, wait=WaitPolicy(spin_ns=5_000_000))
            break
        except NotAJournal:
            if time.monotonic() > deadline:
                raise SystemExit("hft bench relay: the mirror wrote nothing") from None
            time.sleep(0.01)
    arrivals: list[int] = []
    hops: list[int] = []
    try:
        while len(hops) < count:
            frame = reader.wait(timeout_s=max(deadline - time.monotonic(), 0.001))
            if frame is None:
                raise SystemExit(f"hft bench relay: only {len(hops)} of {count} frames came")
            now = time.time_ns()
            arrivals.append(now)
            hops.append(now - frame.time_ns)
    finally:
        reader.close()
    return arrivals, hops


def _stop(*procs: subprocess.Popen[bytes]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        proc.wait(timeout=60)


def one_run(root: Path, rate: float, count: int) -> tuple[list[int], float]:
    a, b, secrets = _hosts(root, _free_port())
    server = _start(["relay", "serve", "--config", str(a / "deploy.toml")], secrets["a"],
                    root / "server.log")  # fmt: skip
    mirror = _start(["md-recorder", "--config", str(b / "deploy.toml")], secrets["b"],
                    root / "mirror.log")  # fmt: skip
    writer = subprocess.Popen([sys.executable, "-m", "services.cli", "bench", "relay",
                               "--writer", str(root), "--rate", str(rate), "--count",
                               str(count)], cwd=ROOT)  # fmt: skip
    try:
        _, hops = _tail(TickStore.of(b / "shm", b / "journal"), count, timeout_s=count / rate + 60)
        if writer.wait(timeout=60) != 0:
            raise SystemExit("hft bench relay: the writer failed")
    finally:
        _stop(server, mirror)
    # catch-up: a whole day already on A, a new mirror
    day = _day(root / "c")
    store_a = TickStore.of(a / "shm", a / "journal")
    with JournalWriter(store_a.ring(DAY + 1), layout=TICK_LAYOUT, segment_size=64 << 20,
                       ring_segments=4, archive_dir=store_a.recording(DAY + 1)) as w:  # fmt: skip
        w.append_array(day, day["local_time_ns"])
    c = root / "c-mirror"
    c.mkdir()
    (c / "deploy.toml").write_text((b / "deploy.toml").read_text().replace(str(b), str(c)))
    server = _start(["relay", "serve", "--config", str(a / "deploy.toml")], secrets["a"],
                    root / "server2.log")  # fmt: skip
    mirror = _start(["md-recorder", "--config", str(c / "deploy.toml")], secrets["b"],
                    root / "mirror2.log")  # fmt: skip
    try:  # from the first frame in B to the last: the copy, not the processes' start
        arrivals, _ = _tail(
            TickStore.of(c / "shm", c / "journal"), len(day), timeout_s=120, day=DAY + 1
        )  # the newest day: where a new mirror starts
    finally:
        _stop(server, mirror)
    return hops, (len(day) - 1) / ((arrivals[-1] - arrivals[0]) / 1e9)


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hft bench relay", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="ticks a second written")
    parser.add_argument("--count", type=int, default=10_000, help="ticks measured per run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--writer", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.writer:
        return _writer(args.writer, args.rate, args.count)
    p50s, p99s, maxes, rates = [], [], [], []
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="hft-relay-", dir="/dev/shm") as tmp:
            hops, rate = one_run(Path(tmp), args.rate, args.count)
        us = np.array(hops[len(hops) // 10 :]) / 1e3  # after a warm-up of a tenth
        p50s.append(float(np.percentile(us, 50)))
        p99s.append(float(np.percentile(us, 99)))
        maxes.append(float(us.max()))
        rates.append(rate)
        print(f"  run: hop p50 {p50s[-1]:.0f} us, p99 {p99s[-1]:.0f} us, max {maxes[-1]:.0f} us;"
              f" catch-up {rate:,.0f} ticks/s", flush=True)  # fmt: skip
    print(f"relay: {args.count:,} ticks at {args.rate:g}/s, median of {args.runs} runs: hop p50 "
          f"{statistics.median(p50s):.0f} us, p99 {statistics.median(p99s):.0f} us, max "
          f"{statistics.median(maxes):.0f} us; a whole day's catch-up "
          f"{statistics.median(rates):,.0f} ticks/s")  # fmt: skip
    return 0
