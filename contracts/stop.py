"""Stopping a service cleanly on SIGTERM (systemd) or SIGINT (Ctrl-C).

``install_early()`` runs first thing in the command line, before the services' modules load, so
a stop asked for during start-up (importing strategies, reading journals) is remembered rather
than killing the process half-way; the service's ``StopSignals`` then takes over and sees it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

__all__ = ["StopSignals", "install_early"]

_early = {"requested": False}


def _early_handler(signum: int, frame: FrameType | None) -> None:
    _early["requested"] = True


def install_early() -> None:
    """Remember SIGTERM and SIGINT until a service installs its ``StopSignals``."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _early_handler)


class StopSignals:
    """Sets ``requested`` when SIGTERM or SIGINT arrives (or arrived during start-up, after
    ``install_early``); the service's loop looks at it.

    ``on_signal``, if set, is called next, in the main thread wherever it was: it may raise, to
    break out of code that does not return (the engine stops an agent that blocks this way)."""

    def __init__(self) -> None:
        self.requested = _early["requested"]
        self.on_signal: Callable[[FrameType | None], None] | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.on_signal is not None:
            self.on_signal(frame)
