"""``hft bench monitor``: delivery latency from the engine journal to 500 WebSocket clients while
the engine journals 1,000 events a second, the monitor's CPU and memory, and the same with 10
stalled clients among them.

The events are the real engine journal of the bundled IF2101 day (a quoter and a follower on the
paper simulator, run in-process first), written to a real journal at ``--rate`` frames a second
while a real ``hft monitor`` (a subprocess) tails it and real WebSocket clients (``--procs``
client processes on uvloop) read it. A delta's latency is the time from the append of the frame
that caused it (``time.monotonic_ns``, one clock for every process of the machine) to its
arrival at a client; which frame caused which delta is known by applying the same frames to the
monitor's state core here. Figures: p50, p99 and max over every delta every healthy client got
after a warm-up; the monitor's CPU (user + system over the measured span, as a share of one core)
and its peak resident memory; with ``--stalled`` clients that subscribe and then never read,
the healthy clients' p99 again. Two runs, one after the other, in fresh monitors; ``--runs``
repeats the pair, and the stalled clients' effect is the median over the pairs of the ratio
within each.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from array import array
from pathlib import Path

import msgspec
import numpy as np

from contracts import messages as m
from contracts.calendar import load_calendar
from contracts.config import MonitorConfig, PaperConfig, ProductRates, RiskConfig
from libshm import JournalReader, JournalWriter, decode_tick
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine
from services.engine.products import specs_for
from services.engine.risk import RiskLimits
from services.md_recorder.importer import import_files
from services.monitor.state import AccountState
from strategies.follower import Follower
from strategies.quoter import Quoter

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data" / "market"
DAY = 20210104
TOKEN = "bench-viewer-" + "v" * 32
RATES = {"IF": ProductRates(margin_rate=0.12, open_rate=0.000023, close_rate=0.000023,
                            close_today_rate=0.000345)}  # fmt: skip
RISK = RiskConfig(max_position=5, max_net_position=5, cancel_limit=50_000, cancel_reserve=20,
                  max_cancel_ratio=50.0, duplicate_window_ms=0, max_daily_loss=1e12)  # fmt: skip


def engine_frames(root: Path) -> list[tuple[bytes, int]]:
    """The real day's engine journal frames (bytes, engine time), as the engine writes them."""
    import_files([DATA / "IF2101_20210104.csv.gz"], "ctp-csv", root, load_calendar())
    reader = JournalReader(root / str(DAY))
    ticks = [(f.seq, decode_tick(f.payload)) for f in iter(reader.read, None)]
    reader.close()
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    frames: list[tuple[bytes, int]] = []
    engine = Engine(specs=specs, gate_config=RISK, phases=phases,
                    adapter=PaperBroker(specs, phases, PaperConfig()),
                    journal=lambda data, t: frames.append((bytes(data), t)))  # fmt: skip
    limits = RiskLimits.from_config(RISK)
    engine.add_agent("mm", Quoter, ["IF2101"], 1e7, limits,
                     {"spread_ticks": 1, "size": 1, "max_position": 3})  # fmt: skip
    engine.add_agent("trend", Follower, ["IF2101"], 1e7, limits,
                     {"fast": 10, "slow": 60, "size": 1})  # fmt: skip
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    for i, (seq, tick) in enumerate(ticks):
        engine.on_tick(tick, seq)
        if i % 50 == 49:
            engine.on_timer(tick.local_time_ns + 1)
    return frames


def frame_of_seq(frames: list[tuple[bytes, int]]) -> np.ndarray:
    """For each delta seq (index), the index of the frame that caused it."""
    state = AccountState("bench", lambda _: 300)
    out = [0]  # seq 0: none
    for i, (data, _) in enumerate(frames):
        out += [i] * len(state.apply(m.decode(data)))
    return np.asarray(out, dtype=np.int64)


class Run(msgspec.Struct):
    p50_ms: float
    p99_ms: float
    max_ms: float
    deltas: int
    clients: int
    complete: int  # healthy clients that got every delta of the measured span
    cpu: float  # share of one core
    rss_mb: float
    closed_stalled: int  # stalled clients the monitor closed as too slow
    client_cpu_s: float  # CPU seconds of the client processes, all of their life


