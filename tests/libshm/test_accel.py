"""Which implementation runs: the C fast path where it could be built, else pure Python."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from libshm import accel
from tests.helpers import ROOT


def test_the_fast_path_is_built_where_a_compiler_is() -> None:
    """CI installs a C compiler, so there the fast-path tests never skip."""
    if accel.BUILT is None and shutil.which("cc") is None and not os.environ.get("CI"):
        pytest.skip("no C compiler on this machine: the pure-Python paths run")
    assert accel.BUILT is not None, "libshm._fastpath was not built: run `make install` with gcc"
    assert accel.FAST is accel.BUILT or os.environ.get("HFT_PURE_PYTHON") == "1"


@pytest.mark.parametrize(("value", "fast"), [("1", False), ("0", True), ("", True)])
def test_hft_pure_python_selects_the_reference_paths(value: str, fast: bool) -> None:
    code = "from libshm import accel; print(accel.FAST is not None, accel.describe())"
    done = subprocess.run(
        [sys.executable, "-c", code], env={**os.environ, "HFT_PURE_PYTHON": value},
        capture_output=True, text=True, cwd=ROOT, check=True,
    )  # fmt: skip
    in_use, _, text = done.stdout.strip().partition(" ")
    assert in_use == str(fast and accel.BUILT is not None)
    assert ("pure Python" in text) is not (fast and accel.BUILT is not None)
