"""The relay's processes (docs/relay.md): ``hft relay serve`` binds a CURVE ROUTER whose ZAP
handler admits the listed mirrors and runs ``RelayServer``; the mirror (``hft md-recorder`` with
``source = "relay"``, or ``hft relay mirror``) connects a CURVE DEALER and runs ``Mirror``, with
the status file, metrics and systemd notifications md_recorder gives. Both run until SIGTERM."""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any, cast

import zmq
from zmq.auth.thread import ThreadAuthenticator

from contracts.config import DeploymentConfig, RelayConfig
from contracts.credentials import load_credentials
from contracts.errors import UserError
from contracts.logs import get_logger
from contracts.metrics import MetricsEndpoint
from contracts.notify import SystemdNotifier
from contracts.status import StatusFile, status_path
from contracts.stop import StopSignals
from contracts.ticks import TickStore
from services.md_recorder.metrics import RecorderFigures, families
from services.md_recorder.relay import (
    ANSWER_TIMEOUT_S,
    HOLD_S,
    IDLE_SLEEP_S,
    MAX_MESSAGE,
    Mirror,
    RelayServer,
)

if TYPE_CHECKING:
    import logging

__all__ = ["run_mirror", "run_server"]


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
                    log=log, snapshot=config.suite.shm_dir / "snapshot")  # fmt: skip
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
    ask_at = clock()  # when to send the next request
    asked_at, in_flight, warned = 0.0, False, False
    next_status = clock() + 1.0
    kept_then, then = 0, clock()
    while not stop.requested:
        if not in_flight and clock() >= ask_at:
            with contextlib.suppress(zmq.Again):  # a full queue: asked again after the timeout
                sock.send(mirror.request(), zmq.NOBLOCK)
            asked_at, in_flight = clock(), True
        if sock.poll(50):
            if mirror.take(sock.recv()):  # the answer to the request in flight
                in_flight = False
                if warned:
                    log.info("relay_answering_again", connect=where)
                    warned = False
                notifier.ready(f"mirroring from {where}")
                # nothing to follow yet: ask again later, not in a tight loop
                ask_at = clock() + (HOLD_S if mirror.day == 0 else 0.0)
        elif in_flight and clock() - asked_at > ANSWER_TIMEOUT_S:
            if not warned:
                log.warning("relay_no_answer", connect=where, seconds=ANSWER_TIMEOUT_S,
                            hint="is `hft relay serve` running there, and is this host's public "
                            "key in its relay.clients? asking again")  # fmt: skip
                warned = True
            in_flight, ask_at = False, clock()
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
