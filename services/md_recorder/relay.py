"""The relay (docs/relay.md): a host's tick journals served over ZMQ with CURVE, and mirrored
frame for frame into another host's tick store, resuming from the mirror's own journal after any
kill or disconnect.

``RelayServer`` answers ``Want`` requests on a ROUTER socket from the deployment's ``TickStore``;
``Mirror`` makes the requests and appends each answer with its original sequence numbers and
frame times. Both take their socket or bytes, store and clock from the shells in
``relay_service`` (``run_server``, ``run_mirror``), which bind, authenticate and run them.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
import numpy as np
import zmq

from contracts.errors import JournalProblem
from contracts.status import RecorderStatus
from contracts.ticks import TickStore
from libshm import (
    TICK_DTYPE,
    TICK_LAYOUT,
    JournalError,
    JournalReader,
    JournalWriter,
    SnapshotWriter,
    WriterLocked,
    decode_tick,
    tick_from_row,
)

__all__ = [
    "ANSWER_TIMEOUT_S", "FORGET_S", "HOLD_S", "IDLE_SLEEP_S", "MAX_MESSAGE", "Batch", "Mirror",
    "RelayServer", "Want",
]  # fmt: skip

BATCH: Final = 4096  # frames per answer at most
HOLD_S: Final = 0.5  # a request with nothing to send is answered after this, with the state
ANSWER_TIMEOUT_S: Final = 2.0  # no answer for this long: ask again (and warn once)
IDLE_SLEEP_S: Final = 0.0002  # between looks at the journals while requests wait
DAYS_EVERY_S: Final = 0.1
MAX_HOP_NS: Final = 60_000_000_000
FORGET_S: Final = 30.0  # a mirror silent this long: its reader is closed
MAX_MESSAGE: Final = 4096  # a mirror's request is tiny; anything larger is refused by ZMQ

Upstream = Literal["open", "closed", "gone", "none"]


_Count = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]


class Want(msgspec.Struct, frozen=True, tag="want", forbid_unknown_fields=True):
    request: _Count
    day: _Count  # 0: none followed yet; tell me the days
    next_seq: _Count


class Batch(msgspec.Struct, frozen=True, tag="batch"):
    request: int
    day: int
    first_seq: int
    times: bytes  # int64 little-endian, one per frame
    records: bytes  # TICK_DTYPE records
    upstream: Upstream
    caught_up: bool
    days: list[int]


_encode = msgspec.msgpack.Encoder().encode
_want = msgspec.msgpack.Decoder(Want)
_batch = msgspec.msgpack.Decoder(Batch)
_NOTHING = b""


@dataclass
class _Waiting:
    want: Want
    since: float


class RelayServer:
    """Answers mirrors from ``store``: each request once, with frames as soon as there are any,
    else with the upstream's state after ``HOLD_S``."""

    def __init__(self, store: TickStore, sock: zmq.Socket[Any], *, writer_timeout_ns: int,
                 log: Any, clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.store = store
        self.sock = sock
        self.writer_timeout_ns = writer_timeout_ns
        self.log = log
        self.clock = clock
        self.waiting: dict[bytes, _Waiting] = {}
        self.readers: dict[bytes, tuple[int, JournalReader]] = {}
        self._used: dict[bytes, float] = {}  # when each peer's reader last served
        self.sent = 0  # frames sent, for the status line
        self._days: list[int] = []
        self._days_at = -1e18
        self._warned: dict[str, float] = {}

    def days(self) -> list[int]:
        """The store's days, looked up at most every ``DAYS_EVERY_S`` (a directory listing
        costs more than a look at a journal, and the loop looks every 200 µs)."""
        now = self.clock()
        if now - self._days_at >= DAYS_EVERY_S:
            self._days, self._days_at = self.store.days(), now
        return self._days

    def receive(self) -> None:
        """Take every request waiting on the socket (a newer one from a mirror replaces its
        older one)."""
        while True:
            try:
                peer, data = self.sock.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            except ValueError:  # not two frames: not a mirror of ours
                continue
            try:
                want = _want.decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                self._warn("relay_bad_request", error=str(exc))
                continue
            self.waiting[peer] = _Waiting(want, self.clock())

    def answer(self) -> int:
        """Answer the requests that have frames, or have waited ``HOLD_S``; returns how many
        are still waiting."""
        now = self.clock()
        for peer, waiting in list(self.waiting.items()):
            batch = self._batch(peer, waiting.want, flush=now - waiting.since >= HOLD_S)
            self._used[peer] = now
            if batch is not None:
                del self.waiting[peer]
                with contextlib.suppress(zmq.Again):  # a mirror that does not read: it asks again
                    self.sock.send_multipart([peer, _encode(batch)], zmq.NOBLOCK)
        if len(self._used) > len(self.waiting):
            self._forget(now)
        return len(self.waiting)

    def _forget(self, now: float) -> None:
        """Close the readers of mirrors gone quiet (a restarted mirror is a new peer): an open
        reader keeps the ring's old segments mapped."""
        for peer, used in list(self._used.items()):
            if now - used > FORGET_S and peer not in self.waiting:
                del self._used[peer]
                held = self.readers.pop(peer, None)
                if held is not None:
                    held[1].close()

    def _batch(self, peer: bytes, want: Want, *, flush: bool) -> Batch | None:
        if flush:
            self._days_at = -1e18  # a day may have begun since the last look
        days = self.days()
        if want.day not in days:  # day 0: at once; a day not here (yet): after HOLD_S
            if want.day and not flush:
                return None
            return Batch(want.request, want.day, want.next_seq, _NOTHING, _NOTHING, "none", True,
                         days)  # fmt: skip
        reader = self._reader(peer, want)
        if reader is None:
            return None if not flush else Batch(want.request, want.day, want.next_seq, _NOTHING,
                                                _NOTHING, "none", True, days)  # fmt: skip
        try:
            frames = reader.read_array(BATCH)
        except JournalError as exc:
            self._warn("relay_read_failed", day=want.day, error=str(exc),
                       hint="`hft journal verify` the day's ring and recording")  # fmt: skip
            self.readers.pop(peer, None)
            reader.close()
            return None
        if not len(frames) and not flush:
            return None
        upstream: Upstream = reader.writer_state(self.writer_timeout_ns)  # type: ignore[assignment]
        caught_up = reader.backlog()[0] == 0
        self.sent += len(frames)
        return Batch(want.request, want.day, want.next_seq,
                     frames["time_ns"].astype("<i8").tobytes(), frames["payload"].tobytes(),
                     upstream, caught_up, days)  # fmt: skip

    def _warn(self, event: str, **fields: object) -> None:
        """Log a problem at most once a minute per kind (the loop meets it every pass)."""
        now = self.clock()
        if now - self._warned.get(event, -1e18) >= 60:
            self._warned[event] = now
            self.log.warning(event, **fields)

    def _reader(self, peer: bytes, want: Want) -> JournalReader | None:
        held = self.readers.get(peer)
        if held is not None:
            day, reader = held
            if day == want.day and reader.next_seq == want.next_seq:
                return reader
            reader.close()
            del self.readers[peer]
        try:
            reader = self.store.open(want.day, from_seq=want.next_seq)
        except JournalError as exc:  # not a journal yet (being created), or damaged
            self.log.debug("relay_day_unreadable", day=want.day, error=str(exc))
            return None
        self.readers[peer] = (want.day, reader)
        return reader

    def close(self) -> None:
        for _, reader in self.readers.values():
            reader.close()
        self.readers.clear()


class Mirror:
    """Keeps ``store`` a copy of the server's tick journals, one day at a time (docs/relay.md).

    Call :meth:`request` for the next ``Want`` to send and :meth:`take` with each answer."""

    def __init__(self, store: TickStore, *, segment_size: int, ring_segments: int, log: Any,
                 clock: Callable[[], float] = time.monotonic,
                 snapshot: Path | None = None) -> None:  # fmt: skip
        """``snapshot``: the snapshot table to keep, as md_recorder does (the monitor's marks and
        ticks come from it), rebuilt at start from the newest day's journal."""
        self.store = store
        self.segment_size = segment_size
        self.ring_segments = ring_segments
        self.log = log
        self.clock = clock
        self.writer: JournalWriter | None = None
        self.day = 0
        self.finished: set[int] = set()  # days this mirror has whole (closed)
        self.request_id = 0
        self.upstream: Upstream = "none"
        self.upstream_at = -1e18  # when an answer last said the upstream writer is open
        self.kept = 0  # frames appended by this process
        self.last_record: bytes = b""
        self.hop_ns = -1  # from the upstream's write of the newest frame to its append here
        self.instruments: set[bytes] = set()
        self.snapshot: SnapshotWriter | None = None
        if snapshot is not None:
            self._open_snapshot(snapshot)
        self._resume()

    def _open_snapshot(self, path: Path) -> None:
        try:
            self.snapshot = SnapshotWriter(path)
        except WriterLocked as exc:
            holder = f"process {exc.pid}" if exc.pid else "another process"
            raise JournalProblem(f"{path}: another md-recorder or mirror ({holder}) writes this "
                                 "snapshot table; stop it first") from None  # fmt: skip
        days = self.store.days()
        if days:
            reader = self.store.open(days[-1])
            try:
                self.snapshot.rebuild(reader)
            finally:
                reader.close()

    def _resume(self) -> None:
        """Go on with the newest day of the store unless it was copied whole. A day counts as
        whole by its marker (``relay/DAY.copied``, written when the server said its day closed
        and every frame was here), not by its journal's state: a mirror stopped by SIGTERM
        closes its journal too, mid-day."""
        self.finished = {d for d in self.store.days() if self._marker(d).exists()}
        days = self.store.days()
        if days and days[-1] not in self.finished:
            self._open(days[-1])

    def _marker(self, day: int) -> Path:
        return self.store.recordings.parent / "relay" / f"{day}.copied"

    def _open(self, day: int) -> None:
        try:
            self.writer = JournalWriter(
                self.store.ring(day), layout=TICK_LAYOUT, segment_size=self.segment_size,
                ring_segments=self.ring_segments, archive_dir=self.store.recording(day),
            )  # fmt: skip
        except WriterLocked as exc:
            holder = f"process {exc.pid}" if exc.pid else "another process"
            raise JournalProblem(
                f"{self.store.ring(day)}: another writer ({holder}) has this day's journal; "
                "stop it first (one md-recorder or mirror per suite.shm_dir)"
            ) from None
        self.day = day
        earlier = [d for d in self.store.days() if d < day and self.store.has_ring(d)]
        if earlier:  # keep the day before for readers finishing it; older rings go
            self.store.drop_rings_before(earlier[-1])
        self.log.info("relay_mirror_day", day=day, next_seq=self.writer.next_seq)

    @property
    def next_seq(self) -> int:
        return self.writer.next_seq if self.writer is not None else 0

    def request(self) -> bytes:
        """The next request (a new id: an answer to any earlier one is ignored)."""
        self.request_id += 1
        return _encode(Want(self.request_id, self.day, self.next_seq))

    def take(self, data: bytes) -> bool:
        """Apply an answer; False if it is not the answer to the latest request (dropped)."""
        batch = _batch.decode(data)
        if batch.request != self.request_id:
            return False
        self.upstream = batch.upstream
        # alive as long as the server said so within ANSWER_TIMEOUT_S, and not since
        self.upstream_at = self.clock() if batch.upstream == "open" else -1e18
        if self.writer is None or batch.day != self.day:
            self._choose(batch.days)
            return True
        if batch.records:
            if batch.first_seq != self.writer.next_seq:  # cannot happen for the latest request
                self.log.warning("relay_batch_out_of_place", first_seq=batch.first_seq,
                                 next_seq=self.writer.next_seq)  # fmt: skip
                return True
            records = np.frombuffer(batch.records, dtype=TICK_DTYPE)
            times = np.frombuffer(batch.times, dtype="<i8")
            if len(records) != len(times):
                raise ValueError("a batch whose times and records differ in number")
            self.writer.append_array(records, times)
            self.kept += len(records)
            self.last_record = batch.records[-TICK_DTYPE.itemsize :]
            hop = time.time_ns() - int(times[-1])  # the upstream's write to here
            self.hop_ns = hop if 0 <= hop < MAX_HOP_NS else -1  # a replay's times are old
            self.instruments.update(np.unique(records["instrument"]).tolist())
            if self.snapshot is not None:  # the latest record of each instrument in the batch
                _, last_of = np.unique(records["instrument"][::-1], return_index=True)
                for i in len(records) - 1 - last_of:
                    self.snapshot.write(tick_from_row(records[i]))
        elif batch.upstream == "closed" and batch.caught_up:
            self._finish_day()
            self._choose(batch.days)
        return True

    def _finish_day(self) -> None:
        if self.writer is not None:
            self.writer.close()  # readers see the day end, as on the server's host
            self.log.info("relay_mirror_day_closed", day=self.day, frames=self.next_seq)
        self.writer = None
        marker = self._marker(self.day)
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        self.finished.add(self.day)

    def _choose(self, days: list[int]) -> None:
        """The day to follow: the one after the newest this store has whole, else the newest
        the server has."""
        if self.writer is not None:
            return
        done = max(self.finished, default=0)
        later = [d for d in days if d > done]
        if not later:
            self.day = 0
            return
        self._open(later[0] if self.finished else later[-1])

    def heartbeat(self) -> None:
        """Tell this host's readers the feed lives, if the server said so lately."""
        if self.writer is not None and self.clock() - self.upstream_at < ANSWER_TIMEOUT_S:
            self.writer.heartbeat()
            if self.snapshot is not None:
                self.snapshot.heartbeat(time.time_ns())

    def status(self, *, rate: float, stopped: bool = False) -> RecorderStatus:
        """The status file's figures: ``lag_ms_median`` is the hop of the newest batch (the
        upstream's write to the append here; -1 when unknown, as for a replay's old times)."""
        newest = decode_tick(self.last_record).exchange_time_ns if self.last_record else 0
        lag = self.hop_ns / 1e6 if self.hop_ns >= 0 else -1.0
        return RecorderStatus(os.getpid(), time.time_ns(), self.day, self.kept, round(rate, 1),
                              {}, round(lag, 3), len(self.instruments), newest, "",
                              stopped)  # fmt: skip

    def close(self) -> None:
        writer, self.writer = self.writer, None
        try:
            if writer is not None:
                writer.close()
        finally:
            if self.snapshot is not None:
                self.snapshot.close()
                self.snapshot = None
