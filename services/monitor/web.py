"""The monitor's plain HTTP answers, beside its WebSocket server (docs/monitor.md): the
dashboard's static files with their security headers, and the services' figures as Prometheus
metric families for ``/metrics`` (prometheus_client's text format)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Final

from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from websockets.datastructures import Headers
from websockets.http11 import Response

from contracts.metrics import labelled
from contracts.monitor import ServiceHealth
from contracts.status import EngineStatus, RecorderStatus
from contracts.vendor import FILES, VENDOR_DIR

__all__ = ["CSP", "STATIC_DIR", "health_metrics", "load_static", "metrics_response", "page"]

STATIC_DIR: Final = Path(__file__).parent / "static"
_TYPES: Final = {".html": "text/html", ".js": "text/javascript", ".css": "text/css"}
CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
"""The dashboard's content security policy: its own files only, no inline script, no frame."""


def load_static(directory: Path = STATIC_DIR) -> dict[str, tuple[bytes, str]]:
    """The dashboard's files by URL path (read once: a fixed set, so no request can name a
    file outside it), ``/`` being ``index.html``."""
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file():
            kind = f"{_TYPES.get(path.suffix, 'text/plain')}; charset=utf-8"
            files["/" + path.relative_to(directory).as_posix()] = (path.read_bytes(), kind)
    for name in FILES:  # the vendored chart library, shared with the backtest's report
        kind = f"{_TYPES[Path(name).suffix]}; charset=utf-8"
        files[f"/vendor/{name}"] = ((VENDOR_DIR / name).read_bytes(), kind)
    files["/"] = files["/index.html"]
    return files


def page(static: Mapping[str, tuple[bytes, str]], path: str) -> Response:
    """The file at ``path`` of the fixed table, or 404, with the dashboard's headers."""
    found = static.get(path)
    if found is None:
        body, status, kind = b"not found\n", HTTPStatus.NOT_FOUND, "text/plain; charset=utf-8"
    else:
        (body, kind), status = found, HTTPStatus.OK
    headers = Headers([
        ("Content-Type", kind), ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"), ("Content-Security-Policy", CSP),
        ("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
    ])  # fmt: skip
    return Response(status.value, status.phrase, headers, body)


def metrics_response(body: bytes) -> Response:
    """``/metrics``, in the text format Prometheus scrapes."""
    headers = Headers([("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body))),
                       ("Cache-Control", "no-cache")])  # fmt: skip
    return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)


def health_metrics(engines: Mapping[str, ServiceHealth], market: ServiceHealth
                   ) -> Iterator[Metric]:  # fmt: skip
    """The services' figures (their status files), labelled by account: one scrape of the
    monitor sees every service of the machine (each also serves its own, docs/OPERATIONS.md)."""
    up = {"open": 1, "closed": 0, "gone": 0, "absent": 0}
    yield GaugeMetricFamily("hft_md_recorder_up", "1 while md_recorder writes its journal",
                            value=up[market.state])  # fmt: skip
    md = market.status
    if isinstance(md, RecorderStatus):
        yield GaugeMetricFamily("hft_md_recorder_ticks_per_second", "Ticks kept per second",
                                value=md.ticks_per_s)  # fmt: skip
        yield CounterMetricFamily("hft_md_recorder_ticks_kept", "Ticks written since md_recorder "
                                  "started", value=md.kept)  # fmt: skip
        yield labelled(CounterMetricFamily("hft_md_recorder_ticks_dropped", "Ticks dropped since "
                                           "md_recorder started", labels=["reason"]),
                       (([r], n) for r, n in md.drops.items()))  # fmt: skip
        yield GaugeMetricFamily("hft_md_recorder_lag_ms", "Exchange time to receipt, median (-1: "
                                "unknown)", value=md.lag_ms_median)  # fmt: skip
    yield labelled(GaugeMetricFamily("hft_engine_up", "1 while the account's engine runs",
                                     labels=["account"]),
                   (([a], up[h.state]) for a, h in engines.items()))  # fmt: skip
    figures = [(a, h.status) for a, h in engines.items() if isinstance(h.status, EngineStatus)]
    for name, text, field in (
        (
            "hft_engine_behind_ticks",
            "Ticks committed to the feed and not yet handled",
            "behind_ticks",
        ),
        (
            "hft_engine_behind_seconds",
            "How far the newest tick is ahead of the last handled",
            "behind_s",
        ),
        ("hft_engine_orders_today", "Orders sent today", "orders"),
    ):
        yield labelled(GaugeMetricFamily(name, text, labels=["account"]),
                       (([a], getattr(e, field)) for a, e in figures))  # fmt: skip
    yield labelled(
        GaugeMetricFamily(
            "hft_engine_tick_to_order_us",
            "Tick to order over the newest 4,096, microseconds",
            labels=["account", "quantile"],
        ),
        (
            row
            for a, e in figures
            for row in (([a, "0.5"], e.tick_to_order.p50_us), ([a, "0.99"], e.tick_to_order.p99_us))
        ),
    )
