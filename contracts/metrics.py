"""Prometheus metrics of a service, served by prometheus_client (docs/OPERATIONS.md, "Metrics").

A service's main loop hands its newest figures to :meth:`MetricsEndpoint.publish` once a second
(a reference swap: the loop never waits on a scrape and nothing on the tick path changes); a
scrape turns them into metric families on prometheus_client's own HTTP thread. The address
comes from the service's ``metrics`` setting (``HOST:PORT``; port 0: any free port); the URL it
listens on is written to ``JOURNAL_DIR/status/SERVICE.metrics`` for tools and tests.

Like the notification socket, this is one of the few places in ``contracts`` that opens a socket
(and the only one that starts a thread): it is the service shells' shared piece.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Final, Generic, TypeVar
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import Metric
from prometheus_client.registry import Collector, CollectorRegistry

from contracts.errors import UserError
from contracts.status import STATUS_DIR

__all__ = [
    "TICK_TO_ORDER_BUCKETS_S", "Buckets", "MetricsEndpoint", "endpoint_path", "labelled",
]  # fmt: skip

F = TypeVar("F")

TICK_TO_ORDER_BUCKETS_S: Final = (
    5e-6, 10e-6, 20e-6, 50e-6, 100e-6, 200e-6, 500e-6, 1e-3, 2e-3, 5e-3, 10e-3, 50e-3,
)  # fmt: skip


def endpoint_path(journal_dir: Path, service: str) -> Path:
    return journal_dir / STATUS_DIR / f"{service}.metrics"


class Buckets:
    """A latency histogram in Prometheus's cumulative form, filled from samples in ns (O(buckets)
    per sample, done off the tick path once a second by the loop that owns it)."""

    def __init__(self, bounds_s: Iterable[float] = TICK_TO_ORDER_BUCKETS_S) -> None:
        self.bounds_s = tuple(bounds_s)
        self._bounds_ns = [int(b * 1e9) for b in self.bounds_s]
        self.counts = [0] * (len(self._bounds_ns) + 1)  # the last: above every bound
        self.sum_s = 0.0

    def add(self, ns: int) -> None:
        for i, bound in enumerate(self._bounds_ns):
            if ns <= bound:
                self.counts[i] += 1
                break
        else:
            self.counts[-1] += 1
        self.sum_s += ns / 1e9

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """``[(le, count), ..., ("+Inf", total)]`` and the sum, as ``HistogramMetricFamily``
        takes them."""
        out, total = [], 0
        for bound, count in zip((*map(repr, self.bounds_s), "+Inf"), self.counts, strict=True):
            total += count
            out.append((bound, float(total)))
        return out, self.sum_s


class _Latest(Collector, Generic[F]):
    """A collector over the newest figures published (none yet: no metric)."""

    def __init__(self, families: Callable[[F], Iterable[Metric]]) -> None:
        self.families = families
        self.figures: F | None = None

    def collect(self) -> Iterable[Metric]:
        figures = self.figures  # one read: the loop may publish newer ones meanwhile
        return [] if figures is None else list(self.families(figures))


class MetricsEndpoint(Generic[F]):
    """``http://HOST:PORT/metrics`` of one service, or nothing when ``address`` is empty."""

    def __init__(self, address: str, service: str, journal_dir: Path,
                 families: Callable[[F], Iterable[Metric]], *, setting: str) -> None:  # fmt: skip
        self.address = address
        self.path = endpoint_path(journal_dir, service)
        self.setting = setting
        self.registry = CollectorRegistry(auto_describe=False)
        self._latest: _Latest[F] = _Latest(families)
        self.registry.register(self._latest)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self) -> str:
        """Listen; returns the URL ("" when metrics are off). A bad or busy address is a
        ``UserError`` naming the setting."""
        if not self.address:
            return ""
        host, _, port = self.address.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")  # [::1]:9102
        try:
            self._server, self._thread = start_http_server(int(port), host, self.registry)
        except OSError as exc:
            why = "the port is in use (another service or a second copy?)" \
                if exc.errno == errno.EADDRINUSE else (exc.strerror or str(exc))  # fmt: skip
            raise UserError(f"{self.setting} = {self.address!r}: cannot listen there: {why}; "
                            "choose another HOST:PORT (port 0: any free one) or \"\" for no "
                            "metrics") from None  # fmt: skip
        bound_host, bound_port = (str(x) for x in self._server.server_address[:2])
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        self.url = f"http://{shown}:{bound_port}/metrics"
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(self.url + "\n", encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
            # the URL is in the service's start line too; the file is a convenience
        return self.url

    def publish(self, figures: F) -> None:
        self._latest.figures = figures

    def close(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()  # waits for serve_forever's loop to end
            server.server_close()
        with contextlib.suppress(OSError):
            if self.url and self.path.read_text(encoding="utf-8").strip() == self.url:
                self.path.unlink()


def labelled(metric: Any, rows: Iterable[tuple[Iterable[str], float]]) -> Any:
    """Add ``(labels, value)`` rows to a labelled metric family; returns it."""
    for labels, value in rows:
        metric.add_metric(list(labels), value)
    return metric
