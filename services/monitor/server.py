"""The monitor's WebSocket server (websockets' asyncio implementation): authentication, the
stream of snapshots and deltas per client, and the plain HTTP answers of the same port
(docs/monitor.md). Everything runs on one event loop: the journal tailer publishes deltas
between client sends, so a snapshot and the deltas after it never interleave wrongly.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec
from prometheus_client import generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State

from contracts.config import MonitorConfig
from contracts.metrics import labelled
from contracts.monitor import (
    PROTOCOL_VERSION,
    TOPICS,
    Alert,
    Auth,
    ClientMessage,
    Command,
    DayCurves,
    Delta,
    ErrorReply,
    Health,
    Hello,
    Marks,
    Sample,
    ServiceHealth,
    Subscribe,
)
from services.monitor.alerts import Alerts, Notifier
from services.monitor.auth import Grant, Tokens, TooManyFailures
from services.monitor.control import EngineLink
from services.monitor.fanout import ClientQueue, Curves, History
from services.monitor.state import AccountState
from services.monitor.web import health_metrics, load_static, metrics_response, page

__all__ = ["AUTH_TIMEOUT_S", "MonitorServer"]

AUTH_TIMEOUT_S: Final = 5.0
POLICY: Final = 1008  # WebSocket close code: policy violation (authentication)
TRY_AGAIN: Final = 1013  # WebSocket close code: try again later (too slow)
CLOSE_WAIT_S: Final = 2.0
SEND_BUFFER: Final = 256 * 1024
"""Kernel send buffer per client: fixed, so a stalled client holds at most this much of the
kernel's memory and its own queue, not the kernel's, is what tells that it is behind."""

_encode = msgspec.json.Encoder().encode
FLUSH_AT: Final = 2000
"""Pending deltas that are sent at once, whatever ``monitor.batch_ms`` says."""
RESUME_BATCH: Final = 1000
"""Deltas per message when a resumed client is sent what it missed."""


class _RawTicks(msgspec.Struct, frozen=True, tag_field="type", tag="ticks"):
    """``contracts.monitor.Ticks`` with each tick already encoded (once for every client)."""

    time_ns: int
    ticks: list[msgspec.Raw]


class _RawDeltas(msgspec.Struct, frozen=True, tag_field="type", tag="deltas"):
    """``contracts.monitor.Deltas`` with each delta already encoded (once for every client)."""

    account: str
    trading_day: int
    deltas: list[msgspec.Raw]


_decode_client = msgspec.json.Decoder(ClientMessage).decode


@dataclass(eq=False)
class _Client:
    ws: ServerConnection
    grant: Grant
    accounts: list[str]
    queue: ClientQueue
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sender: asyncio.Task[None] | None = None
    dropping: bool = False
    backlog: list[bytes] = field(default_factory=list)
    """What the client gets first: a snapshot per account, or the deltas it missed (shared
    with the history, so a long resume costs no copy); live deltas queue up meanwhile."""
    instruments: list[str] = field(default_factory=list)
    """Whose ticks it asked for."""
    sending: bool = True
    """Its sender is in a send or has something to send (false only while it waits for
    more): a message may be written at once only when this is false."""

    def write_now(self, data: bytes) -> bool:
        """Write ``data`` as a text frame straight to the socket, if nothing waits before it
        and the socket's buffer is below its limit; False if it must be queued instead. The
        frame is made by the connection's own Sans-I/O protocol, as its ``send`` would, without
        the sender task's wake-up and locks: the cost of a fan-out to many clients."""
        if self.sending or len(self.queue) or self.queue.stale or self.backlog:
            return False
        ws = self.ws
        transport = ws.transport
        if ws.protocol.state is not State.OPEN or transport.is_closing():
            return False
        if transport.get_write_buffer_size() >= transport.get_write_buffer_limits()[1]:
            return False  # the sender waits for it to drain
        ws.protocol.send_text(data)
        ws.send_data()
        return True


