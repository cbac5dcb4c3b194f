from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from contracts.config import load_config
from services.cli import COMMANDS
from tests.helpers import CONFIGS, ROOT, run_hft

NAMES = [c.name for c in COMMANDS]


REQUIRED = ("md-recorder", "engine", "command", "monitor", "up", "import", "journal", "backtest",
            "doctor", "bench", "systemd", "relay")  # fmt: skip


def test_required_subcommands_exist() -> None:
    assert sorted(NAMES) == sorted(REQUIRED)


def test_console_script_lists_subcommands() -> None:
    script = Path(sys.executable).parent / "hft"
    exe = str(script) if script.exists() else shutil.which("hft")
    assert exe, "the hft console script is not installed"
    done = subprocess.run(
        [exe, "--help"], capture_output=True, text=True, timeout=60, check=False, cwd=ROOT
    )
    assert done.returncode == 0
    listed = re.findall(r"^    ([a-z-]+)\s", done.stdout, re.MULTILINE)  # argparse's choices
    assert sorted(set(listed) & set(REQUIRED)) == sorted(REQUIRED), done.stdout
    assert "examples:" in done.stdout


@pytest.mark.parametrize("name", NAMES)
def test_every_subcommand_explains_itself_with_an_example(name: str) -> None:
    done = run_hft(name, "--help")
    assert done.returncode == 0
    assert re.search(rf"examples?:\n  hft {name}", done.stdout), done.stdout
    assert "--log-level" in done.stdout


def test_no_subcommand_prints_help_and_exits_2() -> None:
    done = run_hft()
    assert done.returncode == 2
    assert "commands:" in done.stdout


def test_help_never_shows_secrets() -> None:
    secret = "zz-help-secret-value-42"
    env = {"HFT_CTP_PASSWORD": secret, "HFT_MONITOR_TOKEN": secret}
    for name in ["", *NAMES]:
        done = run_hft(*([name] if name else []), "--help", env=env)
        assert secret not in done.stdout + done.stderr


def test_unknown_option_is_one_usage_error() -> None:
    done = run_hft("doctor", "--bogus")
    assert done.returncode == 2
    assert "unrecognized arguments: --bogus" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_config_file_is_one_line() -> None:
    done = run_hft("engine", "--config", "/nonexistent/deploy.toml")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "hft engine: error: /nonexistent/deploy.toml: no such config file; pass --config "
        "with a deployment file such as configs/paper.toml"
    )
    # the file the hint names is a deployment that loads
    assert load_config(CONFIGS / "paper.toml").suite.mode == "paper"
