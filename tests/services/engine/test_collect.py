"""The backtest's results collector: an id's split into a prefix and a number gives the id back
exactly, and a disk that cannot take its rows is one clear error."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts import messages as m
from contracts.errors import UserError
from services.engine.collect import BUFFER, MAX_DIGITS, ORDER_ROW, Collector, split_id


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("mm-20210104-12", ("mm-20210104-", 12)),  # the engine's order ids
        ("P7", ("P", 7)),  # the simulator's trade ids
        ("P007", ("P00", 7)),  # leading zeros stay in the prefix
        ("x-0", ("x-", 0)),
        ("x-00", ("x-0", 0)),
        ("abc", ("abc", -1)),  # no number
        ("x-\u0661\u0662", ("x-\u0661\u0662", -1)),  # digits, but not ASCII ones
        ("7" * 20, ("77", int("7" * MAX_DIGITS))),  # at most MAX_DIGITS in the number
        ("a-" + "7" * 19, ("a-7", int("7" * MAX_DIGITS))),
    ],
)
def test_an_id_splits_into_its_prefix_and_number(text: str, parts: tuple[str, int]) -> None:
    assert split_id(text) == parts


@given(st.text(alphabet=st.sampled_from("ab-0123456789\u0661"), max_size=30))
def test_every_id_comes_back_exactly_from_its_parts(text: str) -> None:
    prefix, number = split_id(text)
    assert (prefix + str(number) if number >= 0 else prefix) == text
    assert number < 10**MAX_DIGITS


@given(st.lists(st.sampled_from(["a-1-", "a-1-0", "b-2-", "P", "P00", "7" * 17, ""]).flatmap(
    lambda head: st.builds(lambda n: head + n, st.text("0123456789", max_size=20))
), max_size=40))  # fmt: skip
def test_order_ids_split_one_after_another_come_back_exactly(ids: list[str]) -> None:
    """The collector tries the previous id's prefix first: whatever the ids and their order, each
    comes back exactly from its parts."""
    with tempfile.TemporaryDirectory() as tmp:
        c = Collector(Path(tmp), {})
        try:
            for text in ids:
                prefix, number = c._split(text)
                assert (prefix + str(number) if number >= 0 else prefix) == text
                assert number < 10**MAX_DIGITS
        finally:
            c.close()


def test_a_full_disk_under_the_results_is_one_clear_error(tmp_path: Path) -> None:
    for name in ("orders.bin", "ends.bin", "fills.bin"):
        (tmp_path / name).symlink_to("/dev/full")  # every write: ENOSPC
    c = Collector(tmp_path, {"IF2101": 300})
    with pytest.raises(UserError) as raised:
        for i in range(BUFFER // ORDER_ROW.size + 2):  # one buffer's rows and more
            c.message(m.OrderRequested(0, i, f"a-1-{i}", "a", "IF2101", "CFFEX", "buy", "open",
                                       5000.0, 1, "limit"))  # fmt: skip
    text = str(raised.value)
    assert text.startswith(f"{tmp_path / 'orders.bin'}: cannot write the backtest's results")
    assert "No space left on device" in text and "TMPDIR" in text
    assert c.counts.sent == BUFFER // ORDER_ROW.size  # the row that did not fit raised
    with pytest.raises(UserError, match="cannot write"):
        c.close()  # what is buffered cannot be written either; every file is closed all the same
    assert all(rows.file.closed for rows in (c.orders, c.ends, c.fills))


def test_an_unwritable_results_directory_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="cannot write the backtest's results"):
        Collector(tmp_path / "gone", {})
