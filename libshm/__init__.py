"""libshm: the shared-memory data plane (tick journal, snapshot table).

It stores records: no network I/O, no knowledge of CTP, and it imports nothing from ``contracts``
or ``services``. Layering inside: ``layout`` (bytes) <- ``segment`` (files) <- ``writer``,
``reader``; ``record`` is the tick layout; ``seqlock`` the snapshot table; ``inspect`` and
``repair`` look at and mend journals on disk. Services import from this package only, never
its modules; its errors are one hierarchy under ``JournalError``.
"""

from libshm import accel
from libshm.archive import is_archived
from libshm.errors import (
    CorruptJournal,
    JournalError,
    JournalFull,
    NotAJournal,
    Overrun,
    UnsupportedVersion,
    WriterGone,
    WriterLocked,
)
from libshm.inspect import JournalReport, day_journals, inspect_journal, is_journal
from libshm.layout import FREE_FORM, SEGMENT_HEADER_SIZE, TYPE_FIXED, Layout, segment_name
from libshm.process import acquire_writer_lock
from libshm.reader import TICK_FRAME_DTYPE, Frame, JournalReader, WaitPolicy
from libshm.record import (
    FLAG_AUCTION,
    FLAG_SETTLEMENT,
    TICK_DTYPE,
    TICK_LAYOUT,
    TICK_LAYOUT_ID,
    Tick,
    book_tick,
    decode_tick,
    encode_tick,
    tick_from_row,
)
from libshm.repair import Repair, repair_journal
from libshm.segment import list_segments
from libshm.seqlock import SnapshotBusy, SnapshotReader, SnapshotWriter
from libshm.writer import TICK_FRAME_SIZE, JournalWriter

__all__ = [
    "FLAG_AUCTION",
    "FLAG_SETTLEMENT",
    "FREE_FORM",
    "SEGMENT_HEADER_SIZE",
    "TICK_DTYPE",
    "TICK_FRAME_DTYPE",
    "TICK_FRAME_SIZE",
    "TICK_LAYOUT",
    "TICK_LAYOUT_ID",
    "TYPE_FIXED",
    "CorruptJournal",
    "Frame",
    "JournalError",
    "JournalFull",
    "JournalReader",
    "JournalReport",
    "JournalWriter",
    "Layout",
    "NotAJournal",
    "Overrun",
    "Repair",
    "SnapshotBusy",
    "SnapshotReader",
    "SnapshotWriter",
    "Tick",
    "UnsupportedVersion",
    "WaitPolicy",
    "WriterGone",
    "WriterLocked",
    "accel",
    "acquire_writer_lock",
    "book_tick",
    "day_journals",
    "decode_tick",
    "encode_tick",
    "inspect_journal",
    "is_archived",
    "is_journal",
    "list_segments",
    "repair_journal",
    "segment_name",
    "tick_from_row",
]
