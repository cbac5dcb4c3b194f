"""Readers of a journal, in any number and any process: read, tail, bulk-read as numpy."""

from __future__ import annotations

import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import msgspec
import numpy as np

from libshm import accel
from libshm.errors import CorruptJournal, NotAJournal, Overrun, WriterGone
from libshm.layout import (
    FRAME_HEADER,
    FRAME_HEADER_SIZE,
    HEAD_MAGIC,
    HEAD_SIZE,
    LENGTH_MASK,
    ROLL_PAYLOAD,
    SEGMENT_HEADER_SIZE,
    TYPE_FIXED,
    TYPE_ROLL,
    Layout,
    checksum32,
    segment_name,
)
from libshm.process import writer_state
from libshm.record import TICK_DTYPE, TICK_LAYOUT_ID, TICK_SIZE, Tick, decode_tick
from libshm.segment import SegmentInfo, list_segments, map_segment, read_segment_info

_TICK_FRAME_SIZE: Final = FRAME_HEADER_SIZE + ((TICK_SIZE + 7) & ~7)

__all__ = ["TICK_FRAME_DTYPE", "Frame", "JournalReader", "WaitPolicy", "frame_dtype"]

_unpack_header = FRAME_HEADER.unpack_from
_unpack_start = struct.Struct("<QQq").unpack_from  # commit, seq, time


class Frame(msgspec.Struct, frozen=True, gc=False):
    """One frame: its sequence number, write time, type, and payload (a view into the journal's
    mapping, valid as long as it is referenced; copy it with ``bytes()`` to keep it apart)."""

    seq: int
    time_ns: int
    type: int
    payload: memoryview


def frame_dtype(payload: np.dtype[np.void]) -> np.dtype[np.void]:
    """numpy dtype of a whole fixed frame (header, then ``payload``), for zero-copy bulk reads."""
    return np.dtype(
        [
            ("commit", "<u8"),
            ("seq", "<u8"),
            ("time_ns", "<i8"),
            ("type", "<u2"),
            ("flags", "<u2"),
            ("payload_len", "<u4"),
            ("payload", payload),
        ]
    )


TICK_FRAME_DTYPE: Final = frame_dtype(TICK_DTYPE)


@dataclass(frozen=True)
class WaitPolicy:
    """How a tailing reader waits: spin, then sleep with back-off, checking the writer now and then.

    Spinning keeps the hop from writer to reader at a few µs while frames flow; sleeping keeps an
    idle reader off the CPU.
    """

    spin_ns: int = 200_000
    min_sleep_ns: int = 20_000
    max_sleep_ns: int = 2_000_000
    check_writer_ns: int = 250_000_000
    heartbeat_timeout_ns: int | None = None
    """Declare the writer gone when its heartbeat is older than this (None: PID check only)."""
    monotonic: Callable[[], int] = time.monotonic_ns
    sleep: Callable[[float], object] = time.sleep
    """The clock and the sleep the waits use (a test gives its own)."""


