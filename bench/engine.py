"""``hft bench engine``: tick-to-order latency of the live engine, and the risk gate per check.

- tick to order: another process commits real IF2101 ticks (the bundled day, cycled) to a tick
  journal at a steady rate (20,000 ticks/s by default), stamping each tick's receive time just
  before the commit. ``hft engine``'s own service loop (``EngineService``) tails the journal; an
  agent looks at every tick and sends an order on every ``--every``-th (default 20: 1,000
  orders/s, fifty times the default order-rate limit; ``--every 1`` is the saturation case),
  alternately a FAK bid below the book and a FAK offer above it, so the paper broker cancels it
  and positions stay flat. The order passes the whole risk gate, is journaled (a msgpack frame in
  the engine journal) and reaches the adapter, which takes the time. Figure: adapter time minus
  the tick's stamp, p50/p99/p99.9 per run, median of the runs. The duplicate-order guard is off
  (orders repeat prices within its window) and the order-rate limits are raised; every other
  rule runs. ``--warm-us`` sets ``engine.warm_us`` (0: the order path is not kept warm).
  ``--flood N``: a third process sends N malformed requests a second (bad token, two frames,
  not JSON, wrong types) to the command socket during the run, reading the refusals.
  ``--scrape-s S``: the engine serves its Prometheus metrics (``engine.metrics``), scraped every
  S seconds by a fourth process, as in production (default 15, a common scrape interval; 0: no
  metrics).
- risk gate: ``RiskGate.check_order`` on an opening limit order with two agents, a quote, four
  resting orders of the account and a position; median of per-call times.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import multiprocessing as mp
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import zmq

from contracts.calendar import load_calendar
from contracts.config import PaperConfig, RiskConfig, parse_config
from contracts.logs import configure
from libshm import TICK_LAYOUT, JournalReader, JournalWriter, book_tick, decode_tick
from services.engine import Strategy
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.ledger import Ledger, Rates, Spec
from services.engine.live import EngineService
from services.engine.orders import Order, State
from services.engine.risk import RiskGate, RiskLimits
from services.md_recorder.importer import import_files

DATA = Path(__file__).resolve().parent.parent / "data" / "market"
WARM_UP = 2_000
INSTANT = PaperConfig.instant()


class Pinger(Strategy):
    """Looks at every tick; every ``every``-th one sends an order, never marketable (so the
    broker cancels the FAK at once and positions stay flat)."""

    def on_start(self) -> None:
        self.flip = False
        self.every = int(self.params.get("every", 1))
        self.seen = 0

    def on_tick(self, tick: Any) -> None:
        self.seen += 1
        if self.seen % self.every:
            return
        self.flip = not self.flip
        if self.flip:
            self.send_order("IF2101", "buy", round(tick.bid_price1 - 2.0, 1), 1, "open", "fak")
        else:
            self.send_order("IF2101", "sell", round(tick.ask_price1 + 2.0, 1), 1, "open", "fak")


class _Timed(PaperBroker):
    """The paper broker, taking the time an order reaches it."""

    def __init__(
        self, specs: Mapping[str, Spec], phases: Mapping[str, bytes],
        service: list[EngineService], samples: list[int], count: int,
    ) -> None:  # fmt: skip
        # the simulator answers at once: this measures the engine, not the market's latency
        super().__init__(specs, phases, INSTANT)
        self._service = service
        self._samples = samples
        self._count = count

    def submit(self, order: Order, now_ns: int) -> None:
        self._samples.append(time.time_ns() - now_ns)  # now_ns: the tick's receive stamp
        super().submit(order, now_ns)
        if len(self._samples) >= self._count:
            self._service[0].stop.requested = True


def _stop(service: EngineService) -> None:
    service.stop.requested = True


SPIN_BEFORE_NS = 15_000


def _precise_sleep() -> None:
    """Timer slack of 1 ns for this process (Linux prctl), so short sleeps end on time."""
    try:
        libc = ctypes.CDLL(None)
        libc.prctl(29, 1, 0, 0, 0)  # PR_SET_TIMERSLACK
    except (OSError, AttributeError):
        pass


def _write_ticks(path: str, source: str, rate: int, count: int, start_after_s: float) -> None:
    reader = JournalReader(source)
    day = []
    while (frame := reader.read()) is not None:
        day.append(decode_tick(frame.payload))
    parts = [(tuple(t[:5]), tuple(t[6:])) for t in day]  # around local_time_ns, stamped last
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=64 << 20) as writer:
        time.sleep(start_after_s)
        step = 1_000_000_000 // rate
        _precise_sleep()
        t0 = time.monotonic_ns()
        for i in range(count):
            due = t0 + i * step
            # sleep through most of the gap (a feed handler waits on its socket), spin the rest
            ahead = due - time.monotonic_ns() - SPIN_BEFORE_NS
            if ahead > 0:
                time.sleep(ahead / 1e9)
            while time.monotonic_ns() < due:
                pass
            head, tail = parts[i % len(day)]
            now = time.time_ns()
            writer.append_tick((*head, now, *tail), now)  # type: ignore[arg-type]
            if i % 1000 == 0:  # as md_recorder does: the engine takes a silent writer for gone
                writer.heartbeat(now)


GARBAGE: Final = (
    [b"", b'{"token": "not-the-token", "action": "halt"}'],  # a bad token
    [b"", b'{"action": "status"}', b"x"],  # two frames
    [b"", b"\xff\xfe not json"],
    [b"", b'{"token": 7, "action": [1, 2]}'],  # wrong types
)


def _flood(endpoint_file: str, rate: int, seconds: float) -> None:
    """Send ``rate`` malformed requests a second to the engine's command socket for
    ``seconds`` (as an attacker on the same machine would), reading the refusals."""
    path = Path(endpoint_file)
    while not path.exists():
        time.sleep(0.01)
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 100_000)
    sock.connect(path.read_text().strip())
    _precise_sleep()
    t0 = time.monotonic_ns()
    step = 1_000_000_000 // rate
    end = t0 + int(seconds * 1e9)
    i = 0
    while (now := time.monotonic_ns()) < end:
        due = t0 + i * step
        if due > now:
            time.sleep((due - now) / 1e9)
        with contextlib.suppress(zmq.Again):
            sock.send_multipart(GARBAGE[i % len(GARBAGE)], zmq.NOBLOCK)
        while sock.poll(0):
            sock.recv_multipart()
        i += 1
    sock.close()
    ctx.term()


SCRAPER = """
import sys, time, urllib.request
url_file, end, every = sys.argv[1], time.monotonic() + float(sys.argv[2]), float(sys.argv[3])
while time.monotonic() < end:
    try:
        with open(url_file) as f, urllib.request.urlopen(f.read().strip(), timeout=2) as a:
            a.read()
    except OSError:
        time.sleep(0.1)  # not listening yet, or stopped
        continue
    time.sleep(every)
