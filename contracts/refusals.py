"""Aggregated log lines for refused requests: a flood of bad requests costs a few lines, not one
line each (a core with no I/O: the caller gives the time and writes the lines)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Final

__all__ = ["RefusalLog", "RefusalSummary"]

WINDOW_NS: Final = 10_000_000_000


@dataclass
class RefusalSummary:
    """Requests refused from one peer in one window, beyond the first (logged at once)."""

    peer: str
    count: int
    reasons: dict[str, int]
    seconds: float


@dataclass
class _Window:
    started_ns: int
    reasons: Counter[str] = field(default_factory=Counter)


class RefusalLog:
    """Per peer, the first refusal of a window is reported at once (``refused`` returns True);
    the rest are counted and ``due`` reports them as one summary when the window has passed."""

    def __init__(self, window_ns: int = WINDOW_NS, max_peers: int = 1024) -> None:
        self.window_ns = window_ns
        self.max_peers = max_peers
        self._windows: dict[str, _Window] = {}
        self.total = 0

    def refused(self, now_ns: int, peer: str, reason: str) -> bool:
        """Count one refusal; True when the caller should log this one now."""
        self.total += 1
        window = self._windows.get(peer)
        if window is None:
            if len(self._windows) >= self.max_peers:
                peer = "other peers"  # a flood from many addresses still costs one entry
                window = self._windows.get(peer)
            if window is None:
                self._windows[peer] = _Window(now_ns)
                return True
        window.reasons[reason] += 1
        return False

    def due(self, now_ns: int, *, flush: bool = False) -> list[RefusalSummary]:
        """Summaries of the windows that have ended (their peers start afresh); with ``flush``,
        of every window (at a stop, so no count is lost)."""
        out = []
        for peer, window in list(self._windows.items()):
            if now_ns - window.started_ns < self.window_ns and not flush:
                continue
            del self._windows[peer]
            count = sum(window.reasons.values())
            if count:
                seconds = (now_ns - window.started_ns) / 1e9
                out.append(RefusalSummary(peer, count, dict(window.reasons), round(seconds, 1)))
        return out
