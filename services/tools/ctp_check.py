"""``hft doctor --ctp``: check a CTP trading account before going live (docs/ctp-trading.md). For
each front of ``[engine.ctp]``: connect, authenticate (when an AuthCode is set), log in, confirm
the settlement statement and query the trading account, with the engine's own session
(``adapters/ctp/session.py``), each step one line with CTP's answer. The password and the
AuthCode are never printed (the log redactor holds them too).

Import only after the locale check: openctp-ctp aborts the process without it.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from contracts.config import DeploymentConfig
from contracts.credentials import Credentials
from contracts.logs import get_logger
from services.engine.adapters.ctp.items import BrokerState, Kind
from services.engine.adapters.ctp.session import CtpSession, SessionConfig

__all__ = ["probe_front", "session_config"]

STEPS: Final = ("connected", "authenticated", "logged_in", "confirmed")
LABELS: Final = {"connected": "connect", "authenticated": "authenticate", "logged_in": "login",
                 "confirmed": "settlement"}  # fmt: skip


def session_config(config: DeploymentConfig, credentials: Credentials) -> SessionConfig:
    """The engine's session for ``[engine.ctp]``, with the account query alone, in a flow
    directory of its own."""
    c = config.engine.ctp
    assert c is not None
    return replace(SessionConfig.of(c, credentials), flow_dir=c.flow_dir / "doctor",
                   query_gap_s=0.0, account_only=True)  # fmt: skip


def probe_front(
    base: SessionConfig, front: str, *, api_factory: Callable[[str], Any] | None = None,
    wait_s: float = 30.0, step: Callable[[], object] | None = None,
) -> list[tuple[str, bool, str]]:  # fmt: skip
    """The steps at ``front`` as (step, ok, CTP's answer), up to the first that fails.
    ``step``: called between turns of the session (a test plays the front there)."""
    config = replace(base, fronts=[front])
    session = CtpSession(config, log=get_logger(), api_factory=api_factory)
    out: list[tuple[str, bool, str]] = []
    deadline = time.monotonic() + config.connect_timeout_s + wait_s
    session.start(threaded=False)
    try:
        while time.monotonic() < deadline:
            session.poll(0.05)
            if step is not None:
                step()
            done = _take(session, out, config.auth_code != "")
            if done:
                return out
        out.append(("answer", False, f"no answer within {wait_s:g} s of the login"))
        return out
    finally:
        session.stop()


def _take(session: CtpSession, out: list[tuple[str, bool, str]], authenticating: bool) -> bool:
    """Read the session's outbox into ``out``; True once the probe is over."""
    while True:
        try:
            item = session.outbox.get_nowait()
        except queue.Empty:
            return False
        kind = item[0]
        if kind is Kind.STATE:
            state, text = item[1], item[2]
            if state in STEPS:
                if state == "logged_in" and not authenticating:
                    out.append(("authenticate", True, "no AuthCode set: logged in without"))
                out.append((LABELS[state], True, text))
            elif state in ("disconnected", "failed"):
                step = _failed_step(out)
                out.append((step, False, text.split("; trying ", 1)[0]))  # the probe is over
                return True
        elif kind is Kind.BROKER:
            state_: BrokerState = item[1]
            rows = state_.rows.get("account", [])
            if not rows:
                out.append(("account", False, "the broker returned no trading account"))
            else:
                row = rows[0]
                text = (f"balance {row['Balance']:,.2f}, available {row['Available']:,.2f}, "
                        f"margin {row['CurrMargin']:,.2f}")  # fmt: skip
                out.append(("account", True, text))
            return True


def _failed_step(out: list[tuple[str, bool, str]]) -> str:
    """The step that was under way when the session failed."""
    done = [name for name, ok, _ in out if ok]
    for name in ("connect", "authenticate", "login", "settlement"):
        if name not in done:
            return name
    return "account"
