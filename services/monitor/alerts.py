"""Alerts: conditions an operator should look at, raised and cleared from the services' health
and the accounts' deltas (a core with no I/O: times are given), and the notifier that runs the
operator's command or posts to a webhook for each (docs/monitor.md, "Alerts").

Each condition has an id that stays the same while it lasts; an alert is sent when it starts
and again, with ``cleared_ns``, when it ends, never once a second while it holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Mapping
from typing import Any, Final, Literal
from urllib.parse import urlsplit

import msgspec

from contracts.config import AlertsConfig
from contracts.monitor import Alert, Delta, Refusal, RiskView, ServiceHealth
from contracts.status import EngineStatus, RecorderStatus

__all__ = ["Alerts", "Notifier", "check_webhook"]

Kind = Literal["silent", "halt", "refusals", "behind", "overrun", "reconciliation"]
WAITING: Final = 100
"""Notifications that may wait for the command or the webhook; older ones are dropped."""
CLOSE_WAIT_S: Final = 30.0
STDERR_KEPT: Final = 2000


class Alerts:
    def __init__(self, config: AlertsConfig) -> None:
        self.config = config
        self.active: dict[str, Alert] = {}
        self._refusals: dict[str, deque[int]] = {}
        self._out: list[Alert] = []
        self._now = 0

    def visible(self, accounts: list[str]) -> list[Alert]:
        """The active alerts a client seeing ``accounts`` may see, oldest first."""
        return [a for a in self.active.values() if not a.account or a.account in accounts]

    # -- conditions ----------------------------------------------------------------------------

    def health(self, engines: Mapping[str, ServiceHealth], market: ServiceHealth, now_ns: int
               ) -> list[Alert]:  # fmt: skip
        """The alerts raised or cleared by this second's health (and the refusal windows)."""
        self._out, self._now = [], now_ns
        for account, h in engines.items():
            silent = f"The engine of {account} is silent or gone: no heartbeat for 5 s."
            self._hold(f"silent/{account}", h.state == "gone", account, "silent", "critical",
                       silent)  # fmt: skip
            s = h.status
            behind = isinstance(s, EngineStatus) and h.state == "open"
            behind = behind and s.behind_s >= self.config.behind_s  # type: ignore[union-attr]
            self._hold(f"behind/{account}", behind, account, "behind", "warning",
                       f"The engine of {account} is behind its feed by "
                       f"{getattr(s, 'behind_s', 0):g} s ({getattr(s, 'behind_ticks', 0)} "
                       "ticks): it handles ticks slower than they come.")  # fmt: skip
        self._hold("silent/md_recorder", market.state == "gone", "", "silent", "critical",
                   "md_recorder is silent or gone: no market data is being recorded.")  # fmt: skip
        md = market.status
        archive = md.archive_error if isinstance(md, RecorderStatus) else ""
        self._hold("overrun/md_recorder", bool(archive), "", "overrun", "critical",
                   f"md_recorder cannot archive its ring ({archive}); ticks stop when the ring "
                   "is full. Free space where suite.journal_dir is.")  # fmt: skip
        for account in sorted(self._refusals):
            self._burst(account)
        return self._out

    def deltas(self, account: str, deltas: list[Delta], now_ns: int, *, live: bool
               ) -> list[Alert]:  # fmt: skip
        """The alerts raised or cleared by an account's deltas. ``live``: they are new (not a
        catch-up on the day's journal at start), so their refusals count towards a burst."""
        self._out, self._now = [], now_ns
        for d in deltas:
            if d.topic == "risk" and isinstance(d.value, RiskView):
                r = d.value
                what = f"{r.scope} {r.target}".strip() if r.scope != "account" else "the account"
                text = f"{account}: {what} is halted: {r.reason or 'no reason given'}."
                self._hold(f"halt/{account}/{d.key}", r.state == "halted", account, "halt",
                           "critical", text)  # fmt: skip
            elif d.topic == "refusals" and isinstance(d.value, Refusal) and live:
                self._refusals.setdefault(account, deque()).append(now_ns)
                self._burst(account)
            elif d.topic == "day" and d.seq == 1:  # a new day: its journal restates its halts
                for key in [k for k in self.active if k.startswith(f"halt/{account}/")]:
                    self._hold(key, False, account, "halt", "critical", "")
        return self._out

    def _burst(self, account: str) -> None:
        times = self._refusals[account]
        window = int(self.config.refusal_window_s * 1e9)
        while times and times[0] <= self._now - window:
            times.popleft()
        burst = self.config.refusal_burst
        self._hold(f"refusals/{account}", len(times) >= burst, account, "refusals", "warning",
                   f"{account}: {len(times)} orders or cancels refused within "
                   f"{self.config.refusal_window_s:g} s; see the refusals.")  # fmt: skip
        if not times:
            del self._refusals[account]

    def _hold(self, key: str, holds: bool, account: str, kind: Kind,  # noqa: PLR0917
              severity: Literal["critical", "warning"], text: str) -> None:  # fmt: skip
        was = self.active.get(key)
        if holds and was is None:
            alert = Alert(key, account, kind, severity, text, self._now)
            self.active[key] = alert
            self._out.append(alert)
        elif not holds and was is not None:
            del self.active[key]
            self._out.append(msgspec.structs.replace(was, cleared_ns=self._now))


