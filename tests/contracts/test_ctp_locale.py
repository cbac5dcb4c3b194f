"""The CTP locale made without root, as ``make test`` does on a machine that lacks it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.ctp_locale import _SOURCES, CTP_LOCALE, has_locale, provide
from contracts.errors import UserError
from tests.helpers import ROOT


def without_system_locales(tmp_path: Path) -> dict[str, str]:
    """An environment whose processes see no locale but C: LOCPATH set to an empty directory
    hides the system's locale archive."""
    empty = tmp_path / "empty"
    empty.mkdir()
    return {**os.environ, "LOCPATH": str(empty)}


def test_a_machine_without_the_locale_gets_one_compiled_into_the_directory(
    tmp_path: Path,
) -> None:
    if not all(p.exists() for p in _SOURCES) and not os.environ.get("CI"):
        pytest.skip("no locale sources here (the locales package); CI installs them")
    bare = without_system_locales(tmp_path)
    assert not has_locale(env=bare)
    where = tmp_path / "locale"
    assert provide(where, env=bare) == where
    assert has_locale(env={**bare, "LOCPATH": str(where)})
    assert (where / CTP_LOCALE / "LC_CTYPE").is_file()
    # the next run finds it there and compiles nothing
    (where / "marker").touch()
    assert provide(where, env=bare) == where and (where / "marker").exists()


def test_a_machine_that_has_the_locale_needs_no_locpath(tmp_path: Path) -> None:
    if not has_locale():
        if os.environ.get("CI"):  # .ci/run makes the system locale: its absence fails there
            pytest.fail("no system-wide zh_CN.GB18030 locale under CI", False)
        pytest.skip("this machine has no system-wide locale (the test above covers it)")
    assert provide(tmp_path / "unused") is None
    assert not (tmp_path / "unused").exists()


def test_without_localedef_it_says_what_to_install(tmp_path: Path) -> None:
    bare = without_system_locales(tmp_path)
    bare["PATH"] = str(tmp_path / "no-tools")  # no localedef on it
    env = {**bare, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "contracts.ctp_locale", "--provide", str(tmp_path / "loc")],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "install the locales package" in lines[0], done.stderr
    with pytest.raises(UserError, match="localedef"):
        provide(tmp_path / "loc", env=bare)