"""
"""GETs the engine's /metrics every S seconds, as Prometheus does: a small process of its own
(nothing imported but urllib), so that only the scrape's cost to the engine is measured."""


def _config(root: Path, every: int, warm_us: int, *, metrics: bool = False) -> Any:
    data = {
        "suite": {"name": "bench", "mode": "replay", "journal_dir": "journal", "shm_dir": "shm"},
        "md_recorder": {"source": "replay", "replay": {"recording": "journal/recordings"}},
        "engine": {
            "adapter": "paper", "command_endpoint": "tcp://127.0.0.1:0", "start_at": "live",
            "timer_ms": 1000, "warm_us": warm_us,
            "metrics": "127.0.0.1:0" if metrics else "",  # as in production: in the figures
            "risk": {"max_orders_per_second": 1_000_000, "account_orders_per_second": 1_000_000,
                     "duplicate_window_ms": 0, "max_daily_loss": 1e12},
            "products": {"default": {"margin_rate": 0.12, "open_rate": 0.000023}},
            "agents": [{"name": "ping", "strategy": "bench.engine:Pinger",
                        "instruments": ["IF2101"], "capital": 10_000_000.0,
                        "params": {"every": every}}],
        },
    }  # fmt: skip
    return parse_config(data, "bench", root)


def bench_tick_to_order(  # noqa: PLR0917
    root: Path,
    runs: int,
    rate: int,
    seconds: float,
    every: int,
    warm_us: int,
    flood: int = 0,
    scrape_s: float = 0.0,
) -> dict[str, float]:
    imported = root / "imported"
    import_files([DATA / "IF2101_20210104.csv.gz"], "ctp-csv", imported, load_calendar())
    count = int(rate * seconds)
    orders = count // every - WARM_UP // every
    p50s, p99s, p999s = [], [], []
    for run in range(runs):
        base = root / f"run{run}"
        (base / "journal" / "recordings").mkdir(parents=True)
        tick_path = base / "journal" / "recordings" / "20210104"
        writer = mp.get_context("spawn").Process(
            target=_write_ticks, args=(str(tick_path), str(imported / "20210104"), rate, count, 2.0)
        )
        writer.start()
        flooder = None
        if flood:
            endpoint = base / "journal" / "engine" / "command.endpoint"
            flooder = mp.get_context("spawn").Process(
                target=_flood, args=(str(endpoint), flood, 2.0 + seconds)
            )
            flooder.start()
        scraper = subprocess.Popen([sys.executable, "-c", SCRAPER, str(base / "journal" / "status"
                                    / "engine.metrics"), str(2.0 + seconds), str(scrape_s)]
                                   ) if scrape_s else None  # fmt: skip
        while not (tick_path / "head").exists() and writer.is_alive():
            time.sleep(0.01)
        samples: list[int] = []
        holder: list[EngineService] = []

        def timed(
            specs: Mapping[str, Spec], phases: Mapping[str, bytes],
            holder: list[EngineService] = holder, samples: list[int] = samples,
        ) -> _Timed:  # fmt: skip
            return _Timed(specs, phases, holder, samples, orders)

        service = EngineService(_config(base, every, warm_us, metrics=bool(scrape_s)),
                                adapter_factory=timed)  # fmt: skip
        holder.append(service)
        # whatever the orders do, the run ends a few seconds after the writer's last tick
        watchdog = threading.Timer(2.0 + seconds + 10.0, _stop, args=(service,))
        watchdog.start()
        service.run()
        watchdog.cancel()
        writer.join(60)
        if scraper is not None:
            scraper.wait(60)
        if flooder is not None:
            flooder.join(60)
        lat = np.array(samples[WARM_UP // every :], dtype=np.int64) / 1000.0
        p50s.append(float(np.percentile(lat, 50)))
        p99s.append(float(np.percentile(lat, 99)))
        p999s.append(float(np.percentile(lat, 99.9)))
        print(f"  run {run + 1}: {len(lat):,} orders, p50 {p50s[-1]:.2f} µs, "
              f"p99 {p99s[-1]:.2f} µs, p99.9 {p999s[-1]:.2f} µs")  # fmt: skip
    label = f"tick to order at {rate:,} ticks/s, an order every {every} ticks, warm_us {warm_us}"
    if flood:
        label += f", {flood:,} malformed requests/s"
    return {
        f"{label}, p50 (µs)": statistics.median(p50s),
        f"{label}, p99 (µs)": statistics.median(p99s),
        f"{label}, p99.9 (µs)": statistics.median(p999s),
    }


def bench_risk_gate(runs: int, calls: int = 200_000) -> dict[str, float]:
    spec = Spec("IF2101", "CFFEX", 300, 0.2, Rates(margin_rate=0.12))
    config = RiskConfig(max_orders_per_second=10**9, account_orders_per_second=10**9,
                        duplicate_window_ms=100)  # fmt: skip
    ledger = Ledger()
    gate = RiskGate(config, ledger)
    for agent in ("a", "b"):
        ledger.open_account(agent, 10_000_000.0)
        gate.add_agent(agent, RiskLimits.from_config(config))
    ledger.fill(ledger.line("a", spec), "buy", "open", 5000.0, 2)
    ledger.mark("IF2101", 5000.0)
    t0 = 1_609_725_600 * 10**9  # 10:00 China time, in IF's hours
    quote = book_tick("IF2101", "CFFEX", 20210104, t0, last=5000.0, bid=4999.8, ask=5000.2,
                      upper=5500.0, lower=4500.0)  # fmt: skip
    working = []
    for i, (side, price) in enumerate([("buy", 4998.0), ("buy", 4997.0), ("sell", 5003.0),
                                       ("sell", 5004.0)]):  # fmt: skip
        o = Order(f"b-1-{i}", "b", "IF2101", side, "open", price, 1)
        o.state = State.ACCEPTED
        working.append(o)
    calendar = load_calendar()
    phases = calendar.phase_table(calendar.product("IF2101"))  # type: ignore[arg-type]
    order = Order("a-1-1", "a", "IF2101", "buy", "open", 4999.8, 1)
    medians = []
    clock = time.perf_counter_ns
    for _ in range(runs):
        times = np.empty(calls, dtype=np.int64)
        check = gate.check_order
        for i in range(calls):
            start = clock()
            refusal = check(order, spec, quote, pending_open=(0, 0), working=working,
                            now_ns=t0, phases=phases)  # fmt: skip
            times[i] = clock() - start
        assert refusal is None
        medians.append(float(np.median(times)) / 1000.0)
    overhead = []
    for _ in range(5):
        start = clock()
        end = clock()
        overhead.append(end - start)
    return {
        "risk gate check_order, median per check (µs)": statistics.median(medians),
        "  (timer overhead included, µs)": min(overhead) / 1000.0,
    }


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="hft bench engine", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--rate", type=int, default=20_000, help="ticks per second (20000)")
    parser.add_argument("--seconds", type=float, default=5.0, help="seconds per run (5)")
    parser.add_argument(
        "--every", type=int, default=20, help="order on every N-th tick (20: 1,000 orders/s)"
    )
    parser.add_argument(
        "--warm-us", type=int, default=50,
        help="engine.warm_us: run the order path dry this often while quiet (0: never; 50)",
    )  # fmt: skip
    parser.add_argument(
        "--flood", type=int, default=0, metavar="N",
        help="meanwhile, N malformed requests a second to the command socket (0: none)",
    )  # fmt: skip
    parser.add_argument(
        "--scrape-s", type=float, default=15.0, metavar="S",
        help="serve engine.metrics and scrape them every S seconds from another process, as "
        "Prometheus does (15; 0: no metrics)",
    )  # fmt: skip
    parser.add_argument("--dir", default="/dev/shm", help="where the journals go")
    args = parser.parse_args(argv)
    configure("bench", "warning")
    print(f"hft bench engine: runs={args.runs}, rate={args.rate:,}/s, {args.seconds:g} s per run")
    results: dict[str, float] = {}
    results.update(bench_risk_gate(args.runs))
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        results.update(
            bench_tick_to_order(
                Path(tmp),
                args.runs,
                args.rate,
                args.seconds,
                args.every,
                args.warm_us,
                args.flood,
                args.scrape_s,
            )
        )
    for label, value in results.items():
        print(f"  {label:<90} {value:>10.2f}")
    return 0
