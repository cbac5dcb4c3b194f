"""``hft bench soak``: the paper smoke test's kills, repeated at random moments, with the final
state compared with an uninterrupted run of the same day.

The bundled IF2101 day is replayed at ``--pace`` through the three real services under
``hft up`` (the replay deployment, configs/replay.toml, with the example agent on the paper
simulator) twice: once left alone, once with ``--kills`` SIGKILLs of each service (md_recorder,
the engine, the monitor) at moments drawn at random (``--seed``) over the day, each a moment
when the victim's process exists, so some land while it is still recovering from the kill
before. Supervisor starts each again. When both days have ended, they must be the same:

- the tick journal: every frame's sequence number and payload;
- the engine journal: every order (id, agent, instrument, side, offset, price, volume, kind),
  refusal, cancel, acknowledgement and trade (id, price, volume, fee), in order, and so each
  agent's final position and fees; only the times differ (the wall clock's share of engine time);
- no order id sent twice, and both journals verify.

The deployment's ``engine.on_feed_loss`` is "log" here: with the default "halt", a killed
md_recorder halts the account, as it must in production, and the day would rightly differ.

Figures: the kills of each service, the time from a kill to the successor's readiness (median
and max, by service), each run's wall time, and EQUAL or the first differences. Exit 1 when the
days differ or a service did not come back.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from contracts import messages as m
from contracts.status import EngineStatus, RecorderStatus, read_status, status_path
from contracts.ticks import TickStore
from services.engine.journals import read_journal

ROOT = Path(__file__).resolve().parent.parent
RECORDING = ROOT / "data" / "market" / "IF2101_20210104.csv.gz"
DAY: Final = 20210104
SERVICES: Final = ("md-recorder", "engine", "monitor")
TOKEN: Final = "soak-admin-" + "a" * 32
DAY_SPAN_S: Final = 4 * 3600  # IF's 2021 sessions, 09:30-11:30 and 13:00-15:00 (gaps skipped)
BACK_WITHIN_S: Final = 120  # a service not ready again this long after a kill fails the soak


def deployment(root: Path, recording: Path, pace: float) -> Path:
    """The replay deployment (configs/replay.toml) in ``root``, ports chosen by the system."""
    text = (
        (ROOT / "configs" / "replay.toml").read_text(encoding="utf-8")
        .replace('"../var/replay/journal"', f'"{root / "journal"}"')
        .replace('"/dev/shm/hft-replay"', f'"{root / "shm"}"')
        .replace('"../var/recordings/20210104"', f'"{recording / str(DAY)}"')
        .replace("pace = 10.0", f"pace = {pace:g}")
        .replace('adapter = "paper"', 'adapter = "paper"\non_feed_loss = "log"')
        .replace("tcp://127.0.0.1:5561", "tcp://127.0.0.1:0")
        .replace("port = 8766", "port = 0")
        .replace('"127.0.0.1:9105"', '""').replace('"127.0.0.1:9106"', '""')
        .replace("tcp://127.0.0.1:5580", "tcp://127.0.0.1:0")
        .replace("tcp://127.0.0.1:5579", "tcp://127.0.0.1:0")
    )  # fmt: skip
    if f"pace = {pace:g}" not in text or 'on_feed_loss = "log"' not in text:
        raise SystemExit("hft bench soak: configs/replay.toml changed shape; update bench/soak.py")
    path = root / "deploy.toml"
    path.write_text(text, encoding="utf-8")
    return path


def service_pid(name: str, config: Path) -> int | None:
    """The live process running ``hft NAME --config CONFIG`` (not a zombie), if any."""
    want = [name.encode(), b"--config", str(config).encode()]
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = Path(entry.path, "cmdline").read_bytes().split(b"\0")
            state = Path(entry.path, "stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue  # gone meanwhile
        if state != b"Z" and any(argv[i : i + 3] == want for i in range(len(argv))):
            return int(entry.name)
    return None


class Day:
    """One run of the day under ``hft up`` in ``root``."""

    def __init__(self, root: Path, recording: Path, pace: float) -> None:
        self.root = root
        self.config = deployment(root, recording, pace)
        self.journal = root / "journal"
        self.log = root / "up.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
        env["HFT_MONITOR_ADMIN_TOKEN"] = TOKEN
        argv = [sys.executable, "-m", "services.cli", "up", "--config", str(self.config)]
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=out, env=env)
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def fail(self, why: str) -> SystemExit:
        tail = self.log.read_text(encoding="utf-8", errors="replace")[-3000:]
        self.stop()
        return SystemExit(f"hft bench soak: {why}\n--- the end of {self.log} ---\n{tail}")

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            raise self.fail(f"hft up exited ({self.proc.returncode}) before the day ended")

    def engine(self) -> EngineStatus | None:
        s = read_status(status_path(self.journal, "engine"))
        return s if isinstance(s, EngineStatus) else None

    def recorder(self) -> RecorderStatus | None:
        s = read_status(status_path(self.journal, "md_recorder"))
        return s if isinstance(s, RecorderStatus) else None

    def endpoint(self) -> str:
        try:
            return (self.journal / "monitor" / "endpoint").read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            return ""

    def ready_since(self, name: str, before: Any) -> Callable[[], bool]:
        """A check that the successor of the process killed (its figures ``before``) is ready:
        its own status file (md_recorder, engine) or a new endpoint (the monitor)."""
        if name == "monitor":
            return lambda: self.endpoint() not in ("", before)
        read = self.recorder if name == "md-recorder" else self.engine

        def ready() -> bool:
            figures = read()
            return figures is not None and figures.pid != before

        return ready

    def marker(self, name: str, pid: int) -> Any:
        return self.endpoint() if name == "monitor" else pid

    def ended(self) -> bool:
        """The replay finished (md_recorder stopped cleanly) and the engine handled it all."""
        rec, eng = self.recorder(), self.engine()
        return bool(rec and rec.stopped and eng and eng.feed == "ended")

    def wait_end(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.ended():
            self.check_alive()
            if time.monotonic() > deadline:
                raise self.fail(f"the day did not end within {timeout_s:.0f} s")
            time.sleep(0.1)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


def kill_at_random(day: Day, kills: int, span_s: float, rng: random.Random
                   ) -> dict[str, list[float]]:  # fmt: skip
    """``kills`` SIGKILLs of each service at random moments within ``span_s`` of the run's
    start; returns, by service, the seconds from each kill to its successor's readiness."""
    victims = [name for name in SERVICES for _ in range(kills)]
    rng.shuffle(victims)
    moments = sorted(rng.uniform(0.03 * span_s, 0.85 * span_s) for _ in victims)
    schedule = list(zip(moments, victims, strict=True))
    waiting: dict[str, tuple[float, Callable[[], bool]]] = {}
    back: dict[str, list[float]] = {name: [] for name in SERVICES}
    while schedule or waiting:
        day.check_alive()
        now = day.elapsed()
        for name, (killed_at, ready) in list(waiting.items()):
            if ready():
                back[name].append(now - killed_at)
                del waiting[name]
            elif now - killed_at > BACK_WITHIN_S:
                raise day.fail(f"{name} was not ready {BACK_WITHIN_S} s after it was killed")
        if schedule and now >= schedule[0][0]:
            _, name = schedule.pop(0)
            pid = service_pid(name, day.config)
            if pid is None:  # between a death and supervisor's next start: a moment later
                if name == "md-recorder" and (r := day.recorder()) and r.stopped:
                    raise day.fail("the replay ended before every kill was made; lower --pace")
                schedule.insert(0, (now + 0.2, name))
                continue
            marker = day.marker(name, pid)
            os.kill(pid, signal.SIGKILL)
            print(f"  {now:6.1f} s  SIGKILL {name} (pid {pid})", flush=True)
            if name not in waiting:  # killed again while recovering: timed from the first kill
                waiting[name] = (now, day.ready_since(name, marker))
        time.sleep(0.05)
    return back