def write_deployment(root: Path, batch_ms: float) -> Path:
    creds = root / "credentials.toml"
    creds.write_text(f'[[monitor_tokens]]\nname = "bench"\ntoken = "{TOKEN}"\nrole = "viewer"\n'
                     'accounts = ["*"]\n')  # fmt: skip
    creds.chmod(0o600)
    config = root / "deploy.toml"
    config.write_text(
        f'[suite]\nname = "bench"\nmode = "paper"\njournal_dir = "{root / "j"}"\n'
        f'shm_dir = "{root / "shm"}"\ncredentials_file = "{creds}"\n\n'
        '[md_recorder]\nsource = "sim"\ninstruments = ["IF2101"]\n[md_recorder.sim]\n\n'
        f'[engine]\nadapter = "paper"\n\n[monitor]\nport = 0\nzmq = false\nbatch_ms = {batch_ms}\n'
    )
    return config


def _profiled(out: Path) -> list[str]:
    """``HFT_BENCH_PROFILE=DIR``: the monitor runs under cProfile, its profile saved in DIR."""
    where = os.environ.get("HFT_BENCH_PROFILE")
    return ["-m", "cProfile", "-o", str(Path(where) / out.name)] if where else []


def proc_figures(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system) and peak resident MiB of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            rss = int(line.split()[1]) / 1024
    return cpu, rss


