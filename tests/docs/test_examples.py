"""The example notebook (docs/examples/backtest.ipynb) runs top to bottom in a real Jupyter
kernel (nbclient, ipykernel), in a fresh directory, as a user runs it: no cell raises, and what it
shows and writes is there (the statistics, the frames, the report, the sweep's table)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.helpers import ROOT

pytestmark = pytest.mark.timeout(600)
NOTEBOOK = ROOT / "docs" / "examples" / "backtest.ipynb"


def test_the_backtest_notebook_runs_top_to_bottom(tmp_path: Path) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)  # type: ignore[no-untyped-call]
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), \
        "the notebook is stored without outputs"  # fmt: skip
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()  # fmt: skip
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert errors == []
    shown = ["".join(str(o.get("data", {}).get("text/plain", "")) for o in c.outputs)
             for c in code]  # fmt: skip
    stats, trades, sweep = shown[1], shown[2], shown[-1]
    assert "sharpe" in stats and "max_drawdown" in stats
    assert "fast" in trades and "IF2101" in trades
    assert "end_equity" in sweep and len(sweep.splitlines()) == 5  # header and four points
    assert any("iframe srcdoc" in str(o.get("data", {}).get("text/html", ""))
               for c in code for o in c.outputs)  # fmt: skip
    assert (tmp_path / "report.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == [
        "20210104",
        "20210105",
        "20210106",
    ]
