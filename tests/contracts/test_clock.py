import pytest

from contracts.clock import FakeClock, LiveClock


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(start_ns=1_000)
    assert clock.now_ns() == 1_000
    clock.advance(500)
    assert (clock.now_ns(), clock.monotonic_ns()) == (1_500, 500)
    clock.set_wall(10)
    assert (clock.now_ns(), clock.monotonic_ns()) == (10, 500)
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_live_clock_is_monotonic() -> None:
    clock = LiveClock()
    first = clock.monotonic_ns()
    assert clock.monotonic_ns() >= first
    assert clock.now_ns() > 1_600_000_000 * 10**9
