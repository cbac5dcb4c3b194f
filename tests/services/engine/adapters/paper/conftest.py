"""The real recordings the simulator's tests run on, imported once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from libshm import JournalReader, Tick, decode_tick
from tests.helpers import import_market


def _ticks(root: Path, day: int) -> list[Tick]:
    reader = JournalReader(root / str(day))
    found = []
    while (frame := reader.read()) is not None:
        found.append(decode_tick(frame.payload))
    return found


@pytest.fixture(scope="session")
def if_day(tmp_path_factory: pytest.TempPathFactory) -> list[Tick]:
    """IF2101 on 2021-01-04 (level 1, 500 ms): ``if_day[i]`` is the i-th recorded tick."""
    return _ticks(import_market(tmp_path_factory.mktemp("if"), "IF2101_20210104.csv.gz"), 20210104)


@pytest.fixture(scope="session")
def cu_day(tmp_path_factory: pytest.TempPathFactory) -> list[Tick]:
    """SHFE cu1909 on 2019-09-16 14:01-15:00, five levels of depth."""
    return _ticks(import_market(tmp_path_factory.mktemp("cu"), "cu1909_20190916.csv.gz"), 20190916)
