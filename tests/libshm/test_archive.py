"""A ring's archive: every sealed segment copied as it completes and the last one at close, so
the archive alone is the whole recording, across restarts, a cleared ``/dev/shm`` and a copy
that went stale; a full archive stops the ring instead of losing a frame."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from libshm import TICK_LAYOUT, JournalFull, JournalReader, JournalWriter, encode_tick
from libshm.layout import segment_name
from libshm.segment import list_segments
from tests.libshm.workers import frame_time, make_tick

SMALL = 4096  # 11 tick frames per segment


def ring(path: Path, archive: Path, segments: int = 3) -> JournalWriter:
    return JournalWriter(
        path, layout=TICK_LAYOUT, segment_size=SMALL, ring_segments=segments, archive_dir=archive
    )


def append(writer: JournalWriter, count: int) -> None:
    for _ in range(count):
        seq = writer.next_seq
        writer.append_tick(make_tick(seq), frame_time(seq))


def frames(path: Path, **kwargs: object) -> list[int]:
    """The sequence numbers read, each payload checked to be the tick written under it."""
    reader = JournalReader(path, verify=True, **kwargs)  # type: ignore[arg-type]
    out = []
    while (frame := reader.read()) is not None:
        assert bytes(frame.payload) == encode_tick(make_tick(frame.seq))
        out.append(frame.seq)
    reader.close()
    return out


def test_the_archive_alone_holds_every_frame_of_a_closed_ring(tmp_path: Path) -> None:
    path, archive = tmp_path / "ring", tmp_path / "archive"
    with ring(path, archive) as w:
        append(w, 100)
    assert len(list_segments(path)) == 3  # the ring stayed bounded
    assert list_segments(archive) == list(range(10))
    assert frames(archive) == list(range(100))  # including the unsealed last segment
    assert not list(archive.glob(".*"))  # no temporary copy left behind


def test_a_reader_behind_the_ring_goes_on_in_the_archive(tmp_path: Path) -> None:
    path, archive = tmp_path / "ring", tmp_path / "archive"
    with ring(path, archive, segments=2) as w:
        slow = JournalReader(path, archive_dir=archive)  # maps segment 0 only
        append(w, 5)
        got = [slow.read().seq for _ in range(5)]  # type: ignore[union-attr]
        append(w, 80)  # segments 0 to 5 leave the ring meanwhile
        assert list_segments(path)[0] > 1
        while (frame := slow.read()) is not None:
            got.append(frame.seq)
    assert got == list(range(85))


def test_a_restarted_writer_replaces_the_copy_of_the_segment_it_continues(tmp_path: Path) -> None:
    path, archive = tmp_path / "ring", tmp_path / "archive"
    with ring(path, archive) as w:
        append(w, 15)  # segment 1 holds 4 frames when copied at close
    with ring(path, archive) as w:
        append(w, 30)
    assert frames(archive) == list(range(45))


def test_a_cleared_ring_continues_after_its_archive(tmp_path: Path) -> None:
    path, archive = tmp_path / "ring", tmp_path / "archive"
    with ring(path, archive) as w:
        append(w, 40)
    shutil.rmtree(path)  # /dev/shm after a reboot
    with ring(path, archive) as w:
        assert w.next_seq == 40
        append(w, 40)
    assert frames(archive) == list(range(80))


def test_a_stale_copy_of_a_sealed_segment_is_archived_again(tmp_path: Path) -> None:
    """A writer killed after sealing a segment and before its copy was replaced leaves the
    archive with an older copy; the next writer compares and copies it again."""
    path, archive = tmp_path / "ring", tmp_path / "archive"
    with ring(path, archive, segments=4) as w:
        append(w, 15)
    stale = (archive / segment_name(1)).read_bytes()  # 4 of its 11 frames
    with ring(path, archive, segments=4) as w:
        append(w, 20)
    (archive / segment_name(1)).write_bytes(stale)
    assert frames(archive) == list(range(15))  # the archive alone now stops short
    with ring(path, archive, segments=4) as w:
        append(w, 1)
    assert frames(archive) == list(range(36))


def test_an_archive_that_cannot_take_a_segment_stops_the_ring_losing_nothing(
    tmp_path: Path,
) -> None:
    path, archive = tmp_path / "ring", tmp_path / "archive"
    archive.write_text("a file where the archive directory should be")
    w = ring(path, archive, segments=2)
    appended = 0
    with pytest.raises(JournalFull, match="cannot archive segment"):
        for _ in range(100):
            append(w, 1)
            appended += 1
    assert w.archive_error is not None  # what the service reports
    assert appended == 22  # two full segments; the third would delete the unarchived first
    assert frames(path) == list(range(22))
    with pytest.raises(JournalFull):
        w.close()
    assert JournalReader(path).writer_state() == "closed"
