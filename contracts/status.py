"""The figures a running service publishes for the monitor (and an operator's tools): one small
JSON file per service, rewritten whole every second (docs/monitor.md, "Health").

``JOURNAL_DIR/status/md_recorder.json`` (``suite.journal_dir``) and
``JOURNAL_DIR/status/engine.json`` (the engine's own ``suite.journal_dir``, an account of the
monitor). A file is written to a temporary name and renamed over the old one, so a reader sees
the previous figures or the new ones, never half of either. The figures are not committed data:
a file that cannot be written (a full disk) is skipped and the service goes on; a reader that
finds a file missing, unreadable or of another version treats the figures as unknown.

``LatencyWindow`` (a core) keeps the newest samples of a latency and gives their percentiles.
"""

from __future__ import annotations

import contextlib
import os
import time
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import msgspec

__all__ = [
    "STATUS_DIR",
    "EngineStatus",
    "Latency",
    "LatencyWindow",
    "RecorderStatus",
    "ServiceStatus",
    "StatusFile",
    "read_status",
    "status_path",
    "write_status",
]

STATUS_DIR: Final = "status"
STATUS_VERSION: Final = 1
WARN_EVERY_NS: Final = 60_000_000_000


class Latency(msgspec.Struct, frozen=True):
    """Percentiles of the newest ``samples`` (at most the window's size) of a latency, in
    microseconds; ``count`` is every sample since the service started."""

    count: int = 0
    samples: int = 0
    p50_us: float = 0.0
    p99_us: float = 0.0
    max_us: float = 0.0


class RecorderStatus(msgspec.Struct, frozen=True, tag_field="service", tag="md_recorder"):
    pid: int
    written_ns: int  # wall clock (epoch ns)
    trading_day: int
    kept: int  # ticks written since the service started
    ticks_per_s: float  # over the last interval
    drops: dict[str, int]  # ticks dropped since the service started, by reason
    lag_ms_median: float  # exchange time to receipt, median over instruments (-1: unknown, replay)
    instruments: int
    last_tick_ns: int  # the newest tick's exchange time (0: none yet)
    archive_error: str = ""  # why the ring cannot be archived, when it cannot (it will fill)
    stopped: bool = False  # the last figures of a service that stopped cleanly
    version: int = STATUS_VERSION


class EngineStatus(msgspec.Struct, frozen=True, tag_field="service", tag="engine"):
    pid: int
    written_ns: int
    trading_day: int
    ticks: int  # ticks handled today
    orders: int  # orders sent today
    behind_ticks: int  # ticks committed to the feed and not yet handled
    behind_s: float  # how far the newest committed tick is ahead of the last handled, seconds
    feed: str  # live, lost, ended (docs/engine.md)
    tick_to_order: Latency  # from a tick read to the orders it caused handed to the adapter
    version: int = STATUS_VERSION


ServiceStatus = RecorderStatus | EngineStatus

_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(ServiceStatus)


def status_path(journal_dir: Path, service: str) -> Path:
    return journal_dir / STATUS_DIR / f"{service}.json"


def write_status(path: Path, status: ServiceStatus) -> str | None:
    """Replace ``path`` with ``status`` whole; None, or why it could not (the caller warns)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(_encoder.encode(status))
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):  # the write's own error is the one to report
            tmp.unlink(missing_ok=True)
        return f"{path}: {exc.strerror or exc}"
    return None


def read_status(path: Path) -> ServiceStatus | None:
    """The figures in ``path``, or None when there are none to trust (missing, half-written
    by an older writer, another version)."""
    try:
        status = _decoder.decode(path.read_bytes())
    except (OSError, msgspec.DecodeError, msgspec.ValidationError):
        return None
    return status if status.version == STATUS_VERSION else None


class StatusFile:
    """A service's status file: :meth:`publish` rewrites it; a failure is logged once a minute
    (and its end once), never raised: the figures are not worth stopping for."""

    def __init__(self, path: Path, log: Any, *, clock: Callable[[], int] = time.monotonic_ns
                 ) -> None:  # fmt: skip
        self.path = path
        self.log = log
        self.clock = clock
        self.failing_since = 0
        self._warned = 0

    def publish(self, status: ServiceStatus) -> None:
        problem = write_status(self.path, status)
        now = self.clock()
        if problem is None:
            if self.failing_since:
                self.log.info("status_file_restored", path=str(self.path))
                self.failing_since = 0
            return
        self.failing_since = self.failing_since or now
        if not self._warned or now - self._warned >= WARN_EVERY_NS:
            self._warned = now
            hint = ("the service goes on; the monitor shows its figures as unknown until the "
                    "file can be written (free space there)")  # fmt: skip
            self.log.warning("status_file_failing", error=problem, hint=hint)


class LatencyWindow:
    """The newest ``size`` samples of a latency (ns) in a ring: O(1) to add, percentiles on
    demand (once a second, by a sort of at most ``size`` values), by nearest rank."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.count = 0
        self._ring = array("q", bytes(8 * size))

    def add(self, ns: int) -> None:
        self._ring[self.count % self.size] = ns
        self.count += 1

    def since(self, seen: int) -> list[int]:
        """The samples added after the first ``seen`` that the ring still holds, oldest first."""
        ring, size = self._ring, self.size
        return [ring[i % size] for i in range(max(seen, self.count - size), self.count)]

    def summary(self) -> Latency:
        n = min(self.count, self.size)
        if not n:
            return Latency()
        values = sorted(self._ring[:n])
        return Latency(
            self.count, n, _us(values[(n - 1) // 2]), _us(values[-(-n * 99 // 100) - 1]),
            _us(values[-1]),
        )  # fmt: skip


def _us(ns: int) -> float:
    return round(ns / 1000, 1)
