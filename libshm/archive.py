"""The archive of a ring: each sealed segment copied to a disk directory as it completes.

A ring journal (``ring_segments = N``, normally on ``/dev/shm``) keeps its N newest segments; its
archive keeps them all, so memory stays bounded and the day's recording is still complete. The
writer owns one :class:`Archiver`: a background thread copies each segment the writer seals, the
writer makes sure a segment is in the archive before it deletes it from the ring (copying it
itself if the thread is late), and at close it copies the segment it was writing, so a closed
ring's archive holds every frame. A copy is written under a temporary name, flushed to disk and
renamed, so the archive never holds half a segment under a segment's name.

Which copies are final: a sealed segment no longer changes, so its copy is final once made. The
copy of the segment being written (made at close) is not: a writer that attaches again appends
to that segment, so the archiver treats every segment still in the ring whose copy differs from
it as not yet archived.
"""

from __future__ import annotations

import contextlib
import filecmp
import queue
import threading
from pathlib import Path

from libshm.errors import JournalFull
from libshm.layout import segment_name
from libshm.segment import archive_segment, list_segments

__all__ = ["Archiver", "is_archived", "seed_ring"]


def seed_ring(ring: Path, archive: Path) -> bool:
    """A ring with no segment (``/dev/shm`` was cleared, as by a reboot) whose archive holds
    some continues after them: the archive's newest segment is copied back into the ring, and
    the writer recovers from it as from its own. True if it seeded the ring."""
    if list_segments(ring) or not archive.is_dir():
        return False
    held = list_segments(archive)
    if not held:
        return False
    archive_segment(archive, ring, held[-1])
    return True


def _copied(ring: Path, archive: Path, index: int) -> bool:
    """Whether ``archive`` holds a byte-identical copy of segment ``index`` of ``ring``."""
    name = segment_name(index)
    return (archive / name).is_file() and filecmp.cmp(ring / name, archive / name, shallow=False)


def is_archived(ring: Path, archive: Path) -> bool:
    """Whether every segment of ``ring`` has a byte-identical copy in ``archive`` (so the ring
    can be deleted without losing a frame)."""
    return all(_copied(ring, archive, index) for index in list_segments(ring))


class Archiver:
    """Copies the sealed segments of ``ring`` into ``archive`` from a background thread."""

    def __init__(self, ring: Path, archive: Path, current: int) -> None:
        self.ring, self.archive = ring, archive
        self.error: JournalFull | None = None
        """Why the last copy failed, until one succeeds (the writer retries before deleting)."""
        self._done: set[int] = set()
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        for index in list_segments(ring):
            if index >= current:
                continue
            if _copied(ring, archive, index):
                self._done.add(index)
            else:
                self._queue.put(index)
        self._thread = threading.Thread(target=self._run, name="libshm-archiver", daemon=True)
        self._thread.start()

    def sealed(self, index: int) -> None:
        """Segment ``index`` is sealed (its roll frame written): copy it soon."""
        self._queue.put(index)

    def ensure(self, index: int) -> None:
        """Return once segment ``index`` is in the archive, copying it now if need be."""
        with self._lock:
            if index in self._done:
                return
            try:
                archive_segment(self.ring, self.archive, index, replace=True)
            except JournalFull as exc:
                self.error = exc
                raise
            self._done.add(index)
            self.error = None

    def _run(self) -> None:
        while (index := self._queue.get()) is not None:
            with contextlib.suppress(JournalFull):  # kept in self.error; retried before deleting
                self.ensure(index)

    def close(self, current: int | None) -> None:
        """Finish the queued copies, then copy ``current``, the segment being written (its copy
        is replaced when a writer attaches again and appends to it)."""
        self._queue.put(None)
        self._thread.join()
        if current is not None:
            with self._lock:
                archive_segment(self.ring, self.archive, current, replace=True)
