from __future__ import annotations

import json
from pathlib import Path

import pytest

from contracts.credentials import load_credentials
from contracts.errors import UserError
from tests.helpers import CONFIGS, run_hft

SECRET = "pa55-Very-Secret-0xC0FFEE"


def _creds_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "credentials.toml"
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = _creds_file(tmp_path, 'ctp_password = "from-file"\nctp_auth_code = "code-file"\n')
    creds = load_credentials(path, {"HFT_CTP_PASSWORD": "from-env"})
    assert creds.require("ctp_password") == "from-env"
    assert creds.require("ctp_auth_code") == "code-file"


def test_missing_secret_says_where_to_put_it() -> None:
    creds = load_credentials(None, {})
    with pytest.raises(UserError, match="export HFT_MONITOR_TOKEN="):
        creds.require("monitor_token")


def test_world_readable_file_is_refused(tmp_path: Path) -> None:
    path = _creds_file(tmp_path, f'ctp_password = "{SECRET}"\n', mode=0o644)
    with pytest.raises(UserError, match="chmod 600"):
        load_credentials(path, {})


def test_unknown_key_in_file(tmp_path: Path) -> None:
    path = _creds_file(tmp_path, f'ctp_pasword = "{SECRET}"\n')
    with pytest.raises(UserError) as info:
        load_credentials(path, {})
    assert "ctp_pasword" in str(info.value)
    assert SECRET not in str(info.value)


def test_bad_toml_does_not_quote_the_secret(tmp_path: Path) -> None:
    path = _creds_file(tmp_path, f'ctp_password = "{SECRET}\n')
    with pytest.raises(UserError) as info:
        load_credentials(path, {})
    assert SECRET not in str(info.value)


def test_repr_hides_secret() -> None:
    creds = load_credentials(None, {"HFT_CTP_PASSWORD": SECRET})
    assert SECRET not in repr(creds)
    assert SECRET not in json.dumps(creds.model_dump(mode="json"))


def test_secret_from_environment_never_reaches_output(tmp_path: Path) -> None:
    """Every command run with debug logging, with secrets in the environment, prints none."""
    env = {
        "HFT_CTP_PASSWORD": SECRET,
        "HFT_CTP_AUTH_CODE": SECRET + "-auth",
        "HFT_MONITOR_TOKEN": SECRET + "-tok",
        "HFT_MONITOR_ADMIN_TOKEN": SECRET + "-adm",
    }
    text = (CONFIGS / "live-ctp.example.toml").read_text("utf-8")
    text = text.replace('credentials_file = "/etc/hft/credentials.toml"\n', "")
    config = tmp_path / "live.toml"
    config.write_text(text, encoding="utf-8")
    outputs = []
    for args in (
        ("doctor", "--config", str(config), "--log-level", "debug"),
        ("engine", "--config", str(config), "--log-level", "debug"),
        ("md-recorder", "--config", str(config), "--log-level", "debug"),
    ):
        done = run_hft(*args, env=env)
        outputs.append(done.stdout + done.stderr)
    everything = "\n".join(outputs)
    assert "config_loaded" in everything  # the debug log of the whole config was written
    assert "secret ctp_password: set" in everything
    assert SECRET not in everything
