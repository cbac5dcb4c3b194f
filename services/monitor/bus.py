"""The monitor's ZMQ side for programs (docs/monitor.md, "ZMQ"): one PUB socket per account,
each its own ZAP domain, so a subscriber receives only the accounts its credentials allow,
whatever it subscribes to; and a REP socket that answers snapshot and endpoint requests, so a
late joiner lines up with the deltas that follow.

Authentication is pyzmq's ZAP authenticator (``zmq.auth``) with our tokens: PLAIN (the token as
password) on loopback and ipc endpoints, CURVE (the client's public key, registered with its
token) on any other address, where PLAIN would send the token in clear.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import msgspec
import zmq
import zmq.asyncio
from zmq.auth.asyncio import AsyncioAuthenticator
from zmq.utils import z85

from contracts.config import MonitorConfig
from contracts.errors import UserError
from contracts.monitor import (
    PROTOCOL_VERSION,
    BusRequest,
    EndpointsRequest,
    ErrorReply,
    Health,
    ServiceHealth,
    SnapshotRequest,
    ZmqEndpoints,
)
from services.monitor.auth import Grant, Tokens, TooManyFailures
from services.monitor.state import AccountState

__all__ = ["SNAPSHOT_DOMAIN", "Bus", "account_endpoints", "is_local"]

SNAPSHOT_DOMAIN: Final = "*snapshot"
"""The ZAP domain of the REP socket (any valid credentials; each request is checked)."""
LINGER_MS: Final = 0
MAX_REQUEST: Final = 64 * 1024

_encode = msgspec.json.Encoder().encode
_decode_request = msgspec.json.Decoder(BusRequest).decode


def is_local(endpoint: str) -> bool:
    """True for ipc and loopback tcp endpoints, where PLAIN's clear token stays on the host."""
    if endpoint.startswith("ipc://"):
        return True
    host = endpoint.removeprefix("tcp://").rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # "*", an interface name or a host name: reachable from elsewhere
        return False


def account_endpoints(first: str, accounts: list[str]) -> dict[str, str]:
    """Where each account's PUB socket binds: ``tcp://HOST:PORT`` gives the k-th account
    PORT + k (0 stays 0: any free port); ``ipc://PATH`` gives the first PATH and the others
    PATH.NAME."""
    out = {}
    for k, account in enumerate(accounts):
        if first.startswith("ipc://"):
            out[account] = first if k == 0 else f"{first}.{account}"
        else:
            host, port = first.rsplit(":", 1)
            out[account] = f"{host}:{int(port) + k if int(port) else 0}"
    return out


class _Authenticator(AsyncioAuthenticator):
    """ZAP with the monitor's tokens: a PLAIN password or a CURVE public key gives a grant; the
    domain (an account, or the snapshot socket's) must be one the grant sees. The User-Id of an
    accepted peer is its grant's name, whatever username it sent. Failures are logged without
    the token and counted per address, as for WebSocket clients."""

    def __init__(self, context: zmq.Context[Any], tokens: Tokens, failures: TooManyFailures,
                 log: Any, clock: Callable[[], int]) -> None:  # fmt: skip
        super().__init__(context, log=logging.getLogger("hft.monitor.zap"))
        self.tokens = tokens
        self.failures = failures
        self.events = log
        self.clock = clock
        self._address = ""
        self._granted = ""

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        # The base class reads the request, calls one _authenticate_* and replies, with no
        # other request between (they are handled one at a time): the address and the grant
        # are passed through these two fields.
        self._address = msg[3].decode("utf-8", "replace") if len(msg) > 3 else "?"
        self._granted = ""
        await super().handle_zap_message(msg)

    def _judge(self, domain: str, grant: Grant | None, mechanism: str) -> tuple[bool, bytes]:
        now = self.clock()
        if self.failures.refused(self._address, now):
            return False, b"refused: too many failed attempts"
        if grant is not None and (domain == SNAPSHOT_DOMAIN or grant.sees(domain)):
            self._granted = grant.name
            return True, b"OK"
        refused = self.failures.failed(self._address, now)
        self.events.warning("monitor_zmq_auth_failed", address=self._address,
                            mechanism=mechanism, domain=domain,
                            why="unknown credentials" if grant is None else "account not granted",
                            refused_for_60_s=refused)  # fmt: skip
        return False, b"NO ACCESS"

    def _authenticate_plain(self, domain: str, username: str, password: str
                            ) -> tuple[bool, bytes]:  # fmt: skip
        return self._judge(domain, self.tokens.grant(password), "PLAIN")

    async def _authenticate_curve(self, domain: str, client_key: bytes) -> tuple[bool, bytes]:
        return self._judge(domain, self.tokens.curve_grant(z85.encode(client_key).decode()),
                           "CURVE")  # fmt: skip

    def curve_user_id(self, client_public_key: bytes) -> str:
        return self._granted

    def _send_zap_reply(self, request_id: bytes, status_code: bytes, status_text: bytes,
                        user_id: str = "") -> None:  # fmt: skip
        super()._send_zap_reply(request_id, status_code, status_text, self._granted)


