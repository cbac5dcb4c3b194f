"""The snapshot table: the latest tick of every instrument, one SeqLock-guarded slot each.

File layout (little-endian; ``docs/journal-format.md``, snapshot table)::

    0      header (4096 bytes): magic, version, capacity, count, writer pid, heartbeat
    4096   directory: capacity x 48 bytes (instrument 32, exchange 8, slot u32, reserved u32)
    ...    slots, 4096-aligned: capacity x 320 bytes (seq u64, pad 8, record 304)

A slot's ``seq`` is odd while the writer is changing it. The writer stores ``seq + 1``, the
record, then ``seq + 2``; a reader loads ``seq``, the record, then ``seq`` again and keeps the
record only if both loads are equal and even. On x86-64 stores and loads are not reordered with
each other, so this is enough (the journal's memory-ordering note applies here too). Instruments
are added by writing the directory entry first and the count last: no reader sees half an entry.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path
from types import TracebackType
from typing import Final

import numpy as np

from libshm import accel
from libshm.errors import JournalError, NotAJournal, UnsupportedVersion, WriterGone
from libshm.layout import FILE_MODE
from libshm.process import acquire_writer_lock, pid_alive
from libshm.reader import JournalReader
from libshm.record import _ENCODED as _NAMES
from libshm.record import _ENCODED_EXCHANGE as _EXCHANGES
from libshm.record import TICK_SIZE, TICK_STRUCT, Tick, decode_tick, pack_args

__all__ = ["SnapshotBusy", "SnapshotReader", "SnapshotWriter"]

MAGIC: Final = b"HFTSNAP\0"
VERSION: Final = 1
HEADER: Final = struct.Struct("<8sHHIIIq")  # magic, version, reserved, capacity, count, pid, hb
HEADER_SIZE: Final = 4096
ENTRY: Final = struct.Struct("<32s8sII")
SLOT_SIZE: Final = 320
SEQ: Final = struct.Struct("<Q")
RECORD_OFFSET: Final = 16
COUNT_OFFSET: Final = 16
_SPINS: Final = 64
PID_OFFSET: Final = 20
HEARTBEAT_OFFSET: Final = 24


class SnapshotBusy(JournalError):
    """A slot stayed mid-write for every retry while its writer lives (a very busy slot)."""


def _slots_offset(capacity: int) -> int:
    directory_end = HEADER_SIZE + capacity * ENTRY.size
    return (directory_end + 4095) & ~4095


def _file_size(capacity: int) -> int:
    return _slots_offset(capacity) + capacity * SLOT_SIZE


class SnapshotWriter:
    """The one writer of a snapshot table (enforced by a lock beside the file)."""

    def __init__(self, path: str | Path, capacity: int = 4096) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise NotAJournal(
                f"{self.path}: cannot create the snapshot table: {exc.strerror}"
            ) from None
        self._lock_fd = acquire_writer_lock(
            self.path.with_name(self.path.name + ".lock"), str(self.path)
        )
        if not self.path.exists():
            self._create(capacity)
        fd = os.open(self.path, os.O_RDWR)
        try:
            self._mm = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        self._mv = memoryview(self._mm)
        self._fast = accel.FAST
        _check_header(self.path, self._mm)
        self.capacity, count = struct.unpack_from("<II", self._mm, 12)
        self._slots = _slots_offset(self.capacity)
        self._index: dict[str, int] = {}
        for slot in range(count):
            name = ENTRY.unpack_from(self._mm, HEADER_SIZE + slot * ENTRY.size)[0]
            self._index[name.rstrip(b"\0").decode()] = slot
        # A predecessor killed mid-write leaves an odd seq: make every slot readable again.
        for slot in range(count):
            off = self._slots + slot * SLOT_SIZE
            seq = SEQ.unpack_from(self._mm, off)[0]
            if seq & 1:
                SEQ.pack_into(self._mm, off, seq + 1)
        struct.pack_into("<Iq", self._mm, PID_OFFSET, os.getpid(), 0)

    def _create(self, capacity: int) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE), "wb") as f:
            f.truncate(_file_size(capacity))
            f.write(HEADER.pack(MAGIC, VERSION, 0, capacity, 0, 0, 0))
        os.rename(tmp, self.path)

    def slot_of(self, instrument: str, exchange: str = "") -> int:
        """The slot of ``instrument``, adding it to the directory if new."""
        slot = self._index.get(instrument)
        if slot is None:
            slot = len(self._index)
            if slot >= self.capacity:
                raise JournalError(
                    f"{self.path}: snapshot table is full ({self.capacity} instruments); "
                    "recreate it with a larger capacity"
                )
            ENTRY.pack_into(
                self._mm, HEADER_SIZE + slot * ENTRY.size, instrument.encode(), exchange.encode(),
                slot, 0,
            )  # fmt: skip
            struct.pack_into("<I", self._mm, COUNT_OFFSET, slot + 1)  # publish the entry
            self._index[instrument] = slot
        return slot

    def write(self, tick: Tick) -> None:
        """Publish ``tick`` as the latest of its instrument."""
        slot = self._index.get(tick[0])
        if slot is None:
            slot = self.slot_of(tick[0], tick[1])
        off = self._slots + slot * SLOT_SIZE
        mv = self._mv
        if self._fast is not None:  # the same protocol in C, with release ordering
            self._fast.snapshot_write(mv, off, tick)
            return
        try:
            names: tuple[object, ...] = (_NAMES[tick[0]], _EXCHANGES[tick[1]])
        except KeyError:
            names = pack_args(tick)[:2]  # encodes, checks and caches the names
        seq = SEQ.unpack_from(mv, off)[0]
        SEQ.pack_into(mv, off, seq + 1)
        TICK_STRUCT.pack_into(mv, off + RECORD_OFFSET, *names, *tick[2:])
        SEQ.pack_into(mv, off, seq + 2)

    def write_record(self, slot: int, record: bytes | memoryview) -> None:
        """Publish an already-encoded record (for example the journal frame just appended)."""
        off = self._slots + slot * SLOT_SIZE
        mv = self._mv
        seq = SEQ.unpack_from(mv, off)[0]
        SEQ.pack_into(mv, off, seq + 1)
        mv[off + RECORD_OFFSET : off + RECORD_OFFSET + TICK_SIZE] = record
        SEQ.pack_into(mv, off, seq + 2)

    def rebuild(self, journal: JournalReader) -> int:
        """Publish the last tick of every instrument found in ``journal`` (read to its end).

        A restarted recorder calls this so the table matches the journal before new ticks come.
        Returns the number of instruments written.
        """
        latest: dict[bytes, np.void] = {}
        while len(batch := journal.read_array()):
            records = batch["payload"]
            names = records["instrument"]
            reversed_names = names[::-1]
            unique, first = np.unique(reversed_names, return_index=True)
            for name, index in zip(unique, len(names) - 1 - first, strict=True):
                latest[bytes(name)] = records[index]
        for record in latest.values():
            slot = self.slot_of(
                bytes(record["instrument"]).rstrip(b"\0").decode(),
                bytes(record["exchange"]).rstrip(b"\0").decode(),
            )
            self.write_record(slot, record.tobytes())
        return len(latest)

    def heartbeat(self, now_ns: int) -> None:
        struct.pack_into("<q", self._mm, HEARTBEAT_OFFSET, now_ns)

    def close(self) -> None:
        if self._lock_fd < 0:
            return
        struct.pack_into("<I", self._mm, PID_OFFSET, 0)
        self._mv.release()
        self._mm.close()
        os.close(self._lock_fd)
        self._lock_fd = -1

    def __enter__(self) -> SnapshotWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _check_header(path: Path, mm: mmap.mmap) -> None:
    magic, version, *_ = HEADER.unpack_from(mm, 0)
    if magic != MAGIC:
        raise NotAJournal(f"{path}: not a snapshot table")
    if version > VERSION:
        raise UnsupportedVersion(
            f"{path}: snapshot table version {version} is newer than this "
            f"program's ({VERSION}); upgrade hft"
        )


class SnapshotReader:
    """Reads the latest tick of any instrument, never a torn one."""

    def __init__(self, path: str | Path, busy_timeout_s: float = 0.5) -> None:
        self.path = Path(path)
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise NotAJournal(f"{self.path}: no snapshot table; is md_recorder running?") from None
        try:
            self._mm = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        _check_header(self.path, self._mm)
        self._mv = memoryview(self._mm)
        self._fast = accel.FAST
        self.busy_timeout_ns = int(busy_timeout_s * 1e9)
        self.capacity = struct.unpack_from("<I", self._mm, 12)[0]
        self._slots = _slots_offset(self.capacity)
        self._index: dict[str, int] = {}
        self._known = 0

    def _refresh(self) -> None:
        count = struct.unpack_from("<I", self._mm, COUNT_OFFSET)[0]
        for slot in range(self._known, count):
            raw = ENTRY.unpack_from(self._mm, HEADER_SIZE + slot * ENTRY.size)[0]
            self._index[raw.rstrip(b"\0").decode()] = slot
        self._known = count

    def instruments(self) -> list[str]:
        self._refresh()
        return list(self._index)

    def slot_of(self, instrument: str) -> int | None:
        slot = self._index.get(instrument)
        if slot is None:
            self._refresh()
            slot = self._index.get(instrument)
        return slot

    def read_record(self, slot: int) -> bytes | None:
        """A consistent copy of the slot's record, or None if nothing was ever written."""
        off = self._slots + slot * SLOT_SIZE
        mv = self._mv
        start, end = off + RECORD_OFFSET, off + RECORD_OFFSET + TICK_SIZE
        spins = 0
        deadline = 0
        while True:
            before = SEQ.unpack_from(mv, off)[0]
            if not before & 1:
                record = mv[start:end].tobytes()
                if SEQ.unpack_from(mv, off)[0] == before:
                    return record if before else None
            # A write takes about a microsecond; longer means the writer was descheduled
            # mid-write (yield to it) or died mid-write (find out, do not wait forever).
            spins += 1
            if spins < _SPINS:
                continue
            now = time.monotonic_ns()
            if not deadline:
                deadline = now + self.busy_timeout_ns
            elif now > deadline:
                break
            os.sched_yield()
        pid = struct.unpack_from("<I", self._mm, PID_OFFSET)[0]
        if pid == 0 or not pid_alive(pid):
            raise WriterGone(
                f"{self.path}: slot {slot} was left mid-write by a writer that died; restart "
                "md_recorder (it rebuilds the table)"
            )
        raise SnapshotBusy(
            f"{self.path}: slot {slot} stayed mid-write for {self.busy_timeout_ns / 1e9:g} s "
            "while its writer lives; is md_recorder stopped (SIGSTOP) or starved of CPU?"
        )

    def read(self, instrument: str) -> Tick | None:
        """The latest tick of ``instrument``, or None if it has none yet."""
        slot = self.slot_of(instrument)
        if slot is None:
            return None
        fast = self._fast
        if fast is not None:  # one C call copies, checks and decodes; retry as read_record does
            result = fast.snapshot_read(self._mv, self._slots + slot * SLOT_SIZE, Tick)
            if result is not False:
                return result  # type: ignore[no-any-return]
        record = self.read_record(slot)
        return None if record is None else decode_tick(record)

    def writer_alive(self) -> bool:
        pid = struct.unpack_from("<I", self._mm, PID_OFFSET)[0]
        return pid != 0 and pid_alive(pid)

    def close(self) -> None:
        self._mv.release()
        self._mm.close()
