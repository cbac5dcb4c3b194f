"""Helpers shared by the tests: running ``hft`` as a real process, writing configs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = ROOT / "configs"
MARKET = ROOT / "data" / "market"


def run_hft(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the ``hft`` command in a child process, the way a user does."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=ROOT,
        check=False,
    )


def import_market(out: Path, *names: str) -> Path:
    """``hft import`` of bundled CTP CSV files (``data/market``) into ``out``, one journal per
    trading day, as a user runs it."""
    files = [str(MARKET / name) for name in names]
    done = run_hft("import", "-f", "ctp-csv", *files, "-o", str(out))
    assert done.returncode == 0, done.stderr
    return out


PAPER_CONFIG = """\
[suite]
name = "t"
mode = "paper"
journal_dir = "journal"
shm_dir = "shm"

[md_recorder]
source = "sim"
instruments = ["IF2101"]

[md_recorder.sim]
seed = 1

[engine]
adapter = "paper"
command_endpoint = "tcp://127.0.0.1:0"

[monitor]
port = 0
zmq_pub = "tcp://127.0.0.1:0"
"""


def write_config(directory: Path, text: str = PAPER_CONFIG, name: str = "deploy.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path
