"""The relay (docs/relay.md): a host's tick journals served over ZMQ with CURVE, and mirrored
frame for frame into another host's tick store, resuming from the mirror's own journal after any
kill or disconnect.

``RelayServer`` answers ``Want`` requests on a ROUTER socket from the deployment's ``TickStore``;
``Mirror`` asks on a DEALER socket and appends each batch with its original sequence numbers and
frame times. Both take their socket, store and clock from the shell (``run_server``,
``run_mirror``), which binds, authenticates and runs them until SIGTERM.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, cast

import msgspec
import numpy as np
import zmq
from zmq.auth.thread import ThreadAuthenticator

from contracts.config import DeploymentConfig, RelayConfig
from contracts.credentials import load_credentials
from contracts.errors import JournalProblem, UserError
from contracts.logs import get_logger
from contracts.metrics import MetricsEndpoint
from contracts.notify import SystemdNotifier
from contracts.status import RecorderStatus, StatusFile, status_path
from contracts.stop import StopSignals
from contracts.ticks import TickStore
from libshm import (
    TICK_DTYPE,
    TICK_LAYOUT,
    JournalError,
    JournalReader,
    JournalWriter,
    WriterLocked,
    decode_tick,
)
from services.md_recorder.metrics import RecorderFigures, families

if TYPE_CHECKING:
    import logging

__all__ = ["Batch", "Mirror", "RelayServer", "Want", "run_mirror", "run_server"]

BATCH: Final = 4096  # frames per answer at most
HOLD_S: Final = 0.5  # a request with nothing to send is answered after this, with the state
ANSWER_TIMEOUT_S: Final = 2.0  # no answer for this long: ask again (and warn once)
IDLE_SLEEP_S: Final = 0.0002  # between looks at the journals while requests wait
DAYS_EVERY_S: Final = 0.1
MAX_HOP_NS: Final = 60_000_000_000
MAX_MESSAGE: Final = 4096  # a mirror's request is tiny; anything larger is refused by ZMQ

Upstream = Literal["open", "closed", "gone", "none"]


class Want(msgspec.Struct, frozen=True, tag="want", forbid_unknown_fields=True):
    request: int
    day: int  # 0: none followed yet; tell me the days
    next_seq: int


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
        self.sent = 0  # frames sent, for the status line
        self._days: list[int] = []
        self._days_at = -1e18

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
            except msgspec.DecodeError as exc:
                self.log.warning("relay_bad_request", error=str(exc))
                continue
            self.waiting[peer] = _Waiting(want, self.clock())

    def answer(self) -> int:
        """Answer the requests that have frames, or have waited ``HOLD_S``; returns how many
        are still waiting."""
        now = self.clock()
        for peer, waiting in list(self.waiting.items()):
            batch = self._batch(peer, waiting.want, flush=now - waiting.since >= HOLD_S)
            if batch is not None:
                del self.waiting[peer]
                with contextlib.suppress(zmq.Again):  # a mirror that does not read: it asks again
                    self.sock.send_multipart([peer, _encode(batch)], zmq.NOBLOCK)
        return len(self.waiting)

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
            self.log.warning("relay_read_failed", day=want.day, error=str(exc))
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
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
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
        self._resume()

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
        if batch.upstream == "open":
            self.upstream_at = self.clock()
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
        if writer is not None:
            writer.close()


# -- the shells -------------------------------------------------------------------------------


def _secret(config: DeploymentConfig) -> bytes:
    """This host's CURVE secret key, checked: a wrong one would only fail in the handshake,
    silently, on the other side."""
    secret = load_credentials(config.suite.credentials_file).require("relay_secret_key")
    try:
        zmq.curve_public(secret.encode())
    except (ValueError, zmq.ZMQError):
        raise UserError("relay_secret_key is not a CURVE secret key (40 characters of Z85); "
                        "make a key pair with `hft relay keys`") from None  # fmt: skip
    return secret.encode()


def run_server(config: DeploymentConfig) -> int:
    """``hft relay serve``: until SIGTERM or SIGINT."""
    relay = config.relay
    if relay is None:
        raise UserError("hft relay serve needs a [relay] section (bind, clients) in the "
                        "deployment file; see docs/relay.md")  # fmt: skip
    log = get_logger()
    store = TickStore.of(config.suite.shm_dir, config.suite.journal_dir)
    ctx, auth, sock, endpoint = _serve_socket(config, relay, log)
    server = RelayServer(store, sock, writer_timeout_ns=int(config.engine.feed_timeout_s * 1e9),
                         log=log)  # fmt: skip
    stop = StopSignals()
    notifier = SystemdNotifier()
    notifier.ready(f"serving on {endpoint}")
    log.info("relay_serving", endpoint=endpoint, clients=len(relay.clients),
             public_key=zmq.curve_public(_secret(config)).decode())  # fmt: skip
    try:
        while not stop.requested:
            waiting = server.answer()
            if sock.poll(0 if waiting else 100):
                server.receive()
            elif waiting:
                time.sleep(IDLE_SLEEP_S)
            notifier.tick(lambda: f"{len(server.waiting)} mirrors waiting · {server.sent} sent")
    finally:
        notifier.stopping()
        notifier.close()
        server.close()
        sock.close()
        auth.stop()
        ctx.term()
    log.info("relay_stopped", sent=server.sent)
    return 0


def _serve_socket(
    config: DeploymentConfig, relay: RelayConfig, log: Any
) -> tuple[zmq.Context[Any], ThreadAuthenticator, zmq.Socket[Any], str]:
    """The server's ROUTER, bound, with CURVE and a ZAP handler admitting ``relay.clients``;
    its endpoint is written to ``journal_dir/relay/endpoint``."""
    secret = _secret(config)
    ctx: zmq.Context[Any] = zmq.Context()
    auth = ThreadAuthenticator(ctx, log=cast("logging.Logger", _ZapLog(log)))
    auth.start()
    allowed = {key.encode() for key in relay.clients}
    auth.configure_curve_callback("*", credentials_provider=_Allowed(allowed, log))
    sock: zmq.Socket[Any] = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE)
    sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a mirror that reconnects takes its name back
    sock.curve_server = True
    sock.curve_secretkey = secret
    sock.curve_publickey = zmq.curve_public(secret)
    try:
        sock.bind(relay.bind)
    except zmq.ZMQError as exc:
        sock.close()
        auth.stop()
        ctx.term()
        raise UserError(f"relay.bind {relay.bind}: cannot bind ({exc.strerror}); another relay "
                        "may be running, or choose a free port") from None  # fmt: skip
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    where = config.suite.journal_dir / "relay" / "endpoint"
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(endpoint + "\n", encoding="utf-8")
    return ctx, auth, sock, endpoint


def run_mirror(config: DeploymentConfig) -> int:
    """The mirror (``md_recorder.source = "relay"``, or ``hft relay mirror``): until SIGTERM."""
    md = config.md_recorder
    source = md.relay
    if source is None:
        raise UserError(
            'the mirror needs md_recorder.source = "relay" and an '
            "[md_recorder.relay] section (connect, server_key); see docs/relay.md"
        )
    log = get_logger()
    secret = _secret(config)
    store = TickStore.of(config.suite.shm_dir, config.suite.journal_dir)
    try:
        (config.suite.shm_dir).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"{config.suite.shm_dir}: cannot create it ({exc.strerror})") from None
    mirror = Mirror(store, segment_size=md.segment_mb << 20, ring_segments=md.ring_segments,
                    log=log)  # fmt: skip
    ctx: zmq.Context[Any] = zmq.Context()
    sock: zmq.Socket[Any] = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 4)  # requests are retried, never queued up
    sock.curve_secretkey = secret
    sock.curve_publickey = zmq.curve_public(secret)
    sock.curve_serverkey = source.server_key.encode()
    sock.connect(source.connect)
    metrics: MetricsEndpoint[RecorderFigures] = MetricsEndpoint(
        md.metrics, "md_recorder", config.suite.journal_dir, families,
        setting="md_recorder.metrics")  # fmt: skip
    status_file = StatusFile(status_path(config.suite.journal_dir, "md_recorder"), log)
    stop = StopSignals()
    notifier = SystemdNotifier()
    log.info("relay_mirror_started", connect=source.connect, day=mirror.day or None,
             next_seq=mirror.next_seq, metrics=metrics.start() or None,
             public_key=zmq.curve_public(secret).decode())  # fmt: skip
    try:
        _mirror_loop(mirror, sock, stop, notifier, status_file, metrics, log, source.connect)
    finally:
        notifier.stopping()
        notifier.close()
        metrics.close()
        sock.close()
        ctx.term()
        with contextlib.suppress(OSError):
            status_file.publish(mirror.status(rate=0.0, stopped=True))
        mirror.close()
    log.info("relay_mirror_stopped", kept=mirror.kept, day=mirror.day)
    return 0


def _mirror_loop(  # noqa: PLR0917
    mirror: Mirror, sock: zmq.Socket[Any], stop: StopSignals, notifier: SystemdNotifier,
    status_file: StatusFile, metrics: MetricsEndpoint[RecorderFigures], log: Any, where: str,
) -> None:  # fmt: skip
    clock = time.monotonic
    asked_at = clock()
    sock.send(mirror.request())
    warned = False
    next_status = clock() + 1.0
    kept_then, then = 0, clock()
    status = mirror.status(rate=0.0)
    while not stop.requested:
        if sock.poll(100):
            data = sock.recv()
            if not mirror.take(data):
                continue
            if warned:
                log.info("relay_answering_again", connect=where)
                warned = False
            notifier.ready(f"mirroring from {where}")
            if mirror.day == 0:  # nothing to follow yet: do not ask in a tight loop
                time.sleep(HOLD_S)
            asked_at = clock()
            with contextlib.suppress(zmq.Again):
                sock.send(mirror.request(), zmq.NOBLOCK)
        elif clock() - asked_at > ANSWER_TIMEOUT_S:
            if not warned:
                log.warning("relay_no_answer", connect=where, seconds=ANSWER_TIMEOUT_S,
                            hint="is `hft relay serve` running there, and is this host's public "
                            "key in its relay.clients? asking again")  # fmt: skip
                warned = True
            asked_at = clock()
            with contextlib.suppress(zmq.Again):
                sock.send(mirror.request(), zmq.NOBLOCK)
        mirror.heartbeat()
        notifier.tick(lambda: f"day {mirror.day} · {mirror.kept} mirrored · upstream "
                      f"{mirror.upstream}")  # fmt: skip
        now = clock()
        if now >= next_status:
            next_status = now + 1.0
            status = mirror.status(rate=(mirror.kept - kept_then) / (now - then))
            kept_then, then = mirror.kept, now
            status_file.publish(status)
            metrics.publish(RecorderFigures(status, 0))


class _Allowed:
    """ZAP: a mirror whose CURVE public key is listed gets in; any other is refused, logged."""

    def __init__(self, keys: set[bytes], log: Any) -> None:
        self.keys = keys
        self.log = log

    def callback(self, domain: str, z85_key: bytes) -> bool:
        if z85_key in self.keys:
            return True
        self.log.warning("relay_refused", public_key=z85_key.decode(),
                         hint="add this key to relay.clients if that mirror is yours")  # fmt: skip
        return False


class _ZapLog:
    """pyzmq's authenticator logs to a logging.Logger; these lines go to the service's log."""

    def __init__(self, log: Any) -> None:
        self._log = log

    def debug(self, *args: object, **_: object) -> None:
        pass

    info = debug

    def warning(self, msg: str, *args: object, **_: object) -> None:
        self._log.warning("relay_zap", text=msg % args if args else msg)

    error = warning

    def exception(self, msg: str, *args: object, **_: object) -> None:
        self.warning(msg, *args)