def one_run(frames: list[tuple[bytes, int]], cause: np.ndarray, args: argparse.Namespace,
            stalled: int) -> Run:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="hft-bench-monitor-") as tmp:
        root = Path(tmp)
        config = write_deployment(root, args.batch_ms)
        writer = JournalWriter(root / "j" / "engine" / str(DAY), layout=m.ENGINE_LAYOUT)
        writer.append(*frames[0])  # the DayOpened: the monitor follows this day
        env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
        log = (root / "monitor.log").open("wb")
        monitor = subprocess.Popen(
            [sys.executable, *_profiled(root / "monitor.prof"), "-m", "services.cli", "monitor",
             "--config", str(config)],
            stdout=log, stderr=log, cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            endpoint = root / "j" / "monitor" / "endpoint"
            deadline = time.monotonic() + 60
            while not endpoint.exists():
                if monitor.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit((root / "monitor.log").read_text()[-2000:])
                time.sleep(0.05)
            url = endpoint.read_text().strip()
            return _measure(frames, cause, args, stalled, writer, monitor, url, root)
        finally:
            monitor.send_signal(signal.SIGTERM)
            try:
                monitor.wait(timeout=30)
            except subprocess.TimeoutExpired:
                monitor.kill()
            writer.close()
            log.close()


def _measure(  # noqa: PLR0915, PLR0917 (one measurement: its steps in order)
    frames: list[tuple[bytes, int]],
    cause: np.ndarray,
    args: argparse.Namespace,
    stalled: int,
    writer: JournalWriter,
    monitor: subprocess.Popen[bytes],
    url: str,
    root: Path,
) -> Run:
    healthy = args.clients - stalled
    per = [healthy // args.procs + (i < healthy % args.procs) for i in range(args.procs)]
    count = min(len(frames) - 1, int(args.rate * (args.warmup + args.seconds)))
    last_seq = int(np.searchsorted(cause, count, side="right")) - 1  # the last delta of them
    clients = []
    for i, n in enumerate(per + ([stalled] if stalled else [])):
        out = root / f"client-{i}.npy"
        role = "stalled" if i == len(per) else "healthy"
        clients.append((out, subprocess.Popen(
            [sys.executable, "-m", "bench.monitor", "--client", role, "--url", url,
             "--count", str(n), "--out", str(out), "--last-seq", str(last_seq)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )))  # fmt: skip
    for _, proc in clients:  # each says "ready" once all its clients have their snapshot
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip() != "ready":
            raise SystemExit(f"a client process failed: {line!r}")
    written = np.zeros(count + 1, dtype=np.int64)
    start = time.monotonic_ns()
    step = 1e9 / args.rate
    i = 1
    cpu0: tuple[float, float] | None = None
    measured_from = int(args.rate * args.warmup)
    while i <= count:
        now = time.monotonic_ns()
        due = min(count, int((now - start) / step) + 1)
        while i <= due:
            writer.append(*frames[i])
            written[i] = time.monotonic_ns()
            i += 1
        if cpu0 is None and i > measured_from:
            cpu0 = proc_figures(monitor.pid)[0], time.monotonic()
        time.sleep(0.0005)
    for _, proc in clients:
        assert proc.stdin is not None
        proc.stdin.write("stop\n")
        proc.stdin.flush()
    assert cpu0 is not None
    cpu1, rss = proc_figures(monitor.pid)
    span = time.monotonic() - cpu0[1]
    results, client_cpu = [], 0.0
    for out, proc in clients:
        proc.wait(timeout=120)
        if out.exists():
            results.append(np.load(out))
        client_cpu += float(np.load(out.with_suffix(".cpu.npy"))[0])
    closed = sum(1 for line in (root / "monitor.log").read_text().splitlines()
                 if '"monitor_client_too_slow"' in line)  # fmt: skip
    first_seq = int(np.searchsorted(cause, measured_from, side="left"))
    latencies, complete, total = [], 0, 0
    for data in results:  # rows of (client, first seq, last seq, arrival) per batch
        for k in np.unique(data[:, 0]):
            client = data[data[:, 0] == k]
            firsts, lasts, arrived = client[:, 1], client[:, 2], client[:, 3]
            counts = lasts - firsts + 1
            seqs = np.repeat(lasts - counts.cumsum(), counts) + np.arange(counts.sum()) + 1
            times = np.repeat(arrived, counts)
            keep = (seqs >= first_seq) & (seqs <= last_seq)
            got = seqs[keep]
            whole = bool(np.all(firsts[1:] == lasts[:-1] + 1))  # no gap, no duplicate
            complete += int(whole and len(got) == last_seq - first_seq + 1)
            total += 1
            latencies.append(times[keep] - written[cause[got]])
    lat = np.concatenate(latencies) / 1e6
    return Run(
        round(float(np.percentile(lat, 50)), 2), round(float(np.percentile(lat, 99)), 2),
        round(float(lat.max()), 2), len(lat), total, complete,
        round((cpu1 - cpu0[0]) / span, 2), round(rss, 1), closed, round(client_cpu, 1),
    )  # fmt: skip


# -- the client processes ----------------------------------------------------------------------


def _rows_of(k: int, mine: array[int]) -> np.ndarray:
    """Client ``k``'s (first, last, arrival) triples as rows of (k, first, last, arrival)."""
    return np.column_stack(
        [np.full(len(mine) // 3, k), np.frombuffer(mine, np.int64).reshape(-1, 3)]
    )


SEQ = b'"seq":'


def _seq_at(data: bytes, at: int) -> int:
    start = at + len(SEQ)
    return int(data[start : data.index(b",", start)])


class _Seq(msgspec.Struct):
    seq: int


class _Message(msgspec.Struct):
    type: str
    deltas: list[_Seq] = []


async def _clients(role: str, url: str, count: int, out: Path, last_seq: int) -> None:  # noqa: PLR0915
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    decode = msgspec.json.Decoder(_Message).decode
    rows = [array("q") for _ in range(count)]  # first, last, arrival: no objects to collect
    ready = [asyncio.Event() for _ in range(count)]

    async def healthy(k: int) -> None:
        async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                           max_size=None, compression=None, open_timeout=60) as ws:  # fmt: skip
            await ws.recv()  # hello
            await ws.send('{"type": "subscribe", "since": {}}')
            mine = rows[k]
            clock = time.monotonic_ns
            recv = ws.recv
            n = 0
            while True:
                data = await recv(decode=False)  # bytes: no UTF-8 decoding to a str
                now = clock()
                if data.startswith(b'{"type":"deltas"'):
                    # a batch's deltas are consecutive: its first and last seq say them all,
                    # read without parsing the whole batch (every 64th is parsed, to check)
                    first, last = _seq_at(data, data.find(SEQ)), _seq_at(data, data.rfind(SEQ))
                    n += 1
                    if n % 64 == 0:
                        whole = decode(data).deltas
                        assert (whole[0].seq, whole[-1].seq, len(whole)) == (
                            first, last, last - first + 1)  # fmt: skip
                    mine.extend((first, last, now))
                    if last >= last_seq:
                        return
                elif data.startswith(b'{"type":"snapshot"'):
                    ready[k].set()

    async def stalled(k: int) -> None:
        host, port = url.removeprefix("ws://").rsplit(":", 1)
        small = socket.create_connection((host, int(port)))
        small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a phone on a bad network
        try:
            async with connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"},
                               max_size=None, compression=None, max_queue=1, sock=small,
                               open_timeout=60) as ws:  # fmt: skip
                await ws.recv()
                await ws.send('{"type": "subscribe", "since": {}}')
                ready[k].set()
                await asyncio.Event().wait()  # never reads again
        except ConnectionClosed:  # the server closed it before it was ready
            ready[k].set()

    run = healthy if role == "healthy" else stalled
    tasks = []
    for k in range(count):
        tasks.append(asyncio.create_task(run(k)))
        if k % 20 == 19:
            await asyncio.sleep(0.05)  # no storm of handshakes
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 120)
    gc.collect()
    gc.freeze()  # the set-up is never scanned again: a collection costs the new objects only
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop": the writer is done
    if role == "healthy":
        await asyncio.wait(tasks, timeout=10)  # the last deltas still on their way
        parts = [_rows_of(k, mine) for k, mine in enumerate(rows) if mine]
        np.save(out, np.concatenate(parts) if parts else np.zeros((0, 4), np.int64))
    np.save(out.with_suffix(".cpu.npy"), np.asarray(proc_figures(os.getpid())))
    for t in tasks:
        t.cancel()


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hft bench monitor", description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--stalled", type=int, default=10)
    parser.add_argument("--rate", type=float, default=1000.0, help="engine frames a second")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured span")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--procs", type=int, default=2, help="processes for the healthy clients")
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=MonitorConfig().batch_ms,
        help="the monitor's monitor.batch_ms",
    )
    parser.add_argument("--runs", type=int, default=1, help="pairs of runs")
    parser.add_argument("--client", choices=("healthy", "stalled"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--last-seq", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.client:
        import uvloop

        work = _clients(args.client, args.url, args.count, args.out, args.last_seq)
        if where := os.environ.get("HFT_BENCH_PROFILE"):  # a profile of each client process
            import cProfile

            cProfile.runctx("uvloop.run(work)", globals(), {"uvloop": uvloop, "work": work},
                            str(Path(where) / f"{args.out.stem}.prof"))  # fmt: skip
        else:
            uvloop.run(work)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        frames = engine_frames(Path(tmp))
    cause = frame_of_seq(frames)
    need = int(args.rate * (args.warmup + args.seconds))
    print(f"monitor: {len(frames):,} real engine frames ({len(cause) - 1:,} deltas), "
          f"{need:,} written at {args.rate:g}/s to {args.clients} clients", flush=True)  # fmt: skip
    pairs = []
    for _ in range(args.runs):
        plain = one_run(frames, cause, args, 0)
        print(json.dumps({"stalled": 0, **msgspec.structs.asdict(plain)}), flush=True)
        slow = one_run(frames, cause, args, args.stalled)
        print(json.dumps({"stalled": args.stalled, **msgspec.structs.asdict(slow)}), flush=True)
        pairs.append((plain, slow))
    p99 = statistics.median(p.p99_ms for p, _ in pairs)
    p99_slow = statistics.median(s.p99_ms for _, s in pairs)
    ratio = statistics.median(s.p99_ms / p.p99_ms - 1 for p, s in pairs)  # within each pair
    print(f"median of {len(pairs)}: p50 {statistics.median(p.p50_ms for p, _ in pairs)} ms, "
          f"p99 {p99} ms (target 50), CPU {statistics.median(p.cpu for p, _ in pairs)} core, "
          f"peak RSS {statistics.median(p.rss_mb for p, _ in pairs)} MiB; with "
          f"{args.stalled} stalled: healthy p99 {p99_slow} ms "
          f"(within each pair: median {ratio * 100:+.1f} %, target < +10 %)")  # fmt: skip
    return 0


if __name__ == "__main__":  # the client processes
    sys.exit(run(sys.argv[1:]))
