"""Where a deployment's ticks are: the live ring in memory and the recording on disk, per day.

md_recorder writes each trading day into a ring of segments, ``suite.shm_dir/ticks/YYYYMMDD``,
which keeps the newest few (so a whole-market day never fills ``/dev/shm``) and archives every
segment into the day's recording, ``suite.journal_dir/recordings/YYYYMMDD`` (docs/journal-format.md,
"Archiving a ring"). Readers (the engine, the monitor) open a day through :meth:`TickStore.open`:
the ring with its recording as the archive while the ring exists, so a reader behind the ring
goes on in the recording without a gap; the recording alone for a day whose ring is gone or
that was imported (``hft import`` writes recordings directly).
"""

from __future__ import annotations

import contextlib
import shutil
from dataclasses import dataclass
from pathlib import Path

from libshm import JournalReader, WaitPolicy, is_archived, is_journal

__all__ = ["TickStore", "days_in"]


def days_in(root: Path) -> list[int]:
    """The trading days (``YYYYMMDD`` directories) under ``root``, oldest first: the layout of
    rings, recordings and engine journals alike."""
    if not root.is_dir():
        return []
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and len(p.name) == 8)


@dataclass(frozen=True)
class TickStore:
    live: Path
    """Where the rings are (``suite.shm_dir/ticks``)."""
    recordings: Path
    """Where the recordings are (``suite.journal_dir/recordings``)."""

    @classmethod
    def of(cls, shm_dir: Path, journal_dir: Path) -> TickStore:
        """The store of a deployment, from its ``suite.shm_dir`` and ``suite.journal_dir``."""
        return cls(shm_dir / "ticks", journal_dir / "recordings")

    def ring(self, day: int) -> Path:
        return self.live / str(day)

    def recording(self, day: int) -> Path:
        return self.recordings / str(day)

    def days(self) -> list[int]:
        """Trading days with ticks in a ring or a recording, oldest first. The newest counts
        only once its journal has a segment: a writer creates the directory first, and a reader
        that opened it in between would find no journal there."""
        days = sorted({*days_in(self.live), *days_in(self.recordings)})
        if days and not (self.has_ring(days[-1]) or is_journal(self.recording(days[-1]))):
            days.pop()
        return days

    def has_ring(self, day: int) -> bool:
        return is_journal(self.ring(day))

    def where(self, day: int) -> Path:
        """The journal a reader of ``day`` opens: the ring if there is one, else the recording."""
        return self.ring(day) if self.has_ring(day) else self.recording(day)

    def open(
        self,
        day: int,
        *,
        from_seq: int | None = None,
        live: bool = False,
        verify: bool = False,
        wait: WaitPolicy | None = None,
    ) -> JournalReader:
        """A reader of ``day``'s ticks (raises ``NotAJournal`` if there are none)."""
        if self.has_ring(day):
            return JournalReader(
                self.ring(day), archive_dir=self.recording(day), from_seq=from_seq, live=live,
                verify=verify, wait=wait,
            )  # fmt: skip
        return JournalReader(
            self.recording(day), from_seq=from_seq, live=live, verify=verify, wait=wait
        )

    def drop_rings_before(self, day: int) -> list[int]:
        """Delete the rings of days before ``day`` whose writer closed them and whose recordings
        hold every segment of them, byte for byte. A reader still in one keeps its mapped
        segments and finds the rest in the recording. Returns the days dropped."""
        dropped = []
        for old in days_in(self.live):
            if old >= day or not self.has_ring(old):
                continue
            reader = JournalReader(self.ring(old))
            try:
                closed = reader.writer_state() == "closed"
            finally:
                reader.close()
            if closed and is_archived(self.ring(old), self.recording(old)):
                with contextlib.suppress(FileNotFoundError):
                    shutil.rmtree(self.ring(old))
                dropped.append(old)
        return dropped
