"""Which implementation runs libshm's hot paths: the C module or pure Python.

``libshm._fastpath`` (built from ``libshm/_ext/fastpath.c`` when the package is installed with a
C compiler at hand) packs, checksums and commits tick frames and snapshot slots; the pure-Python
code beside each call is the reference, writes the same bytes, and runs where the module is
missing or ``HFT_PURE_PYTHON=1`` is set. Writers and readers choose when they are created, so a
test can switch with ``monkeypatch.setattr(accel, "FAST", None)``.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Final

_built: ModuleType | None
try:
    _built = importlib.import_module("libshm._fastpath")
except ImportError:  # not compiled: pure Python
    _built = None

BUILT: Final[ModuleType | None] = _built
"""The C module if it was built, whether or not it is in use."""

FAST: ModuleType | None = None if os.environ.get("HFT_PURE_PYTHON") == "1" else _built
"""The C module in use, or None for pure Python."""


def describe() -> str:
    """One line for ``hft doctor`` and the benchmarks."""
    if FAST is not None:
        return "C fast path (libshm._fastpath)"
    if BUILT is not None:
        return "pure Python (HFT_PURE_PYTHON=1; the C fast path is built)"
    return "pure Python (libshm._fastpath is not built: reinstall with a C compiler for speed)"