def ticks_of(journal_dir: Path, shm_dir: Path) -> list[tuple[int, bytes]]:
    """Every tick frame of the day: sequence number and payload."""
    reader = TickStore.of(shm_dir, journal_dir).open(DAY, verify=True)
    frames: list[tuple[int, bytes]] = []
    try:
        while len(batch := reader.read_array()):
            frames += zip(batch["seq"].tolist(), [p.tobytes() for p in batch["payload"]],
                          strict=True)  # fmt: skip
    finally:
        reader.close()
    return frames


def outcome(journal_dir: Path) -> dict[str, list[Any]]:
    """What the engine did on the day, without the times (the wall clock's share of them)."""
    msgs = read_journal(journal_dir / "engine" / str(DAY))
    orders = {x.order_id: x for x in msgs if isinstance(x, m.OrderRequested)}
    held: Counter[tuple[str, str]] = Counter()
    fees: dict[str, float] = {}
    for x in msgs:
        if isinstance(x, m.Trade):
            o = orders[x.order_id]
            held[o.agent, o.instrument] += x.volume if o.direction == "buy" else -x.volume
            fees[o.agent] = fees.get(o.agent, 0.0) + x.fee
    return {
        "orders": [
            (o.order_id, o.agent, o.instrument, o.direction, o.offset, o.price, o.volume, o.kind)
            for o in orders.values()
        ],
        "refusals": [(x.order_id, x.code) for x in msgs if isinstance(x, m.RiskRefused)],
        "cancels": [x.order_id for x in msgs if isinstance(x, m.CancelRequested)],
        "answers": [
            (type(x).__name__, x.order_id)
            for x in msgs
            if isinstance(x, m.OrderAccepted | m.OrderRejected | m.OrderCancelled)
        ],
        "trades": [
            (x.order_id, x.trade_id, x.price, x.volume, round(x.fee, 6))
            for x in msgs
            if isinstance(x, m.Trade)
        ],
        "positions": sorted(held.items()),
        "fees": sorted((a, round(f, 6)) for a, f in fees.items()),
        "sent twice": [
            i
            for i, n in Counter(x.order_id for x in msgs if isinstance(x, m.OrderRequested)).items()
            if n > 1
        ],
    }


