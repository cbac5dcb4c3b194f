"""``hft md-recorder``: wires a source to the recorder and runs until SIGTERM or SIGINT.

Files: ticks go to ``suite.journal_dir/recordings/YYYYMMDD`` (one journal per trading day, the
live channel and the recording at once); the snapshot table is ``suite.shm_dir/snapshot``.
Every ``METRICS_EVERY_S`` the service logs its counts (kept, drops by reason, lag, source state).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from contracts.calendar import DEFAULT_CALENDAR, load_calendar
from contracts.config import DeploymentConfig
from contracts.credentials import load_credentials
from contracts.errors import UserError
from contracts.logs import get_logger
from services.md_recorder.recorder import Recorder
from services.tools.doctor import check_locale

if TYPE_CHECKING:
    from services.md_recorder.ctp import CtpMdSource

__all__ = ["run_md_recorder"]

METRICS_EVERY_S: Final = 10.0


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
    if not names:
        raise UserError(
            "md_recorder: no instruments; set md_recorder.instruments or instruments_file"
        )
    return list(dict.fromkeys(names))


class _Stop:
    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True


def run_md_recorder(config: DeploymentConfig) -> int:
    log = get_logger()
    md = config.md_recorder
    calendar = load_calendar(md.calendar_file or DEFAULT_CALENDAR)
    instruments = instruments_of(config)
    if md.source != "ctp":
        raise UserError(
            f"md_recorder source {md.source!r} is not built yet (it comes with the md_recorder "
            'work); use source = "ctp", or import recordings with `hft import`'
        )
    source = _ctp_source(config, instruments, log)
    shm = config.suite.shm_dir
    try:
        shm.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(
            f"{shm}: cannot create the shared-memory directory: {exc.strerror}"
        ) from None
    recordings = config.suite.journal_dir / "recordings"
    recorder = Recorder(calendar, recordings, shm / "snapshot", segment_mb=md.segment_mb)
    stop = _Stop()
    log.info("md_recorder_started", source=md.source, instruments=len(instruments))
    next_metrics = time.monotonic() + METRICS_EVERY_S
    try:
        source.start()
        while not stop.requested:
            source.poll(0.2, recorder.record)
            recorder.heartbeat()
            if time.monotonic() >= next_metrics:
                next_metrics += METRICS_EVERY_S
                log.info("md_recorder_metrics", **recorder.metrics(), **vars(source.state))
    finally:
        source.stop()
        recorder.close()
    log.info("md_recorder_stopped", **recorder.metrics())
    return 0


def _ctp_source(config: DeploymentConfig, instruments: list[str], log: Any) -> CtpMdSource:
    ctp = config.md_recorder.ctp
    assert ctp is not None  # the config model requires the section for source = "ctp"
    locale_check = check_locale()
    if not locale_check.ok:
        raise UserError(f"CTP needs the zh_CN.GB18030 locale: {locale_check.fix}")
    password = load_credentials(config.suite.credentials_file).require("ctp_password")
    # only now: importing openctp-ctp without the locale aborts the process
    from services.md_recorder.ctp import CtpMdSource  # noqa: PLC0415

    return CtpMdSource(
        list(ctp.fronts), ctp.broker_id, ctp.user_id, password, instruments, Path(ctp.flow_dir),
        connect_timeout_s=ctp.connect_timeout_s, log=log,
    )  # fmt: skip
