"""The snapshot table in one process: directory, latest tick, rebuild, bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from libshm import (
    TICK_LAYOUT,
    JournalReader,
    JournalWriter,
    NotAJournal,
    UnsupportedVersion,
    WriterLocked,
)
from libshm.errors import JournalError
from libshm.record import encode_tick
from libshm.seqlock import SnapshotReader, SnapshotWriter
from tests.libshm.workers import INSTRUMENTS, make_tick


def test_latest_tick_per_instrument(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path / "snap", capacity=8) as table:
        reader = SnapshotReader(tmp_path / "snap")
        assert reader.read("IF2101") is None
        for i in range(9):
            table.write(make_tick(i))
        assert sorted(reader.instruments()) == sorted(INSTRUMENTS)
        latest = reader.read("IF2101")
        assert latest is not None
        assert encode_tick(latest) == encode_tick(make_tick(6))
        slot = table.slot_of("cu2102")
        table.write_record(slot, encode_tick(make_tick(98)))
        assert reader.read_record(slot) == encode_tick(make_tick(98))


def test_rebuild_from_the_journal_after_a_restart(tmp_path: Path) -> None:
    with JournalWriter(tmp_path / "j", layout=TICK_LAYOUT, segment_size=4096) as journal:
        for i in range(100):
            journal.append_tick(make_tick(i), i)
    with SnapshotWriter(tmp_path / "snap") as table:
        assert table.rebuild(JournalReader(tmp_path / "j")) == 3
    reader = SnapshotReader(tmp_path / "snap")
    for name, last in zip(INSTRUMENTS, (99, 97, 98), strict=True):
        tick = reader.read(name)
        assert tick is not None
        assert encode_tick(tick) == encode_tick(make_tick(last))


def test_one_writer_and_a_full_table(tmp_path: Path) -> None:
    with SnapshotWriter(tmp_path / "snap", capacity=2) as table:
        with pytest.raises(WriterLocked):
            SnapshotWriter(tmp_path / "snap")
        table.write(make_tick(0))
        table.write(make_tick(1))
        with pytest.raises(JournalError, match=r"full \(2 instruments\)"):
            table.write(make_tick(2))


def test_reader_without_a_table(tmp_path: Path) -> None:
    with pytest.raises(NotAJournal, match="no snapshot table; is md_recorder running"):
        SnapshotReader(tmp_path / "snap")
    (tmp_path / "other").write_bytes(b"x" * 8192)
    with pytest.raises(NotAJournal, match="not a snapshot table"):
        SnapshotReader(tmp_path / "other")


def test_a_newer_snapshot_table_is_refused_with_the_journal_s_version_error(
    tmp_path: Path,
) -> None:
    with SnapshotWriter(tmp_path / "snap", capacity=8) as table:
        table.write(make_tick(0))
    raw = bytearray((tmp_path / "snap").read_bytes())
    raw[8:10] = (9).to_bytes(2, "little")  # the version field, after the 8-byte magic
    (tmp_path / "snap").write_bytes(raw)
    with pytest.raises(UnsupportedVersion, match="snapshot table version 9 is newer") as caught:
        SnapshotReader(tmp_path / "snap")
    assert isinstance(caught.value, JournalError)  # one hierarchy for the data plane
