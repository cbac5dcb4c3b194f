"""Segment files: create (fully, then rename into place), map, list, archive."""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import shutil
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from libshm import accel
from libshm.errors import (
    CorruptJournal,
    JournalError,
    JournalFull,
    NotAJournal,
    UnsupportedVersion,
)
from libshm.layout import (
    FILE_MODE,
    FORMAT_VERSION,
    FRAME_HEADER,
    FRAME_HEADER_SIZE,
    LENGTH_MASK,
    MIN_SEGMENT_SIZE,
    ROLL_PAYLOAD,
    SEGMENT_HEADER,
    SEGMENT_HEADER_SIZE,
    SEGMENT_MAGIC,
    SEGMENT_SUFFIX,
    TYPE_ROLL,
    Layout,
    checksum32,
    frame_size,
    segment_name,
)

__all__ = [
    "Scan",
    "SegmentInfo",
    "Spare",
    "archive_segment",
    "committed_after",
    "create_segment",
    "damage_in_newest",
    "list_segments",
    "map_segment",
    "read_segment_info",
    "scan_segment",
]

_SPACE_ERRORS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)


@dataclass(frozen=True)
class SegmentInfo:
    path: Path
    index: int
    first_seq: int
    layout: Layout
    frame_size: int
    segment_size: int
    created_ns: int


def list_segments(directory: Path) -> list[int]:
    """Indices of the segment files in ``directory``, ascending."""
    out = []
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        raise NotAJournal(f"{directory}: no such journal directory") from None
    except NotADirectoryError:
        raise NotAJournal(f"{directory}: not a directory; a journal is a directory") from None
    except PermissionError:
        raise NotAJournal(f"{directory}: permission denied; grant read access") from None
    for name in names:
        stem, dot, suffix = name.partition(".")
        if dot and "." + suffix == SEGMENT_SUFFIX and stem.isdigit() and len(stem) == 10:
            out.append(int(stem))
    out.sort()
    return out


def _parse_header(path: Path, raw: bytes, file_size: int) -> SegmentInfo:
    if len(raw) < SEGMENT_HEADER_SIZE:
        raise CorruptJournal(str(path), 0, f"segment shorter than its header ({len(raw)} bytes)")
    (magic, version, header_size, layout_id, layout_version, frame_size, index, first_seq,
     segment_size, created_ns, checksum, _) = SEGMENT_HEADER.unpack_from(raw)  # fmt: skip
    if magic != SEGMENT_MAGIC:
        raise NotAJournal(f"{path}: not a journal segment (bad magic {magic!r})")
    if version > FORMAT_VERSION:
        raise UnsupportedVersion(
            f"{path}: journal format version {version} is newer than this program's "
            f"({FORMAT_VERSION}); upgrade hft to read it"
        )
    if checksum32(raw[:56]) & LENGTH_MASK != checksum:
        raise CorruptJournal(str(path), 0, "segment header checksum mismatch")
    if header_size != SEGMENT_HEADER_SIZE or segment_size != file_size:
        raise CorruptJournal(
            str(path), 0,
            f"segment size {file_size} differs from its header's {segment_size} (truncated?)",
        )  # fmt: skip
    payload_size = frame_size - 32 if frame_size else 0
    return SegmentInfo(
        path, index, first_seq, Layout(layout_id, layout_version, payload_size), frame_size,
        segment_size, created_ns,
    )  # fmt: skip


