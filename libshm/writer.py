"""The one writer of a journal: append frames, roll segments, recover after a crash."""

from __future__ import annotations

import mmap
import os
import platform
import struct
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np

from libshm import accel
from libshm.archive import Archiver, seed_ring
from libshm.errors import CorruptJournal, JournalError, NotAJournal
from libshm.layout import (
    COMMIT,
    FILE_MODE,
    FORMAT_VERSION,
    FRAME_BODY_HEADER,
    FRAME_HEADER_SIZE,
    FREE_FORM,
    HEAD,
    HEAD_HEARTBEAT,
    HEAD_MAGIC,
    HEAD_SEGMENTS,
    HEAD_SIZE,
    HEAD_STATE_PID,
    LENGTH_MASK,
    ROLL_FRAME_SIZE,
    ROLL_PAYLOAD,
    SEGMENT_HEADER_SIZE,
    STATE_CLOSED,
    STATE_OPEN,
    TYPE_BYTES,
    TYPE_FIXED,
    TYPE_ROLL,
    Layout,
    checksum32,
    frame_size,
    segment_name,
)
from libshm.process import acquire_writer_lock
from libshm.record import _ENCODED as _NAMES
from libshm.record import _ENCODED_EXCHANGE as _EXCHANGES
from libshm.record import TICK_LAYOUT_ID, TICK_SIZE, Tick, pack_args
from libshm.segment import (
    SegmentInfo,
    Spare,
    create_segment,
    damage_in_newest,
    discard_spare,
    install_spare,
    list_segments,
    map_segment,
    scan_segment,
)

__all__ = ["DEFAULT_SEGMENT_SIZE", "JournalWriter"]

DEFAULT_SEGMENT_SIZE: Final = 64 << 20
_STRONG_ORDERING: Final = ("x86_64", "amd64", "i386", "i686")
_ZERO_CHUNK: Final = bytes(1 << 20)
TICK_FRAME_SIZE: Final = frame_size(TICK_SIZE)


def _check_architecture() -> None:
    machine = platform.machine().lower()
    if machine not in _STRONG_ORDERING and os.environ.get("HFT_ALLOW_WEAK_ORDERING") != "1":
        raise JournalError(
            f"journals rely on x86-64 store ordering and this machine is {machine}; see "
            "docs/journal-format.md (memory ordering) before setting HFT_ALLOW_WEAK_ORDERING=1"
        )


PREPARE_AHEAD_MIN: Final = 1 << 20
GATHER_BLOCK: Final = 4096  # records gathered at a time by append_array(order=...)


