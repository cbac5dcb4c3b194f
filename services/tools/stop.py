"""Stopping a service cleanly on SIGTERM (systemd) or SIGINT (Ctrl-C)."""

from __future__ import annotations

import signal
from types import FrameType

__all__ = ["StopSignals"]


class StopSignals:
    """Sets ``requested`` when SIGTERM or SIGINT arrives; the service's loop looks at it."""

    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
