"""The journal in one process: framing, rollover, recovery, start points, retention, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libshm import (
    TICK_DTYPE,
    TICK_LAYOUT,
    CorruptJournal,
    JournalReader,
    JournalWriter,
    NotAJournal,
    Overrun,
    UnsupportedVersion,
    WriterLocked,
    encode_tick,
)
from libshm.layout import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE, segment_name
from libshm.repair import repair_journal
from libshm.segment import list_segments, map_segment, scan_segment
from tests.helpers import ROOT
from tests.libshm.workers import frame_time, make_tick

SMALL = 4096  # 11 tick frames per segment: rollovers everywhere


def write_ticks(path: Path, count: int, segment: int = SMALL, **kwargs: object) -> None:
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=segment, **kwargs) as w:  # type: ignore[arg-type]
        for _ in range(count):
            seq = w.next_seq
            w.append_tick(make_tick(seq), frame_time(seq))


def read_all(path: Path, **kwargs: object) -> list[tuple[int, bytes]]:
    reader = JournalReader(path, **kwargs)  # type: ignore[arg-type]
    out = []
    while (frame := reader.read()) is not None:
        out.append((frame.seq, bytes(frame.payload)))
    return out


def test_ticks_round_trip_across_rollovers(tmp_path: Path) -> None:
    write_ticks(tmp_path / "j", 100)
    frames = read_all(tmp_path / "j", verify=True)
    assert [s for s, _ in frames] == list(range(100))
    assert all(p == encode_tick(make_tick(s)) for s, p in frames)
    assert len(list_segments(tmp_path / "j")) == 10


def test_tail_ends_at_a_closed_journal(tmp_path: Path) -> None:
    write_ticks(tmp_path / "j", 30)
    reader = JournalReader(tmp_path / "j")
    assert [f.seq for f in reader.tail()] == list(range(30))
    assert reader.ended


@given(
    payloads=st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=60),
    cut=st.floats(0, 1),
)
def test_any_appends_and_any_cut_read_back_the_committed_prefix(
    payloads: list[bytes], cut: float
) -> None:
    """Zero the newest segment from an arbitrary byte on, as if the writer died there: the
    checked reader and a recovering writer both see exactly the frames that ended before it."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "j"
        ends = []
        with JournalWriter(path, segment_size=SMALL) as w:
            for i, payload in enumerate(payloads):
                w.append(payload, i)
                # where its bytes end (the zero padding after them needs no writing)
                start = w._off - ((FRAME_HEADER_SIZE + len(payload) + 7) & ~7)
                ends.append((w._index, start + FRAME_HEADER_SIZE + len(payload)))
        newest = list_segments(path)[-1]
        seg = path / segment_name(newest)
        data = bytearray(seg.read_bytes())
        original = bytes(data)
        cut_at = SEGMENT_HEADER_SIZE + int(cut * (len(data) - SEGMENT_HEADER_SIZE))
        data[cut_at:] = bytes(len(data) - cut_at)
        seg.write_bytes(data)
        survivors = 0  # the longest prefix of frames the cut left unchanged
        for index, end in ends:
            if index == newest and original[cut_at:end].strip(b"\0"):
                break
            survivors += 1
        reader = JournalReader(path, verify=True)
        got = []
        kept_commit = False
        while True:
            try:
                frame = reader.read()
            except CorruptJournal:  # a commit word kept while its body was cut
                kept_commit = True
                break
            if frame is None:
                break
            got.append(bytes(frame.payload))
        assert got == payloads[:survivors]
        if kept_commit:  # no crash leaves that (the commit word is stored last): damage
            cut_bytes = seg.read_bytes()
            with pytest.raises(CorruptJournal, match="damage, not a torn tail"):
                JournalWriter(path, segment_size=SMALL)
            assert seg.read_bytes() == cut_bytes
            return
        with JournalWriter(path, segment_size=SMALL) as w:
            assert w.next_seq == survivors
            w.append(b"after", 0)
        assert [p for _, p in read_all(path, verify=True)] == [*payloads[:survivors], b"after"]


