"""A client's bounded queue and the resume history, on an injected clock."""

from __future__ import annotations

import itertools

from contracts.monitor import Delta
from services.monitor.fanout import ClientQueue, History

SECOND = 1_000_000_000


def test_a_full_queue_is_coalesced_then_closed_when_it_fills_again_within_the_grace() -> None:
    queue = ClientQueue(bound=3, grace_ns=10 * SECOND)
    for i in range(3):
        queue.put(b"d%d" % i, 0)
    assert (len(queue), queue.stale) == (3, False)
    queue.put(b"d3", 1 * SECOND)  # the fourth: coalesced into a snapshot
    assert (len(queue), queue.stale, queue.coalesced, queue.closed) == (0, True, 1, None)
    queue.put(b"d4", 1 * SECOND)  # a snapshot will carry it
    assert len(queue) == 0
    queue.stale = False  # the sender sent the snapshot
    for i in range(4):
        queue.put(b"e%d" % i, 5 * SECOND)
    assert queue.closed is not None and "twice within the grace period" in queue.closed
    queue.put(b"late", 6 * SECOND)
    assert len(queue) == 0  # a closed queue takes nothing


def test_a_queue_that_fills_again_after_the_grace_is_coalesced_again_not_closed() -> None:
    queue = ClientQueue(bound=2, grace_ns=10 * SECOND)
    for t in (0, 0, 0):
        queue.put(b"x", t)
    queue.stale = False
    for t in (11 * SECOND,) * 3:
        queue.put(b"y", t)
    assert (queue.coalesced, queue.closed, queue.stale) == (2, None, True)


def test_a_client_that_takes_no_snapshot_is_closed_after_a_bound_of_missed_messages() -> None:
    queue = ClientQueue(bound=2, grace_ns=SECOND)
    for _ in range(3):
        queue.put(b"x", 0)
    assert queue.stale
    queue.put(b"y", 5 * SECOND)
    assert queue.closed is None
    queue.put(b"z", 5 * SECOND)
    assert queue.closed is not None and "while its snapshot was waiting" in queue.closed


def test_a_new_day_restarts_a_queue_without_counting_it_as_behind() -> None:
    queue = ClientQueue(bound=5, grace_ns=SECOND)
    queue.put(b"old", 0)
    queue.restart()
    assert (len(queue), queue.stale, queue.coalesced) == (0, True, 0)


def delta(day: int, seq: int) -> Delta:
    return Delta("A", day, seq, "day", "day", None)


def test_history_gives_exactly_the_missed_deltas_or_none() -> None:
    history = History(size=5)
    for seq in range(1, 9):
        history.append(delta(20210104, seq), b"%d" % seq)
    assert history.after(20210104, 5, 8) == [b"6", b"7", b"8"]
    assert history.after(20210104, 3, 8) == [b"4", b"5", b"6", b"7", b"8"]
    assert history.after(20210104, 2, 8) is None  # delta 3 is gone: a snapshot instead
    assert history.after(20210104, 8, 8) == []
    assert history.after(20210104, 9, 8) is None  # ahead of the server: not this day's numbers
    assert history.after(20210101, 5, 8) is None  # another day
    history.append(delta(20210105, 1), b"n1")  # a new day starts a new history
    assert history.after(20210105, 0, 1) == [b"n1"]
    assert history.after(20210104, 5, 1) is None


def test_curves_keep_one_sample_per_spacing_and_halve_when_full() -> None:
    from contracts.monitor import Sample
    from services.monitor.fanout import Curves

    curves = Curves(size=4, every_ns=10)
    for t in range(0, 100, 5):  # every 5 ns: every other one is kept
        curves.add(1, Sample(t, {"IF2101": float(t)}, {"mm": 0.0}))
        assert len(curves.samples) <= 4
    times = [s.time_ns for s in curves.samples]
    assert times == sorted(times) and times[0] == 0  # the day's start is kept
    gaps = {b - a for a, b in itertools.pairwise(times)}
    assert len(gaps) == 1 and gaps.pop() >= 10 * 4  # evenly spaced over the whole run
    curves.add(2, Sample(200, {}, {}))  # a new trading day starts afresh
    assert [s.time_ns for s in curves.samples] == [200] and curves.every_ns == 10


def test_a_batch_weighs_as_many_changes_as_it_holds() -> None:
    queue = ClientQueue(bound=10, grace_ns=10 * SECOND)
    queue.put(b"batch of 6", 0, 6)
    queue.put(b"batch of 4", 0, 4)
    assert (len(queue), queue.stale) == (10, False)  # at the bound, not past it
    queue.put(b"one more", 0)
    assert (len(queue), queue.stale, queue.coalesced) == (0, True, 1)
    fresh = ClientQueue(bound=10, grace_ns=10 * SECOND)
    fresh.put(b"a batch larger than the bound", 0, 25)  # an empty queue takes it whole
    assert (len(fresh), fresh.stale) == (25, False)
    assert fresh.take() == b"a batch larger than the bound" and len(fresh) == 0
