"""Each service's Prometheus metrics, scraped from the real processes over HTTP on the bundled
day replayed at 50x: md_recorder's ticks, drops, lag and queue; the engine's orders, fills,
refusals, PnL, positions, risk states, journal lag and tick-to-order histogram, consistent with
its journal and its status file; a port in use stops a service in one line that names the
setting; a stopped service's endpoint is gone."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts import messages as m
from contracts.metrics import endpoint_path
from services.engine.journals import read_journal
from tests.helpers import ROOT, run_hft
from tests.services.tools.test_up import recording, replay_config

__all__ = ["recording"]
pytestmark = pytest.mark.timeout(180)
DAY = 20210104

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metrics_config(tmp_path: Path, recording: Path, address: str = "127.0.0.1:0") -> Path:
    config = replay_config(tmp_path, recording)
    text = config.read_text()
    assert text.count('metrics = ""') == 2  # md_recorder's and the engine's
    text = text.replace('metrics = ""', f'metrics = "{address}"')
    config.write_text(text.replace("pace = 10.0", "pace = 50.0"))
    return config


def start(service: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    with log.open("ab") as out:
        argv = [sys.executable, "-m", "services.cli", service, "--config", str(config)]
        return subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=out, env=env)


def url_of(journal: Path, service: str) -> str:
    """The URL a service wrote when its endpoint listened ("" until then)."""
    path = endpoint_path(journal, service)
    return path.read_text().strip() if path.exists() else ""


def scrape(url: str) -> Samples:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}  # fmt: skip


def until(what: str, check: Callable[[], Any], procs: list[subprocess.Popen[bytes]], log: Path,
          timeout_s: float = 90) -> Any:  # fmt: skip
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        assert all(p.poll() is None for p in procs), log.read_text()[-3000:]
        assert time.monotonic() < deadline, f"no {what}: {log.read_text()[-3000:]}"
        time.sleep(0.05)
    return found


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[name, tuple(sorted(labels.items()))]


def total(samples: Samples, name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def test_md_recorder_and_engine_expose_their_figures_to_prometheus(
    tmp_path: Path, recording: Path
) -> None:
    config = metrics_config(tmp_path, recording)
    journal = tmp_path / "journal"
    log = tmp_path / "services.log"
    md = start("md-recorder", config, log)
    engine = start("engine", config, log)
    procs = [md, engine]
    try:
        md_url = until("md_recorder's metrics", lambda: url_of(journal, "md_recorder"), procs, log)
        kept = until(
            "ticks kept",
            lambda: (
                (s := scrape(md_url)) and value(s, "hft_md_recorder_ticks_kept_total") > 100 and s
            ),
            procs,
            log,
        )
        assert value(kept, "hft_md_recorder_trading_day") == DAY
        assert value(kept, "hft_md_recorder_instruments") == 1
        assert value(kept, "hft_md_recorder_source_queue") == 0
        assert value(kept, "hft_md_recorder_archive_failing") == 0
        lag = value(kept, "hft_md_recorder_lag_seconds")
        assert lag != lag, "a replay's lag is unknown (NaN), not zero"  # noqa: PLR0124
        assert 1_609_723_800 <= value(kept, "hft_md_recorder_last_tick_timestamp_seconds") \
            < 1_609_743_600  # 2021-01-04 09:30 to 15:00 in China  # fmt: skip

        url = until("the engine's metrics", lambda: url_of(journal, "engine"), procs, log)
        got = until(
            "fills",
            lambda: (s := scrape(url)) and total(s, "hft_engine_fills_total") >= 3 and s,
            procs,
            log,
        )
        # one snapshot: this fresh engine journaled every order of the day itself
        assert total(got, "hft_engine_orders_total") == value(got, "hft_engine_orders_today") > 0
        assert value(got, "hft_engine_trading_day") == DAY
        assert value(got, "hft_engine_feed_up") == 1
        assert value(got, "hft_engine_risk_state", scope="account", target="") == 0
        assert value(got, "hft_engine_adapter_queue") == 0
        day = read_journal(journal / "engine" / str(DAY))  # read after the scrape: it has more
        trades = [x for x in day if isinstance(x, m.Trade)]
        assert 3 <= value(got, "hft_engine_fills_total", agent="trend-if") <= len(trades)
        assert value(got, "hft_engine_filled_lots_total", agent="trend-if") >= 3
        assert value(got, "hft_engine_fees", agent="trend-if") > 0
        assert ("hft_engine_pnl", (("agent", "trend-if"),)) in got
        assert value(got, "hft_engine_ticks_today") > 0
        assert value(got, "hft_engine_behind_ticks") >= 0
        buckets = sorted(((float(dict(k)["le"]), v) for (n, k), v in got.items()
                          if n == "hft_engine_tick_to_order_seconds_bucket"))  # fmt: skip
        counts = [v for _, v in buckets]
        assert counts == sorted(counts) and buckets[-1][0] == float("inf")
        assert counts[-1] == value(got, "hft_engine_tick_to_order_seconds_count") > 0
        assert value(got, "hft_engine_tick_to_order_seconds_sum") > 0

        held = [(dict(k), v) for (n, k), v in got.items() if n == "hft_engine_position_lots"]
        net = sum(v if k["side"] == "long" else -v for k, v in held)
        assert all(k["instrument"] == "IF2101" and k["agent"] == "trend-if" for k, _ in held)
        assert abs(net) <= 1  # the follower holds at most one lot either way
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        codes = [proc.wait(timeout=60) for proc in procs]
    assert codes == [0, 0], log.read_text()[-3000:]
    assert not endpoint_path(journal, "engine").exists()
    assert not endpoint_path(journal, "md_recorder").exists()


def test_a_metrics_port_in_use_stops_the_service_in_one_line(
    tmp_path: Path, recording: Path
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        address = f"127.0.0.1:{holder.getsockname()[1]}"
        config = metrics_config(tmp_path, recording, address)
        for service, setting in (("engine", "engine.metrics"),
                                 ("md-recorder", "md_recorder.metrics")):  # fmt: skip
            done = run_hft(service, "--config", str(config))
            assert done.returncode == 2, done.stderr
            assert done.stderr.strip().splitlines() == [
                f"hft {service}: error: {setting} = '{address}': cannot listen there: the port "
                "is in use (another service or a second copy?); choose another HOST:PORT (port "
                '0: any free one) or "" for no metrics'
            ]
    assert not (tmp_path / "journal" / "engine" / str(DAY)).exists()  # nothing was written
