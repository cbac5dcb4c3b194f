"""The engine's journal files: one directory per trading day under ``suite.journal_dir/engine``
(and the recordings it reads under ``suite.journal_dir/recordings``), checked to be engine
journals of this version before anything reads or writes them."""

from __future__ import annotations

from pathlib import Path

import msgspec

from contracts import messages as m
from contracts.errors import JournalProblem
from libshm import CorruptJournal, JournalReader

__all__ = ["check_engine_layout", "read_journal"]


def check_engine_layout(path: Path, reader: JournalReader) -> None:
    """Refuse a journal that is not an engine journal of this version, in one line."""
    layout = reader.layout
    if (layout.layout_id, layout.version) == (m.ENGINE_LAYOUT.layout_id, m.ENGINE_LAYOUT.version):
        return
    what = ("an engine journal of another version" if layout.layout_id == m.ENGINE_LAYOUT.layout_id
            else "not an engine journal of this suite (a tick recording, or one written before "
            "engine journals had their own layout)" if layout.layout_id else
            "a journal of free-form payloads, not an engine journal of this version")  # fmt: skip
    raise JournalProblem(
        f"{path}: {what}: layout {layout.layout_id} v{layout.version}, this engine reads layout "
        f"{m.ENGINE_LAYOUT.layout_id} v{m.ENGINE_LAYOUT.version}; move the directory aside (the "
        "suite that wrote it can still read it) and start the day afresh"
    )


def read_journal(path: Path) -> list[m.EngineMessage]:
    """Every committed message of an engine journal, in order, every checksum checked."""
    reader = JournalReader(path, verify=True)
    check_engine_layout(path, reader)
    out = []
    try:
        while (frame := reader.read()) is not None:
            out.append(m.decode(frame.payload))
    except CorruptJournal as exc:
        raise JournalProblem(
            f"{exc}; the engine journal is damaged, so the day cannot be recovered exactly: "
            f"`hft journal verify {path}` lists the damage, `hft journal repair {path}` cuts "
            "the journal there after keeping a copy (the day then resumes from the cut)",
        ) from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise JournalProblem(
            f"{path}: frame {reader.next_seq - 1} is not an engine message of this version "
            f"({exc}); was the journal written by another program?"
        ) from None
    finally:
        reader.close()
    return out