def read_segment_info(path: Path) -> SegmentInfo:
    """Read and check a segment's header without mapping the file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(SEGMENT_HEADER_SIZE)
            size = os.fstat(f.fileno()).st_size
    except PermissionError:
        raise NotAJournal(f"{path}: permission denied; grant read access") from None
    return _parse_header(path, raw, size)


def _header(  # noqa: PLR0917
    index: int, first_seq: int, segment_size: int, layout: Layout, frame_size: int, created_ns: int
) -> bytes:
    header = bytearray(SEGMENT_HEADER_SIZE)
    SEGMENT_HEADER.pack_into(
        header, 0, SEGMENT_MAGIC, FORMAT_VERSION, SEGMENT_HEADER_SIZE, layout.layout_id,
        layout.version, frame_size, index, first_seq, segment_size, created_ns, 0, 0,
    )  # fmt: skip
    header[56:60] = (checksum32(bytes(header[:56])) & LENGTH_MASK).to_bytes(4, "little")
    return bytes(header)


def _allocate(fd: int, path: Path, final: Path, segment_size: int) -> None:
    """Allocate every block of ``fd`` now, or raise ``JournalFull`` naming ``final``."""
    try:
        # A write into an mmap'd hole on a full disk is a SIGBUS that kills the process; an
        # error here is one we can report.
        os.posix_fallocate(fd, 0, segment_size)
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise _full(final, segment_size, exc) from None


def _full(final: Path, segment_size: int, exc: OSError) -> JournalFull:
    if exc.errno in _SPACE_ERRORS:
        return JournalFull(
            f"{final}: cannot allocate a {segment_size >> 20} MiB segment "
            f"({exc.strerror}); free space there or point the journal elsewhere; "
            "every frame committed before is intact"
        )
    return JournalFull(f"{final}: cannot create segment: {exc.strerror}")


def create_segment(  # noqa: PLR0917
    directory: Path,
    index: int,
    first_seq: int,
    segment_size: int,
    layout: Layout,
    frame_size: int,
    created_ns: int,
) -> Path:
    """Write a new, zero-filled, fully allocated segment and rename it into place."""
    if segment_size < MIN_SEGMENT_SIZE or segment_size % 4096:
        raise ValueError("segment size must be a multiple of 4096")
    final = directory / segment_name(index)
    tmp = directory / f".{segment_name(index)}.tmp"
    header = _header(index, first_seq, segment_size, layout, frame_size, created_ns)
    try:
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, FILE_MODE)
        try:
            _allocate(fd, tmp, final, segment_size)
            os.pwrite(fd, header, 0)
        finally:
            os.close(fd)
        os.rename(tmp, final)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _full(final, segment_size, exc) from None
    return final


SPARE_NAME: Final = ".spare.seg.tmp"


def prepare_spare(directory: Path, segment_size: int, populate: bool) -> mmap.mmap:
    """Allocate the writer's next segment ahead of need under a hidden name, map it and (with
    ``populate`` and the C fast path) fault its pages in. Runs in a background thread: the
    allocation and the page faults, about 1 µs per frame on a VM, leave the append path.
    """
    path = directory / SPARE_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    try:
        _allocate(fd, path, path, segment_size)
        mapping = mmap.mmap(fd, segment_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    fast = accel.FAST
    if populate and fast is not None:
        try:
            fast.populate(mapping)
        except OSError:
            mapping.close()
            path.unlink(missing_ok=True)
            raise
    return mapping


class Spare:
    """The next segment, being prepared by a background thread (see ``prepare_spare``)."""

    def __init__(self, directory: Path, segment_size: int) -> None:
        self._result: mmap.mmap | None = None
        self._thread = threading.Thread(
            target=self._run, args=(directory, segment_size), name="journal-spare", daemon=True
        )
        self._thread.start()

    def _run(self, directory: Path, segment_size: int) -> None:
        try:
            self._result = prepare_spare(directory, segment_size, populate=True)
        except (OSError, JournalError):
            self._result = None  # the rollover creates the segment itself and reports why not

    def take(self) -> mmap.mmap | None:
        self._thread.join()
        return self._result


def install_spare(  # noqa: PLR0917
    directory: Path,
    mapping: mmap.mmap,
    index: int,
    first_seq: int,
    layout: Layout,
    frame_size: int,
    created_ns: int,
) -> SegmentInfo:
    """Give the prepared spare its header and rename it into place as segment ``index``."""
    header = _header(index, first_seq, len(mapping), layout, frame_size, created_ns)
    mapping[:SEGMENT_HEADER_SIZE] = header
    final = directory / segment_name(index)
    os.rename(directory / SPARE_NAME, final)
    return _parse_header(final, header, len(mapping))


def discard_spare(directory: Path) -> None:
    """Remove a spare left by a writer that stopped or crashed before using it."""
    (directory / SPARE_NAME).unlink(missing_ok=True)


def map_segment(
    path: Path, writable: bool, populate: bool = False
) -> tuple[mmap.mmap, SegmentInfo]:
    """Map a whole segment file; the returned mapping stays valid even if the file is deleted."""
    flags = os.O_RDWR if writable else os.O_RDONLY
    try:
        fd = os.open(path, flags)
    except PermissionError:
        access = "write" if writable else "read"
        raise NotAJournal(f"{path}: permission denied; grant {access} access") from None
    try:
        size = os.fstat(fd).st_size
        raw = os.pread(fd, SEGMENT_HEADER_SIZE, 0)
        info = _parse_header(path, raw, size)
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
        mapping = mmap.mmap(fd, size, flags, prot)
    finally:
        os.close(fd)
    return mapping, info


def archive_segment(directory: Path, archive: Path, index: int, *, replace: bool = False) -> Path:
    """Copy segment ``index`` of ``directory`` into ``archive`` under the same name (temporary
    name, flushed to disk, then renamed), keeping a copy already there unless ``replace``.
    Raises ``JournalFull`` if the archive cannot take it."""
    name = segment_name(index)
    final = archive / name
    if final.exists() and not replace:
        return final
    tmp = archive / f".{name}.tmp"
    try:
        archive.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(directory / name, tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, final)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise JournalFull(
            f"{final}: cannot archive segment ({exc.strerror}); free space there: every frame "
            f"committed before is intact in {directory}, and archiving goes on when there is room"
        ) from None
    return final


@dataclass(frozen=True)
class Scan:
    """What a full check of one segment found."""

    end: int
    """Offset just past the last good frame (where the next frame goes)."""
    next_seq: int
    frames: int
    """Data frames (roll frames not counted)."""
    first_time_ns: int | None
    last_time_ns: int | None
    roll_to: int | None
    """Index of the next segment, if the segment ends with a roll frame."""
    problem: str | None
    """Why the scan stopped before a zero commit word (a torn or corrupt frame), if it did."""
    tail_dirty: bool
    """Non-zero bytes after ``end`` (what a crashed writer left; recovery zeroes them)."""


def scan_segment(buffer: mmap.mmap | memoryview | bytes, info: SegmentInfo) -> Scan:
    """Walk every frame from the start, checking length, sequence and checksum."""
    size = info.segment_size
    off = SEGMENT_HEADER_SIZE
    seq = info.first_seq
    frames = 0
    first_time = last_time = roll_to = None
    problem = None
    view = memoryview(buffer)
    try:
        while off + FRAME_HEADER_SIZE <= size:
            commit, fseq, time_ns, ftype, _, plen = FRAME_HEADER.unpack_from(view, off)
            if commit == 0:
                break
            flen = commit & LENGTH_MASK
            if flen != frame_size(plen) or off + flen > size:
                problem = f"bad frame length {flen} for a {plen}-byte payload"
                break
            if fseq != seq:
                problem = f"sequence {fseq} where {seq} was expected"
                break
            data_end = off + FRAME_HEADER_SIZE + plen
            if checksum32(view[off + 8 : data_end]) & LENGTH_MASK != commit >> 32:
                problem = f"checksum mismatch in frame {fseq}"
                break
            if ftype == TYPE_ROLL:
                roll_to = ROLL_PAYLOAD.unpack_from(view, off + FRAME_HEADER_SIZE)[0]
                break
            frames += 1
            if first_time is None:
                first_time = time_ns
            last_time = time_ns
            off += flen
            seq += 1
        tail = np.frombuffer(view, dtype=np.uint8, count=size - off, offset=off)
        tail_dirty = roll_to is None and bool(tail.any())
        del tail
    finally:
        view.release()
    return Scan(off, seq, frames, first_time, last_time, roll_to, problem, tail_dirty)


def committed_after(
    buffer: mmap.mmap | memoryview | bytes, info: SegmentInfo, start: int
) -> int | None:
    """Offset of the first frame at or after ``start`` that checks out on its own (non-zero
    commit word, a length that fits its payload length, a matching checksum), or None.

    This tells a torn tail from damage. A writer commits frames in order, so what a crash
    leaves after the last committed frame is never itself a committed frame: if one checks out
    after the point where a scan stopped, committed data follows the damage. Journals of
    fixed-size frames are searched at their frame boundaries, free-form ones at every word.
    """
    start = (start + 7) & ~7
    count = (info.segment_size - start) // 8
    if count < 4:
        return None
    view = memoryview(buffer)
    try:
        words = np.frombuffer(view, dtype="<u8", count=count, offset=start)
        commits = words[:-3]
        flens = commits & np.uint64(LENGTH_MASK)
        wanted = ((words[3:] >> np.uint64(32)) + np.uint64(FRAME_HEADER_SIZE + 7)) & ~np.uint64(7)
        fits = (commits != 0) & (flens == wanted)
        if info.frame_size:
            step = info.frame_size // 8
            grid = np.zeros(len(fits), dtype=bool)
            grid[(-((start - SEGMENT_HEADER_SIZE) // 8)) % step :: step] = True
            fits &= grid
        candidates = np.flatnonzero(fits).tolist()
        found = None
        for i in candidates:
            off = start + 8 * i
            commit, plen = int(words[i]), int(words[i + 3]) >> 32
            if off + (commit & LENGTH_MASK) > info.segment_size:
                continue
            body = view[off + 8 : off + FRAME_HEADER_SIZE + plen]
            if checksum32(body) & LENGTH_MASK == commit >> 32:
                found = off
                break
        del words, commits, flens, wanted, fits
        return found
    finally:
        view.release()


def damage_in_newest(
    buffer: mmap.mmap | memoryview | bytes, info: SegmentInfo, scan: Scan
) -> str | None:
    """Why the end of the newest segment is damage rather than a torn tail, or None.

    The torn-tail rule: a crash can leave only bytes without a commit word after the last
    committed frame. So a committed frame that fails its checks is damage, and so is a zero
    commit word with a committed frame after it.
    """
    if scan.roll_to is not None:
        return None
    if scan.problem:
        return scan.problem
    if not scan.tail_dirty:
        return None
    later = committed_after(buffer, info, scan.end + 8)
    if later is None:
        return None
    if struct.unpack_from("<Q", buffer, scan.end)[0]:
        return None  # a live writer committed it after the scan passed: frames come in order
    return (
        f"no commit word on the frame after sequence {scan.next_seq - 1}, but committed frames "
        f"follow it (the first at offset {later})"
    )
