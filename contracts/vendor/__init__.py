"""Vendored front-end files (README.md beside this file: versions, licences, checksums), shared
by the monitor's dashboard, which serves them under ``/vendor/``, and the backtest's offline
report, which inlines them."""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["FILES", "VENDOR_DIR", "read"]

VENDOR_DIR: Final = Path(__file__).parent
FILES: Final = ("uPlot.iife.min.js", "uPlot.min.css")


def read(name: str) -> str:
    """One of ``FILES``, as text."""
    if name not in FILES:
        raise KeyError(f"{name}: not a vendored file ({', '.join(FILES)})")
    return (VENDOR_DIR / name).read_text(encoding="utf-8")
