"""The monitor's plain HTTP answers, beside its WebSocket server (docs/monitor.md): the
dashboard's static files with their security headers, and the services' figures as Prometheus
text for ``/metrics``."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Final

from websockets.datastructures import Headers
from websockets.http11 import Response

from contracts.monitor import ServiceHealth
from contracts.status import EngineStatus, RecorderStatus

__all__ = ["CSP", "STATIC_DIR", "health_metrics", "load_static", "page"]

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


def health_metrics(engines: Mapping[str, ServiceHealth], market: ServiceHealth) -> list[str]:
    """The services' figures (their status files) as Prometheus gauges."""
    up = {"open": 1, "closed": 0, "gone": 0, "absent": 0}
    lines = ["# TYPE hft_md_recorder_up gauge", f"hft_md_recorder_up {up[market.state]}"]
    md = market.status
    if isinstance(md, RecorderStatus):
        lines += [
            "# TYPE hft_md_recorder_ticks_per_second gauge",
            f"hft_md_recorder_ticks_per_second {md.ticks_per_s}",
            "# TYPE hft_md_recorder_ticks_kept counter", f"hft_md_recorder_ticks_kept {md.kept}",
            "# TYPE hft_md_recorder_ticks_dropped counter",
            *(f'hft_md_recorder_ticks_dropped{{reason="{r}"}} {n}' for r, n in md.drops.items()),
            "# TYPE hft_md_recorder_lag_ms gauge", f"hft_md_recorder_lag_ms {md.lag_ms_median}",
        ]  # fmt: skip
    lines += ["# TYPE hft_engine_up gauge"]
    lines += [f'hft_engine_up{{account="{a}"}} {up[h.state]}' for a, h in engines.items()]
    figures = [(a, h.status) for a, h in engines.items() if isinstance(h.status, EngineStatus)]
    if figures:
        lines += ["# TYPE hft_engine_behind_ticks gauge"]
        lines += [f'hft_engine_behind_ticks{{account="{a}"}} {e.behind_ticks}' for a, e in figures]
        lines += ["# TYPE hft_engine_behind_seconds gauge"]
        lines += [f'hft_engine_behind_seconds{{account="{a}"}} {e.behind_s}' for a, e in figures]
        lines += ["# TYPE hft_engine_tick_to_order_us gauge"]
        for a, e in figures:
            t = e.tick_to_order
            lines += [
                f'hft_engine_tick_to_order_us{{account="{a}",quantile="0.5"}} {t.p50_us}',
                f'hft_engine_tick_to_order_us{{account="{a}",quantile="0.99"}} {t.p99_us}',
            ]
    return lines
