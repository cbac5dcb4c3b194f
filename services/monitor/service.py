"""``hft monitor``: tails each account's engine journal into its state and serves it over
WebSocket until SIGTERM or SIGINT (docs/monitor.md).

Files: the engine journals ``ACCOUNT_JOURNAL_DIR/engine/YYYYMMDD`` (read from the newest day's
start, so a late or restarted monitor has the whole day), and the endpoint file
``suite.journal_dir/monitor/endpoint``, written once the server listens: its ``ws://host:port``
(with the port chosen when ``monitor.port`` is 0).
"""

from __future__ import annotations

import asyncio
import errno
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import msgspec
import uvloop
from websockets.asyncio.server import serve

from contracts import messages as m
from contracts.calendar import DEFAULT_CALENDAR, load_calendar
from contracts.config import DeploymentConfig, MonitorAccount
from contracts.credentials import load_credentials
from contracts.errors import JournalProblem, UserError
from contracts.logs import get_logger
from contracts.monitor import ServiceHealth, TickView
from contracts.notify import SystemdNotifier
from contracts.status import RecorderStatus, ServiceStatus, read_status, status_path
from contracts.stop import StopSignals
from contracts.ticks import days_in
from libshm import (
    JournalError,
    JournalReader,
    NotAJournal,
    SnapshotBusy,
    SnapshotReader,
    Tick,
)
from services.monitor.alerts import Notifier, check_webhook
from services.monitor.auth import Tokens
from services.monitor.bus import Bus
from services.monitor.control import EngineLink
from services.monitor.server import MonitorServer
from services.monitor.state import AccountState

__all__ = ["run_monitor"]

BATCH: Final = 256
"""Engine messages applied per account before the loop serves clients again."""
IDLE_S: Final = 0.005
HEARTBEAT_TIMEOUT_NS: Final = 5 * 1_000_000_000
"""A writer silent for longer is reported ``gone`` (the engine heartbeats every second)."""
HEALTH_EVERY_S: Final = 1.0


class Tailer:
    """Follows one account's engine journals, day after day, into its state."""

    def __init__(self, account: MonitorAccount, state: AccountState, log: Any) -> None:
        self.root = account.journal_dir / "engine"
        self.state = state
        self.log = log
        self.day = 0
        self.reader: JournalReader | None = None
        self.closed = False
        self.frames = 0
        self.caught_up = True
        self.live = False
        """It has read all the journal held at least once since start: what comes is new."""
        self.status_path = status_path(account.journal_dir, "engine")

    def health(self) -> ServiceHealth:
        status = read_status(self.status_path)
        age = _age(status)
        if self.reader is None:
            return ServiceHealth("absent", status=status, status_age_s=age)
        state = self.reader.writer_state(HEARTBEAT_TIMEOUT_NS)
        return ServiceHealth(state, self.day, self.frames, self.caught_up, status, age)  # type: ignore[arg-type]

    def poll(self) -> list[m.EngineMessage]:
        """The messages committed since the last call (at most ``BATCH``)."""
        newer = self.reader is None or (
            self.closed and any(d > self.day for d in days_in(self.root))
        )
        if newer and not self._open_newest():
            self.live = self.live or self.reader is None  # no journal yet: all that comes is new
            return []
        assert self.reader is not None
        out: list[m.EngineMessage] = []
        while len(out) < BATCH and (frame := self.reader.read()) is not None:
            try:
                msg = m.decode(frame.payload)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise JournalProblem(
                    f"{self.root / str(self.day)}: frame {frame.seq} is not an engine message "
                    f"of this version ({exc}); is the monitor older than the engine?"
                ) from None
            out.append(msg)
            self.frames += 1
            if isinstance(msg, m.DayClosed):
                self.closed = True
        self.caught_up = len(out) < BATCH
        self.live = self.live or self.caught_up
        return out

    def _open_newest(self) -> bool:
        days = [d for d in days_in(self.root) if d > self.day]
        if not days:
            return False
        day = days[-1] if self.reader is None else days[0]
        try:
            reader = JournalReader(self.root / str(day))
        except NotAJournal:
            return False  # created, no segment yet
        if (reader.layout.layout_id, reader.layout.version) != (
            m.ENGINE_LAYOUT.layout_id, m.ENGINE_LAYOUT.version,
        ):  # fmt: skip
            raise JournalProblem(
                f"{self.root / str(day)}: not an engine journal of this version (layout "
                f"{reader.layout.layout_id} v{reader.layout.version})"
            )
        if self.reader is not None:
            self.reader.close()
        self.reader, self.day, self.closed, self.frames = reader, day, False, 0
        self.log.info("monitor_following", journal=str(self.root / str(day)))
        return True


def _accounts(config: DeploymentConfig) -> list[MonitorAccount]:
    if config.monitor.accounts:
        return list(config.monitor.accounts)
    return [MonitorAccount(name=config.suite.name, journal_dir=config.suite.journal_dir)]


