"""The engine's compiled core against its Python sources (``services/engine/native.py``): the
real IF2101 day under the golden day's three simulator configurations gives the same journal,
byte for byte, from both, and each recovers mid-day from the other's journal. Each side runs in
its own process (``HFT_PURE_PYTHON=1`` makes one load the sources)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from libshm import JournalReader, decode_tick
from services.engine import native
from tests.helpers import import_market
from tests.services.engine.test_golden_day import DAY, GOLDEN, digest_of, run_day

ROOT = Path(__file__).resolve().parents[3]
HALF = 14_000  # ticks before the crash in the recovery test (the day has 27,954)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz") / str(DAY)


@pytest.fixture(scope="module")
def compiled() -> bool:
    """Whether the compiled core can take part: it must under CI (.ci/run builds it)."""
    if native.compiled():
        return True
    if os.environ.get("CI"):
        pytest.fail(f"the engine's compiled core is not in use under CI: {native.status()}")
    pytest.skip(f"the engine's compiled core is not in use here ({native.status()})")


def child(argv: list[str]) -> None:
    """In the child process: the day as ``run_day`` runs it, its frames to a file."""
    recording, name, upto, recover, out = argv
    reader = JournalReader(Path(recording))
    ticks = [(f.seq, decode_tick(f.payload)) for f in iter(reader.read, None)]
    reader.close()
    before = msgspec.msgpack.decode(Path(recover).read_bytes()) if recover else None
    frames, errors = run_day(ticks, name, upto=int(upto) or None, recover=before)
    assert errors == [], errors
    Path(out).write_bytes(msgspec.msgpack.encode(frames))
    print(native.status())


def run(recording: Path, out: Path, name: str, *, pure: bool, upto: int = 0,
        recover: Path | None = None) -> list[bytes]:  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != native.ENV}
    if pure:
        env[native.ENV] = "1"
    code = "import sys; from tests.services.engine.test_native import child; child(sys.argv[1:])"
    done = subprocess.run(
        [sys.executable, "-c", code, str(recording), name, str(upto), str(recover or ""),
         str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    status = done.stdout.strip().splitlines()[-1]
    assert status.startswith("pure Python" if pure else "compiled"), status
    frames: list[bytes] = msgspec.msgpack.decode(out.read_bytes())
    return frames


@pytest.mark.parametrize("name", list(GOLDEN))
def test_compiled_and_pure_journal_the_same_day(
    recording: Path, tmp_path: Path, compiled: bool, name: str
) -> None:
    pure = run(recording, tmp_path / "pure", name, pure=True)
    fast = run(recording, tmp_path / "compiled", name, pure=False)
    assert digest_of(pure) == GOLDEN[name][1:]
    assert fast == pure


def test_each_recovers_mid_day_from_the_others_journal(
    recording: Path, tmp_path: Path, compiled: bool
) -> None:
    whole = GOLDEN["default"][1:]
    for crashed_pure in (True, False):
        half = tmp_path / f"half-{crashed_pure}"
        run(recording, half, "default", pure=crashed_pure, upto=HALF)
        assert 0 < len(msgspec.msgpack.decode(half.read_bytes())) < whole[0]
        again = run(recording, tmp_path / f"again-{crashed_pure}", "default",
                    pure=not crashed_pure, recover=half)  # fmt: skip
        assert digest_of(again) == whole


def test_the_compiled_core_loads_from_any_directory(tmp_path: Path, compiled: bool) -> None:
    """Its shared library is a module of the package (not one at the checkout's root, which
    only a process started there would find)."""
    code = "from services.engine import native, core; print(native.status(), core.__file__)"
    env = {k: v for k, v in os.environ.items() if k not in (native.ENV, "PYTHONPATH")}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("compiled (mypyc)") and ".so" in done.stdout, done.stdout
