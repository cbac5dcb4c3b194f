"""The metrics endpoint (prometheus_client's HTTP server on a real socket): the newest figures
published are what a scrape reads, nothing before the first; a busy port is one clear error
naming the setting; a close frees the port and removes the endpoint file. The latency histogram
agrees with a count written here."""

from __future__ import annotations

import random
import socket
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families

from contracts.errors import UserError
from contracts.metrics import TICK_TO_ORDER_BUCKETS_S, Buckets, MetricsEndpoint, endpoint_path


def gauge(value: float) -> Iterator[Metric]:
    yield GaugeMetricFamily("hft_test_value", "a value", value=value)


def scrape(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url, timeout=10) as answer:
        text = answer.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}


def test_a_scrape_reads_the_newest_figures_and_close_frees_the_port(tmp_path: Path) -> None:
    endpoint = MetricsEndpoint("127.0.0.1:0", "svc", tmp_path, gauge, setting="svc.metrics")
    url = endpoint.start()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/metrics")
    assert endpoint_path(tmp_path, "svc").read_text().strip() == url
    assert scrape(url) == {}  # nothing published yet: no figure rather than a made-up one
    endpoint.publish(1.5)
    endpoint.publish(7.0)
    assert scrape(url) == {"hft_test_value": 7.0}
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    endpoint.close()
    assert not endpoint_path(tmp_path, "svc").exists()
    again = MetricsEndpoint(f"127.0.0.1:{port}", "svc", tmp_path, gauge, setting="svc.metrics")
    assert again.start() == url  # the port is free for the next start (a restarted service)
    again.close()


def test_no_address_serves_nothing(tmp_path: Path) -> None:
    endpoint = MetricsEndpoint("", "svc", tmp_path, gauge, setting="svc.metrics")
    assert endpoint.start() == ""
    endpoint.publish(1.0)
    endpoint.close()
    assert not endpoint_path(tmp_path, "svc").exists()


def test_a_busy_port_is_one_error_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        endpoint = MetricsEndpoint(f"127.0.0.1:{port}", "svc", tmp_path, gauge,
                                   setting="engine.metrics")  # fmt: skip
        with pytest.raises(UserError, match=r"engine.metrics = '127.0.0.1:\d+': cannot listen "
                           r"there: the port is in use"):  # fmt: skip
            endpoint.start()


def test_the_histogram_counts_each_sample_in_its_first_bucket_at_or_above_it() -> None:
    rng = random.Random(7)
    samples = [int(rng.lognormvariate(11, 1.5)) for _ in range(5000)]  # ns, ~60 us median
    samples += [5_000, 10_000, 50_000_000, 50_000_001]  # on a bound, and above every bound
    buckets = Buckets()
    for ns in samples:
        buckets.add(ns)
    cumulative, total = buckets.cumulative()
    assert [le for le, _ in cumulative] == [*map(repr, TICK_TO_ORDER_BUCKETS_S), "+Inf"]
    for (le, count), bound in zip(cumulative, [*TICK_TO_ORDER_BUCKETS_S, float("inf")],
                                  strict=True):  # fmt: skip
        assert count == sum(1 for ns in samples if ns / 1e9 <= bound), le
    assert total == pytest.approx(sum(samples) / 1e9)
