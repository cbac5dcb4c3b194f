"""The backtest's results collector: a disk that cannot take its rows is one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts import messages as m
from contracts.errors import UserError
from services.engine.collect import BUFFER, ORDER_ROW, Collector


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
