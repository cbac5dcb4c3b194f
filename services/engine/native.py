"""The engine's compiled core: which modules mypyc compiles, and whether the compiled ones run.

``make native`` (part of every make target) compiles :data:`MODULES` with mypyc into extension
modules beside their sources (``core.cpython-311-...so`` next to ``core.py``) and writes
:data:`STAMP`, the digest of the sources it compiled. Python imports an extension module before a
source of the same name, so the compiled core runs wherever it was built, except:

- ``HFT_PURE_PYTHON=1`` in the environment: the sources run (the reference the compiled core is
  tested against, and what a debugger steps through);
- a source changed since the build (its digest is not the stamp's): the sources run, so an edited
  file always takes effect; ``make native`` compiles it again;
- nothing was built (no compiler, or installed without make): the sources run.

:func:`install` (run by ``services.engine`` before any of its modules loads) decides, and puts a
finder first on ``sys.meta_path`` that loads these modules from source when the sources must
run. ``hft doctor`` shows :func:`status`. The design and the figures: docs/engine.md ("Compiled
core").
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import ModuleType
from typing import Final

__all__ = ["ENV", "MODULES", "STAMP", "compiled", "digest", "install", "status"]

ENV: Final = "HFT_PURE_PYTHON"
ROOT: Final = Path(__file__).resolve().parents[2]
MODULES: Final = (
    "services.engine.core",
    "services.engine.agents",
    "services.engine.bars",
    "services.engine.indicators.windows",
    "services.engine.indicators.trend",
    "services.engine.indicators.book",
    "services.engine.indicators.flow",
    "services.engine.commands",
    "services.engine.conditional",
    "services.engine.recovery",
    "services.engine.ledger",
    "services.engine.risk",
    "services.engine.orders",
    "services.engine.offsets",
    "services.engine.collect",
    "services.engine.drive",
    "services.engine.port",
    "services.engine.adapters.paper.broker",
    "services.engine.adapters.paper.exchange",
    "services.engine.adapters.paper.front",
    "services.engine.adapters.paper.latency",
    "services.engine.adapters.paper.queues",
)
GROUP: Final = "services.engine.compiled"  # setup.py's group: its shared library's module
STAMP: Final = Path(__file__).with_name("native.stamp")

_state: list[str] = []  # [status text] once install() has decided


def source_of(module: str) -> Path:
    return ROOT.joinpath(*module.split(".")).with_suffix(".py")


def digest() -> str:
    """The sha256 of the compiled modules' sources (names and bytes, in :data:`MODULES` order)."""
    h = hashlib.sha256()
    for module in MODULES:
        h.update(module.encode() + b"\0" + source_of(module).read_bytes() + b"\0")
    return h.hexdigest()


def _built() -> bool:
    """Whether every module has its extension beside its source, and the shared library they
    all load is there too (for this Python: the suffix names its version)."""
    suffix = importlib.machinery.EXTENSION_SUFFIXES[0]
    shared = source_of(GROUP).with_name(GROUP.rsplit(".", 1)[1] + "__mypyc" + suffix)
    return shared.exists() and all(
        source_of(m).with_name(m.rsplit(".", 1)[1] + suffix).exists() for m in MODULES
    )


class _FromSource:
    """A meta path finder that loads :data:`MODULES` from their sources."""

    @staticmethod
    def find_spec(name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:  # fmt: skip
        if name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(name, source_of(name))


def install() -> None:
    """Decide once whether the compiled modules run, and if not make the sources load."""
    if _state:
        return
    if os.environ.get(ENV, "") not in ("", "0"):
        text = f"pure Python ({ENV} is set)"
    elif not _built():
        text = "pure Python (not compiled: `make native` compiles it with mypyc)"
    elif not STAMP.exists() or STAMP.read_text(encoding="ascii").strip() != digest():
        text = ("pure Python (a source changed since it was compiled: `make native` compiles "
                "it again)")  # fmt: skip
    else:
        _state.append("compiled (mypyc)")
        return
    _state.append(text)
    sys.meta_path.insert(0, _FromSource())


def compiled() -> bool:
    """Whether the compiled modules are the ones that run."""
    install()
    return _state[0].startswith("compiled")


def status() -> str:
    """One line for ``hft doctor``: compiled, or pure Python and why."""
    install()
    return _state[0]


if __name__ == "services.engine.native":  # not when setup.py reads the list
    install()
