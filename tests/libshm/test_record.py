"""The tick record codec: struct and numpy views agree, absent prices stay absent."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from libshm import TICK_DTYPE, Tick, decode_tick, encode_tick
from libshm.record import TICK_SIZE, tick_from_row

names = st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-",
                min_size=1, max_size=32)  # fmt: skip
prices = st.floats(allow_nan=True, allow_infinity=False, width=64)
volumes = st.integers(0, 2**31 - 1)
ticks = st.builds(
    lambda *v: Tick._make(v),
    names, st.sampled_from(["CFFEX", "SHFE", "DCE", "CZCE", "INE", "GFEX"]),
    st.integers(19900101, 21001231), st.integers(0, 7),
    st.integers(0, 2**62), st.integers(0, 2**62),
    *[prices] * 11, st.integers(0, 2**62), prices, prices, prices,
    *[prices] * 10, *[volumes] * 10,
)  # fmt: skip


def _same(a: Tick, b: Tick) -> bool:
    return all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        or x == y
        for x, y in zip(a, b, strict=True)
    )


@given(ticks)
def test_encode_decode_round_trip(tick: Tick) -> None:
    raw = encode_tick(tick)
    assert len(raw) == TICK_SIZE
    assert _same(decode_tick(raw), tick)


@given(st.lists(ticks, min_size=1, max_size=20))
def test_numpy_view_reads_the_same_records(batch: list[Tick]) -> None:
    array = np.frombuffer(b"".join(encode_tick(t) for t in batch), dtype=TICK_DTYPE)
    for row, tick in zip(array, batch, strict=True):
        assert _same(tick_from_row(row), tick)
    assert array["volume"].tolist() == [t.volume for t in batch]


def test_depth_helpers_skip_absent_levels() -> None:
    tick = Tick._make(
        ["cu1909", "SHFE", 20190916, 0, 0, 0, *[47800.0] * 11, 7360, 1.7e9, 8240.0, 0.0,
         47780.0, 47770.0, math.nan, math.nan, math.nan,
         47820.0, 47830.0, 47850.0, math.nan, math.nan,
         10, 10, 0, 0, 0, 10, 10, 5, 0, 0]
    )  # fmt: skip
    assert tick.bids == [(47780.0, 10), (47770.0, 10)]
    assert tick.asks == [(47820.0, 10), (47830.0, 10), (47850.0, 5)]


def test_name_too_long_is_refused() -> None:
    tick = Tick._make(["X" * 33, "SHFE", *[0] * 39])
    with pytest.raises(ValueError, match="longer than 32 bytes"):
        encode_tick(tick)
