"""The real IF2101 day of 2021-01-04 as the engine's tests read it."""

from __future__ import annotations

import pytest

from libshm import JournalReader, Tick, decode_tick
from tests.helpers import import_market

DAY = 20210104


@pytest.fixture(scope="session")
def ticks(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[int, Tick]]:
    """Every tick of the day as (sequence number, tick), imported as md_recorder records it."""
    out = import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")
    reader = JournalReader(out / str(DAY))
    found = []
    while (frame := reader.read()) is not None:
        found.append((frame.seq, decode_tick(frame.payload)))
    return found
