"""``hft bench journal``: append, tail-read, writer-to-reader hop and snapshot figures.

Each figure is the median of ``--runs`` runs. The hop is measured across two processes with
CLOCK_MONOTONIC (one clock for the whole machine): the writer stamps each frame right after its
commit, the reader right after reading it, and the difference per sequence number is the hop.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import os
import statistics
import tempfile
import time
import timeit
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from libshm import (
    TICK_DTYPE,
    TICK_LAYOUT,
    JournalReader,
    JournalWriter,
    SnapshotReader,
    SnapshotWriter,
    Tick,
    WaitPolicy,
    accel,
    encode_tick,
)

SEGMENT = 64 << 20


def sample_tick(i: int = 0) -> Tick:
    price = 5230.0 + (i % 100) * 0.2
    return Tick(
        "IF2101", "CFFEX", 20210104, 0, 1_609_723_800_000_000_000 + i * 500_000_000,
        1_609_723_800_000_000_000 + i * 500_000_000 + 2_000_000, price, 5230.0, 5240.0, 5220.0,
        math.nan, 5227.0, 5216.2, math.nan, 5737.8, 4694.6, 5231.5, 1000 + i, 1.5e9 + i,
        90_751.0, 90_826.0, price - 0.2, price - 0.4, price - 0.6, price - 0.8, price - 1.0,
        price + 0.2, price + 0.4, price + 0.6, price + 0.8, price + 1.0, 3, 5, 7, 9, 11, 2, 4, 6,
        8, 10,
    )  # fmt: skip


def _median(values: list[float]) -> float:
    return statistics.median(values)


def bench_append(root: Path, n: int, runs: int) -> dict[str, float]:
    tick = sample_tick()
    records = np.frombuffer(encode_tick(tick) * 4096, dtype=TICK_DTYPE)
    per_tick: list[float] = []
    batch: list[float] = []
    per_tick_inline: list[float] = []
    per_tick_pure: list[float] = []
    fast = accel.FAST
    for run in range(runs):
        for ahead, impl, out in (
            (True, fast, per_tick), (False, fast, per_tick_inline), (True, None, per_tick_pure)
        ):  # fmt: skip
            accel.FAST = impl
            with JournalWriter(root / f"a{run}{ahead}{impl is None}", layout=TICK_LAYOUT,
                               segment_size=SEGMENT, prepare_ahead=ahead) as w:  # fmt: skip
                append, now = w.append_tick, time.time_ns
                start = time.perf_counter()
                for _ in range(n):
                    append(tick, now())
                out.append(n / (time.perf_counter() - start))
            accel.FAST = fast
        with JournalWriter(root / f"b{run}", layout=TICK_LAYOUT, segment_size=SEGMENT) as w:
            start = time.perf_counter()
            for _ in range(n // len(records)):
                w.append_array(records, time.time_ns())
            batch.append((n // len(records)) * len(records) / (time.perf_counter() - start))
    return {
        "append per tick (ticks/s)": _median(per_tick),
        "append per tick, next segment not prepared ahead (ticks/s)": _median(per_tick_inline),
        "append per tick, pure-Python reference path (ticks/s)": _median(per_tick_pure),
        "append batch of 4096 (ticks/s)": _median(batch),
    }


def _read_child(path: str, mode: str, conn: Connection) -> None:
    reader = JournalReader(path)
    start = time.perf_counter()
    count = 0
    if mode == "frames":
        read = reader.read
        while read() is not None:
            count += 1
    elif mode == "tail":
        for _ in reader.tail():
            count += 1
    elif mode == "ticks":
        read_tick = reader.read_tick
        while read_tick() is not None:
            count += 1
    else:
        while len(batch := reader.read_array()):
            count += len(batch)
    conn.send(count / (time.perf_counter() - start))


def bench_read(root: Path, n: int, runs: int) -> dict[str, float]:
    path = root / "read"
    records = np.frombuffer(encode_tick(sample_tick()) * 4096, dtype=TICK_DTYPE)
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=SEGMENT) as w:
        for _ in range(n // len(records)):
            w.append_array(records, time.time_ns())
    out: dict[str, float] = {}
    ctx = mp.get_context("spawn")
    for mode, label in (
        ("tail", "tail read in another process, frames (ticks/s)"),
        ("frames", "read() loop in another process, frames (ticks/s)"),
        ("ticks", "tail read in another process, decoded Tick objects (ticks/s)"),
        ("array", "bulk read in another process, numpy views (ticks/s)"),
    ):
        rates = []
        for _ in range(runs):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_read_child, args=(str(path), mode, child))
            proc.start()
            rates.append(parent.recv())
            proc.join()
        out[label] = _median(rates)
    return out


def _pin(cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})


def _hop_writer(  # noqa: PLR0917 - a multiprocessing target takes positional args
    path: str, count: int, rate: int, burst: int, cpu: int | None, conn: Connection
) -> None:
    """Write ``count`` ticks at ``rate``/s in bursts of ``burst`` (1: evenly spaced, the writer
    spinning between ticks; more: the writer sleeps between bursts, as a feed arrives)."""
    _pin(cpu)
    tick = sample_tick()
    stamps = np.zeros(count, dtype=np.int64)
    period = 1_000_000_000 * burst // rate
    mono = time.monotonic_ns
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=SEGMENT) as w:
        conn.send("ready")
        conn.recv()
        due = mono()
        for first in range(0, count, burst):
            wait = due - mono()
            if wait > 200_000:
                time.sleep((wait - 150_000) / 1e9)
            while mono() < due:
                pass
            for i in range(first, min(first + burst, count)):
                w.append_tick(tick, due)
                stamps[i] = mono()
            due += period
    conn.send(stamps.tobytes())


def _hop_reader(path: str, count: int, cpu: int | None, conn: Connection) -> None:
    _pin(cpu)
    reader = JournalReader(path, live=True, wait=WaitPolicy(spin_ns=5_000_000))
    stamps = np.zeros(count, dtype=np.int64)
    mono = time.monotonic_ns
    conn.send("ready")
    for received, frame in enumerate(reader.tail(), 1):  # spins at the live end, then backs off
        stamps[frame.seq] = mono()
        if received == count:
            break
    conn.send(stamps.tobytes())


def bench_hop(root: Path, seconds: float, rate: int, runs: int, pin: bool) -> dict[str, float]:
    count = int(seconds * rate)
    ctx = mp.get_context("spawn")
    results: dict[str, list[float]] = {}
    for burst, how in ((20, "bursts of 20 every 1 ms"), (1, "evenly spaced")):
        for run in range(runs):
            path = str(root / f"hop{burst}-{run}")
            wp, wc = ctx.Pipe()
            rp, rc = ctx.Pipe()
            cpus = (0, 1) if pin else (None, None)
            writer = ctx.Process(target=_hop_writer, args=(path, count, rate, burst, cpus[0], wc))
            writer.start()
            assert wp.recv() == "ready"
            reader = ctx.Process(target=_hop_reader, args=(path, count, cpus[1], rc))
            reader.start()
            assert rp.recv() == "ready"
            wp.send("go")
            written = np.frombuffer(wp.recv(), dtype=np.int64)
            read = np.frombuffer(rp.recv(), dtype=np.int64)
            writer.join()
            reader.join()
            hop = (read - written)[read > 0] / 1000.0  # µs
            for name, value in (
                ("p50", np.percentile(hop, 50)),
                ("p99", np.percentile(hop, 99)),
                ("p99.9", np.percentile(hop, 99.9)),
                ("max", hop.max()),
                ("frames received (%)", 100.0 * len(hop) / count),
            ):
                pinned = ", pinned" if pin else ""
                label = f"hop to another process, {rate:,}/s {how}{pinned}, {name}"
                unit = "" if "%" in name else " (µs)"
                results.setdefault(label + unit, []).append(float(value))
    return {k: _median(v) for k, v in results.items()}


def bench_snapshot(root: Path, runs: int) -> dict[str, float]:
    path = root / "snap"
    tick = sample_tick()
    record = encode_tick(tick)
    out: dict[str, float] = {}
    with SnapshotWriter(path) as table:
        table.write(tick)
        slot = table.slot_of("IF2101")
        reader = SnapshotReader(path)
        cases: list[tuple[str, Callable[[], Any]]] = [
            ("snapshot write, Tick (µs)", lambda: table.write(tick)),
            ("snapshot write, encoded record (µs)", lambda: table.write_record(slot, record)),
            ("snapshot read, encoded record (µs)", lambda: reader.read_record(slot)),
            ("snapshot read, decoded Tick (µs)", lambda: reader.read("IF2101")),
        ]
        fast = accel.FAST
        accel.FAST = None
        pure_table = SnapshotWriter(root / "snap-pure")
        pure_reader = SnapshotReader(root / "snap-pure")
        accel.FAST = fast
        pure_table.write(tick)
        cases += [
            ("snapshot write, Tick, pure-Python reference (µs)", lambda: pure_table.write(tick)),
            ("snapshot read, decoded Tick, pure-Python reference (µs)",
             lambda: pure_reader.read("IF2101")),
        ]  # fmt: skip
        for label, call in cases:
            n = 200_000
            times = timeit.repeat(call, number=n, repeat=max(runs, 3))
            out[label] = _median([t / n * 1e6 for t in times])
        pure_reader.close()
        pure_table.close()
    return out


TARGETS = {
    "append per tick (ticks/s)": ">= 1,000,000",
    "append batch of 4096 (ticks/s)": ">= 1,000,000",
    "tail read in another process, frames (ticks/s)": ">= 1,500,000",
    "snapshot write, Tick (µs)": "<= 1",
    "snapshot write, encoded record (µs)": "<= 1",
    "snapshot read, encoded record (µs)": "<= 1",
    "snapshot read, decoded Tick (µs)": "<= 1",
}


def target(label: str) -> str:
    if label.startswith("hop") and label.endswith(", p50 (µs)"):
        return "<= 5"
    if label.startswith("hop") and label.endswith(", p99 (µs)"):
        return "<= 30"
    return TARGETS.get(label, "")


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hft bench journal",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--ticks", type=int, default=1_000_000, help="ticks per append run")
    parser.add_argument("--hop-seconds", type=float, default=5.0)
    parser.add_argument("--hop-rate", type=int, default=20_000, help="ticks/s for the hop")
    parser.add_argument(
        "--only",
        choices=("append", "read", "hop", "snapshot"),
        action="append",
        help="run only these parts (repeatable)",
    )
    parser.add_argument(
        "--pin", action="store_true", help="pin the hop's writer to CPU 0 and reader to CPU 1"
    )
    parser.add_argument("--dir", type=Path, default=Path("/dev/shm"),
                        help="where to put the journals (default /dev/shm)")  # fmt: skip
    args = parser.parse_args(argv)
    print(
        f"hft bench journal: {os.cpu_count()} cores, runs={args.runs}, journals in {args.dir}, "
        f"{accel.describe()}"
    )
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="hft-bench-") as tmp:
        root = Path(tmp)
        figures: dict[str, float] = {}
        parts: dict[str, Callable[[], dict[str, float]]] = {
            "append": lambda: bench_append(root, args.ticks, args.runs),
            "read": lambda: bench_read(root, 2 * args.ticks, args.runs),
            "hop": lambda: bench_hop(
                root, args.hop_seconds, args.hop_rate, min(args.runs, 3), args.pin
            ),
            "snapshot": lambda: bench_snapshot(root, args.runs),
        }
        for name, part in parts.items():
            if args.only and name not in args.only:
                continue
            for label, value in part().items():
                figures[label] = value
                goal = target(label)
                shown = f"{value:,.0f}" if value >= 1000 else f"{value:.2f}"
                print(f"  {label:<72} {shown:>12}  {('target ' + goal) if goal else ''}",
                      flush=True)  # fmt: skip
    return 0
