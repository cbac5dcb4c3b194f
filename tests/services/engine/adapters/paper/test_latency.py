"""The latency model: constant, or exponential with the configured mean, seeded."""

from __future__ import annotations

import math
import statistics

import pytest

from services.engine.adapters.paper.latency import Latency


def test_a_constant_latency_is_the_configured_value_every_time() -> None:
    lat = Latency(entry_us=1000, cancel_us=250.5, ack_us=0)
    assert [lat.entry() for _ in range(3)] == [1_000_000] * 3
    assert [lat.cancel() for _ in range(3)] == [250_500] * 3
    assert [lat.ack() for _ in range(3)] == [0] * 3


def test_an_exponential_latency_has_the_configured_mean_and_shape() -> None:
    lat = Latency(entry_us=1000, cancel_us=0, ack_us=500, kind="exponential", seed=11)
    draws = [lat.entry() for _ in range(40_000)]
    assert all(type(d) is int and d >= 0 for d in draws)
    # 40,000 draws: the sample mean is within 1.5 % of 1 ms (its standard error is 0.5 %)
    assert statistics.fmean(draws) == pytest.approx(1_000_000, rel=0.015)
    # an exponential's tail: P(X > mean) = 1/e, P(X > 3 mean) = 1/e^3
    assert sum(d > 1_000_000 for d in draws) / len(draws) == pytest.approx(math.exp(-1), abs=0.01)
    assert sum(d > 3_000_000 for d in draws) / len(draws) == pytest.approx(math.exp(-3), abs=0.004)
    assert statistics.median(draws) == pytest.approx(1_000_000 * math.log(2), rel=0.03)
    assert len(set(draws)) > 39_000  # not a constant in disguise
    assert lat.cancel() == 0  # a zero mean stays zero
    acks = [lat.ack() for _ in range(20_000)]
    assert statistics.fmean(acks) == pytest.approx(500_000, rel=0.03)


def test_the_same_seed_gives_the_same_latencies_and_another_seed_others() -> None:
    def run(seed: int) -> list[int]:
        lat = Latency(entry_us=1000, cancel_us=1000, ack_us=500, kind="exponential", seed=seed)
        return [f() for _ in range(100) for f in (lat.entry, lat.cancel, lat.ack)]

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="latency must be 'constant' or 'exponential'"):
        Latency(kind="normal")
    with pytest.raises(ValueError, match="entry latency must be >= 0"):
        Latency(entry_us=-1)
