"""Secrets: CTP password and auth code, monitor tokens.

They come from environment variables or from the credentials file that the config names, never from
the config itself or the repository; the environment wins over the file. Every loaded secret is
registered with the log redactor, so it cannot reach a log line even by accident.
"""

from __future__ import annotations

import os
import stat
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from contracts.errors import UserError
from contracts.logs import register_secret

__all__ = ["ENV_VARS", "MIN_TOKEN_LENGTH", "Credentials", "MonitorToken", "load_credentials"]

MIN_TOKEN_LENGTH = 32
Z85_KEY = r"^[0-9a-zA-Z.:+=^!/*?&<>()\[\]{}@%$#-]{40}$"
"""A CURVE key in Z85: 40 characters."""

# field -> environment variable
ENV_VARS: dict[str, str] = {
    "ctp_password": "HFT_CTP_PASSWORD",
    "ctp_auth_code": "HFT_CTP_AUTH_CODE",
    "monitor_token": "HFT_MONITOR_TOKEN",
    "monitor_admin_token": "HFT_MONITOR_ADMIN_TOKEN",
    "engine_token": "HFT_ENGINE_TOKEN",
    "monitor_curve_secret_key": "HFT_MONITOR_CURVE_SECRET_KEY",
    "relay_secret_key": "HFT_RELAY_SECRET_KEY",
    "alert_webhook_url": "HFT_ALERT_WEBHOOK_URL",
}


class MonitorToken(BaseModel):
    """One monitor client's token (``[[monitor_tokens]]`` in the credentials file): who it is,
    what it may do, and which accounts it may see (``"*"``: all)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(pattern=r"^[A-Za-z0-9_.@-]{1,56}$")  # "monitor.NAME" fits a requester
    token: SecretStr = Field(min_length=MIN_TOKEN_LENGTH)
    role: Literal["viewer", "admin"]
    accounts: list[str] = Field(default_factory=lambda: ["*"], min_length=1)
    curve_public_key: str | None = Field(None, pattern=Z85_KEY)
    """The client's CURVE public key (Z85), for ZMQ subscribers on another host."""


class Credentials(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ctp_password: SecretStr | None = None
    ctp_auth_code: SecretStr | None = None
    monitor_token: SecretStr | None = None
    monitor_admin_token: SecretStr | None = None
    engine_token: SecretStr | None = None
    """Authenticates commands to the engine's command socket."""
    monitor_curve_secret_key: SecretStr | None = None
    """The monitor's CURVE secret key (Z85), for ZMQ sockets reachable from other hosts."""
    relay_secret_key: SecretStr | None = None
    """This host's CURVE secret key (Z85) for the relay: the server's on the md_recorder's host,
    the mirror's on the other (docs/relay.md)."""
    monitor_tokens: list[MonitorToken] = Field(default_factory=list)
    alert_webhook_url: SecretStr | None = None
    """Where the monitor posts its alerts (a chat or paging service's URL, often a secret)."""

    @model_validator(mode="after")
    def _names_differ(self) -> Credentials:
        names = [t.name for t in self.monitor_tokens]
        names += [n for n, s in (("viewer", self.monitor_token),
                                 ("admin", self.monitor_admin_token)) if s]  # fmt: skip
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(
                f"two monitor tokens are named {twice[0]!r} (the environment's are 'viewer' "
                "and 'admin'); names must differ, since logs and the engine tell them by name"
            )
        keys = [t.curve_public_key for t in self.monitor_tokens if t.curve_public_key]
        if len(set(keys)) != len(keys):
            raise ValueError("two monitor tokens have the same curve_public_key")
        return self

    def require(self, field: str) -> str:
        """The secret's value, or a :class:`UserError` that says where to put it."""
        value: SecretStr | None = getattr(self, field)
        if value is None or not value.get_secret_value():
            raise UserError(
                f"secret {field!r} is not set; export {ENV_VARS[field]}=... or put "
                f'{field} = "..." in the credentials file named by suite.credentials_file'
            )
        return value.get_secret_value()


def _read_file(path: Path) -> dict[str, Any]:
    try:
        mode = path.stat().st_mode
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"{path}: credentials file not found; create it or unset suite.credentials_file"
        ) from None
    except PermissionError:
        raise UserError(
            f"{path}: permission denied reading the credentials file; "
            "it should be readable by the service user only (chmod 600)"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        # The parser's message may quote the offending line, which may hold a secret.
        raise UserError(
            f"{path}: the credentials file is not valid TOML; expected lines of "
            'the form key = "value"'
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise UserError(
            f"{path}: the credentials file is readable by other users; run chmod 600 {path}"
        )
    known = [*ENV_VARS, "monitor_tokens"]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise UserError(
            f"{path}: unknown key {unknown[0]!r} in the credentials file; "
            f"expected some of: {', '.join(known)}"
        )
    wrong = sorted(k for k, v in data.items() if k != "monitor_tokens" and not isinstance(v, str))
    if wrong:
        raise UserError(f"{path}: {wrong[0]}: expected a string in the credentials file")
    tokens = data.get("monitor_tokens", [])
    if not isinstance(tokens, list) or not all(isinstance(t, dict) for t in tokens):
        raise UserError(
            f"{path}: monitor_tokens: expected [[monitor_tokens]] tables (name, token, role, "
            "accounts)"
        )
    for i, table in enumerate(tokens):
        if isinstance(table.get("token"), str):
            register_secret(table["token"])
        try:
            MonitorToken.model_validate(table)
        except ValidationError as exc:  # its message never quotes the value: it may be a token
            error = exc.errors()[0]
            where = ".".join(str(x) for x in error["loc"])
            if error["loc"][:1] == ("token",):  # nothing of it, not even its length
                error["msg"] = f"must be a string of at least {MIN_TOKEN_LENGTH} characters"
            raise UserError(
                f"{path}: monitor_tokens[{i}].{where}: {error['msg']} (each table: name, token, "
                "role viewer or admin, accounts, and curve_public_key for a remote ZMQ "
                "subscriber)"
            ) from None
    return data


def load_credentials(
    credentials_file: Path | None, environ: Mapping[str, str] | None = None
) -> Credentials:
    """Merge the credentials file (if any) with the environment, which takes precedence."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = dict(_read_file(credentials_file)) if credentials_file else {}
    for field, var in ENV_VARS.items():
        if env.get(var):
            values[field] = env[var]
    for field in ENV_VARS:
        if isinstance(values.get(field), str):
            register_secret(values[field])
    try:
        return Credentials.model_validate(values)
    except ValidationError as exc:  # the checks across tokens, whose messages hold no secret
        where = credentials_file or "the environment"
        raise UserError(
            f"{where}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}"
        ) from None
