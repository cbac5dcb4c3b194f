"""The ``zh_CN.GB18030`` locale that openctp-ctp needs: without it the library aborts the whole
process at import, so every service and test probes for it first, in a child process.

``python -m contracts.ctp_locale --provide DIR`` is how ``make test`` gives a machine without
the locale (and without root) one: it compiles the locale into ``DIR`` with ``localedef
--no-archive`` and prints ``DIR``, for ``LOCPATH``; it prints nothing when the system has the
locale, and one line saying what to install when it cannot be made here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from contracts.errors import UserError

__all__ = ["CTP_LOCALE", "LOCALE_FIX", "has_locale", "provide", "require_ctp_locale"]

CTP_LOCALE = "zh_CN.GB18030"
LOCALE_FIX = (
    "as root: apt-get install -y locales && localedef -i zh_CN -f GB18030 zh_CN.GB18030; "
    "without root: localedef --no-archive -i zh_CN -f GB18030 "
    "~/.local/share/locale/zh_CN.GB18030 && export LOCPATH=~/.local/share/locale"
)
_SOURCES = (Path("/usr/share/i18n/locales/zh_CN"), Path("/usr/share/i18n/charmaps/GB18030.gz"))


def has_locale(name: str = CTP_LOCALE, env: Mapping[str, str] | None = None) -> bool:
    """Whether a process with ``env`` (this one's by default) can set the locale ``name``."""
    probe = f"import locale; locale.setlocale(locale.LC_ALL, {name!r})"
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, timeout=30, check=False,
        env=dict(env) if env is not None else None,
    )  # fmt: skip
    return done.returncode == 0


def require_ctp_locale() -> None:
    """Raise the one-line ``UserError`` a service gives when CTP cannot be loaded here."""
    if not has_locale():
        raise UserError(f"CTP needs the {CTP_LOCALE} locale: {LOCALE_FIX}")


def provide(directory: Path, env: Mapping[str, str] | None = None) -> Path | None:
    """The ``LOCPATH`` under which the locale exists for processes with ``env`` (this one's by
    default): None if they have it already, ``directory`` once the locale is compiled there
    (kept for the next run). Raises ``UserError`` naming what to install if this machine
    cannot compile it."""
    base = dict(os.environ if env is None else env)
    if has_locale(env=base):
        return None
    env = {**base, "LOCPATH": str(directory)}
    if has_locale(env=env):
        return directory
    localedef = shutil.which("localedef", path=env.get("PATH"))
    missing = [str(p) for p in _SOURCES if not p.exists()]
    if localedef is None or missing:
        what = "localedef" if localedef is None else ", ".join(missing)
        raise UserError(
            f"no {CTP_LOCALE} locale and no {what} to make one: install the locales package "
            "(apt-get install -y locales), or set LOCPATH to a directory that has the locale; "
            "the CTP tests are skipped until then"
        )
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [localedef, "--no-archive", "-i", "zh_CN", "-f", "GB18030", str(directory / CTP_LOCALE)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    # localedef exits 1 for warnings about the sources while writing a usable locale
    if not has_locale(env=env):
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise UserError(
            f"localedef could not make the {CTP_LOCALE} locale in {directory} "
            f"({detail[-1] if detail else f'exit {done.returncode}'}): {LOCALE_FIX}"
        )
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m contracts.ctp_locale",
        description=f"Provide the {CTP_LOCALE} locale that openctp-ctp needs, without root.",
    )
    parser.add_argument("--provide", type=Path, required=True, metavar="DIR",
                        help="compile the locale into DIR if the system lacks it; prints DIR "
                        "for LOCPATH, or nothing when the system has it")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        where = provide(args.provide.absolute())
    except UserError as err:
        print(f"ctp_locale: {err}", file=sys.stderr)
        return 1
    if where is not None:
        print(where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
