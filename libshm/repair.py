"""Cut a damaged journal at its first damage, after keeping a copy: ``hft journal repair``.

Nothing else in the suite ever shortens a journal: a writer attaching to a journal discards only a
torn tail (see ``docs/journal-format.md``), and refuses damage. This is the one place a user asks
for committed frames to be dropped, so it keeps every byte of the journal elsewhere first.
"""

from __future__ import annotations

import mmap
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from libshm.errors import JournalError
from libshm.inspect import JournalReport, inspect_journal
from libshm.layout import HEAD_SEGMENTS, segment_name
from libshm.process import acquire_writer_lock
from libshm.segment import list_segments

__all__ = ["Repair", "repair_journal"]

_ZERO = bytes(1 << 16)


@dataclass(frozen=True)
class Repair:
    before: JournalReport
    after: JournalReport | None
    """None when nothing was cut (the journal was intact)."""
    copy: Path | None
    """Where the journal was copied before the cut."""
    removed_segments: list[int]


def repair_journal(path: str | Path, copy: str | Path) -> Repair:
    """Keep a copy of ``path`` in ``copy`` (which must not exist), then cut the journal just
    before its first damage: later segments are deleted, and the damaged one is zeroed from the
    damage on, so the next writer appends there with the next sequence number.

    Holds the writer lock throughout, so it never runs beside a writer.
    """
    path, copy = Path(path), Path(copy)
    lock = acquire_writer_lock(path / "writer.lock", str(path))
    try:
        before = inspect_journal(path, count_instruments=False)
        if before.intact or before.cut is None:
            return Repair(before, None, None, [])
        if copy.exists():
            raise JournalError(f"{copy}: already exists; give another --keep directory")
        try:
            shutil.copytree(path, copy, ignore=shutil.ignore_patterns("writer.lock"))
        except OSError as exc:
            shutil.rmtree(copy, ignore_errors=True)
            raise JournalError(
                f"{copy}: cannot keep a copy of the journal ({exc.strerror}); nothing was cut; "
                "free some space or give another --keep directory"
            ) from None
        index, offset = before.cut
        removed = [i for i in list_segments(path) if i > index or (i == index and offset == 0)]
        if offset:
            _zero_from(path / segment_name(index), offset)
        for i in reversed(removed):
            (path / segment_name(i)).unlink()
        left = list_segments(path)
        head = path / "head"
        if left and head.exists():  # the writer rebuilds it; readers trust current_segment
            with open(head, "r+b") as f, mmap.mmap(f.fileno(), 0) as block:
                HEAD_SEGMENTS.pack_into(block, 24, left[-1], left[0])
        after = inspect_journal(path, count_instruments=False) if left else None
        return Repair(before, after, copy, removed)
    finally:
        os.close(lock)


def _zero_from(segment: Path, offset: int) -> None:
    with open(segment, "r+b") as f, mmap.mmap(f.fileno(), 0) as mapping:
        size = len(mapping)
        while offset < size:
            n = min(len(_ZERO), size - offset)
            mapping[offset : offset + n] = _ZERO[:n]
            offset += n
        mapping.flush()
