"""The C fast path writes exactly the bytes of the pure-Python reference, and refuses the same
bad input with a message naming the field; preparing segments ahead loses nothing."""

from __future__ import annotations

import math
import mmap
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given

from libshm import TICK_DTYPE, TICK_LAYOUT, JournalReader, JournalWriter, Tick, accel
from libshm.layout import SEGMENT_HEADER_SIZE
from libshm.record import TICK_SIZE, TICK_STRUCT, _text, pack_args
from libshm.segment import SPARE_NAME, list_segments
from libshm.seqlock import RECORD_OFFSET, SLOT_SIZE, SnapshotReader, SnapshotWriter
from tests.libshm.test_record import _same, ticks
from tests.libshm.workers import frame_time, make_tick

fast = accel.BUILT


pytestmark = pytest.mark.skipif(
    fast is None, reason="libshm._fastpath is not built (no C compiler at install)"
)


def py_encode(tick: Tick) -> bytes:
    return TICK_STRUCT.pack(*pack_args(tick))


def py_decode(raw: bytes) -> Tick:
    values = TICK_STRUCT.unpack(raw)
    return Tick._make((_text(values[0]), _text(values[1]), *values[2:]))


def c_encode(tick: Tick) -> bytes:
    assert fast is not None
    out = bytearray(TICK_SIZE)
    fast.pack_tick(out, 0, tick)
    return bytes(out)


@given(ticks)
def test_c_codec_matches_the_struct_codec(tick: Tick) -> None:
    assert fast is not None
    raw = py_encode(tick)
    assert c_encode(tick) == raw
    assert _same(fast.unpack_tick(raw, 0, Tick), py_decode(raw))
    assert type(fast.unpack_tick(raw, 0, Tick)) is Tick


def test_extreme_values_match() -> None:
    tick = make_tick(7)._replace(
        trading_day=2**32 - 1, flags=0, exchange_time_ns=-(2**63), local_time_ns=2**63 - 1,
        volume=True, last=math.inf, low=-0.0, bid_volume1=-(2**31), ask_volume5=2**31 - 1,
        open=5,  # an int in a price field packs as a float, as struct does
        instrument="x" * 32, exchange="y" * 8,
    )  # fmt: skip
    assert c_encode(tick) == py_encode(tick)


@pytest.mark.parametrize(
    ("change", "kind", "words"),
    [
        ({"instrument": "x" * 33}, ValueError, ["instrument", "longer than 32 bytes"]),
        ({"exchange": "CFFEXXXXX"}, ValueError, ["exchange", "longer than 8 bytes"]),
        ({"instrument": "螺纹2105"}, ValueError, ["instrument", "not ASCII"]),
        ({"exchange": b"SHFE"}, TypeError, ["exchange", "expected str"]),
        ({"trading_day": -1}, struct.error, []),
        ({"trading_day": 2**32}, struct.error, []),
        ({"volume": 2**63}, struct.error, []),
        ({"bid_volume3": 2**31}, struct.error, []),
        ({"volume": 1.5}, struct.error, []),
        ({"last": "5230"}, struct.error, []),
        ({"last": None}, struct.error, []),
    ],
)
def test_bad_fields_are_refused_by_both_paths(
    change: dict[str, object], kind: type[Exception], words: list[str]
) -> None:
    """Same exception class from both; the C message always names the field."""
    tick = make_tick(3)._replace(**change)  # type: ignore[arg-type]
    with pytest.raises(kind) as py_info:
        py_encode(tick)
    with pytest.raises(kind) as c_info:
        c_encode(tick)
    field = next(iter(change))
    assert f"'{field}'" in str(c_info.value)
    for word in words:
        assert word in str(py_info.value)
        assert word in str(c_info.value)


def test_not_a_tick_and_buffers_out_of_range() -> None:
    assert fast is not None
    with pytest.raises(TypeError, match="expected a Tick"):
        fast.pack_tick(bytearray(TICK_SIZE), 0, (1, 2, 3))
    with pytest.raises(ValueError, match="do not fit"):
        fast.pack_tick(bytearray(TICK_SIZE), 1, make_tick(1))
    with pytest.raises(ValueError, match="do not fit"):
        fast.unpack_tick(bytes(TICK_SIZE), -1, Tick)
    with pytest.raises(BufferError, match="not writable"):
        fast.pack_tick(bytes(TICK_SIZE), 0, make_tick(1))
    with pytest.raises(ValueError, match="aligned"):
        fast.append_tick(memoryview(bytearray(4096))[1:], 0, 0, 0, make_tick(1))


