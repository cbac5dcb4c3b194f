"""The simulated market: deterministic, on the tick grid, inside sessions and limits, and every
snapshot passes the live normaliser and filters unchanged."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

from contracts.calendar import Phase
from contracts.status import RecorderStatus, read_status, status_path
from libshm import JournalReader, NotAJournal, decode_tick
from services.md_recorder.filters import TickFilter
from services.md_recorder.normalise import CHINA, Drop, Normaliser
from services.md_recorder.sim import SimMarket
from tests.helpers import ROOT, run_hft
from tests.services.md_recorder.test_normalise import CAL

INSTRUMENTS = ["IF2101", "rb2105", "cu2102", "m2105", "RM105"]
DAY = dt.date(2021, 1, 5)  # a Tuesday: its night session is Monday evening


def first(market: SimMarket, steps: int) -> list[tuple[int, list[tuple[object, ...]]]]:
    return list(itertools.islice(market.ticks(), steps))


def digest(steps: list[tuple[int, list[tuple[object, ...]]]]) -> str:
    return hashlib.sha256(repr(steps).encode()).hexdigest()


def test_same_seed_same_market() -> None:
    a = first(SimMarket(CAL, INSTRUMENTS, DAY, seed=3), 500)
    b = first(SimMarket(CAL, INSTRUMENTS, DAY, seed=3), 500)
    c = first(SimMarket(CAL, INSTRUMENTS, DAY, seed=4), 500)
    assert digest(a) == digest(b) != digest(c)


def test_a_whole_day_is_clean_and_inside_the_sessions() -> None:
    market = SimMarket(CAL, INSTRUMENTS, DAY, seed=1, interval_ms=5000)
    normaliser, filters = Normaliser(CAL), TickFilter(check_local_time=False)
    seen: dict[str, list[int]] = {name: [] for name in INSTRUMENTS}
    last_volume: dict[str, int] = {}
    for at, raws in market.ticks():
        if market.trading_day != DAY:
            break
        for raw in raws:
            out = normaliser.normalise(raw, at)
            assert not isinstance(out, Drop), raw[:6]
            tick, phase = out
            assert phase is Phase.OPEN
            assert filters.check(tick, phase) is None, raw[:6]
            if tick.exchange != "CZCE":  # CZCE sends no milliseconds, like the real one
                assert tick.exchange_time_ns == at
            product = CAL.product(tick.instrument)
            assert product is not None
            for price in (tick.last, *tick[21:31], tick.upper_limit, tick.lower_limit):
                steps = price / product.price_tick
                assert math.isclose(steps, round(steps), abs_tol=1e-6), (tick.instrument, price)
            assert tick.bid_price1 < tick.ask_price1
            assert list(tick[21:26]) == sorted(tick[21:26], reverse=True)
            assert list(tick[26:31]) == sorted(tick[26:31])
            assert tick.lower_limit <= tick.bid_price5 and tick.ask_price5 <= tick.upper_limit
            assert tick.volume >= last_volume.get(tick.instrument, 0)
            last_volume[tick.instrument] = tick.volume
            assert tick.trading_day == 20210105
            seen[tick.instrument].append(tick.exchange_time_ns)
    assert filters.summary() == {"kept": sum(len(v) for v in seen.values())}

    def clock(ns: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(ns / 1e9, CHINA)

    assert clock(seen["IF2101"][0]) == dt.datetime(2021, 1, 5, 9, 30, tzinfo=CHINA)
    assert clock(seen["rb2105"][0]) == dt.datetime(2021, 1, 4, 21, 0, tzinfo=CHINA)
    assert clock(seen["m2105"][0]) == dt.datetime(2021, 1, 4, 21, 0, tzinfo=CHINA)  # DCE
    after_midnight = [clock(t) for t in seen["cu2102"] if clock(t).hour < 6]
    assert after_midnight  # the cu night session crosses midnight, onto the next date
    assert after_midnight[0] == dt.datetime(2021, 1, 5, 0, 0, tzinfo=CHINA)
    assert after_midnight[-1] == dt.datetime(2021, 1, 5, 1, 0, tzinfo=CHINA)
    breaks = [t for t in seen["rb2105"] if dt.time(10, 15, 1) <= clock(t).time() < dt.time(10, 30)]
    assert breaks == []
    assert clock(seen["rb2105"][-1]).time() == dt.time(15, 0)


def _ticks_in(day: Path) -> int:
    try:
        reader = JournalReader(day)
    except NotAJournal:
        return 0  # being created
    return sum(1 for _ in iter(reader.read, None))


def sim_config(tmp_path: Path, pace: str) -> Path:
    """The shipped paper deployment in ``tmp_path``, simulating from 2021-01-05 at ``pace``."""
    config = tmp_path / "deploy.toml"
    config.write_text(
        (ROOT / "configs/paper.toml").read_text()
        .replace('"../var/paper/journal"', f'"{tmp_path / "journal"}"')
        .replace('"/dev/shm/hft-paper"', f'"{tmp_path / "shm"}"')
        .replace('"127.0.0.1:9103"', '""').replace('"127.0.0.1:9104"', '""')
        .replace("interval_ms = 500", f'interval_ms = 500\npace = {pace}\nstart_day = "2021-01-05"')
    )  # fmt: skip
    return config


def test_md_recorder_runs_the_simulated_market(tmp_path: Path) -> None:
    config = sim_config(tmp_path, '"max"')
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", "md-recorder", "--config", str(config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    first_day = tmp_path / "shm/ticks/20210105"  # the live ring
    deadline = time.monotonic() + 60
    while not (first_day.exists() and _ticks_in(first_day) > 200):  # the market is running
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    lines = [json.loads(line) for line in err.splitlines()]
    stopped = lines[-1]
    assert stopped["event"] == "md_recorder_stopped"
    assert stopped["kept"] > 100
    assert set(stopped) >= {"kept", "instruments", "trading_day", "emitted", "ticks_per_s"}
    assert stopped["last_tick"].startswith("2021-01-0")
    days = sorted((tmp_path / "journal/recordings").iterdir())  # archived whole at the stop
    assert days[0].name == "20210105"
    ticks = []
    for day in days:  # at full pace the simulation may reach the next trading days
        verify = run_hft("journal", "verify", str(day))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        ticks += [decode_tick(f.payload) for f in iter(JournalReader(day).read, None)]
    assert len(ticks) == stopped["kept"]
    status = read_status(status_path(tmp_path / "journal", "md_recorder"))
    assert isinstance(status, RecorderStatus)
    assert (status.kept, status.instruments) == (stopped["kept"], stopped["instruments"])
    assert {t.instrument for t in ticks} >= {"rb2105", "cu2102"}


def test_a_second_md_recorder_on_the_same_deployment_stops_in_one_line(tmp_path: Path) -> None:
    config = sim_config(tmp_path, "1.0")
    log = tmp_path / "first.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "md-recorder", "--config", str(config)],
            stdout=out, stderr=out, cwd=ROOT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while "md_recorder_started" not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        second = run_hft("md-recorder", "--config", str(config))
        assert second.returncode == 1  # a journal locked by another process
        assert second.stderr.strip().splitlines() == [
            f"hft md-recorder: error: {tmp_path / 'shm' / 'snapshot'}: another md-recorder "
            f"(process {proc.pid}) is running on this deployment; stop it first (one "
            "md-recorder per suite.shm_dir)"
        ]
        assert proc.poll() is None  # the first one goes on
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()