class Notifier:
    """Runs ``alerts.command`` and posts to the webhook for each alert, one at a time in the
    order raised, each within ``alerts.timeout_s``; at most ``WAITING`` wait (older ones are
    dropped and counted in the log). A failure is logged, never raised."""

    def __init__(self, config: AlertsConfig, webhook_url: str | None, log: Any) -> None:
        self.config = config
        self.url = webhook_url if config.webhook else None
        self.log = log
        self.queue: deque[Alert] = deque()
        self.dropped = 0
        self.sent = 0
        self._busy = False
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.config.command) or self.url is not None

    def start(self) -> None:
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Give what is queued ``timeout_s`` each (at most ``CLOSE_WAIT_S`` in all) to go out,
        then stop."""
        if self._task is None:
            return
        wait = min(self.config.timeout_s * (len(self.queue) + 1), CLOSE_WAIT_S)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drained(), wait)
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _drained(self) -> None:
        while self.queue or self._busy:
            await asyncio.sleep(0.05)

    def notify(self, alert: Alert) -> None:
        if not self.enabled:
            return
        if len(self.queue) >= WAITING:
            self.queue.popleft()
            self.dropped += 1
            self.log.warning("alert_notification_dropped", dropped=self.dropped,
                             hint="the alert command or webhook is slower than the alerts "
                             "come; the oldest waiting are dropped")  # fmt: skip
        self.queue.append(alert)
        self._wake.set()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.queue:
                alert = self.queue.popleft()
                self._busy = True
                try:
                    data = msgspec.json.encode(alert)
                    if self.config.command:
                        await self._command(alert, data)
                    if self.url is not None:
                        await self._post(alert, data)
                finally:
                    self._busy = False

    async def _command(self, alert: Alert, data: bytes) -> None:
        argv = self.config.command
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
        except OSError as exc:
            self.log.error("alert_command_failed", command=argv[0], alert=alert.id,
                           error=exc.strerror or str(exc),
                           hint="check monitor.alerts.command")  # fmt: skip
            return
        try:
            err = await asyncio.wait_for(_run(proc, data + b"\n"), self.config.timeout_s)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            error = f"still running after {self.config.timeout_s:g} s; killed"
            self.log.error("alert_command_failed", command=argv[0], alert=alert.id, error=error)
            return
        if proc.returncode != 0:
            self.log.error("alert_command_failed", command=argv[0], alert=alert.id,
                           error=f"exit code {proc.returncode}",
                           stderr=err.decode("utf-8", "replace"))  # fmt: skip
            return
        self.sent += 1
        self.log.info("alert_sent", to="command", alert=alert.id, cleared=bool(alert.cleared_ns))

    async def _post(self, alert: Alert, data: bytes) -> None:
        assert self.url is not None
        host = urlsplit(self.url).netloc.rpartition("@")[2]  # never the URL's path or user
        try:
            status = await asyncio.wait_for(  # the thread ends by its socket's own timeout
                asyncio.to_thread(_post, self.url, data, self.config.timeout_s),
                self.config.timeout_s * 2,
            )  # fmt: skip
        except TimeoutError:
            self.log.error("alert_webhook_failed", host=host, alert=alert.id,
                           error=f"no answer within {self.config.timeout_s * 2:g} s")  # fmt: skip
            return
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the answer's socket
            self.log.error("alert_webhook_failed", host=host, alert=alert.id,
                           error=f"HTTP {exc.code} {exc.reason}")  # fmt: skip
            return
        except (OSError, ValueError) as exc:  # URLError is an OSError
            reason = getattr(exc, "reason", None) or exc
            self.log.error("alert_webhook_failed", host=host, alert=alert.id, error=str(reason))
            return
        self.sent += 1
        self.log.info("alert_sent", to="webhook", host=host, alert=alert.id, status=status,
                      cleared=bool(alert.cleared_ns))  # fmt: skip


async def _run(proc: asyncio.subprocess.Process, data: bytes) -> bytes:
    """Give the command ``data`` on its standard input; the last ``STDERR_KEPT`` bytes of what
    it wrote to standard error (the rest is read and dropped, so a chatty command cannot fill
    the monitor's memory or block on a full pipe)."""
    assert proc.stdin is not None and proc.stderr is not None
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # it need not read it all
        proc.stdin.write(data)
        await proc.stdin.drain()
        proc.stdin.close()
    kept = b""
    while chunk := await proc.stderr.read(65536):
        kept = (kept + chunk)[-STDERR_KEPT:]
    await proc.wait()
    return kept


def _post(url: str, data: bytes, timeout_s: float) -> int:
    request = urllib.request.Request(
        url, data=data, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "hft-monitor"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:
        return int(answer.status)


def check_webhook(url: str) -> str | None:
    """Why ``url`` cannot be a webhook, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return "alert_webhook_url must be an http:// or https:// URL"
    return None
