"""Is the process that wrote a journal or table still alive?"""

from __future__ import annotations

import fcntl
import mmap
import os
import time
from pathlib import Path
from typing import BinaryIO

from libshm.errors import NotAJournal, WriterLocked
from libshm.layout import FILE_MODE, HEAD, STATE_CLOSED, STATE_OPEN


def pid_alive(pid: int) -> bool:
    """True if ``pid`` runs and is not a zombie (a killed child nobody reaped yet)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return running(f)
    except FileNotFoundError:
        return False


def running(stat: BinaryIO) -> bool:
    """Whether the process whose ``/proc/PID/stat`` is open as ``stat`` runs and is not a
    zombie. A process that ended and was reaped after the file was opened makes the read fail
    with ESRCH: it runs no more."""
    try:
        return stat.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (ProcessLookupError, IndexError):
        return False


def acquire_writer_lock(lock_path: Path, owner: str) -> int:
    """Hold an exclusive ``flock`` on ``lock_path`` for this process's life; return its fd.

    The kernel releases it however the process dies, so a successor can always take over. A
    second writer gets :class:`WriterLocked` naming the holder's PID (written into the file).
    """
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as exc:
        raise NotAJournal(f"{owner}: cannot open {lock_path.name}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        os.close(fd)
        raise WriterLocked(owner, int(text) if text.isdigit() else None) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def writer_state(
    head: bytes | mmap.mmap, heartbeat_timeout_ns: int | None = None
) -> tuple[str, int]:
    """What a journal's head block says of its writer, and the writer's PID.

    'closed': closed cleanly, no more frames will come; 'open': attached and alive (and, with
    ``heartbeat_timeout_ns``, heard from recently); 'gone': died without closing.
    """
    _, _, state, pid, heartbeat, *_ = HEAD.unpack_from(head, 0)
    if state == STATE_CLOSED:
        return "closed", pid
    if state != STATE_OPEN or not pid_alive(pid):
        return "gone", pid
    if heartbeat_timeout_ns is not None and time.time_ns() - heartbeat > heartbeat_timeout_ns:
        return "gone", pid
    return "open", pid
