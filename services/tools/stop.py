"""Stopping a service cleanly on SIGTERM (systemd) or SIGINT (Ctrl-C)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

__all__ = ["StopSignals"]


class StopSignals:
    """Sets ``requested`` when SIGTERM or SIGINT arrives; the service's loop looks at it.

    ``on_signal``, if set, is called next, in the main thread wherever it was: it may raise, to
    break out of code that does not return (the engine stops an agent that blocks this way)."""

    def __init__(self) -> None:
        self.requested = False
        self.on_signal: Callable[[FrameType | None], None] | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.on_signal is not None:
            self.on_signal(frame)
