"""systemd's service notification protocol (``sd_notify(3)``), as documented: newline-separated
``KEY=VALUE`` lines in one datagram to the ``AF_UNIX`` socket ``NOTIFY_SOCKET`` names (a path,
or an abstract socket when it starts with ``@``). docs/OPERATIONS.md, "Readiness, watchdog and
status".

Without ``NOTIFY_SOCKET`` every call does nothing. A send that fails, or would block (a receiver
whose queue is full), is dropped: systemd acts on what it did not get (no readiness, or a restart
when the watchdog pings stop), and the service's loop never waits on it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import Final

__all__ = ["STATUS_EVERY_NS", "SystemdNotifier"]

STATUS_EVERY_NS: Final = 5_000_000_000


class SystemdNotifier:
    def __init__(self, environ: Mapping[str, str] | None = None, *,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:  # fmt: skip
        env = os.environ if environ is None else environ
        address = env.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        self.clock = clock
        self.ready_sent = False
        self.watchdog_ns = 0
        """How often to ping (half of systemd's ``WATCHDOG_USEC``); 0: no watchdog."""
        usec, pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_ns = int(usec) * 1000 // 2
        self._next_ping = 0
        self._next_status = 0
        self._sock: socket.socket | None = None
        if self.address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)  # a receiver that does not read must not stop the loop

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; False if there is no socket or the send failed."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode("utf-8"), self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> None:
        """The service is ready (once)."""
        if not self.ready_sent:
            self.ready_sent = True
            self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")
            self._next_status = self.clock() + STATUS_EVERY_NS

    def tick(self, status: Callable[[], str]) -> None:
        """Call from the main loop, as often as it likes: pings the watchdog when due, and
        sends ``status()`` every ``STATUS_EVERY_NS`` (called only then)."""
        if self._sock is None:
            return
        now = self.clock()
        if self.watchdog_ns and now >= self._next_ping:
            self._next_ping = now + self.watchdog_ns
            self.send("WATCHDOG=1")
        if self.ready_sent and now >= self._next_status:
            self._next_status = now + STATUS_EVERY_NS
            self.send(f"STATUS={status()}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