class MonitorServer:
    def __init__(
        self, states: Mapping[str, AccountState], tokens: Tokens, config: MonitorConfig, *,
        mode: str, log: Any, clock: Callable[[], int] = time.time_ns,
    ) -> None:  # fmt: skip
        self.states = states
        self.links: dict[str, EngineLink] = {}
        """How to reach each account's engine, for admin commands (set by the service)."""
        self.sinks: list[Callable[[str, bytes, bytes], None]] = []
        self.health_seen: tuple[dict[str, ServiceHealth], ServiceHealth] = (
            {}, ServiceHealth("absent"),
        )  # fmt: skip
        """Also handed each encoded delta and marks sample: ``(account, type, data)`` (the
        ZMQ bus)."""
        self.tokens = tokens
        self.config = config
        self.mode = mode
        self.log = log
        self.clock = clock
        self.histories = {a: History(config.replay_deltas) for a in states}
        self.curves = {a: Curves() for a in states}
        self.failures = TooManyFailures()
        self.clients: set[_Client] = set()
        self.origins: set[str] = set(config.origins)
        self.static = load_static()
        self.alerts = Alerts(config.alerts)
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(self)  # collect(): the figures of this server, read when scraped
        self.notifier: Notifier | None = None
        self.webhook: str | None = None
        """Runs the operator's command and posts to the webhook for each alert (the service)."""
        self._tasks: set[asyncio.Task[None]] = set()
        self.last_ticks: dict[str, bytes] = {}
        """The latest encoded tick of each instrument sent, for clients that ask later."""
        self.last_tick_ns = 0
        self._pending: dict[str, list[msgspec.Raw]] = {}
        self._pending_count = 0

    # -- publishing ----------------------------------------------------------------------------

    def publish(self, deltas: list[Delta]) -> None:
        """Hand new deltas to the history and the sinks now, and to the clients that may see
        their account in the next batch (:meth:`flush`)."""
        for delta in deltas:
            data = _encode(delta)
            history = self.histories[delta.account]
            new_day = history.trading_day and delta.trading_day != history.trading_day
            if new_day:
                self.flush()  # the old day's last deltas, then each client's new snapshot
                for client in self.clients:
                    if delta.account in client.accounts:
                        client.queue.restart()
            history.append(delta, data)
            for sink in self.sinks:
                sink(delta.account, b"delta", data)
            self._pending.setdefault(delta.account, []).append(msgspec.Raw(data))
            self._pending_count += 1
        if self._pending_count >= FLUSH_AT:
            self.flush()

    def flush(self, skip: _Client | None = None) -> None:
        """Send each account's pending deltas as one ``deltas`` message to every client that
        may see it (but ``skip``, about to get a snapshot that holds them). Called every
        ``monitor.batch_ms``, and before anything that must come after them: a snapshot, marks,
        health, an alert."""
        if not self._pending_count:
            return
        now = self.clock()
        pending, self._pending, self._pending_count = self._pending, {}, 0
        for account, items in pending.items():
            data = _encode(_RawDeltas(account, self.histories[account].trading_day, items))
            for client in self.clients:
                if account in client.accounts and client is not skip:
                    self._offer(client, data, now, len(items))

    def publish_alerts(self, alerts: list[Alert]) -> None:
        """Send each alert raised or cleared to the clients that may see it (an alert of the
        suite, with no account, to all), log it and hand it to the notifier."""
        if not alerts:
            return
        self.flush()
        now = self.clock()
        for alert in alerts:
            data = _encode(alert)
            if alert.cleared_ns:
                self.log.info("alert_cleared", id=alert.id, account=alert.account,
                              kind=alert.kind, text=alert.text)  # fmt: skip
            else:
                emit = self.log.error if alert.severity == "critical" else self.log.warning
                emit("alert_raised", id=alert.id, account=alert.account, kind=alert.kind,
                     severity=alert.severity, text=alert.text)  # fmt: skip
            for account in [alert.account] if alert.account else list(self.states):
                for sink in self.sinks:
                    sink(account, b"alert", data)
            for client in self.clients:
                if not alert.account or alert.account in client.accounts:
                    self._offer(client, data, now)
            if self.notifier is not None:
                self.notifier.notify(alert)

    def _active_alerts(self, accounts: list[str]) -> list[bytes]:
        return [_encode(a) for a in self.alerts.visible(accounts)]

    def _offer(self, client: _Client, data: bytes, now: int, weight: int = 1) -> None:
        """Queue ``data`` (``weight`` changes) for ``client``; one too far behind is dropped
        here and now, since its sender may be stuck in a send."""
        if client.write_now(data):
            return
        client.queue.put(data, now, weight)
        client.wake.set()
        if client.queue.closed is not None and not client.dropping:
            client.dropping = True
            task = asyncio.get_running_loop().create_task(self._drop(client))
            self._tasks.add(task)  # held until done: the loop keeps only weak references
            task.add_done_callback(self._tasks.discard)

    def publish_marks(self, prices: Mapping[str, float], time_ns: int) -> None:
        """Send each client the marks of the accounts it may see: the last prices of the day's
        instruments (at market time ``time_ns``), each agent's unrealised PnL and equity; and
        sample them into the account's curves."""
        self.flush()
        now = self.clock()
        encoded = {}
        for account, state in self.states.items():
            watched = {i: prices[i] for i in state.watched() if i in prices}
            if watched:
                unrealised = state.unrealised(watched)
                cash = state.cash()
                equity = {a: cash.get(a, 0.0) + u for a, u in unrealised.items()}
                self.curves[account].add(state.trading_day, Sample(time_ns, watched, equity))
                encoded[account] = _encode(Marks(time_ns, account, watched, unrealised, equity))
                for sink in self.sinks:
                    sink(account, b"marks", encoded[account])
        for client in self.clients:
            for account in client.accounts:
                if account in encoded:
                    self._offer(client, encoded[account], now)

    def wanted_ticks(self) -> set[str]:
        """The instruments some client asked ticks of."""
        return {i for c in self.clients for i in c.instruments}

    def publish_ticks(self, time_ns: int, changed: Mapping[str, bytes]) -> None:
        """Send each client the ticks of its instruments among ``changed`` (each an encoded
        ``TickView``), one ``ticks`` message per client, if any."""
        if not changed:
            return
        self.flush()
        now = self.clock()
        self.last_ticks.update(changed)
        self.last_tick_ns = max(self.last_tick_ns, time_ns)
        for client in self.clients:
            mine = [msgspec.Raw(changed[i]) for i in client.instruments if i in changed]
            if mine:
                self._offer(client, _encode(_RawTicks(time_ns, mine)), now)

    def publish_health(self, engines: Mapping[str, ServiceHealth], market: ServiceHealth) -> None:
        """Send each client the health of the engines it may see, and of the market data."""
        self.flush()
        now = self.clock()
        self.health_seen = dict(engines), market
        for client in self.clients:
            visible = {a: h for a, h in engines.items() if a in client.accounts}
            self._offer(client, _encode(Health(now, visible, market)), now)

    # -- HTTP ----------------------------------------------------------------------------------

    def own_origin(self, host: str, port: int) -> None:
        """Allow the server's own origin (the dashboard it serves)."""
        self.origins.update({f"http://{host}:{port}", f"http://localhost:{port}"})

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path)
        if path.path == "/healthz":
            return connection.respond(HTTPStatus.OK, "ok\n")
        if path.path == "/metrics":
            return metrics_response(self.metrics())
        if request.headers.get("Upgrade", "").lower() != "websocket":  # a page, not a socket
            return self._page(path.path)
        origin = request.headers.get("Origin")
        # the page this server served, under whatever name the browser reached it by (a page
        # of another site cannot make its Origin match the Host it connects to)
        same = origin in (f"http://{request.headers.get('Host')}",
                          f"https://{request.headers.get('Host')}")  # fmt: skip
        if origin is not None and origin not in self.origins and not same:
            self.log.warning("monitor_origin_refused", origin=origin,
                             address=_address(connection),
                             hint="add it to monitor.origins if it is yours")  # fmt: skip
            return connection.respond(HTTPStatus.FORBIDDEN, "origin not allowed\n")
        return None

    def _page(self, path: str) -> Response:
        return page(self.static, path)

    def metrics(self) -> bytes:
        """``/metrics``: the monitor's own figures and the services' (prometheus_client's text
        format), built on the event loop that owns them."""
        return generate_latest(self._registry)

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("hft_monitor_clients", "WebSocket clients signed in",
                                value=len(self.clients))  # fmt: skip
        yield labelled(GaugeMetricFamily("hft_monitor_seq", "Newest engine journal frame applied",
                                         labels=["account"]),
                       (([a], s.seq) for a, s in self.states.items()))  # fmt: skip
        queues = [len(c.queue) for c in self.clients]
        yield GaugeMetricFamily("hft_monitor_client_queue_max", "Changes waiting for the slowest "
                                "client", value=max(queues, default=0))  # fmt: skip
        yield GaugeMetricFamily("hft_monitor_client_queue", "Changes waiting for every client",
                                value=sum(queues))  # fmt: skip
        yield GaugeMetricFamily(
            "hft_monitor_coalesced",
            "Changes merged into a later one for a slow client",
            value=sum(c.queue.coalesced for c in self.clients),
        )
        yield labelled(GaugeMetricFamily("hft_monitor_alerts_active", "Alerts raised and not "
                                         "cleared", labels=["severity"]),
                       (([sev], n) for sev, n in Counter(
                           a.severity for a in self.alerts.active.values()).items()))  # fmt: skip
        engines, market = self.health_seen
        yield from health_metrics(engines, market)

    # -- a client ------------------------------------------------------------------------------

    async def handler(self, ws: ServerConnection) -> None:
        address = _address(ws)
        sock = ws.transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        grant = await self._authenticate(ws, address)
        if grant is None:
            return
        accounts = grant.visible(self.states)
        self.log.info("monitor_client", address=address, name=grant.name, role=grant.role,
                      accounts=accounts)  # fmt: skip
        await ws.send(_encode(Hello("hft-monitor", PROTOCOL_VERSION, grant.role, accounts,
                                    self.mode, list(TOPICS))), text=True)  # fmt: skip
        try:
            subscribe = await self._subscription(ws)
        except ConnectionClosed:
            return
        if subscribe is None:
            return
        client = _Client(ws, grant, accounts,
                         ClientQueue(self.config.client_queue,
                                     int(self.config.slow_grace_s * 1e9)),
                         instruments=list(dict.fromkeys(subscribe.instruments)))  # fmt: skip
        self.flush()  # what is pending is in the state: it must not come again after it
        for account in accounts:  # no await in here: nothing is published meanwhile
            state = self.states[account]
            day, seq = subscribe.since.get(account, (0, -1))
            missed = self.histories[account].after(day, seq, state.seq) if seq >= 0 else None
            if missed is None:
                client.backlog.append(_encode(state.snapshot()))
            for start in range(0, len(missed or ()), RESUME_BATCH):
                assert missed is not None
                batch = [msgspec.Raw(d) for d in missed[start : start + RESUME_BATCH]]
                client.backlog.append(_encode(_RawDeltas(account, state.trading_day, batch)))
            curves = self.curves[account]
            if curves.samples and curves.trading_day == state.trading_day:
                client.backlog.append(_encode(DayCurves(account, curves.trading_day,
                                                           curves.samples)))  # fmt: skip
        client.backlog.extend(self._active_alerts(accounts))
        known = [
            msgspec.Raw(self.last_ticks[i]) for i in client.instruments if i in self.last_ticks
        ]
        if known:  # what was sent before it came: its ticks are new to it
            client.backlog.append(_encode(_RawTicks(self.last_tick_ns, known)))
        self.clients.add(client)
        client.wake.set()
        client.sender = asyncio.create_task(self._send(client))
        try:
            async for raw in ws:
                await self._received(client, raw)
        except ConnectionClosed:
            pass
        finally:
            self.clients.discard(client)
            client.sender.cancel()

    async def _drop(self, client: _Client) -> None:
        """Close a client that fell too far behind, whatever its sender is doing."""
        reason = client.queue.closed or "too slow"
        self.clients.discard(client)
        if client.sender is not None:
            client.sender.cancel()
        self.log.warning("monitor_client_too_slow", name=client.grant.name,
                         address=_address(client.ws), reason=reason)  # fmt: skip
        await _close_or_drop(client.ws, TRY_AGAIN, reason[:120])

    async def _authenticate(self, ws: ServerConnection, address: str) -> Grant | None:
        """The client's grant, or None after closing it with 1008 (logged, never the token)."""
        now = self.clock()
        if self.failures.refused(address, now):
            await ws.close(POLICY, "authentication failed")
            return None
        how, grant = "none", None
        header = ws.request.headers.get("Authorization") if ws.request else None
        if ws.request is not None and urlsplit(ws.request.path).query:  # a token in a URL ends
            how = "query string (tokens are never taken from a URL)"  # up in logs and history
        elif header is not None:
            how = "header"
            scheme, _, token = header.partition(" ")
            if scheme.lower() == "bearer":
                grant = self.tokens.grant(token.strip())
        else:
            how = "first message"
            try:
                raw = await asyncio.wait_for(ws.recv(), AUTH_TIMEOUT_S)
                message = _decode_client(raw)
                if isinstance(message, Auth):
                    grant = self.tokens.grant(message.token)
            except (TimeoutError, ConnectionClosed, msgspec.DecodeError, msgspec.ValidationError):
                grant = None
        if grant is not None:
            return grant
        refused = self.failures.failed(address, now)
        self.log.warning("monitor_auth_failed", address=address, how=how,
                         refused_for_60_s=refused)  # fmt: skip
        await ws.close(POLICY, "authentication failed")
        return None

    async def _subscription(self, ws: ServerConnection) -> Subscribe | None:
        while True:
            raw = await ws.recv()
            try:
                message = _decode_client(raw)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                await ws.send(_encode(ErrorReply(f"not a message of this protocol: {exc}")),
                              text=True)  # fmt: skip
                continue
            if isinstance(message, Subscribe):
                return message
            await ws.send(_encode(ErrorReply("send subscribe first")), text=True)

    async def _received(self, client: _Client, raw: str | bytes) -> None:
        try:
            message = _decode_client(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            await client.ws.send(_encode(ErrorReply(f"not a message of this protocol: {exc}")),
                                 text=True)  # fmt: skip
            return
        if not isinstance(message, Command):
            await client.ws.send(_encode(ErrorReply("already subscribed")), text=True)
            return
        grant = client.grant
        link = self.links.get(message.account)
        if grant.role != "admin" or link is None or not grant.sees(message.account):
            why = ("a viewer token cannot send commands" if grant.role != "admin"
                   else f"no account {message.account!r} for this token")  # fmt: skip
            self.log.warning("monitor_command_refused", name=grant.name, action=message.action,
                             account=message.account, why=why)  # fmt: skip
            await client.ws.send(_encode(ErrorReply(why)), text=True)
            return
        reply = await link.send(message, f"monitor.{grant.name}")
        self.log.info("monitor_command", name=grant.name, account=message.account,
                      action=message.action, scope=message.scope, target=message.target,
                      ok=reply.ok, text=reply.text)  # fmt: skip
        await client.ws.send(_encode(reply), text=True)

    async def _send(self, client: _Client) -> None:
        queue, ws = client.queue, client.ws
        try:
            while True:
                client.sending = False  # from now until it wakes, _offer may write at once
                await client.wake.wait()
                client.sending = True
                client.wake.clear()
                while True:
                    if queue.closed is not None:
                        return  # _drop closes it
                    if queue.stale:  # every snapshot built before any await: none misses a delta
                        self.flush(skip=client)  # for the others: this snapshot holds them
                        queue.stale = False
                        client.backlog.clear()
                        snapshots = [_encode(self.states[a].snapshot()) for a in client.accounts]
                        snapshots += self._active_alerts(client.accounts)  # what it may have lost
                        for data in snapshots:
                            await ws.send(data, text=True)
                        continue
                    if client.backlog:
                        backlog, client.backlog = client.backlog, []
                        for i, data in enumerate(backlog):
                            if queue.stale or queue.closed is not None:
                                break
                            await ws.send(data, text=True)
                            if i % 256 == 255:
                                await asyncio.sleep(0)  # let the tailer publish meanwhile
                        continue
                    item = queue.take()
                    if item is None:
                        break
                    await ws.send(item, text=True)
        except ConnectionClosed:
            return


async def _close_or_drop(ws: ServerConnection, code: int, reason: str) -> None:
    """Close with ``code``; a client too slow to take even the close frame in time is dropped
    (its TCP connection aborted), so it holds nothing of the server's."""
    try:
        await asyncio.wait_for(ws.close(code, reason), CLOSE_WAIT_S)
    except TimeoutError:
        ws.transport.abort()


def _address(ws: ServerConnection) -> str:
    peer = ws.remote_address
    return str(peer[0]) if peer else "?"
