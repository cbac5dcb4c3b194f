"""Whole-journal checks and summaries: what ``hft journal verify`` and ``info`` report."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from libshm.errors import JournalError, NotAJournal
from libshm.layout import HEAD, HEAD_MAGIC, HEAD_SIZE, segment_name
from libshm.process import writer_state
from libshm.reader import JournalReader
from libshm.record import TICK_LAYOUT_ID
from libshm.segment import (
    SegmentInfo,
    damage_in_newest,
    list_segments,
    map_segment,
    scan_segment,
)

__all__ = ["JournalReport", "day_journals", "inspect_journal"]


@dataclass
class JournalReport:
    path: Path
    segments: list[SegmentInfo] = field(default_factory=list)
    frames: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_time_ns: int | None = None
    last_time_ns: int | None = None
    writer: str = "none"
    ring_segments: int = 0
    instruments: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    """Damage to committed data: ``verify`` fails."""
    notes: list[str] = field(default_factory=list)
    """What a crashed writer left and its successor repairs: ``verify`` still passes."""
    cut: tuple[int, int] | None = None
    """Where the first damage is, as (segment index, offset): what ``hft journal repair``
    keeps is everything before it. Offset 0 means the whole segment (it and all after it)."""

    def damaged(self, problem: str, index: int, offset: int) -> None:
        self.problems.append(problem)
        if self.cut is None:
            self.cut = (index, offset)

    @property
    def intact(self) -> bool:
        return not self.problems


def _writer_state(path: Path, report: JournalReport) -> None:
    head = path / "head"
    if not head.exists():
        report.writer = "none (no head block: a copy or an archive)"
        return
    with open(head, "rb") as f:
        raw = f.read(HEAD_SIZE)
    if len(raw) < HEAD.size or raw[:8] != HEAD_MAGIC:
        report.problems.append(f"{head}: not a journal head block")
        return
    report.ring_segments = HEAD.unpack_from(raw)[7]
    state, pid = writer_state(raw)
    report.writer = {
        "closed": "closed",
        "open": f"open (pid {pid})",
        "gone": f"gone (pid {pid} died without closing)",
    }[state]


def inspect_journal(path: str | Path, count_instruments: bool = True) -> JournalReport:
    """Check every committed frame of every segment; summarise what the journal holds.

    Raises :class:`JournalError` only when ``path`` is not a journal at all.
    """
    path = Path(path)
    report = JournalReport(path)
    indices = list_segments(path)
    if not indices:
        raise JournalError(f"{path}: no segment files; not a journal (or an empty one)")
    _writer_state(path, report)
    expected_seq: int | None = None
    for position, index in enumerate(indices):
        seg = path / segment_name(index)
        last = position == len(indices) - 1
        if position and index != indices[position - 1] + 1:
            report.damaged(
                f"{seg}: segment(s) missing before it (after {indices[position - 1]})", index, 0
            )
        try:
            mapping, info = map_segment(seg, writable=False)
        except JournalError as exc:
            report.damaged(str(exc), index, 0)
            break
        report.segments.append(info)
        try:
            if expected_seq is not None and info.first_seq != expected_seq:
                report.damaged(
                    f"{seg}: offset 0: starts at sequence {info.first_seq}, {expected_seq} "
                    "expected",
                    index,
                    0,
                )
            scan = scan_segment(mapping, info)
            damage = damage_in_newest(mapping, info, scan) if last else None
        finally:
            mapping.close()
        report.frames += scan.frames
        if scan.frames:
            report.first_seq = info.first_seq if report.first_seq is None else report.first_seq
            report.last_seq = scan.next_seq - 1
            if report.first_time_ns is None:
                report.first_time_ns = scan.first_time_ns
            report.last_time_ns = scan.last_time_ns
        expected_seq = scan.next_seq
        if scan.problem:  # a committed frame that does not check out: damage, never a crash
            report.damaged(f"{seg}: offset {scan.end}: {scan.problem}", index, scan.end)
        elif damage is not None:
            report.damaged(f"{seg}: offset {scan.end}: {damage}", index, scan.end)
        elif scan.roll_to is not None and scan.roll_to != index + 1:
            report.damaged(
                f"{seg}: offset {scan.end}: rolls to segment {scan.roll_to}", index, scan.end
            )
        elif not last and scan.roll_to is None:
            nxt = indices[position + 1]
            if position + 1 == len(indices) - 1 and _is_empty(path / segment_name(nxt)):
                report.notes.append(
                    f"{seg}: offset {scan.end}: rollover interrupted by a crash; the next "
                    "writer completes it"
                )
            else:
                report.damaged(
                    f"{seg}: offset {scan.end}: ends without a roll frame"
                    + (" (a frame there lost its commit word)" if scan.tail_dirty else ""),
                    index,
                    scan.end,
                )
        elif last and scan.tail_dirty:
            report.notes.append(
                f"{seg}: offset {scan.end}: an uncommitted frame after the last one (a writer "
                "died mid-write); the next writer discards it"
            )
    if count_instruments and report.intact and report.segments:
        _count_instruments(path, report)
    return report


def _is_empty(seg: Path) -> bool:
    mapping, info = map_segment(seg, writable=False)
    try:
        return scan_segment(mapping, info).frames == 0
    finally:
        mapping.close()


def _count_instruments(path: Path, report: JournalReport) -> None:
    if report.segments[0].layout.layout_id != TICK_LAYOUT_ID:
        return
    reader = JournalReader(path)
    while len(batch := reader.read_array()):
        names = batch["payload"]["instrument"]
        for name, n in Counter(names.tolist()).items():
            report.instruments[name.rstrip(b"\0").decode("ascii", "replace")] += n


def is_journal(path: str | Path) -> bool:
    """Whether ``path`` is a journal directory with at least one segment (False for anything
    else: missing, a file, an empty or unreadable directory)."""
    try:
        return bool(list_segments(Path(path)))
    except NotAJournal:
        return False


def day_journals(path: str | Path) -> list[Path]:
    """``path`` itself if it is a journal, else the journals directly inside it (a recordings
    directory, which holds one journal per trading day, or the engine's), in name order.
    Raises ``NotAJournal`` naming what it found when there is neither."""
    path = Path(path)
    if list_segments(path):  # raises NotAJournal for a missing path or a file
        return [path]
    found = [p for p in sorted(path.iterdir()) if p.is_dir() and list_segments(p)]
    if not found:
        raise NotAJournal(
            f"{path}: neither a journal (no segment files) nor a directory of journals (such "
            "as the recordings directory `hft import` writes, one per trading day)"
        )
    return found
