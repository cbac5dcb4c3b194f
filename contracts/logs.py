"""Structured logs: JSON lines for machines (systemd, files), readable lines on a terminal.

Every line carries ``service``, ``pid``, ``level``, ``event`` and a UTC timestamp. Secret values
registered with :func:`register_secret` are replaced by ``***`` wherever they appear in a line.
``hft up`` runs the services with ``HFT_LOG_FORMAT=console`` (readable lines through a pipe),
``HFT_LOG_PREFIX=NAME`` (each line starts ``NAME |``) and, on a terminal, ``HFT_LOG_COLOR=1``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

__all__ = ["LEVELS", "configure", "get_logger", "redact", "register_secret"]

LEVELS = ("debug", "info", "warning", "error", "critical")
_SECRETS: set[str] = set()
_MIN_SECRET_LEN = 4  # shorter values would redact ordinary words


def register_secret(value: str) -> None:
    """Never print ``value``: every log line containing it shows ``***`` instead."""
    if len(value) >= _MIN_SECRET_LEN:
        _SECRETS.add(value)


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``: for text that is stored (an
    agent's error in the engine journal) rather than logged."""
    result: str = _scrub(text)
    return result


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _SECRETS:
            if secret in value:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    if _SECRETS and not isinstance(value, int | float | bool | type(None)):
        return _scrub(str(value))
    return value


def _redact(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    if not _SECRETS:
        return event
    return {k: _scrub(v) for k, v in event.items()}


def configure(
    service: str,
    level: str = "info",
    stream: TextIO | None = None,
    json: bool | None = None,
) -> None:
    """Set up logging for one process. ``json=None`` chooses JSON unless ``stream`` is a tty."""
    if level not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}")
    out = sys.stderr if stream is None else stream
    forced = os.environ.get("HFT_LOG_FORMAT", "")  # hft up: console lines through a pipe
    as_json = (not out.isatty() if not forced else forced == "json") if json is None else json
    colors = out.isatty() or os.environ.get("HFT_LOG_COLOR") == "1"
    renderer: Any = (
        structlog.processors.JSONRenderer(sort_keys=False)
        if as_json
        else structlog.dev.ConsoleRenderer(colors=colors)
    )
    if not as_json and (name := os.environ.get("HFT_LOG_PREFIX")):
        renderer = _prefixed(renderer, name, colors)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _redact,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(service=service, pid=os.getpid())


_COLOURS = ("\x1b[36m", "\x1b[35m", "\x1b[33m", "\x1b[32m", "\x1b[34m")


def _prefixed(renderer: Any, name: str, colors: bool) -> Any:
    """``renderer`` with ``name |`` before each line (``hft up``: one stream for all services),
    in a colour of its own on a terminal."""
    label = f"{name:<12}|"
    if colors:
        label = f"{_COLOURS[sum(map(ord, name)) % len(_COLOURS)]}{label}\x1b[0m"

    def render(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        text: str = renderer(logger, method, event)
        return "\n".join(f"{label} {line}" for line in text.splitlines())

    return render


def get_logger(**initial: Any) -> Any:
    """A bound logger; fields given here appear on every line it writes."""
    return structlog.get_logger(**initial)