def differences(a: dict[str, list[Any]], b: dict[str, list[Any]]) -> list[str]:
    out = []
    for key, mine in a.items():
        theirs = b[key]
        if mine != theirs:
            first = next((i for i, (x, y) in enumerate(zip(mine, theirs, strict=False))
                          if x != y), min(len(mine), len(theirs)))  # fmt: skip
            out.append(f"{key}: {len(mine)} vs {len(theirs)}, first difference at {first}: "
                       f"{mine[first:first + 1]} vs {theirs[first:first + 1]}")  # fmt: skip
    return out


def verify(path: Path) -> str:
    done = subprocess.run([sys.executable, "-m", "services.cli", "journal", "verify", str(path)],
                          capture_output=True, text=True, cwd=ROOT, check=False)  # fmt: skip
    return "" if done.returncode == 0 else f"{path}: {done.stdout}{done.stderr}".strip()


def play(root: Path, recording: Path, pace: float, kills: int, rng: random.Random
         ) -> tuple[float, dict[str, list[float]]]:  # fmt: skip
    root.mkdir()
    day = Day(root, recording, pace)
    span = DAY_SPAN_S / pace
    back = kill_at_random(day, kills, span, rng) if kills else {}
    day.wait_end(timeout_s=3 * span + 300)
    wall = day.elapsed()
    if (code := day.stop()) != 0:
        raise day.fail(f"hft up exited {code} at Ctrl-C")
    return wall, back


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hft bench soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=10, help="SIGKILLs of each service")
    parser.add_argument("--pace", type=float, default=60.0, help="replay speed (x real time)")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: new)")
    parser.add_argument("--keep", type=Path, help="keep both runs' directories under this one")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="hft-soak-") as tmp:
        base = args.keep.resolve() if args.keep else Path(tmp)
        base.mkdir(parents=True, exist_ok=True)
        recording = base / "recording"
        done = subprocess.run([sys.executable, "-m", "services.cli", "import", "--format",
                               "ctp-csv", str(RECORDING), "--out", str(recording)],
                              capture_output=True, text=True, cwd=ROOT, check=False)  # fmt: skip
        if done.returncode:
            raise SystemExit(f"hft bench soak: the import failed: {done.stderr}")
        print(f"soak: the bundled IF2101 day at {args.pace:g}x, {args.kills} kills of each "
              f"service, seed {seed}", flush=True)  # fmt: skip
        wall_a, _ = play(base / "calm", recording, args.pace, 0, rng)
        print(f"  uninterrupted run: {wall_a:.1f} s", flush=True)
        wall_b, back = play(base / "killed", recording, args.pace, args.kills, rng)
        print(f"  run with kills: {wall_b:.1f} s", flush=True)
        for name, times in back.items():
            print(f"  {name}: {len(times)} kills, ready again after median "
                  f"{statistics.median(times):.2f} s, max {max(times):.2f} s")  # fmt: skip
        runs = [base / "calm", base / "killed"]
        problems = [v for r in runs for p in (r / "journal" / "engine" / str(DAY),
                                              r / "journal" / "recordings" / str(DAY))
                    if (v := verify(p))]  # fmt: skip
        ticks = [ticks_of(r / "journal", r / "shm") for r in runs]
        if ticks[0] != ticks[1]:
            problems.append(f"the tick journals differ ({len(ticks[0])} vs {len(ticks[1])})")
        a, b = (outcome(r / "journal") for r in runs)
        problems += differences(a, b)
        problems += [f"order sent twice in {r.name}: {o['sent twice']}" for r, o in
                     zip(runs, (a, b), strict=True) if o["sent twice"]]  # fmt: skip
        print(f"  ticks: {len(ticks[0]):,} frames; orders {len(a['orders'])}, trades "
              f"{len(a['trades'])}, cancels {len(a['cancels'])}, refusals {len(a['refusals'])}; "
              f"positions {a['positions']}; fees {a['fees']}")  # fmt: skip
        if problems:
            print("soak: DIFFERENT from the uninterrupted run:\n  " + "\n  ".join(problems))
            return 1
        print(f"soak: EQUAL: after {3 * args.kills} kills the day is the uninterrupted one")
        return 0
