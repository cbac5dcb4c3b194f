"""libshm: the shared-memory data plane (tick journal, snapshot table).

It stores records: no network I/O, no knowledge of CTP, and it imports nothing from ``contracts``
or ``services``. Layering inside: ``layout`` (bytes) <- ``segment`` (files) <- ``writer``,
``reader``; ``record`` is the tick layout; ``seqlock`` the snapshot table.
"""

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
from libshm.layout import FREE_FORM, Layout
from libshm.reader import TICK_FRAME_DTYPE, Frame, JournalReader, WaitPolicy
from libshm.record import TICK_DTYPE, TICK_LAYOUT, Tick, book_tick, decode_tick, encode_tick
from libshm.writer import JournalWriter

__all__ = [
    "FREE_FORM",
    "TICK_DTYPE",
    "TICK_FRAME_DTYPE",
    "TICK_LAYOUT",
    "CorruptJournal",
    "Frame",
    "JournalError",
    "JournalFull",
    "JournalReader",
    "JournalWriter",
    "Layout",
    "NotAJournal",
    "Overrun",
    "Tick",
    "UnsupportedVersion",
    "WaitPolicy",
    "WriterGone",
    "WriterLocked",
    "book_tick",
    "decode_tick",
    "encode_tick",
]
