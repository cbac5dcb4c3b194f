"""The relay's cores on a real ROUTER/DEALER pair (inproc, no CURVE) and real journals, with an
injected clock: a request is answered at once when frames are committed, after ``HOLD_S`` with
none, at once for day 0; the mirror appends only the answer to its latest request, and only
frames that continue its journal; garbage from a peer is dropped."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pytest
import structlog
import zmq

from contracts.ticks import TickStore
from libshm import TICK_DTYPE, TICK_LAYOUT, JournalReader, JournalWriter, book_tick, encode_tick
from services.md_recorder.relay import (
    ANSWER_TIMEOUT_S,
    FORGET_S,
    HOLD_S,
    Batch,
    Mirror,
    RelayServer,
    Want,
)

DAY = 20210104
T0 = 1_609_723_800 * 10**9


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket[Any], zmq.Socket[Any]]]:
    ctx: zmq.Context[Any] = zmq.Context()
    router, dealer = ctx.socket(zmq.ROUTER), ctx.socket(zmq.DEALER)
    router.bind("inproc://relay")
    dealer.connect("inproc://relay")
    yield router, dealer
    router.close(0)
    dealer.close(0)
    ctx.term()


def ticks(n: int, start: int = 0) -> np.ndarray:
    records = [book_tick("IF2101", "CFFEX", DAY, T0 + (start + i) * 500_000_000,
                         last=5200.0 + i, bid=5199.8, ask=5200.2, upper=5700.0, lower=4700.0)
               for i in range(n)]  # fmt: skip
    return np.frombuffer(b"".join(encode_tick(t) for t in records), dtype=TICK_DTYPE)


def ask(dealer: zmq.Socket[Any], want: Want) -> None:
    dealer.send(msgspec.msgpack.encode(want))


def answer(dealer: zmq.Socket[Any]) -> Batch | None:
    if not dealer.poll(1000):
        return None
    return msgspec.msgpack.decode(dealer.recv(), type=Batch)


def test_the_server_answers_frames_at_once_and_nothing_after_the_hold(
    tmp_path: Path, pair: tuple[zmq.Socket[Any], zmq.Socket[Any]]
) -> None:
    router, dealer = pair
    store = TickStore.of(tmp_path / "shm", tmp_path / "journal")
    clock = Clock()
    server = RelayServer(store, router, writer_timeout_ns=5 * 10**9,
                         log=structlog.get_logger(), clock=clock)  # fmt: skip
    with JournalWriter(store.ring(DAY), layout=TICK_LAYOUT) as writer:
        ask(dealer, Want(1, 0, 0))  # day 0: the days, at once
        router.poll(1000)
        server.receive()
        server.answer()
        got = answer(dealer)
        assert got is not None and got.days == [DAY] and got.records == b""

        ask(dealer, Want(2, DAY, 0))
        router.poll(1000)
        server.receive()
        assert server.answer() == 1  # nothing committed: held
        writer.append_array(ticks(3), np.array([11, 12, 13]))
        assert server.answer() == 0
        got = answer(dealer)
        assert got is not None and (got.request, got.first_seq) == (2, 0)
        assert np.frombuffer(got.times, "<i8").tolist() == [11, 12, 13]
        assert got.records == ticks(3).tobytes() and got.upstream == "open" and got.caught_up

        ask(dealer, Want(3, DAY, 3))
        router.poll(1000)
        server.receive()
        clock.now += HOLD_S - 0.01
        assert server.answer() == 1
        clock.now += 0.02
        assert server.answer() == 0  # the hold is over: the state, no frame
        got = answer(dealer)
        assert got is not None and got.records == b"" and got.first_seq == 3

        dealer.send(b"\x93garbage")
        dealer.send(msgspec.msgpack.encode({"type": "want", "request": -1, "day": DAY,
                                            "next_seq": 0}))  # fmt: skip
        router.poll(1000)
        server.receive()
        assert server.waiting == {}  # neither is a request
    server.close()


def test_the_mirror_appends_only_the_latest_answer_that_continues_its_journal(
    tmp_path: Path,
) -> None:
    store = TickStore.of(tmp_path / "shm", tmp_path / "journal")
    mirror = Mirror(store, segment_size=1 << 20, ring_segments=2, log=structlog.get_logger())
    first = msgspec.msgpack.decode(mirror.request(), type=Want)
    assert (first.day, first.next_seq) == (0, 0)
    days = Batch(first.request, 0, 0, b"", b"", "none", True, [DAY - 1, DAY])
    assert mirror.take(msgspec.msgpack.encode(days))
    assert mirror.day == DAY  # a new mirror follows the newest day

    stale = msgspec.msgpack.decode(mirror.request(), type=Want)
    latest = msgspec.msgpack.decode(mirror.request(), type=Want)
    records, times = ticks(4), np.arange(4, dtype="<i8")
    batch = Batch(stale.request, DAY, 0, times.tobytes(), records.tobytes(), "open", True, [DAY])
    assert not mirror.take(msgspec.msgpack.encode(batch))  # an earlier request's: dropped
    elsewhere = Batch(latest.request, DAY, 2, times.tobytes(), records.tobytes(), "open", True,
                      [DAY])  # fmt: skip
    assert mirror.take(msgspec.msgpack.encode(elsewhere))
    assert mirror.next_seq == 0  # frames that would leave a gap: not written
    right = msgspec.msgpack.decode(mirror.request(), type=Want)
    assert right.next_seq == 0
    good = Batch(right.request, DAY, 0, times.tobytes(), records.tobytes(), "open", True, [DAY])
    assert mirror.take(msgspec.msgpack.encode(good)) and mirror.next_seq == 4
    mirror.close()
    reader = JournalReader(store.ring(DAY), archive_dir=store.recording(DAY))
    frames = reader.read_array()
    reader.close()
    assert frames["seq"].tolist() == [0, 1, 2, 3] and frames["time_ns"].tolist() == [0, 1, 2, 3]
    assert frames["payload"].tobytes() == records.tobytes()


def test_the_mirror_beats_its_heartbeat_only_while_the_server_says_the_upstream_lives(
    tmp_path: Path,
) -> None:
    import struct

    store = TickStore.of(tmp_path / "shm", tmp_path / "journal")
    clock = Clock()
    mirror = Mirror(store, segment_size=1 << 20, ring_segments=2, log=structlog.get_logger(),
                    clock=clock)  # fmt: skip
    head = store.ring(DAY) / "head"

    def beat() -> int:
        before = struct.unpack_from("<q", head.read_bytes(), 16)[0]
        mirror.heartbeat()
        return int(struct.unpack_from("<q", head.read_bytes(), 16)[0] - before)

    want = msgspec.msgpack.decode(mirror.request(), type=Want)
    mirror.take(msgspec.msgpack.encode(Batch(want.request, 0, 0, b"", b"", "none", True, [DAY])))
    want = msgspec.msgpack.decode(mirror.request(), type=Want)
    mirror.take(msgspec.msgpack.encode(Batch(want.request, DAY, 0, b"", b"", "open", True, [DAY])))
    assert beat() > 0  # the upstream's writer is alive: so is this journal's
    clock.now += ANSWER_TIMEOUT_S + 0.1  # no answer since
    assert beat() == 0  # this host's engine will see the feed silent, as it is
    for upstream in ("open", "gone"):  # at once, not when the last "open" is stale
        want = msgspec.msgpack.decode(mirror.request(), type=Want)
        mirror.take(msgspec.msgpack.encode(Batch(want.request, DAY, 0, b"", b"", upstream, True,
                                                 [DAY])))  # fmt: skip
    assert beat() == 0  # md_recorder died over there
    mirror.close()


def test_the_server_closes_the_reader_of_a_mirror_gone_quiet(
    tmp_path: Path, pair: tuple[zmq.Socket[Any], zmq.Socket[Any]]
) -> None:
    router, dealer = pair
    store = TickStore.of(tmp_path / "shm", tmp_path / "journal")
    clock = Clock()
    server = RelayServer(store, router, writer_timeout_ns=5 * 10**9,
                         log=structlog.get_logger(), clock=clock)  # fmt: skip
    with JournalWriter(store.ring(DAY), layout=TICK_LAYOUT) as writer:
        writer.append_array(ticks(2), np.array([1, 2]))
        ask(dealer, Want(1, DAY, 0))
        router.poll(1000)
        server.receive()
        server.answer()
        assert answer(dealer) is not None and len(server.readers) == 1
        clock.now += FORGET_S - 1
        server.answer()
        assert len(server.readers) == 1  # a mirror between two requests keeps its reader
        clock.now += 2
        server.answer()
        assert server.readers == {}  # gone quiet (a restarted mirror is a new peer): closed
    server.close()
