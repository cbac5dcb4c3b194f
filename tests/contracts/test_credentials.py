from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from contracts.credentials import load_credentials
from contracts.ctp_locale import has_locale
from contracts.errors import UserError
from tests.helpers import CONFIGS, logged, run_hft, run_hft_until

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
    """Every command run with debug logging and secrets in the environment prints none of them,
    each run until it has loaded and used them: doctor checks them, md-recorder connects to a
    CTP front with the password in hand (a real MdApi on a closed 127.0.0.1 port), the engine
    binds its command socket with its token."""
    env = {
        "HFT_CTP_PASSWORD": SECRET,
        "HFT_CTP_AUTH_CODE": SECRET + "-auth",
        "HFT_MONITOR_TOKEN": SECRET + "-tok",
        "HFT_MONITOR_ADMIN_TOKEN": SECRET + "-adm",
        "HFT_ENGINE_TOKEN": SECRET + "-eng",
    }
    text = (CONFIGS / "live-ctp.example.toml").read_text("utf-8")
    text = text.replace('credentials_file = "/etc/hft/credentials.toml"\n', "")
    text = text.replace('"/var/lib/hft/', f'"{tmp_path}/').replace(
        '"/dev/shm/hft-live"', f'"{tmp_path}/shm"'
    )
    text = text.replace('instruments_file = "/etc/hft/instruments.txt"', 'instruments = ["IF2101"]')
    text = re.sub(r'fronts = \["tcp://180[^]]*\]', 'fronts = ["tcp://127.0.0.1:1"]', text)
    live = tmp_path / "live.toml"
    live.write_text(text, encoding="utf-8")
    paper = tmp_path / "paper.toml"
    paper.write_text(
        (CONFIGS / "paper.toml").read_text("utf-8")
        .replace('"../var/paper/journal"', f'"{tmp_path}/paper"')
        .replace('"/dev/shm/hft-paper"', f'"{tmp_path}/paper-shm"')
        .replace('"tcp://127.0.0.1:5560"', '"tcp://127.0.0.1:0"'),
        encoding="utf-8",
    )  # fmt: skip
    outputs = [run_hft("doctor", "--config", str(live), "--log-level", "debug", env=env)]
    doctor = outputs[0].stdout + outputs[0].stderr
    assert "secret ctp_password: set" in doctor
    assert "config_loaded" in doctor  # the debug log of the whole config was written
    printed = [doctor]
    if has_locale() or os.environ.get("CI"):  # without it the recorder stops before CTP
        _, out = run_hft_until("md-recorder", "--config", str(live), "--log-level", "debug",
                               until=logged("ctp_md_connecting"), env=env)  # fmt: skip
        printed.append(out)
    _, out = run_hft_until("engine", "--config", str(paper), "--log-level", "debug",
                           until=logged("waiting_for_recording"), env=env)  # fmt: skip
    printed.append(out)
    everything = "\n".join(printed)
    assert SECRET not in everything


def test_two_monitor_tokens_with_one_name_or_one_curve_key_are_refused(tmp_path: Path) -> None:
    key = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7"
    table = '[[monitor_tokens]]\nname = "{}"\ntoken = "{}"\nrole = "viewer"\n{}'
    same_name = _creds_file(tmp_path, table.format("desk", SECRET * 2, "")
                            + table.format("desk", SECRET * 3, ""))  # fmt: skip
    with pytest.raises(UserError) as info:
        load_credentials(same_name, {})
    assert str(info.value) == (
        f"{same_name}: two monitor tokens are named 'desk' (the environment's are 'viewer' and "
        "'admin'); names must differ, since logs and the engine tell them by name"
    )
    clash = _creds_file(tmp_path, table.format("viewer", SECRET * 2, ""))
    with pytest.raises(UserError, match="named 'viewer'"):  # the environment's viewer token
        load_credentials(clash, {"HFT_MONITOR_TOKEN": SECRET * 3})
    with_key = f'curve_public_key = "{key}"\n'
    same_key = _creds_file(tmp_path, table.format("a", SECRET * 2, with_key)
                           + table.format("b", SECRET * 3, with_key))  # fmt: skip
    with pytest.raises(UserError, match="the same curve_public_key"):
        load_credentials(same_key, {})
    not_a_key = _creds_file(tmp_path, table.format("a", SECRET * 2, 'curve_public_key = "x"\n'))
    with pytest.raises(UserError, match=r"monitor_tokens\[0\].curve_public_key"):
        load_credentials(not_a_key, {})
    assert load_credentials(_creds_file(tmp_path, table.format("a", SECRET * 2, with_key)), {})
