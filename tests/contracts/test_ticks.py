"""The tick store's days: a day counts once its ring or its recording is a journal, so a reader
never opens the directory a writer has made and not yet filled (the engine on a mirror's host
met it: "no such journal directory")."""

from __future__ import annotations

from pathlib import Path

from contracts.ticks import TickStore
from libshm import TICK_LAYOUT, JournalWriter


def test_a_day_counts_once_its_journal_has_a_segment(tmp_path: Path) -> None:
    store = TickStore.of(tmp_path / "shm", tmp_path / "journal")
    with JournalWriter(store.recording(20210104), layout=TICK_LAYOUT, segment_size=1 << 20):
        pass
    store.ring(20210105).mkdir(parents=True)  # a writer's first step, its segment not there yet
    assert store.days() == [20210104]
    with JournalWriter(store.ring(20210105), layout=TICK_LAYOUT, segment_size=1 << 20,
                       ring_segments=2, archive_dir=store.recording(20210105)):  # fmt: skip
        assert store.days() == [20210104, 20210105]
        reader = store.open(store.days()[-1])
        reader.close()
