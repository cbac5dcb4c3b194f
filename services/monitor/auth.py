"""Who a monitor client is: tokens to grants, compared in constant time, and a limit on failed
attempts per address (docs/monitor.md, "Authentication"). A core with no I/O: the clock is given.
"""

from __future__ import annotations

import hmac
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from contracts.credentials import Credentials

__all__ = ["FAILURES_ALLOWED", "Grant", "Tokens", "TooManyFailures"]

FAILURES_ALLOWED: Final = 10
"""Failed attempts an address may make within ``WINDOW_NS`` before it is refused."""
WINDOW_NS: Final = 60 * 1_000_000_000
REFUSED_NS: Final = 60 * 1_000_000_000


@dataclass(frozen=True)
class Grant:
    """What a token allows: its name (for logs and as a command's requester), its role, and the
    accounts it may see (``"*"``: every one)."""

    name: str
    role: Literal["viewer", "admin"]
    accounts: tuple[str, ...]

    def sees(self, account: str) -> bool:
        return "*" in self.accounts or account in self.accounts

    def visible(self, accounts: Iterable[str]) -> list[str]:
        return [a for a in accounts if self.sees(a)]


class Tokens:
    """The configured tokens: ``[[monitor_tokens]]`` of the credentials file, and the viewer
    and admin tokens of ``HFT_MONITOR_TOKEN`` and ``HFT_MONITOR_ADMIN_TOKEN`` (all accounts)."""

    def __init__(self, credentials: Credentials) -> None:
        self._table: list[tuple[bytes, Grant]] = []
        self._curve: dict[str, Grant] = {}
        for entry in credentials.monitor_tokens:
            grant = Grant(entry.name, entry.role, tuple(entry.accounts))
            self._table.append((entry.token.get_secret_value().encode(), grant))
            if entry.curve_public_key:
                self._curve[entry.curve_public_key] = grant
        for secret, grant in (
            (credentials.monitor_token, Grant("viewer", "viewer", ("*",))),
            (credentials.monitor_admin_token, Grant("admin", "admin", ("*",))),
        ):
            if secret is not None and secret.get_secret_value():
                self._table.append((secret.get_secret_value().encode(), grant))

    def __len__(self) -> int:
        return len(self._table)

    def grant(self, token: str) -> Grant | None:
        """The grant of ``token``, or None. Every configured token is compared, each in
        constant time, so the time taken does not tell which one came closest."""
        given = token.encode()
        found = None
        for secret, grant in self._table:
            if hmac.compare_digest(given, secret) and found is None:
                found = grant
        return found

    def curve_grant(self, public_key: str) -> Grant | None:
        """The grant of a ZMQ client's CURVE public key (Z85; public, so a plain lookup)."""
        return self._curve.get(public_key)

    def named(self, name: str) -> Grant | None:
        """The grant named ``name`` (names differ: the credentials check it)."""
        return next((g for _, g in self._table if g.name == name), None)


class TooManyFailures:
    """Failed attempts per address: past ``FAILURES_ALLOWED`` within a minute, the address is
    refused for a minute, whatever it sends."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[int]] = {}
        self._refused_until: dict[str, int] = {}

    def refused(self, address: str, now_ns: int) -> bool:
        until = self._refused_until.get(address)
        if until is None:
            return False
        if now_ns >= until:
            del self._refused_until[address]
            return False
        return True

    def failed(self, address: str, now_ns: int) -> bool:
        """Count a failure; True if the address is refused from now on."""
        times = self._failures.setdefault(address, deque())
        times.append(now_ns)
        while times and times[0] <= now_ns - WINDOW_NS:
            times.popleft()
        if len(times) >= FAILURES_ALLOWED:
            self._refused_until[address] = now_ns + REFUSED_NS
            times.clear()
            return True
        return False

    def forget_old(self, now_ns: int) -> None:
        """Drop addresses with no recent failure, so the table stays small."""
        for address in [
            a for a, t in self._failures.items() if not t or t[-1] <= now_ns - WINDOW_NS
        ]:
            del self._failures[address]