class Bus:
    """The PUB sockets (one per account) and the snapshot REP socket, on the monitor's loop."""

    def __init__(self, states: Mapping[str, AccountState], tokens: Tokens, config: MonitorConfig,
                 *, mode: str, secret_key: str | None, log: Any,
                 clock: Callable[[], int] = time.time_ns) -> None:  # fmt: skip
        self.states = states
        self.tokens = tokens
        self.mode = mode
        self.log = log
        self.clock = clock
        self.context: zmq.asyncio.Context = zmq.asyncio.Context()  # its own ZAP, apart from
        self.auth = _Authenticator(self.context, tokens, TooManyFailures(), log, clock)  # others
        self.public_key: str | None = None
        self.secret_key = secret_key
        if secret_key is not None:
            try:
                self.public_key = zmq.curve_public(secret_key.encode()).decode()
            except (ValueError, zmq.ZMQError):
                raise UserError(
                    "monitor_curve_secret_key: not a Z85 CURVE secret key (40 characters); "
                    "make one with: python -c 'import zmq; print(zmq.curve_keypair()[1].decode())'"
                ) from None
        self.wanted = {"snapshot": config.zmq_snapshot,
                       **account_endpoints(config.zmq_pub, list(states))}  # fmt: skip
        self.hwm = config.client_queue
        self.pubs: dict[str, zmq.asyncio.Socket] = {}
        self.rep: zmq.asyncio.Socket | None = None
        self.endpoints: dict[str, str] = {}
        self._task: asyncio.Task[None] | None = None

    def _socket(self, kind: int, domain: str, endpoint: str) -> zmq.asyncio.Socket:
        sock = self.context.socket(kind)
        sock.linger = LINGER_MS
        sock.maxmsgsize = MAX_REQUEST  # what a peer may send: a request, or a subscription
        sock.zap_domain = domain.encode()
        if is_local(endpoint):
            sock.plain_server = True
        elif self.secret_key is None:
            sock.close()
            raise UserError(
                f"monitor: {endpoint} is reachable from other hosts, where PLAIN would send "
                "tokens in clear; set monitor_curve_secret_key in the credentials file (or "
                "HFT_MONITOR_CURVE_SECRET_KEY) so subscribers use CURVE, or bind to 127.0.0.1"
            )
        else:
            sock.curve_server = True
            sock.curve_secretkey = self.secret_key.encode()
        if kind == zmq.PUB:
            sock.sndhwm = self.hwm
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            sock.close()
            hint = ("is in use by another program; stop it or set monitor.zmq_pub and "
                    "monitor.zmq_snapshot" if exc.errno == zmq.EADDRINUSE
                    else f"cannot be bound ({exc.strerror})")  # fmt: skip
            raise UserError(f"monitor: {endpoint} {hint}", exit_code=1) from None
        return sock

    def start(self, directory: Path) -> None:
        """Bind every socket, start answering requests, and write ``directory/zmq.json``."""
        self.auth.start()
        try:
            self.rep = self._socket(zmq.REP, SNAPSHOT_DOMAIN, self.wanted["snapshot"])
            self.endpoints["snapshot"] = _bound(self.rep)
            for account in self.states:
                sock = self._socket(zmq.PUB, account, self.wanted[account])
                self.pubs[account] = sock
                self.endpoints[account] = _bound(sock)
        except BaseException:
            self.close()
            raise
        self._task = asyncio.get_running_loop().create_task(self._answer())
        _write_json(directory / "zmq.json", self.describe(None))
        self.log.info("monitor_zmq", endpoints=self.endpoints, curve_public_key=self.public_key)

    def describe(self, grant: Grant | None) -> ZmqEndpoints:
        """Where to connect: the snapshot socket and the PUB sockets of the accounts ``grant``
        sees (all, for None)."""
        pubs = {a: e for a, e in self.endpoints.items()
                if a in self.states and (grant is None or grant.sees(a))}  # fmt: skip
        return ZmqEndpoints(PROTOCOL_VERSION, self.mode, self.endpoints["snapshot"], pubs,
                            self.public_key)  # fmt: skip

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for sock in [*self.pubs.values(), *([self.rep] if self.rep else [])]:
            sock.close()
        self.pubs.clear()
        self.rep = None
        self.auth.stop()
        self.context.term()

    # -- publishing (called on the loop, in journal order) -------------------------------------

    def send(self, account: str, kind: bytes, data: bytes) -> None:
        """Publish ``data`` (a delta, marks or health, encoded as for WebSocket) on the account's
        socket, framed ``[kind, data]``. A subscriber past the high-water mark loses messages
        (ZMQ drops them for it alone); it sees a gap in ``seq`` and asks for a snapshot."""
        sock = self.pubs.get(account)
        if sock is not None:
            with contextlib.suppress(zmq.Again):  # a PUB socket drops rather than blocks
                sock.send_multipart([kind, data], flags=zmq.NOBLOCK)

    def health(self, engines: Mapping[str, ServiceHealth], market: ServiceHealth) -> None:
        now = self.clock()
        for account, engine in engines.items():
            self.send(account, b"health", _encode(Health(now, {account: engine}, market)))

    # -- requests ------------------------------------------------------------------------------

    async def _answer(self) -> None:
        assert self.rep is not None
        while True:
            frames = await self.rep.recv_multipart(copy=False)
            reply = self.answer(str(frames[0].get("User-Id")), frames[-1].bytes)
            await self.rep.send(_encode(reply))

    def answer(self, user_id: str, raw: bytes) -> Any:
        """The reply to one request from the peer ZAP named ``user_id`` (a grant's name)."""
        grant = self.tokens.named(user_id)
        if grant is None:  # its token left the credentials since it connected
            return ErrorReply("not authenticated")
        try:
            request = _decode_request(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return ErrorReply(f"not a request of this protocol: {exc}")
        if isinstance(request, EndpointsRequest):
            return self.describe(grant)
        assert isinstance(request, SnapshotRequest)
        if request.account not in self.states or not grant.sees(request.account):
            return ErrorReply(f"no account {request.account!r} for this token")
        return self.states[request.account].snapshot()


def _bound(sock: zmq.Socket[Any]) -> str:
    endpoint = sock.last_endpoint
    return endpoint.decode() if isinstance(endpoint, bytes) else str(endpoint)


def _write_json(path: Path, value: Any) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(msgspec.to_builtins(value)) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise UserError(
            f"{path}: cannot write the monitor's ZMQ endpoints ({exc.strerror}); check "
            "suite.journal_dir and its permissions"
        ) from None
