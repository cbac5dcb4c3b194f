"""``hft doctor --ctp``: each step of checking a CTP account with CTP's answer, and never the
password or the AuthCode. A front that answers is played with openctp-ctp's own structs (none can
run here); the real ``TraderApi`` meets a closed port through the real command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from contracts.ctp_locale import has_locale
from tests.helpers import CONFIGS, closed_port, require_ctp_locale, run_hft, write_config

if not has_locale():  # importing openctp-ctp without it aborts the process
    require_ctp_locale()  # skips the module, or fails it under CI

from services.engine.adapters.ctp.session import SessionConfig
from services.tools.ctp_check import probe_front
from tests.services.engine.adapters.ctp.front import AUTH_CODE, PASSWORD, Front, rsp_info, struct

FRONT = "tcp://127.0.0.1:1"


class Answering(Front):
    """A front that answers every request at once (the SPI only queues what it is given)."""

    def __init__(self, login_error: tuple[int, str] | None = None) -> None:
        super().__init__()
        self.login_error = login_error

    def Init(self) -> None:
        self.spi.OnFrontConnected()

    def __getattr__(self, method: str) -> Any:
        record = super().__getattr__(method)

        def answer(fields: Any, request_id: int) -> int:
            record(fields, request_id)
            spi = self.spi
            if method == "ReqAuthenticate":
                spi.OnRspAuthenticate(None, rsp_info(), request_id, True)
            elif method == "ReqUserLogin":
                error = self.login_error or (0, "")
                login = struct("CThostFtdcRspUserLoginField", FrontID=3, SessionID=4242,
                               MaxOrderRef="1", TradingDay="20210105")  # fmt: skip
                spi.OnRspUserLogin(login, rsp_info(*error), request_id, True)
            elif method == "ReqSettlementInfoConfirm":
                spi.OnRspSettlementInfoConfirm(None, rsp_info(), request_id, True)
            elif method == "ReqQryTradingAccount":
                account = struct("CThostFtdcTradingAccountField", Balance=1_234_567.5,
                                 Available=1_000_000.0, CurrMargin=234_567.5)  # fmt: skip
                spi.OnRspQryTradingAccount(account, None, request_id, True)
            return 0

        return answer


def config(tmp_path: Path, auth_code: str = AUTH_CODE) -> SessionConfig:
    return SessionConfig([FRONT], "9999", "000123", PASSWORD, "client_hft_1.0", auth_code,
                         tmp_path / "flow", [], 1.0, 0.0, account_only=True)  # fmt: skip


@pytest.mark.parametrize("auth_code", [AUTH_CODE, ""])
def test_each_step_with_ctp_s_answer(tmp_path: Path, auth_code: str) -> None:
    fronts: list[Answering] = []

    def factory(_path: str) -> Answering:
        fronts.append(Answering())
        return fronts[-1]

    steps = probe_front(config(tmp_path, auth_code), FRONT, api_factory=factory)
    assert steps == [
        ("connect", True, f"connected to {FRONT}"),
        ("authenticate", True, "AppID client_hft_1.0 accepted" if auth_code
         else "no AuthCode set: logged in without"),
        ("login", True, "front 3, session 4242, trading day 20210105"),
        ("settlement", True, "confirmed"),
        ("account", True, "balance 1,234,567.50, available 1,000,000.00, margin 234,567.50"),
    ]  # fmt: skip
    methods = [name for name, _ in fronts[0].requests]
    assert methods == [*(["ReqAuthenticate"] if auth_code else []), "ReqUserLogin",
                       "ReqSettlementInfoConfirm", "ReqQryTradingAccount"]  # fmt: skip
    assert PASSWORD not in repr(steps) and AUTH_CODE not in repr(steps)


def test_a_wrong_password_is_the_login_step_with_ctp_s_reason(tmp_path: Path) -> None:
    steps = probe_front(config(tmp_path), FRONT,
                        api_factory=lambda _p: Answering((3, "CTP:不合法的登录")))  # fmt: skip
    assert steps[:2] == [("connect", True, f"connected to {FRONT}"),
                         ("authenticate", True, "AppID client_hft_1.0 accepted")]  # fmt: skip
    step, ok, text = steps[2]
    assert (step, ok) == ("login", False) and len(steps) == 3
    assert "CTP error 3: CTP:不合法的登录" in text and "not retried" in text


def test_the_real_api_at_a_closed_port_fails_the_connect_step(tmp_path: Path) -> None:
    port = closed_port()
    text = (CONFIGS / "live-ctp.example.toml").read_text("utf-8")
    text = text.replace('credentials_file = "/etc/hft/credentials.toml"\n', "")
    text = text.replace("/var/lib/hft/journal", str(tmp_path / "journal"))
    text = text.replace("/dev/shm/hft-live", str(tmp_path / "shm"))
    text = text.replace("/var/lib/hft/ctp-td-flow", str(tmp_path / "td-flow"))
    text = text.replace(
        'fronts = ["tcp://180.168.146.187:10201", "tcp://180.168.146.187:10202"]',
        f'fronts = ["tcp://127.0.0.1:{port}"]',
    )
    text = text.replace("connect_timeout_s = 10.0\nquery_gap_s", "connect_timeout_s = 0.5\n"
                        "query_gap_s")  # fmt: skip
    path = write_config(tmp_path, text)
    secret = "pw-that-must-not-show"
    env = {"HFT_CTP_PASSWORD": secret, "HFT_CTP_AUTH_CODE": "auth-never-shown"}
    done = run_hft("doctor", "--config", str(path), "--ctp", env=env)
    assert done.returncode == 1
    (line,) = [x for x in done.stdout.splitlines() if x.startswith("FAIL  ctp ")]
    assert line.startswith(
        f"FAIL  ctp tcp://127.0.0.1:{port} connect: no login at tcp://127.0.0.1:{port} within 0.5 s"
    )
    assert "fix: check the front address and port" in line
    everything = done.stdout + done.stderr
    assert secret not in everything and "auth-never-shown" not in everything