class JournalWriter:
    """Appends frames to a journal directory; exactly one per journal, enforced by a lock.

    ``ring_segments=0`` keeps every segment (a recording); ``N`` keeps the N newest and deletes
    older ones. With ``archive_dir`` a ring's segments are copied there as they are sealed, and
    the one being written at close (``libshm.archive``), so the archive is the whole recording;
    a ring found empty whose archive holds segments goes on after them. ``clock`` stamps
    segments, the heartbeat and roll frames; frame times are given by the caller.

    ``prepare_ahead`` allocates the next segment in a background thread under a hidden name and,
    with the C fast path, faults its pages in without holding the GIL, so the rollover is a
    rename and appends never pay for allocation or first-touch page faults (about 7 µs per
    4 KiB page on a VM). Default: on for segments of 1 MiB and more.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        layout: Layout = FREE_FORM,
        segment_size: int = DEFAULT_SEGMENT_SIZE,
        ring_segments: int = 0,
        archive_dir: str | Path | None = None,
        clock: Callable[[], int] = time.time_ns,
        prepare_ahead: bool | None = None,
    ) -> None:
        _check_architecture()
        if ring_segments == 1 or ring_segments < 0:
            raise ValueError("ring_segments must be 0 (keep all) or at least 2")
        self.path = Path(path)
        self.layout = layout
        self.ring_segments = ring_segments
        self.archive_dir = Path(archive_dir) if archive_dir is not None else None
        self._segment_size = segment_size
        self._clock = clock
        # a layout with a payload size has fixed frames; one without takes free-form payloads
        self._fixed_len = frame_size(layout.payload_size) if layout.payload_size else 0
        self._payload_len = layout.payload_size
        self._fixed = (
            struct.Struct("<QqHHI" + layout.payload_format) if layout.payload_format else None
        )
        self._is_tick = layout.layout_id == TICK_LAYOUT_ID
        self._fast = accel.FAST
        self._fast_append = self._fast.append_tick if self._fast and self._is_tick else None
        self._fast_bytes = getattr(self._fast, "append_bytes", None) if self._fast else None
        self._frame_dtype = np.dtype(
            [("commit", "<u8"), ("seq", "<u8"), ("time_ns", "<i8"), ("type", "<u2"),
             ("flags", "<u2"), ("payload_len", "<u4"), ("payload", "V", layout.payload_size)]
        ) if layout.payload_size else None  # fmt: skip
        self._prepare_ahead = (
            segment_size >= PREPARE_AHEAD_MIN if prepare_ahead is None else prepare_ahead
        )
        self._spare: Spare | None = None
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NotAJournal(
                f"{self.path}: cannot create journal directory: {exc.strerror}"
            ) from None
        self._lock_fd = acquire_writer_lock(self.path / "writer.lock", str(self.path))
        self._mm: mmap.mmap | None = None
        self._mv = memoryview(b"")
        self._head: mmap.mmap | None = None
        self._index = self._off = self._seq = self._limit = self._oldest = 0
        self._archiver: Archiver | None = None
        try:
            if ring_segments and self.archive_dir is not None:
                seed_ring(self.path, self.archive_dir)
            self._attach()
            if ring_segments and self.archive_dir is not None:
                self._archiver = Archiver(self.path, self.archive_dir, self._index)
        except BaseException:
            self._release()
            raise

    # -- set-up and recovery ---------------------------------------------------------------

    def _attach(self) -> None:
        now = self._clock()
        self._head = self._map_head(now)
        indices = list_segments(self.path)
        if not indices:
            self._create(0, first_seq=0, now=now)
            self._open(0, SEGMENT_HEADER_SIZE, 0)
        else:
            self._recover(indices, now)
        self._oldest = list_segments(self.path)[0]
        discard_spare(self.path)  # left by a writer that crashed
        self._start_spare()
        HEAD_STATE_PID.pack_into(self._head, 10, STATE_OPEN, os.getpid())
        HEAD_HEARTBEAT.pack_into(self._head, 16, now)
        HEAD_SEGMENTS.pack_into(self._head, 24, self._index, self._oldest)
        struct.pack_into("<q", self._head, 56, now)

    def _map_head(self, now: int) -> mmap.mmap:
        path = self.path / "head"
        if not path.exists():
            block = bytearray(HEAD_SIZE)
            HEAD.pack_into(
                block, 0, HEAD_MAGIC, FORMAT_VERSION, STATE_OPEN, 0, now, 0, 0,
                self.ring_segments, self._segment_size >> 10, self.layout.layout_id,
                self.layout.version, now,
            )  # fmt: skip
            tmp = self.path / ".head.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
            try:
                os.write(fd, block)
            finally:
                os.close(fd)
            os.rename(tmp, path)
        fd = os.open(path, os.O_RDWR)
        try:
            head = mmap.mmap(fd, HEAD_SIZE)
        finally:
            os.close(fd)
        if head[:8] != HEAD_MAGIC:
            head.close()
            raise NotAJournal(f"{path}: not a journal head block")
        stored_layout = struct.unpack_from("<II", head, 48)
        if stored_layout != (self.layout.layout_id, self.layout.version):
            head.close()
            raise JournalError(
                f"{self.path}: journal holds layout {stored_layout[0]} v{stored_layout[1]}, "
                f"this writer writes layout {self.layout.layout_id} v{self.layout.version}; "
                "use another directory"
            )
        return head

    def _recover(self, indices: list[int], now: int) -> None:
        index = indices[-1]
        mapping, info = map_segment(self.path / segment_name(index), writable=True)
        try:
            scan = scan_segment(mapping, info)
            damage = damage_in_newest(mapping, info, scan)
        finally:
            mapping.close()
        if damage is not None:
            raise CorruptJournal(
                str(info.path), scan.end,
                f"{damage}: damage, not a torn tail, so nothing was changed; "
                f"`hft journal verify {self.path}` shows it, `hft journal repair {self.path}` "
                "cuts the journal there after keeping a copy",
            )  # fmt: skip
        if scan.roll_to is not None:
            # Crashed after the roll frame, before the next segment was visible: impossible with
            # the create-then-roll order, unless the file was removed; recreate it.
            self._create(scan.roll_to, scan.next_seq, now)
            index, scan_end, next_seq = scan.roll_to, SEGMENT_HEADER_SIZE, scan.next_seq
        else:
            scan_end, next_seq = scan.end, scan.next_seq
        self._open(index, scan_end, next_seq)
        if scan.tail_dirty:  # a torn tail: uncommitted bytes of the frame a crash interrupted
            self._zero_tail()
        if scan_end == SEGMENT_HEADER_SIZE and len(indices) > 1 and index == indices[-1]:
            self._complete_previous_roll(indices[-2], info)

    def _complete_previous_roll(self, previous: int, current: SegmentInfo) -> None:
        mapping, info = map_segment(self.path / segment_name(previous), writable=True)
        try:
            scan = scan_segment(mapping, info)
            if scan.roll_to is not None:
                return
            if scan.next_seq != current.first_seq or scan.problem:
                raise CorruptJournal(
                    str(info.path), scan.end,
                    f"segment ends at sequence {scan.next_seq} but the next one starts at "
                    f"{current.first_seq}; run `hft journal verify`",
                )  # fmt: skip
            self._write_roll(mapping, scan.end, current.first_seq, current.index)
        finally:
            mapping.close()

    def _create(self, index: int, first_seq: int, now: int) -> None:
        create_segment(
            self.path, index, first_seq, self._segment_size, self.layout, self._fixed_len, now
        )

    def _open(self, index: int, offset: int, next_seq: int) -> None:
        mapping, info = map_segment(self.path / segment_name(index), writable=True)
        self._use(mapping, info, index, offset, next_seq)

    def _use(
        self, mapping: mmap.mmap, info: SegmentInfo, index: int, offset: int, next_seq: int
    ) -> None:
        if self._mm is not None:
            self._mv.release()
            self._mm.close()
        self._mm = mapping
        self._mv = memoryview(mapping)
        self._index = index
        self._off = offset
        self._seq = next_seq
        self._limit = info.segment_size - ROLL_FRAME_SIZE

    def _zero_tail(self) -> None:
        assert self._mm is not None
        off, size = self._off, len(self._mm)
        while off < size:
            n = min(len(_ZERO_CHUNK), size - off)
            self._mm[off : off + n] = _ZERO_CHUNK[:n]
            off += n

    # -- appending -------------------------------------------------------------------------

    @property
    def next_seq(self) -> int:
        """Sequence number the next appended frame will get."""
        return self._seq

    def append(self, payload: bytes | bytearray | memoryview, time_ns: int) -> int:
        """Append a free-form payload; returns its sequence number."""
        plen = len(payload)
        flen = (FRAME_HEADER_SIZE + plen + 7) & ~7  # frame_size(plen), inline: the order path
        if flen > self._limit - SEGMENT_HEADER_SIZE:
            raise ValueError(f"payload of {plen} bytes does not fit in a segment")
        off = self._off
        if off + flen > self._limit:
            self._roll()
            off = self._off
        mv = self._mv
        seq = self._seq
        fast = self._fast_bytes
        if fast is not None:  # the same bytes in C: header, payload, checksum, commit
            fast(mv, off, seq, time_ns, payload)
        else:
            data_start = off + FRAME_HEADER_SIZE
            FRAME_BODY_HEADER.pack_into(mv, off + 8, seq, time_ns, TYPE_BYTES, 0, plen)
            mv[data_start : data_start + plen] = payload
            checksum = checksum32(mv[off + 8 : data_start + plen]) & LENGTH_MASK
            COMMIT.pack_into(mv, off, flen | (checksum << 32))
        self._off = off + flen
        self._seq = seq + 1
        return seq

    def append_record(self, time_ns: int, *fields: object) -> int:
        """Append one fixed-layout record given as the values of its ``struct`` format."""
        if self._fixed is None:
            raise TypeError("this journal has no fixed layout; use append()")
        off = self._off
        end = off + self._fixed_len
        if end > self._limit:
            self._roll()
            off = self._off
            end = off + self._fixed_len
        mv = self._mv
        seq = self._seq
        self._fixed.pack_into(mv, off + 8, seq, time_ns, TYPE_FIXED, 0, self._payload_len, *fields)
        checksum = checksum32(mv[off + 8 : end]) & LENGTH_MASK
        COMMIT.pack_into(mv, off, self._fixed_len | (checksum << 32))
        self._off = end
        self._seq = seq + 1
        return seq

    def append_tick(self, tick: Tick, time_ns: int) -> int:
        """Append a tick record (the journal's layout must be the tick layout)."""
        # append_record inlined: this is the recorder's per-tick path.
        if not self._is_tick:
            raise TypeError("this journal does not hold tick records")
        off = self._off
        end = off + TICK_FRAME_SIZE
        if end > self._limit:
            self._roll()
            off = self._off
            end = off + TICK_FRAME_SIZE
        mv = self._mv
        seq = self._seq
        fast = self._fast_append
        if fast is not None:  # the same bytes in C: header, record, checksum, commit
            fast(mv, off, seq, time_ns, tick)
        else:
            try:
                names: tuple[object, ...] = (_NAMES[tick[0]], _EXCHANGES[tick[1]])
            except KeyError:
                names = pack_args(tick)[:2]  # encodes, checks and caches the names
            self._fixed.pack_into(  # type: ignore[union-attr]
                mv, off + 8, seq, time_ns, TYPE_FIXED, 0, TICK_SIZE, *names, *tick[2:]
            )
            checksum = checksum32(mv[off + 8 : end]) & LENGTH_MASK
            COMMIT.pack_into(mv, off, TICK_FRAME_SIZE | (checksum << 32))
        self._off = end
        self._seq = seq + 1
        return seq

    def append_array(
        self, records: np.ndarray, time_ns: np.ndarray | int, order: np.ndarray | None = None
    ) -> int:
        """Append many fixed records at once (a numpy array of the layout's dtype, such as
        ``TICK_DTYPE``); returns the sequence number of the first. For bulk writers (replay,
        import): headers and payloads are copied vectorised, then each frame's checksum is
        computed and the commit words are stored in order, after every payload. With
        ``order`` (positions in ``records``), ``records[order]`` is appended, gathered straight
        into the journal; ``time_ns`` is then one per position of ``order``.
        """
        if self._fixed is None or self._frame_dtype is None:
            raise TypeError("this journal has no fixed layout; use append()")
        if records.dtype.itemsize != self._payload_len:
            raise TypeError(
                f"records of {records.dtype.itemsize} bytes; layout needs {self._payload_len}"
            )
        count = len(records)
        if order is not None:
            order = np.asarray(order, dtype=np.intp)
            if len(order) and (order.min() < 0 or order.max() >= count):
                raise IndexError(f"order holds positions outside the {count} records")
            count = len(order)
        first = self._seq
        times = np.broadcast_to(np.asarray(time_ns, dtype=np.int64), (count,))
        flen = self._fixed_len
        done = 0
        while done < count:
            room = (self._limit - self._off) // flen
            if room <= 0:
                self._roll()
                continue
            k = min(room, count - done)
            base, seq = self._off, self._seq
            frames: Any = np.frombuffer(  # structured: numpy's stubs cannot type the fields
                self._mv, dtype=self._frame_dtype, count=k, offset=base
            )
            frames["seq"] = np.arange(seq, seq + k, dtype=np.uint64)
            frames["time_ns"] = times[done : done + k]
            frames["type"] = TYPE_FIXED
            frames["flags"] = 0
            frames["payload_len"] = self._payload_len
            payload = frames.dtype["payload"]
            if order is None:
                frames["payload"] = records[done : done + k].view(payload)
            else:  # in blocks that stay in cache, not through one copy of them all
                into, source = frames["payload"], records.view(payload)
                for at in range(0, k, GATHER_BLOCK):
                    block = order[done + at : done + min(at + GATHER_BLOCK, k)]
                    into[at : at + len(block)] = source[block]
                del into
            del frames
            mv = self._mv
            if self._fast is not None:  # checksums and commit words, in order, in C
                self._fast.commit_frames(mv, base, k, flen)
            else:
                for o in range(base, base + k * flen, flen):
                    checksum = checksum32(mv[o + 8 : o + flen]) & LENGTH_MASK
                    COMMIT.pack_into(mv, o, flen | (checksum << 32))
            self._off = base + k * flen
            self._seq = seq + k
            done += k
        return first

    # -- segments --------------------------------------------------------------------------

    def _write_roll(self, mapping: mmap.mmap, off: int, seq: int, next_index: int) -> None:
        now = self._clock()
        body = FRAME_BODY_HEADER.pack(seq, now, TYPE_ROLL, 0, ROLL_PAYLOAD.size)
        body += ROLL_PAYLOAD.pack(next_index)
        mapping[off + 8 : off + ROLL_FRAME_SIZE] = body
        COMMIT.pack_into(mapping, off, ROLL_FRAME_SIZE | (checksum32(body) & LENGTH_MASK) << 32)

    def _roll(self) -> None:
        assert self._mm is not None and self._head is not None
        now = self._clock()
        nxt = self._index + 1
        self._retire(nxt)
        spare = self._take_spare()
        if spare is not None:
            info = install_spare(
                self.path, spare, nxt, self._seq, self.layout, self._fixed_len, now
            )
            self._write_roll(self._mm, self._off, self._seq, nxt)
            self._use(spare, info, nxt, SEGMENT_HEADER_SIZE, self._seq)
        else:
            self._create(nxt, self._seq, now)
            self._write_roll(self._mm, self._off, self._seq, nxt)
            self._open(nxt, SEGMENT_HEADER_SIZE, self._seq)
        if self._archiver is not None:
            self._archiver.sealed(nxt - 1)
        self._start_spare()
        HEAD_SEGMENTS.pack_into(self._head, 24, nxt, self._oldest)
        HEAD_HEARTBEAT.pack_into(self._head, 16, now)

    def _start_spare(self) -> None:
        if self._prepare_ahead and self._spare is None:
            self._spare = Spare(self.path, self._segment_size)

    def _take_spare(self) -> mmap.mmap | None:
        """The prepared next segment, waiting for it if need be; None if there is none or its
        preparation failed (the caller then creates the segment itself, which reports a full
        disk as ``JournalFull``)."""
        spare, self._spare = self._spare, None
        return None if spare is None else spare.take()

    def _retire(self, new_index: int) -> None:
        """Ring: before segment ``new_index`` exists, drop segments beyond the N newest."""
        if not self.ring_segments:
            return
        while self._oldest <= new_index - self.ring_segments:
            if self._archiver is not None:
                self._archiver.ensure(self._oldest)
            (self.path / segment_name(self._oldest)).unlink(missing_ok=True)
            self._oldest += 1

    # -- life ------------------------------------------------------------------------------

    def heartbeat(self, now_ns: int | None = None) -> None:
        """Tell readers the writer lives; call it from the service loop while idle."""
        assert self._head is not None
        HEAD_HEARTBEAT.pack_into(self._head, 16, self._clock() if now_ns is None else now_ns)

    def populate(self) -> None:
        """Fault the current segment's pages in now (C fast path only), for a bulk writer
        about to fill it: an import makes its days ready while it judges the rows."""
        fast = accel.FAST
        if fast is not None and self._mm is not None:
            fast.populate(self._mm)

    def sync(self) -> None:
        """Flush committed frames to the file system (for recordings on disk)."""
        if self._mm is not None:
            self._mm.flush()

    @property
    def archive_error(self) -> JournalError | None:
        """Why the last background copy into the archive failed, if it did (the ring keeps the
        segment and the copy is tried again before the segment would be deleted)."""
        return None if self._archiver is None else self._archiver.error

    def close(self) -> None:
        """Archive what the ring holds (if it has an archive), mark the journal closed
        (readers see its end) and release the writer lock. Raises ``JournalFull`` if the
        archive could not take the last segment; the journal is closed all the same."""
        try:
            if self._archiver is not None:
                archiver, self._archiver = self._archiver, None
                archiver.close(self._index)
        finally:
            if self._head is not None and not self._head.closed:
                HEAD_STATE_PID.pack_into(self._head, 10, STATE_CLOSED, 0)
            self._release()

    def _release(self) -> None:
        if self._archiver is not None:  # not closed: finish the sealed copies only
            archiver, self._archiver = self._archiver, None
            archiver.close(None)
        spare, self._spare = self._spare, None
        if spare is not None:
            mapping = spare.take()
            if mapping is not None:
                mapping.close()
            discard_spare(self.path)
        if self._mm is not None:
            self._mv.release()
            self._mm.close()
            self._mm = None
        if self._head is not None:
            self._head.close()
            self._head = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> JournalWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