def run_monitor(config: DeploymentConfig) -> int:
    log = get_logger()
    stop = StopSignals()
    credentials = load_credentials(config.suite.credentials_file)
    tokens = Tokens(credentials)
    if not len(tokens):
        raise UserError(
            "monitor: no token is configured, so no client could connect; export "
            "HFT_MONITOR_TOKEN (a viewer) and HFT_MONITOR_ADMIN_TOKEN, or add [[monitor_tokens]] "
            "to the credentials file named by suite.credentials_file"
        )
    calendar = load_calendar(config.md_recorder.calendar_file or DEFAULT_CALENDAR)

    def multiplier(instrument: str) -> int:
        product = calendar.product(instrument)
        return product.multiplier if product is not None else 1

    accounts = _accounts(config)
    names = [a.name for a in accounts]
    if len(set(names)) != len(names):
        raise UserError("monitor.accounts: two accounts have the same name; names must differ")
    states = {a.name: AccountState(a.name, multiplier) for a in accounts}
    tailers = [Tailer(a, states[a.name], log) for a in accounts]
    server = MonitorServer(states, tokens, config.monitor, mode=config.suite.mode, log=log)
    engine_token = credentials.engine_token.get_secret_value() if credentials.engine_token else None
    server.links = {a.name: EngineLink(a.name, a.journal_dir, engine_token) for a in accounts}
    webhook = (
        credentials.alert_webhook_url.get_secret_value() if credentials.alert_webhook_url else None
    )
    if config.monitor.alerts.webhook:
        if webhook is None:
            raise UserError(
                "monitor.alerts.webhook is true but no URL is set; export HFT_ALERT_WEBHOOK_URL "
                "or put alert_webhook_url in the credentials file named by "
                "suite.credentials_file"
            )
        if (problem := check_webhook(webhook)) is not None:
            raise UserError(f"{problem} (the credentials' alert_webhook_url)")
    server.webhook = webhook
    curve = credentials.monitor_curve_secret_key
    bus = (Bus(states, tokens, config.monitor, mode=config.suite.mode, log=log,
               secret_key=curve.get_secret_value() if curve else None)
           if config.monitor.zmq else None)  # fmt: skip
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_serve(config, server, bus, tailers, stop=stop, log=log))


async def _serve(config: DeploymentConfig, server: MonitorServer, bus: Bus | None,
                 tailers: list[Tailer], *, stop: StopSignals, log: Any) -> int:  # fmt: skip
    if bus is not None:
        bus.start(config.suite.journal_dir / "monitor")
        server.sinks.append(bus.send)
    notifier = Notifier(config.monitor.alerts, server.webhook, log)
    notifier.start()
    server.notifier = notifier
    try:
        return await _serve_ws(config, server, bus, tailers, stop=stop, log=log)
    finally:
        await notifier.close()
        if bus is not None:
            bus.close()


async def _serve_ws(config: DeploymentConfig, server: MonitorServer, bus: Bus | None,
                    tailers: list[Tailer], *, stop: StopSignals, log: Any) -> int:  # fmt: skip
    mc = config.monitor
    try:
        ws_server = await serve(
            server.handler, mc.host, mc.port, process_request=server.process_request,
            max_size=64 * 1024, ping_interval=20, ping_timeout=20, server_header=None,
            compression=None,  # a delta is encoded once for all; deflate would run per client
        )  # fmt: skip
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise UserError(
                f"monitor: {mc.host}:{mc.port} is in use by another program; stop it or set "
                "monitor.port",
                exit_code=1,
            ) from None
        raise UserError(f"monitor: cannot listen on {mc.host}:{mc.port}: {exc.strerror}") from None
    port = ws_server.sockets[0].getsockname()[1] if ws_server.sockets else mc.port
    server.own_origin(mc.host, port)
    url = f"ws://{mc.host}:{port}"
    _write_endpoint(config.suite.journal_dir / "monitor", url)
    log.info("monitor_started", url=url, accounts=list(server.states), mode=config.suite.mode)
    notifier = SystemdNotifier()
    notifier.ready(f"serving {url}")  # the WebSocket server listens, the ZMQ sockets are bound

    def status() -> str:
        return (f"{len(server.clients)} clients · accounts {', '.join(server.states)} · "
                f"{len(server.alerts.active)} alerts")  # fmt: skip

    market = _Market(config.suite.shm_dir / "snapshot",
                     status_path(config.suite.journal_dir, "md_recorder"))  # fmt: skip
    loop = asyncio.get_running_loop()
    next_health = next_marks = next_flush = next_ticks = loop.time()
    batch_s = mc.batch_ms / 1000
    try:
        while not stop.requested:
            notifier.tick(status)  # the watchdog's ping: from this loop, so a stuck one stops it
            if loop.time() >= next_flush:
                next_flush = loop.time() + batch_s
                server.flush()
            if loop.time() >= next_marks:
                next_marks = loop.time() + 1 / mc.marks_hz
                wanted = {i for t in tailers for i in t.state.watched()}
                if wanted and (marks := market.prices(wanted)) is not None:
                    server.publish_marks(*marks)
            if loop.time() >= next_ticks:
                next_ticks = loop.time() + 1 / mc.ticks_hz
                if wanted := server.wanted_ticks():
                    server.publish_ticks(*market.changed_ticks(wanted))
            if loop.time() >= next_health:
                next_health = loop.time() + HEALTH_EVERY_S
                engines = {t.state.account: t.health() for t in tailers}
                md = market.health()
                server.publish_health(engines, md)
                if bus is not None:
                    bus.health(engines, md)
                server.publish_alerts(server.alerts.health(engines, md, server.clock()))
            await asyncio.sleep(0 if _follow(tailers, server) else IDLE_S)
    finally:
        notifier.stopping()
        notifier.close()
        ws_server.close()
        await ws_server.wait_closed()
    log.info("monitor_stopped", clients=len(server.clients))
    return 0


