"""systemd's notification protocol against a real datagram socket the test binds: readiness once
with its status and pid, the watchdog at half the interval systemd asks for (and not for another
process's WATCHDOG_PID), the status every 5 s, an abstract socket, and nothing at all without
NOTIFY_SOCKET."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from contracts.notify import STATUS_EVERY_NS, SystemdNotifier

MS = 1_000_000


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    path = str(tmp_path / "notify")
    sock.bind(path)
    sock.setblocking(False)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    out = []
    while True:
        try:
            out.append(sock.recv(4096).decode())
        except BlockingIOError:
            return out


def test_ready_once_then_the_watchdog_at_half_the_interval_and_the_status_every_5_s(
    listener: tuple[socket.socket, str],
) -> None:
    sock, path = listener
    now = [0]
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"},
                               clock=lambda: now[0])  # fmt: skip
    assert notifier.watchdog_ns == 1000 * MS
    notifier.tick(lambda: "never asked before readiness")
    assert received(sock) == ["WATCHDOG=1"]  # the watchdog runs from the start
    notifier.ready("day 20210104")
    notifier.ready("again")
    assert received(sock) == [f"READY=1\nSTATUS=day 20210104\nMAINPID={os.getpid()}"]
    asked: list[int] = []

    def status() -> str:
        asked.append(1)
        return f"status {len(asked)}"

    got = []
    for t in range(0, 10_001, 100):  # 10 s of main loop, every 100 ms
        now[0] = t * MS
        notifier.tick(status)
        got += received(sock)
    assert got.count("WATCHDOG=1") == 10  # at 1, 2, ... 10 s
    assert [g for g in got if g.startswith("STATUS=")] == ["STATUS=status 1", "STATUS=status 2"]
    assert len(asked) == 2 and STATUS_EVERY_NS == 5000 * MS
    notifier.stopping()
    assert received(sock) == ["STOPPING=1"]
    notifier.close()


def test_another_processes_watchdog_and_an_abstract_socket() -> None:
    name = f"hft-test-{uuid.uuid4().hex}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.setblocking(False)
    try:
        notifier = SystemdNotifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "2000000",
                                    "WATCHDOG_PID": str(os.getpid() + 1)})  # fmt: skip
        assert notifier.watchdog_ns == 0  # the interval is for another process
        notifier.tick(lambda: "")
        notifier.ready("up")
        assert [m.split("\n")[0] for m in received(sock)] == ["READY=1"]
        notifier.close()
    finally:
        sock.close()


def test_a_receiver_that_does_not_read_never_blocks_the_sender(
    listener: tuple[socket.socket, str],
) -> None:
    _, path = listener
    notifier = SystemdNotifier({"NOTIFY_SOCKET": path})
    sent = [notifier.send("WATCHDOG=1") for _ in range(1000)]  # nobody reads: the queue fills
    assert sent[0] and not sent[-1]  # the first went, the last were dropped, nothing waited
    notifier.close()


def test_without_notify_socket_nothing_is_sent_and_a_vanished_socket_is_no_error(
    listener: tuple[socket.socket, str],
) -> None:
    off = SystemdNotifier({})
    assert not off.enabled and off.send("READY=1") is False
    off.ready("x")
    off.tick(lambda: "x")
    off.stopping()
    _, path = listener
    gone = SystemdNotifier({"NOTIFY_SOCKET": path})
    os.unlink(path)  # systemd went away
    assert gone.send("READY=1") is False
    gone.ready("still fine")  # never raises
    gone.close()