class JournalReader:
    """Reads a journal in order, checking that sequence numbers are contiguous.

    Start at the beginning (default), at a sequence number (``from_seq``), at the first frame
    written at or after a time (``from_time_ns``), or at the live end (``live=True``).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        from_seq: int | None = None,
        from_time_ns: int | None = None,
        live: bool = False,
        archive_dir: str | Path | None = None,
        verify: bool = False,
        wait: WaitPolicy | None = None,
    ) -> None:
        if sum(x is not None and x is not False for x in (from_seq, from_time_ns, live)) > 1:
            raise ValueError("give at most one of from_seq, from_time_ns, live")
        self.path = Path(path)
        self.archive_dir = Path(archive_dir) if archive_dir is not None else None
        self.verify = verify
        self.policy = wait or WaitPolicy()
        self.ended = False
        self._head = self._map_head()
        self._mm: mmap.mmap | None = None
        self._mv = memoryview(b"")
        indices = self._available()
        if not indices:
            raise NotAJournal(f"{self.path}: journal has no segment yet")
        self._pending: Callable[[int, int], bool] | None = None
        if live:
            current = struct.unpack_from("<Q", self._head, 24)[0] if self._head else indices[-1]
            self._open(current if current in indices else indices[-1])
            self._skip(lambda seq, t: True)
        elif from_seq is not None:
            self._open(self._segment_for(indices, lambda info, _: info.first_seq <= from_seq))
            if self._seq > from_seq:
                raise Overrun(str(self.path), from_seq, self._seq)
            self._start_at(lambda seq, t: seq < from_seq)
        elif from_time_ns is not None:
            self._open(self._segment_for(indices, lambda _, t: t is not None and t <= from_time_ns))
            self._start_at(lambda seq, t: t < from_time_ns)
        else:
            self._open(indices[0])

    # -- files -----------------------------------------------------------------------------

    def _map_head(self) -> mmap.mmap | None:
        path = self.path / "head"
        if not self.path.is_dir():
            what = "no such journal directory" if not self.path.exists() else "not a directory"
            raise NotAJournal(f"{self.path}: {what}; a journal is a directory of segments")
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return None  # an archive or a copied recording: segments only
        except PermissionError:
            raise NotAJournal(f"{path}: permission denied; grant read access") from None
        try:
            head = mmap.mmap(fd, HEAD_SIZE, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        if head[:8] != HEAD_MAGIC:
            raise NotAJournal(f"{path}: not a journal head block")
        return head

    def _available(self) -> list[int]:
        found = set(list_segments(self.path))
        if self.archive_dir is not None and self.archive_dir.is_dir():
            found.update(list_segments(self.archive_dir))
        return sorted(found)

    def _segment_path(self, index: int) -> Path | None:
        for directory in (self.path, self.archive_dir):
            if directory is not None and (directory / segment_name(index)).exists():
                return directory / segment_name(index)
        return None

    def _segment_for(
        self, indices: list[int], fits: Callable[[SegmentInfo, int | None], bool]
    ) -> int:
        """The newest segment for which ``fits(info, first_frame_time)`` holds, else the oldest."""
        chosen = indices[0]
        for index in indices:
            path = self._segment_path(index)
            if path is None:
                continue
            info = read_segment_info(path)
            if fits(info, self._first_time(path)):
                chosen = index
            else:
                break
        return chosen

    @staticmethod
    def _first_time(path: Path) -> int | None:
        with open(path, "rb") as f:
            raw = f.read(SEGMENT_HEADER_SIZE + FRAME_HEADER_SIZE)[SEGMENT_HEADER_SIZE:]
        if len(raw) < FRAME_HEADER_SIZE:
            return None
        commit, _, time_ns, ftype, _, _ = FRAME_HEADER.unpack(raw)
        return None if commit == 0 or ftype == TYPE_ROLL else int(time_ns)

    def _open(self, index: int) -> None:
        for directory in (self.path, self.archive_dir):
            if directory is None:
                continue
            try:  # a ring deletes a segment once archived: between the two, it is in both
                mapping, info = map_segment(directory / segment_name(index), writable=False)
                break
            except FileNotFoundError:
                continue
        else:
            raise NotAJournal(f"{self.path}: segment {index} is missing")
        self._mv = memoryview(mapping)  # the old mapping lives while frames still refer to it
        self._mm = mapping
        self._info: SegmentInfo = info
        self._index = index
        tick_segment = info.layout.layout_id == TICK_LAYOUT_ID
        self._fast_next = getattr(accel.FAST, "next_tick", None) if tick_segment else None
        self._fast_many = getattr(accel.FAST, "next_ticks", None) if tick_segment else None
        self._off = SEGMENT_HEADER_SIZE
        self._seq = info.first_seq

    def _start_at(self, before_start: Callable[[int, int], bool]) -> None:
        """Skip committed frames for which ``before_start(seq, time)`` holds; if the journal
        ends first, keep skipping such frames as they arrive."""
        if not self._skip(before_start):
            self._pending = before_start

    def _skip(self, keep_going: Callable[[int, int], bool]) -> bool:
        """Skip frames while ``keep_going``; False if the committed frames ran out first."""
        while True:
            off = self._off
            commit, seq, time_ns, ftype, _, _ = _unpack_header(self._mv, off)
            if commit == 0:
                return False
            if ftype == TYPE_ROLL:
                if not self._follow_roll(off):
                    return False
                continue
            if not keep_going(seq, time_ns):
                return True
            self._off = off + (commit & LENGTH_MASK)
            self._seq = seq + 1

    def _follow_roll(self, off: int) -> bool:
        """Open the segment a roll frame names; False if it is not there (yet): the end of
        what is available, as at the end of an archive copied while the writer went on."""
        next_index = ROLL_PAYLOAD.unpack_from(self._mv, off + FRAME_HEADER_SIZE)[0]
        if self._segment_path(next_index) is None:
            later = [i for i in self._available() if i > next_index]
            if not later:
                return False
            resume = read_segment_info(self._segment_path(later[0]) or Path()).first_seq
            raise Overrun(str(self.path), self._seq, resume)
        self._open(next_index)
        return True

    # -- reading ---------------------------------------------------------------------------

    @property
    def layout(self) -> Layout:
        """What the fixed frames of the current segment hold."""
        return self._info.layout

    @property
    def next_seq(self) -> int:
        """Sequence number of the next frame this reader will return."""
        return self._seq

    def read(self) -> Frame | None:
        """The next committed frame, or None if the writer has not committed one yet."""
        off = self._off
        commit, seq, time_ns, ftype, _, plen = _unpack_header(self._mv, off)
        if commit == 0:
            self.check_position()
            return None
        if seq != self._seq:
            raise CorruptJournal(
                str(self._info.path), off, f"sequence {seq} where {self._seq} was expected"
            )
        if ftype == TYPE_ROLL:
            return self.read() if self._follow_roll(off) else None
        start = off + FRAME_HEADER_SIZE
        if self.verify and checksum32(self._mv[off + 8 : start + plen]) & LENGTH_MASK != (
            commit >> 32
        ):
            raise CorruptJournal(str(self._info.path), off, f"checksum mismatch in frame {seq}")
        self._off = off + (commit & LENGTH_MASK)
        self._seq = seq + 1
        if self._pending is not None:
            if self._pending(seq, time_ns):
                return self.read()
            self._pending = None
        return Frame(seq, time_ns, ftype, self._mv[start : start + plen])

    def peek_time(self) -> int | None:
        """The write time of the next committed frame, without reading it (None if there is
        none yet): where a consumer's clock starts before it handles anything."""
        while True:
            commit, _, time_ns, ftype, _, _ = _unpack_header(self._mv, self._off)
            if commit == 0:
                return None
            if ftype != TYPE_ROLL:
                return int(time_ns)
            if not self._follow_roll(self._off):
                return None

    def check_position(self) -> None:
        """Raise :class:`CorruptJournal` if the reader stands at a frame with no commit word in a
        segment the writer has left: a sealed segment ends with a roll frame, so a zero there
        is damage (a lost commit word), never the live end. Readers of a segment without a
        ``head`` (an archive, a copy) cannot tell and do not check."""
        if self._head is None or struct.unpack_from("<Q", self._head, 24)[0] <= self._index:
            return
        # The writer commits the roll frame before it moves ``current_segment`` on, so read
        # the commit word again now: a roll frame that landed meanwhile is there.
        if struct.unpack_from("<Q", self._mv, self._off)[0] == 0:
            raise CorruptJournal(
                str(self._info.path), self._off,
                f"no commit word on frame {self._seq} in a sealed segment, which must end with "
                "a roll frame: the journal is damaged; see `hft journal verify`",
            )  # fmt: skip

    def next_tick(self) -> tuple[int, Tick] | None:
        """The next frame as (sequence number, tick), or None if none is committed yet: what a
        live loop calls. With the C fast path a plain tick frame is checked and decoded in one
        call; anything else (a roll, a checked or filtered read) goes through :meth:`read`."""
        fast = self._fast_next
        if fast is not None and self._pending is None and not self.verify:
            got = fast(self._mv, self._off, self._seq, Tick)
            if got is False:  # nothing committed yet
                return None
            if got is not None:
                seq = self._seq
                self._off += _TICK_FRAME_SIZE
                self._seq = seq + 1
                return seq, got[1]
        frame = self.read()
        return None if frame is None else (frame.seq, decode_tick(frame.payload))

    def next_ticks(self, max_ticks: int = 4096) -> tuple[int, list[Tick]]:
        """Up to ``max_ticks`` of the next committed ticks as (the first's sequence number,
        ticks), for a loop that reads a finished or fast-growing journal (a backtest): one call
        for many. An empty list when nothing is committed yet. With the C fast path the plain
        tick frames of a segment come in one call; anything else (a roll, a checked or
        filtered read, no fast path) as :meth:`next_tick` gives it, one at a time."""
        many = self._fast_many
        if many is not None and self._pending is None and not self.verify:
            seq = self._seq
            ticks: list[Tick] = many(self._mv, self._off, seq, Tick, max_ticks)
            if ticks:
                self._off += _TICK_FRAME_SIZE * len(ticks)
                self._seq = seq + len(ticks)
                return seq, ticks
        got = self.next_tick()
        return (0, []) if got is None else (got[0], [got[1]])

    def read_tick(self) -> Tick | None:
        """The next frame decoded as a tick, or None if none is committed yet."""
        frame = self.read()
        return None if frame is None else decode_tick(frame.payload)

    def read_array(self, max_frames: int = 65_536) -> np.ndarray:
        """Up to ``max_frames`` committed fixed frames as a zero-copy numpy view (one segment).

        Fields: ``seq``, ``time_ns``, ... and ``payload`` (for tick journals, a ``TICK_DTYPE``
        record). Returns an empty array when nothing new is committed.
        """
        if self._pending is not None:
            if not self._skip(self._pending):
                return np.empty(0, dtype=TICK_FRAME_DTYPE)
            self._pending = None
        info = self._info
        if not info.frame_size:
            raise TypeError("read_array needs a journal of fixed-size frames")
        dtype = (
            TICK_FRAME_DTYPE
            if info.layout.layout_id == TICK_LAYOUT_ID
            else frame_dtype(np.dtype((np.void, info.layout.payload_size)))
        )
        while True:
            room = (info.segment_size - self._off) // info.frame_size
            count = min(max_frames, room)
            frames: Any = np.frombuffer(self._mv, dtype=dtype, count=count, offset=self._off)
            good = (frames["commit"] != 0) & (frames["type"] == TYPE_FIXED)
            n = int(good.argmin()) if not good.all() else count
            if n == 0:
                commit, _, _, ftype, _, _ = _unpack_header(self._mv, self._off)
                if commit == 0:
                    self.check_position()
                    empty: np.ndarray = frames[:0]
                    return empty
                if ftype == TYPE_FIXED:  # committed after the pass above read its commit word
                    continue
                if ftype != TYPE_ROLL:
                    raise CorruptJournal(str(info.path), self._off, f"frame of type {ftype}")
                if not self._follow_roll(self._off):
                    empty_end: np.ndarray = frames[:0]
                    return empty_end
                info = self._info
                continue
            batch = frames[:n]
            seqs = batch["seq"]
            if int(seqs[0]) != self._seq or int(seqs[-1]) != self._seq + n - 1:
                raise CorruptJournal(str(info.path), self._off, "sequence gap in a bulk read")
            self._off += n * info.frame_size
            self._seq += n
            result: np.ndarray = batch
            return result

    def backlog(self) -> tuple[int, int | None]:
        """Frames committed but not read yet, and the write time of the newest committed one
        (None if none is): how far behind the writer this reader is. Journals of fixed-size
        frames only (a binary search over the writer's current segment); others answer (0,
        None)."""
        if self._head is None or not self._info.frame_size:
            return 0, None
        current = struct.unpack_from("<Q", self._head, 24)[0]
        if current == self._index:
            mv, info = self._mv, self._info
        else:
            path = self._segment_path(current)
            if path is None:
                return 0, None
            try:
                mapping, info = map_segment(path, writable=False)
            except (OSError, NotAJournal, CorruptJournal):
                return 0, None
            mv = memoryview(mapping)
        size = info.frame_size
        lo, hi = 0, (info.segment_size - SEGMENT_HEADER_SIZE) // size  # slots [0, lo) are data
        while lo < hi:
            mid = (lo + hi) // 2
            if struct.unpack_from("<Q", mv, SEGMENT_HEADER_SIZE + mid * size)[0] & LENGTH_MASK == (
                size
            ):
                lo = mid + 1
            else:
                hi = mid
        if lo == 0:
            return max(info.first_seq - self._seq, 0), None
        newest = struct.unpack_from("<q", mv, SEGMENT_HEADER_SIZE + (lo - 1) * size + 16)[0]
        return max(info.first_seq + lo - self._seq, 0), int(newest)

    # -- waiting ---------------------------------------------------------------------------

    def writer_state(self, heartbeat_timeout_ns: int | None = None) -> str:
        """'open', 'closed' (cleanly; the journal is complete) or 'gone' (died without closing,
        or silent for longer than ``heartbeat_timeout_ns``, by default the policy's)."""
        if self._head is None:
            return "closed"
        timeout = heartbeat_timeout_ns or self.policy.heartbeat_timeout_ns
        return writer_state(self._head, timeout)[0]

    def wait(self, timeout_s: float | None = None) -> Frame | None:
        """The next frame, waiting for it; None at the end of a closed journal or on timeout.

        Raises :class:`WriterGone` if the writer died; the reader stays usable, so a caller can
        wait for a successor writer and call again.
        """
        frame = self.read()
        if frame is not None:
            return frame
        policy = self.policy
        clock = policy.monotonic
        now = clock()
        spin_until = now + policy.spin_ns
        deadline = None if timeout_s is None else now + int(timeout_s * 1e9)
        next_check = now + policy.check_writer_ns
        sleep_ns = policy.min_sleep_ns
        while True:
            frame = self.read()
            if frame is not None:
                return frame
            now = clock()
            if now < spin_until:
                continue
            if now >= next_check:
                next_check = now + policy.check_writer_ns
                state = self.writer_state()
                if state != "open":
                    frame = self.read()  # the last frames before the writer stopped
                    if frame is not None:
                        return frame
                    if state == "closed":
                        self.ended = True
                        return None
                    raise WriterGone(
                        f"{self.path}: the writer died without closing the journal; "
                        "restart it (it recovers the journal) and read on"
                    )
            if deadline is not None and now >= deadline:
                return None
            policy.sleep(sleep_ns / 1e9)
            sleep_ns = min(sleep_ns * 2, policy.max_sleep_ns)

    def tail(self) -> Iterator[Frame]:
        """Every frame from the current position until the journal is closed.

        The fast path reads committed frames with its state in local variables; it falls back
        to :meth:`wait` at the live end, at a roll frame, and for checked or filtered reads.
        If the consumer stops early, the reader's position is just after the last frame given.
        """
        unpack = _unpack_header
        while True:
            if self.verify or self._pending is not None:
                frame = self.wait()
            else:
                mv, off, expected = self._mv, self._off, self._seq
                size = self._info.frame_size
                try:
                    if size:  # fixed frames: the commit word's length alone tells data frames
                        plen = size - FRAME_HEADER_SIZE
                        while True:
                            commit, seq, time_ns = _unpack_start(mv, off)
                            if commit & LENGTH_MASK != size or seq != expected:
                                break  # the live end, a roll frame, or an error read() reports
                            start = off + FRAME_HEADER_SIZE
                            off = start + plen
                            expected = seq + 1
                            yield Frame(seq, time_ns, TYPE_FIXED, mv[start:off])
                    while True:
                        commit, seq, time_ns, ftype, _, plen = unpack(mv, off)
                        if commit == 0 or ftype == TYPE_ROLL or seq != expected:
                            break
                        start = off + FRAME_HEADER_SIZE
                        off += commit & LENGTH_MASK
                        expected = seq + 1
                        yield Frame(seq, time_ns, ftype, mv[start : start + plen])
                finally:
                    self._off, self._seq = off, expected
                frame = self.wait()
            if frame is None:
                if self.ended:
                    return
                continue
            yield frame

    def close(self) -> None:
        """Drop the mappings (they are unmapped once no returned frame refers to them)."""
        self._mv = memoryview(b"")
        self._mm = None
        self._head = None