def write_journal(path: Path, count: int, batch: bool) -> None:
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=8192, clock=lambda: 42) as w:
        if batch:
            records = np.frombuffer(
                b"".join(py_encode(make_tick(i)) for i in range(count)), dtype=TICK_DTYPE
            )
            w.append_array(records, np.array([frame_time(i) for i in range(count)]))
        else:
            for i in range(count):
                w.append_tick(make_tick(i), frame_time(i))


def journal_bytes(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.suffix == ".seg"}


@pytest.mark.parametrize("batch", [False, True], ids=["append_tick", "append_array"])
def test_c_and_pure_writers_write_identical_journals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch: bool
) -> None:
    write_journal(tmp_path / "c", 200, batch)
    monkeypatch.setattr(accel, "FAST", None)
    write_journal(tmp_path / "py", 200, batch)
    c, py = journal_bytes(tmp_path / "c"), journal_bytes(tmp_path / "py")
    assert len(c) == 9
    assert c == py


def test_c_and_pure_free_form_appends_write_identical_journals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    payloads = [bytes(range(i % 251)) * (1 + i % 3) for i in range(300)]  # lengths 0..750

    def write(path: Path) -> None:
        with JournalWriter(path, segment_size=8192, clock=lambda: 42) as w:
            for i, payload in enumerate(payloads):
                w.append(payload, frame_time(i))

    write(tmp_path / "c")
    monkeypatch.setattr(accel, "FAST", None)
    write(tmp_path / "py")
    c, py = journal_bytes(tmp_path / "c"), journal_bytes(tmp_path / "py")
    assert len(c) > 5
    assert c == py


def rolled_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str) -> JournalReader:
    """A reader of 200 ticks in 9 segments (8 rolls), with the C paths or without."""
    write_journal(tmp_path / "j", 200, batch=False)
    if impl == "python":
        monkeypatch.setattr(accel, "FAST", None)
    return JournalReader(tmp_path / "j")


@pytest.mark.parametrize("impl", ["c", "python"])
def test_next_tick_reads_what_read_and_decode_read_across_rolls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    reader = rolled_journal(tmp_path, monkeypatch, impl)
    assert (reader._fast_next is not None) == (impl == "c")
    got = []
    while (item := reader.next_tick()) is not None:
        got.append(item)
    assert [(s, py_encode(t)) for s, t in got] == [(i, py_encode(make_tick(i))) for i in range(200)]
    assert reader.next_tick() is None  # the live end: nothing more, nothing skipped
    with JournalWriter(tmp_path / "j", layout=TICK_LAYOUT, segment_size=8192) as w:
        w.append_tick(make_tick(200), frame_time(200))
    item = reader.next_tick()
    assert item is not None and (item[0], py_encode(item[1])) == (200, py_encode(make_tick(200)))


@pytest.mark.parametrize("impl", ["c", "python"])
def test_next_ticks_reads_in_batches_what_next_tick_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    """Batches stop at each roll and at the live end, and go on where they stopped."""
    reader = rolled_journal(tmp_path, monkeypatch, impl)
    assert (reader._fast_many is not None) == (impl == "c")
    got, sizes = [], []
    while True:
        first, ticks = reader.next_ticks(7)
        if not ticks:
            break
        sizes.append(len(ticks))
        got += [(first + i, py_encode(t)) for i, t in enumerate(ticks)]
    assert got == [(i, py_encode(make_tick(i))) for i in range(200)]
    assert max(sizes) == (7 if impl == "c" else 1) and sum(sizes) == 200
    assert reader.next_ticks() == (0, [])  # the live end: nothing more, nothing skipped
    with JournalWriter(tmp_path / "j", layout=TICK_LAYOUT, segment_size=8192) as w:
        for i in (200, 201):
            w.append_tick(make_tick(i), frame_time(i))
    first, ticks = reader.next_ticks()
    assert (
        first == 200
        and [py_encode(t) for t in ticks]
        == [py_encode(make_tick(i)) for i in (200, 201)][: len(ticks)]
    )
    if len(ticks) == 1:  # the first of them came through next_tick (the segment had rolled)
        assert py_encode(reader.next_ticks()[1][0]) == py_encode(make_tick(201))