def _follow(tailers: list[Tailer], server: MonitorServer) -> bool:
    """Apply what each account's journal committed since the last call, and publish the deltas
    and the alerts they raise; True if there was anything."""
    busy = False
    for tailer in tailers:
        live = tailer.live  # read before: the poll that catches up is not yet live
        messages = tailer.poll()
        if messages:
            busy = True
            account = tailer.state.account
            for msg in messages:
                deltas = tailer.state.apply(msg)
                server.publish(deltas)
                if deltas:
                    alerts = server.alerts.deltas(account, deltas, server.clock(), live=live)
                    server.publish_alerts(alerts)
    return busy


class _Market:
    """md_recorder's health from its snapshot table (alive while its writer's process lives)
    and its status file (``closed``: it stopped cleanly; ``gone``: it died)."""

    def __init__(self, path: Path, status: Path) -> None:
        self.path = path
        self.status_path = status
        self.table: SnapshotReader | None = None
        self.sent: dict[str, tuple[int, int, int]] = {}

    def _open(self) -> SnapshotReader | None:
        """The snapshot table, opened the first time it is there."""
        if self.table is None:
            try:
                self.table = SnapshotReader(self.path)
            except (OSError, JournalError):
                return None
        return self.table

    def _ticks(self, wanted: set[str]) -> Iterator[Tick]:
        """The latest tick of each ``wanted`` instrument the table holds, sorted by name."""
        table = self._open()
        if table is None:
            return
        for instrument in sorted(wanted):
            try:
                tick = table.read(instrument)
            except SnapshotBusy:  # the writer kept it busy past the reader's patience: next time
                continue
            if tick is not None:
                yield tick

    def health(self) -> ServiceHealth:
        status = read_status(self.status_path)
        age = _age(status)
        table = self._open()
        if table is None:
            return ServiceHealth("absent", status=status, status_age_s=age)
        if table.writer_alive():
            return ServiceHealth("open", status=status, status_age_s=age)
        stopped = isinstance(status, RecorderStatus) and status.stopped
        return ServiceHealth("closed" if stopped else "gone", status=status, status_age_s=age)

    def changed_ticks(self, wanted: set[str]) -> tuple[int, dict[str, bytes]]:
        """The latest tick of each ``wanted`` instrument that changed since the last call
        (encoded ``TickView``), and the latest of their ticks' times (market time)."""
        out, latest = {}, 0
        for tick in self._ticks(wanted):
            instrument = tick.instrument
            stamp = (tick.local_time_ns, tick.volume, tick.exchange_time_ns)
            if self.sent.get(instrument) == stamp:
                continue
            self.sent[instrument] = stamp
            latest = max(latest, tick.local_time_ns)
            out[instrument] = _encode_tick(tick_view(tick))
        if len(self.sent) > 4 * len(wanted) + 100:  # instruments nobody asks for any more
            self.sent = {i: v for i, v in self.sent.items() if i in wanted}
        return latest, out

    def prices(self, wanted: set[str]) -> tuple[dict[str, float], int] | None:
        """The last price of each ``wanted`` instrument the table holds and the latest of their
        ticks' times (market time), or None if there is no table or no price."""
        out, latest = {}, 0
        for tick in self._ticks(wanted):
            if not math.isnan(tick.last):
                out[tick.instrument] = tick.last
                latest = max(latest, tick.local_time_ns)
        return (out, latest) if out else None


def _number(x: float) -> float | None:
    return None if math.isnan(x) else x


def tick_view(tick: Tick) -> TickView:
    n = _number
    return TickView(
        tick.instrument, tick.exchange_time_ns, n(tick.last), n(tick.bid_price1),
        tick.bid_volume1, n(tick.ask_price1), tick.ask_volume1, tick.volume, n(tick.turnover),
        n(tick.open_interest), n(tick.upper_limit), n(tick.lower_limit),
    )  # fmt: skip


_encode_tick = msgspec.json.Encoder().encode


def _age(status: ServiceStatus | None) -> float:
    return 0.0 if status is None else round(max(time.time_ns() - status.written_ns, 0) / 1e9, 1)


def _write_endpoint(directory: Path, url: str) -> None:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tmp = directory / ".endpoint.tmp"
        tmp.write_text(url + "\n", encoding="utf-8")
        os.replace(tmp, directory / "endpoint")
    except OSError as exc:
        raise UserError(
            f"{directory}: cannot write the monitor's endpoint file ({exc.strerror}); check "
            "suite.journal_dir and its permissions"
        ) from None
