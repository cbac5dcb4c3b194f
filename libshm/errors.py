"""Errors of the data plane. Each message names the path (and offset) and says what to do."""

from __future__ import annotations


class JournalError(Exception):
    """Base class: something about a journal that a user must act on."""


class NotAJournal(JournalError):
    """The path is not a journal directory, or a file in it is not a segment."""


class WriterLocked(JournalError):
    """Another process already writes this journal."""

    def __init__(self, path: str, pid: int | None) -> None:
        holder = f"process {pid}" if pid else "another process"
        super().__init__(
            f"{path}: journal is already being written by {holder}; stop it first "
            "(a journal has exactly one writer)"
        )
        self.pid = pid


class WriterGone(JournalError):
    """The writer died (PID gone or heartbeat stale) without closing the journal."""


class Overrun(JournalError):
    """A reader fell behind a ring journal and the frames it needed were deleted."""

    def __init__(self, path: str, expected_seq: int, resume_seq: int) -> None:
        self.lost = resume_seq - expected_seq
        self.expected_seq = expected_seq
        self.resume_seq = resume_seq
        super().__init__(
            f"{path}: reader overrun: frames {expected_seq}..{resume_seq - 1} ({self.lost} frames)"
            " were overwritten by the ring before they were read; read faster, enlarge "
            "ring_segments, or configure an archive directory"
        )


class CorruptJournal(JournalError):
    """Committed data does not check out: bad checksum, broken sequence, bad header."""

    def __init__(self, path: str, offset: int, what: str) -> None:
        super().__init__(f"{path}: offset {offset}: {what}")
        self.path = path
        self.offset = offset
        self.what = what


class UnsupportedVersion(JournalError):
    """The journal was written by a newer layout than this code knows."""


class JournalFull(JournalError):
    """A new segment could not be allocated (disk or /dev/shm full, file size limit)."""
