"""``hft md-recorder``: wires a source to the recorder and runs until SIGTERM or SIGINT (or, for
a replay without ``loop``, until the recording is published; the journal is then closed, so
readers see its end).

Files: ticks go to the live ring ``suite.shm_dir/ticks/YYYYMMDD`` (``md_recorder.ring_segments``
segments), each segment archived into the day's recording ``suite.journal_dir/recordings/YYYYMMDD``
as it completes (``contracts.ticks``); the snapshot table is ``suite.shm_dir/snapshot``, rebuilt
from the newest day's ticks at start. Every ``METRICS_EVERY_S`` the service logs its counts (kept,
drops by reason, lag, source state), and a warning while the archive cannot take a segment;
every ``STATUS_EVERY_S`` it rewrites its status file ``suite.journal_dir/status/md_recorder.json``
(``contracts.status``), which the monitor reads, and hands the same figures to its Prometheus
endpoint (``md_recorder.metrics``, ``services.md_recorder.metrics``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

from contracts.calendar import DEFAULT_CALENDAR, Calendar, load_calendar, next_weekday
from contracts.clock import CHINA
from contracts.config import DeploymentConfig, SimConfig
from contracts.credentials import load_credentials
from contracts.ctp_locale import require_ctp_locale
from contracts.errors import JournalProblem, UserError
from contracts.logs import get_logger
from contracts.metrics import MetricsEndpoint
from contracts.notify import SystemdNotifier
from contracts.status import StatusFile, status_path
from contracts.stop import StopSignals
from contracts.ticks import TickStore
from libshm import JournalError, WriterLocked
from services.md_recorder.metrics import RecorderFigures, families
from services.md_recorder.normalise import RawTick
from services.md_recorder.recorder import Recorder
from services.md_recorder.replay import ReplaySource
from services.md_recorder.sim import SimMarket

if TYPE_CHECKING:
    from services.md_recorder.ctp import CtpMdSource

__all__ = ["run_md_recorder"]

METRICS_EVERY_S: Final = 10.0
STATUS_EVERY_S: Final = 1.0
MAX_GAP_NS: Final = 60 * 1_000_000_000


def instruments_of(config: DeploymentConfig) -> list[str]:
    md = config.md_recorder
    names = list(md.instruments)
    if md.instruments_file is not None:
        try:
            text = md.instruments_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise UserError(
                f"{md.instruments_file}: cannot read the instruments file: {exc.strerror}"
            ) from None
        names += [
            line.split("#", 1)[0].strip()
            for line in text.splitlines()
            if line.split("#", 1)[0].strip()
        ]
    if not names and md.source != "replay":  # a replay without a list publishes every instrument
        raise UserError(
            "md_recorder: no instruments; set md_recorder.instruments or instruments_file"
        )
    return list(dict.fromkeys(names))


class Source(Protocol):
    def start(self) -> None: ...
    def poll(self, timeout_s: float, on_tick: Callable[[RawTick, int], object]) -> int: ...
    def describe(self) -> dict[str, object]: ...
    def queued(self) -> int: ...
    def stop(self) -> None: ...


class SimSource:
    """Paces ``SimMarket`` against the wall clock; receive time is the wall clock."""

    def __init__(self, calendar: Calendar, instruments: list[str], config: SimConfig) -> None:
        if config.start_day is not None:
            day = dt.date.fromisoformat(config.start_day)
        else:
            day = dt.datetime.now(CHINA).date()
            day = day if day.weekday() < 5 else next_weekday(day)
        unknown = [name for name in instruments if calendar.product(name) is None]
        if unknown:
            raise UserError(
                f"md_recorder.sim: no product in the calendar for {', '.join(unknown)}; the "
                "simulated market needs each product's tick size and sessions"
            )
        self.market = SimMarket(
            calendar, instruments, day, seed=config.seed, interval_ms=config.interval_ms
        )
        self.pace = config.pace
        self._ticks = self.market.ticks()
        self._due: tuple[int, list[RawTick]] | None = None
        self._sim0 = self._wall0 = 0
        self.emitted = 0

    def queued(self) -> int:
        return 0  # ticks are made when due

    def start(self) -> None:
        self._due = next(self._ticks)
        self._sim0, self._wall0 = self._due[0], time.monotonic_ns()

    def poll(self, timeout_s: float, on_tick: Callable[[RawTick, int], object]) -> int:
        end = time.monotonic_ns() + int(timeout_s * 1e9)
        count = 0
        while self._due is not None:
            at, raws = self._due
            if self.pace != "max":
                wait_until = self._wall0 + int((at - self._sim0) / self.pace)
                now = time.monotonic_ns()
                if wait_until - now > MAX_GAP_NS:  # between sessions: do not wait it out
                    self._sim0, self._wall0 = at, now
                    wait_until = now
                if wait_until > end:
                    time.sleep(max(0.0, (end - now) / 1e9))
                    break
                if wait_until > now:
                    time.sleep((wait_until - now) / 1e9)
            received = time.time_ns()
            for raw in raws:
                on_tick(raw, received)
            count += len(raws)
            self._due = next(self._ticks)
            if time.monotonic_ns() >= end:
                break
        self.emitted += count
        return count

    def describe(self) -> dict[str, object]:
        day = str(self.market.trading_day)
        return {"source": "sim", "trading_day": day, "emitted": self.emitted}

    def stop(self) -> None:
        self._due = None


def _directories(config: DeploymentConfig) -> Path:
    """The shared-memory and recordings directories, created, or one line that says why not;
    returns the shared-memory one."""
    shm = config.suite.shm_dir
    recordings = config.suite.journal_dir / "recordings"
    for directory, what in ((shm, "shared-memory"), (recordings, "recordings")):
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            key = "suite.shm_dir" if directory is shm else "suite.journal_dir"
            raise UserError(
                f"{directory}: cannot create the {what} directory ({exc.strerror}); check {key} "
                "and its permissions"
            ) from None
    return shm


def _source(
    config: DeploymentConfig, calendar: Calendar, instruments: list[str], store: TickStore,
    log: Any,
) -> Source | ReplaySource:  # fmt: skip
    md = config.md_recorder
    if md.source == "ctp":
        return _ctp_source(config, instruments, log)
    if md.source == "sim":
        assert md.sim is not None  # the config model requires the section
        return SimSource(calendar, instruments, md.sim)
    replay = md.replay
    assert replay is not None  # the config model requires the section
    return ReplaySource(
        replay.recording, pace=replay.pace, shift_to_now=replay.shift_to_now,
        loop=replay.loop, instruments=instruments or None, into=store,
    )  # fmt: skip


def run_md_recorder(config: DeploymentConfig) -> int:
    if config.md_recorder.source == "relay":  # another host's md_recorder, mirrored here
        from services.md_recorder.relay_service import run_mirror  # noqa: PLC0415

        return run_mirror(config)
    log = get_logger()
    md = config.md_recorder
    calendar = load_calendar(md.calendar_file or DEFAULT_CALENDAR)
    store = TickStore.of(config.suite.shm_dir, config.suite.journal_dir)
    instruments = instruments_of(config)
    source = _source(config, calendar, instruments, store, log)
    shm = _directories(config)
    try:
        recorder = Recorder(
            calendar, store, shm / "snapshot", segment_mb=md.segment_mb,
            ring_segments=md.ring_segments,
            check_local_time=md.source == "ctp",  # simulated times are not the wall clock's
        )  # fmt: skip
    except WriterLocked as exc:
        holder = f"process {exc.pid}" if exc.pid else "another process"
        raise JournalProblem(
            f"{shm / 'snapshot'}: another md-recorder ({holder}) is running on this deployment; "
            "stop it first (one md-recorder per suite.shm_dir)"
        ) from None
    stop = StopSignals()
    if recorder.rebuilt is not None:
        log.info("md_recorder_snapshot_rebuilt", day=recorder.rebuilt[0],
                 instruments=recorder.rebuilt[1])  # fmt: skip
    metrics = MetricsEndpoint(md.metrics, "md_recorder", config.suite.journal_dir, families,
                              setting="md_recorder.metrics")  # fmt: skip
    try:
        url = metrics.start()
    except BaseException:
        recorder.close()
        raise
    log.info("md_recorder_started", source=md.source, instruments=len(instruments),
             metrics=url or None)  # fmt: skip
    status = StatusFile(status_path(config.suite.journal_dir, "md_recorder"), log)
    notifier = SystemdNotifier()
    try:
        source.start()
        if isinstance(source, ReplaySource) and source.resumed:
            for day, ticks in source.resumed.items():
                log.info("md_recorder_replay_resumed", day=day, ticks=ticks,
                         text=f"the journal of {day} already holds the first {ticks} ticks of "
                         "this replay; they are not published again")  # fmt: skip
        _record(source, recorder, stop, status=status, notifier=notifier, metrics=metrics,
                log=log)  # fmt: skip
    except BaseException:
        notifier.stopping()
        notifier.close()
        metrics.close()
        source.stop()
        with contextlib.suppress(JournalError):  # what stopped it is the error to report
            recorder.close()
        raise
    notifier.stopping()
    notifier.close()
    metrics.close()
    source.stop()
    final = recorder.metrics()
    status.publish(recorder.status(stopped=True))  # the monitor tells a stop from a death
    recorder.close()
    log.info("md_recorder_stopped", **final, **source.describe())
    return 0


def _record(source: Source | ReplaySource, recorder: Recorder, stop: StopSignals, *,
            status: StatusFile, notifier: SystemdNotifier,
            metrics: MetricsEndpoint[RecorderFigures], log: Any) -> None:  # fmt: skip
    """The service's main loop, until a stop or the end of a replay: ticks, heartbeats, the
    status file, systemd's readiness, watchdog and status, the metrics line."""
    next_metrics = time.monotonic() + METRICS_EVERY_S
    next_status = time.monotonic()
    last = recorder.status()

    def notify_status() -> str:
        return (f"day {last.trading_day} · {last.ticks_per_s:g} ticks/s · {last.kept} kept · "
                f"{sum(last.drops.values())} dropped")  # fmt: skip

    while not stop.requested:
        if isinstance(source, ReplaySource):
            source.poll(0.2, recorder.write_array)
            if source.finished:
                log.info("md_recorder_replay_finished", **source.describe())
                break
        else:
            source.poll(0.2, recorder.record)
        recorder.heartbeat()
        if not notifier.ready_sent and source.describe().get("logged_in", True):
            notifier.ready("recording")  # CTP: once logged in; the others: once started
        notifier.tick(notify_status)  # the watchdog's ping: from this loop, so a stuck one stops it
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + STATUS_EVERY_S
            last = recorder.status()
            status.publish(last)
            metrics.publish(RecorderFigures(last, source.queued()))
        if time.monotonic() >= next_metrics:
            next_metrics += METRICS_EVERY_S
            log.info("md_recorder_metrics", **recorder.metrics(), **source.describe())
            if (problem := recorder.archive_error) is not None:
                log.warning("md_recorder_archive_failing", error=problem,
                            hint="free space where suite.journal_dir is: the ring keeps the "
                            "segments until then, and ticks stop when it is full")  # fmt: skip


def _ctp_source(config: DeploymentConfig, instruments: list[str], log: Any) -> CtpMdSource:
    ctp = config.md_recorder.ctp
    assert ctp is not None  # the config model requires the section for source = "ctp"
    require_ctp_locale()
    password = load_credentials(config.suite.credentials_file).require("ctp_password")
    # only now: importing openctp-ctp without the locale aborts the process
    from services.md_recorder.ctp import CtpMdSource  # noqa: PLC0415

    return CtpMdSource(
        list(ctp.fronts), ctp.broker_id, ctp.user_id, password, instruments, Path(ctp.flow_dir),
        connect_timeout_s=ctp.connect_timeout_s, log=log,
    )  # fmt: skip