def test_a_bad_tick_leaves_the_journal_untouched(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=8192) as w:
        w.append_tick(make_tick(0), 0)
        before = w._mv[w._off : w._off + 400].tobytes()
        with pytest.raises(struct.error, match="'volume'"):
            w.append_tick(make_tick(1)._replace(volume=0.5), 1)  # type: ignore[arg-type]
        assert w._mv[w._off : w._off + 400].tobytes() == before
        assert w.next_seq == 1
        w.append_tick(make_tick(1), 1)
    reader = JournalReader(path, verify=True)
    assert [f.seq for f in iter(reader.read, None)] == [0, 1]


@pytest.mark.parametrize("impl", ["c", "pure"])
def test_snapshot_paths_agree(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str) -> None:
    """Written by one path, read by both: the same tick, bytes included."""
    if impl == "pure":
        monkeypatch.setattr(accel, "FAST", None)
    with SnapshotWriter(tmp_path / "snap", capacity=4) as table:
        for i in range(6):
            table.write(make_tick(i))
        monkeypatch.setattr(accel, "FAST", fast)
        c_reader = SnapshotReader(tmp_path / "snap")
        monkeypatch.setattr(accel, "FAST", None)
        py_reader = SnapshotReader(tmp_path / "snap")
        for name, i in (("IF2101", 3), ("rb2105", 4), ("cu2102", 5)):
            expected = make_tick(i)
            for reader in (c_reader, py_reader):
                got = reader.read(name)
                assert got is not None
                assert _same(got, expected)
                slot = reader.slot_of(name)
                assert slot is not None
                assert reader.read_record(slot) == py_encode(expected)
        c_reader.close()
        py_reader.close()


def test_snapshot_read_says_retry_while_a_write_is_in_progress(tmp_path: Path) -> None:
    assert fast is not None
    with SnapshotWriter(tmp_path / "snap", capacity=4) as table:
        slot = table.slot_of("IF2101", "CFFEX")
        off = table._slots + slot * SLOT_SIZE
        assert fast.snapshot_read(table._mv, off, Tick) is None  # never written
        table.write(make_tick(0))
        assert _same(fast.snapshot_read(table._mv, off, Tick), make_tick(0))
        seq = struct.unpack_from("<Q", table._mv, off)[0]
        struct.pack_into("<Q", table._mv, off, seq + 1)  # as if a write were under way
        assert fast.snapshot_read(table._mv, off, Tick) is False
        struct.pack_into("<Q", table._mv, off, seq)
        # a bad tick leaves the slot as it was, its sequence even
        with pytest.raises(struct.error):
            table.write(make_tick(1)._replace(ask_volume1=2**40))
        assert struct.unpack_from("<Q", table._mv, off)[0] == seq
        assert table._mv[off + RECORD_OFFSET : off + RECORD_OFFSET + TICK_SIZE] == py_encode(
            make_tick(0)
        )


def test_populate_faults_pages_in() -> None:
    assert fast is not None
    with tempfile.TemporaryFile(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as f:
        f.truncate(1 << 20)
        mapping = mmap.mmap(f.fileno(), 1 << 20)
        fast.populate(mapping)
        assert mapping[:16] == bytes(16)
        mapping.close()


@pytest.mark.parametrize("impl", ["c", "pure"])
def test_segments_prepared_ahead_roll_without_loss(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    """Tiny segments, the next one always prepared by the background thread: every frame once,
    in order; the spare is gone after close, and one left by a crash is removed on reopen."""
    if impl == "pure":
        monkeypatch.setattr(accel, "FAST", None)
    path = tmp_path / "j"
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=8192, prepare_ahead=True) as w:
        for i in range(500):
            w.append_tick(make_tick(i), frame_time(i))
        assert w._spare is not None
        w._spare._thread.join(timeout=30)  # the thread may not have run yet on a busy machine
        assert (path / SPARE_NAME).exists()
    assert not (path / SPARE_NAME).exists()
    (path / SPARE_NAME).write_bytes(b"left by a crash")
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=8192, prepare_ahead=False) as w:
        assert not (path / SPARE_NAME).exists()
        assert w.next_seq == 500
    reader = JournalReader(path, verify=True)
    frames = list(iter(reader.read, None))
    assert [f.seq for f in frames] == list(range(500))
    assert all(bytes(f.payload) == py_encode(make_tick(f.seq)) for f in frames)
    assert len(list_segments(path)) == 21
    for index in list_segments(path):
        header = (path / f"{index:010d}.seg").read_bytes()[:SEGMENT_HEADER_SIZE]
        assert struct.unpack_from("<Q", header, 24)[0] == index