def test_recovery_continues_the_sequence(tmp_path: Path) -> None:
    write_ticks(tmp_path / "j", 25)
    write_ticks(tmp_path / "j", 10)
    frames = read_all(tmp_path / "j", verify=True)
    assert [s for s, _ in frames] == list(range(35))
    assert all(p == encode_tick(make_tick(s)) for s, p in frames)


def test_recovery_discards_a_torn_frame(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_ticks(path, 5, segment=1 << 16)
    seg = path / segment_name(0)
    mapping, info = map_segment(seg, writable=True)
    end = scan_segment(mapping, info).end
    mapping[end + 8 : end + 200] = b"\x5a" * 192  # a frame body written, its commit word not
    mapping.close()
    assert scan_segment(*map_segment(seg, writable=False)).tail_dirty
    write_ticks(path, 3, segment=1 << 16)
    assert [s for s, _ in read_all(path, verify=True)] == list(range(8))
    scan = scan_segment(*map_segment(seg, writable=False))
    assert not scan.tail_dirty
    assert scan.problem is None


def test_crash_between_new_segment_and_roll_frame(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_ticks(path, 11)  # exactly fills segment 0
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=SMALL) as w:
        w._create(1, w.next_seq, 0)  # the next segment exists, the roll frame never landed
    assert list_segments(path) == [0, 1]
    write_ticks(path, 5)
    assert [s for s, _ in read_all(path, verify=True)] == list(range(16))


def test_second_writer_is_refused_naming_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "j"
    code = (
        "import sys, time; from libshm import JournalWriter; "
        f"w = JournalWriter({str(path)!r}); print('ready', flush=True); time.sleep(30)"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(WriterLocked) as info:
            JournalWriter(path)
        assert info.value.pid == holder.pid
        assert f"process {holder.pid}" in str(info.value)
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    JournalWriter(path).close()  # the lock died with its holder


def test_start_by_sequence_time_and_live_end(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_ticks(path, 60)
    assert JournalReader(path, from_seq=37).read().seq == 37  # type: ignore[union-attr]
    assert JournalReader(path, from_seq=0).read().seq == 0  # type: ignore[union-attr]
    frame = JournalReader(path, from_time_ns=frame_time(44) - 1).read()
    assert frame is not None
    assert frame.seq == 44
    live = JournalReader(path, live=True)
    assert live.read() is None
    assert live.next_seq == 60


def test_start_in_the_future_waits_for_it(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_ticks(path, 10)
    by_seq = JournalReader(path, from_seq=15)
    by_time = JournalReader(path, from_time_ns=frame_time(13))
    assert by_seq.read() is None
    assert by_time.read() is None
    write_ticks(path, 10)
    assert by_seq.read().seq == 15  # type: ignore[union-attr]
    assert by_time.read().seq == 13  # type: ignore[union-attr]


def test_bulk_read_is_a_zero_copy_view_across_segments(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_ticks(path, 50)
    reader = JournalReader(path)
    batches = []
    while len(batch := reader.read_array(7)):
        batches.append(batch)
    seqs = np.concatenate([b["seq"] for b in batches])
    assert seqs.tolist() == list(range(50))
    payload = batches[0]["payload"]
    assert payload.dtype == TICK_DTYPE
    assert payload[2].tobytes() == encode_tick(make_tick(2))
    assert not payload.flags.owndata


def test_append_array_matches_per_tick_appends(tmp_path: Path) -> None:
    records = np.frombuffer(b"".join(encode_tick(make_tick(i)) for i in range(40)), TICK_DTYPE)
    with JournalWriter(tmp_path / "a", layout=TICK_LAYOUT, segment_size=SMALL) as w:
        assert w.append_array(records[:25], frame_time(0)) == 0
        assert w.append_array(records[25:], frame_time(0)) == 25
    got = read_all(tmp_path / "a", verify=True)
    assert [p for _, p in got] == [encode_tick(make_tick(i)) for i in range(40)]


def test_append_array_with_an_order_appends_the_records_gathered(tmp_path: Path) -> None:
    """Positions gathered straight into the journal, across segment rolls, with a time each."""
    records = np.frombuffer(b"".join(encode_tick(make_tick(i)) for i in range(40)), TICK_DTYPE)
    order = np.array([int(k) for k in np.random.default_rng(7).permutation(40)[:33]])
    times = np.array([frame_time(int(k)) for k in order])
    with JournalWriter(tmp_path / "a", layout=TICK_LAYOUT, segment_size=SMALL) as w:
        assert w.append_array(records, times, order=order) == 0
        with pytest.raises(IndexError, match="outside the 40 records"):
            w.append_array(records, times[:1], order=np.array([40]))
    got = read_all(tmp_path / "a", verify=True)
    assert [p for _, p in got] == [encode_tick(make_tick(int(k))) for k in order]
    assert len(list_segments(tmp_path / "a")) > 1
    reader = JournalReader(tmp_path / "a")
    assert [reader.read().time_ns for _ in order] == times.tolist()  # type: ignore[union-attr]


def test_ring_keeps_n_segments_and_reports_overrun(tmp_path: Path) -> None:
    path = tmp_path / "ring"
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=SMALL, ring_segments=3) as w:
        for _ in range(11):
            w.append_tick(make_tick(w.next_seq), 0)
        slow = JournalReader(path)  # maps segment 0 only
        for _ in range(60):
            w.append_tick(make_tick(w.next_seq), 0)
        assert len(list_segments(path)) == 3
        assert [slow.read().seq for _ in range(11)] == list(range(11))  # type: ignore[union-attr]
        with pytest.raises(Overrun) as info:
            slow.read()
        assert info.value.expected_seq == 11
        assert info.value.lost == info.value.resume_seq - 11 > 0
        assert "overrun" in str(info.value)


def test_ring_with_archive_never_loses_a_frame(tmp_path: Path) -> None:
    path, archive = tmp_path / "ring", tmp_path / "archive"
    with JournalWriter(
        path, layout=TICK_LAYOUT, segment_size=SMALL, ring_segments=2, archive_dir=archive
    ) as w:
        slow = JournalReader(path, archive_dir=archive)
        for _ in range(100):
            w.append_tick(make_tick(w.next_seq), 0)
    assert len(list_segments(path)) == 2
    assert len(list_segments(archive)) >= 7
    frames = []
    while (frame := slow.read()) is not None:
        frames.append(frame.seq)
    assert frames == list(range(100))
    assert [s for s, _ in read_all(path, archive_dir=archive)] == list(range(100))


FULL_DISK_CHILD = """
import sys
from libshm import JournalWriter, JournalReader, JournalFull, TICK_LAYOUT, encode_tick
from tests.libshm.workers import make_tick
path = sys.argv[1] + "/j"
appended = 0
try:
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=16384) as w:
        for i in range(10_000):
            w.append_tick(make_tick(i), i)
            appended += 1
except JournalFull as exc:
    print("error:", exc)
reader = JournalReader(path, verify=True)
back = 0
while (frame := reader.read()) is not None:
    assert bytes(frame.payload) == encode_tick(make_tick(frame.seq))
    back += 1
print("appended", appended, "read back", back)
"""


def test_full_disk_is_reported_and_committed_frames_stay(tmp_path: Path) -> None:
    """A real 40 KiB tmpfs in a private mount namespace fills up during a rollover."""
    mount = tmp_path / "small"
    mount.mkdir()
    script = (
        f"mount -t tmpfs -o size=40k none {mount} && "
        f"{sys.executable} -c '{FULL_DISK_CHILD}' {mount}"
    )
    done = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, cwd=ROOT,
        check=False, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"error: {mount}/j/0000000002.seg: cannot allocate")
    assert "No space left on device" in lines[0]
    assert "every frame committed before is intact" in lines[0]
    appended, back = int(lines[1].split()[1]), int(lines[1].split()[4])
    assert appended == back == 2 * 48  # two full segments, every frame readable


def test_not_a_journal(tmp_path: Path) -> None:
    with pytest.raises(NotAJournal, match="no such journal directory"):
        JournalReader(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotAJournal, match="not a directory"):
        JournalReader(tmp_path / "file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotAJournal, match="no segment"):
        JournalReader(tmp_path / "empty")
    bogus = tmp_path / "bogus"
    bogus.mkdir()
    (bogus / segment_name(0)).write_bytes(b"nonsense" * 1000)
    with pytest.raises(NotAJournal, match="not a journal segment"):
        JournalReader(bogus)


def test_truncated_segment_is_named(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_ticks(path, 20)
    seg = path / segment_name(1)
    os.truncate(seg, 1000)
    reader = JournalReader(path)
    with pytest.raises(CorruptJournal, match=r"0000000001\.seg.*truncated"):
        while reader.read() is not None:
            pass


def test_newer_layout_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_ticks(path, 3)
    seg = path / segment_name(0)
    data = bytearray(seg.read_bytes())
    data[8:10] = (9).to_bytes(2, "little")
    seg.write_bytes(data)
    with pytest.raises(UnsupportedVersion, match="version 9 is newer"):
        JournalReader(path)


def test_flipped_payload_byte_is_caught_by_checked_reads(tmp_path: Path) -> None:
    path = tmp_path / "j"
    write_ticks(path, 5, segment=1 << 16)
    seg = path / segment_name(0)
    data = bytearray(seg.read_bytes())
    data[SEGMENT_HEADER_SIZE + 2 * 336 + FRAME_HEADER_SIZE + 100] ^= 0x01
    seg.write_bytes(data)
    reader = JournalReader(path, verify=True)
    assert reader.read() is not None
    assert reader.read() is not None
    with pytest.raises(CorruptJournal, match=r"offset 736: checksum mismatch in frame 2"):
        reader.read()


def test_unreadable_journal_says_permission(tmp_path: Path) -> None:
    write_ticks(tmp_path / "j", 3)
    os.chmod(tmp_path / "j" / "head", 0)
    code = (
        "from libshm import JournalReader, NotAJournal\n"
        f"try: JournalReader({str(tmp_path / 'j')!r})\n"
        "except NotAJournal as e: print(e)"
    )
    # as root, drop the capabilities that bypass file modes
    prefix = ["setpriv", "--inh-caps=-all", "--bounding-set=-all"] if os.geteuid() == 0 else []
    done = subprocess.run(
        [*prefix, sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
        check=False, timeout=60,
    )  # fmt: skip
    assert done.stdout.strip() == f"{tmp_path / 'j' / 'head'}: permission denied; grant read access"


def frame_offsets(seg: Path) -> list[int]:
    """Where each committed frame of a segment starts."""
    mapping, info = map_segment(seg, writable=False)
    offsets, off = [], SEGMENT_HEADER_SIZE
    try:
        while off + FRAME_HEADER_SIZE <= info.segment_size:
            commit = int.from_bytes(mapping[off : off + 8], "little")
            if commit == 0:
                break
            offsets.append(off)
            off += commit & 0xFFFF_FFFF
    finally:
        mapping.close()
    return offsets


DAMAGE = ("payload", "seq", "commit", "checksum")


def damage(seg: Path, off: int, how: str) -> None:
    """Damage the frame at ``off`` in one of the four ways a frame can be damaged."""
    data = bytearray(seg.read_bytes())
    if how == "payload":
        data[off + FRAME_HEADER_SIZE + 3] ^= 0x10
    elif how == "seq":
        data[off + 8] ^= 0x04
    elif how == "commit":
        data[off : off + 8] = bytes(8)
    else:
        data[off + 6] ^= 0x01  # a bit of the checksum, the high half of the commit word
    seg.write_bytes(data)


def snapshot_files(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir()) if p.name != "writer.lock"}


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("fixed", [True, False], ids=["ticks", "free-form"])
def test_a_writer_refuses_damage_in_the_newest_segment_and_changes_nothing(
    tmp_path: Path, how: str, fixed: bool
) -> None:
    """One damaged frame with committed frames after it is damage, not a torn tail: the writer
    names segment and offset and leaves every byte; the frames before it still read."""
    path = tmp_path / "j"
    if fixed:
        write_ticks(path, 40, segment=1 << 16)
    else:
        with JournalWriter(path, segment_size=1 << 16) as w:
            for i in range(40):
                w.append(bytes([i]) * (i * 7 % 50), i)
    seg = path / segment_name(0)
    off = frame_offsets(seg)[17]
    damage(seg, off, how)
    before = snapshot_files(path)
    layout = {"layout": TICK_LAYOUT} if fixed else {}
    with pytest.raises(CorruptJournal, match=rf"{seg}: offset {off}: .*damage, not a torn tail"):
        JournalWriter(path, segment_size=1 << 16, **layout)  # type: ignore[arg-type]
    assert snapshot_files(path) == before
    reader = JournalReader(path, verify=True)
    for seq in range(17):
        frame = reader.read()
        assert frame is not None and frame.seq == seq
    if how == "commit":  # the end, as far as a reader of a closed journal can tell
        assert reader.read() is None
    else:
        with pytest.raises(CorruptJournal, match=f"offset {off}"):
            reader.read()


@pytest.mark.parametrize("how", DAMAGE)
def test_damage_in_a_sealed_segment_stops_readers_and_writers_keep_it(
    tmp_path: Path, how: str
) -> None:
    path = tmp_path / "j"
    write_ticks(path, 40)  # 11 frames a segment: 0..3
    seg = path / segment_name(1)
    off = frame_offsets(seg)[5]  # frame 16
    damage(seg, off, how)
    before = snapshot_files(path)
    reader = JournalReader(path, verify=True)
    with pytest.raises(CorruptJournal, match=f"{seg}: offset {off}"):
        while reader.read() is not None:
            pass
    assert reader.next_seq == 16
    write_ticks(path, 3)  # the newest segment is intact: the writer appends after frame 39
    after = snapshot_files(path)
    assert after[segment_name(1)] == before[segment_name(1)]
    assert all(after[name] == data for name, data in before.items() if name.endswith(".seg")
               and name != segment_name(3))  # fmt: skip


@pytest.mark.parametrize("how", [*DAMAGE, "last frame"])
def test_repair_cuts_at_the_damage_after_keeping_a_copy(tmp_path: Path, how: str) -> None:
    path = tmp_path / "j"
    write_ticks(path, 40)  # 11 frames a segment: 0..3
    if how == "last frame":  # the newest frame damaged: nothing after it, still not torn
        seg = path / segment_name(3)
        damage(seg, frame_offsets(seg)[-1], "payload")
        kept = 39
        with pytest.raises(CorruptJournal, match="damage, not a torn tail"):
            JournalWriter(path, layout=TICK_LAYOUT, segment_size=SMALL)
    else:
        seg = path / segment_name(1)
        damage(seg, frame_offsets(seg)[5], how)
        kept = 16
    before = snapshot_files(path)
    result = repair_journal(path, tmp_path / "copy")
    assert snapshot_files(tmp_path / "copy") == before
    assert result.after is not None and result.after.intact and result.after.frames == kept
    write_ticks(path, 2)
    assert [s for s, _ in read_all(path, verify=True)] == list(range(kept + 2))
    assert repair_journal(path, tmp_path / "copy2").copy is None  # intact: nothing to do
    assert not (tmp_path / "copy2").exists()


def test_repair_waits_for_no_writer(tmp_path: Path) -> None:
    path = tmp_path / "j"
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=SMALL), pytest.raises(WriterLocked):
        repair_journal(path, tmp_path / "copy")
    assert not (tmp_path / "copy").exists()


def test_journal_files_are_not_world_readable(tmp_path: Path) -> None:
    """Engine journals hold orders and agents' errors: segments, head and lock are 0640 (the
    service's group may read them, as the monitor does), whatever the umask leaves above it."""
    old = os.umask(0o022)
    try:
        write_ticks(tmp_path / "j", 30)
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "j").iterdir()}
    assert set(modes.values()) == {0o640}, modes
    assert {"head", "writer.lock", segment_name(0)} <= set(modes)
