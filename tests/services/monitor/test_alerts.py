"""Alerts: raised once when a condition starts and cleared once when it ends (the core, fed
health and deltas with given times); the notifier runs a real command with the alert on its
standard input and posts it to a real HTTP server on 127.0.0.1, and logs every failure (a
missing program, a non-zero exit, a hung command, an HTTP error, nothing listening) without
stopping; and a real monitor raises the alert of a halt in its journal to a WebSocket client,
to a client that connects later, and to the operator's command."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from contracts import messages as m
from contracts.config import AlertsConfig
from contracts.monitor import Alert, Delta, Refusal, RiskView, ServiceHealth
from contracts.status import EngineStatus, Latency, RecorderStatus
from services.monitor.alerts import Alerts, Notifier
from tests.helpers import run_hft
from tests.services.monitor.harness import ADMIN, VIEWER_A, Deployment, subscribe

S = 1_000_000_000
OPEN, GONE = ServiceHealth("open"), ServiceHealth("gone")


def engine(behind_s: float) -> ServiceHealth:
    status = EngineStatus(1, 0, 20210104, 10, 1, 50, behind_s, "live", Latency())
    return ServiceHealth("open", 20210104, 10, True, status)


def recorder(archive_error: str) -> ServiceHealth:
    return ServiceHealth("open", status=RecorderStatus(1, 0, 20210104, 1, 1.0, {}, 1.0, 1, 0,
                                                       archive_error))  # fmt: skip


def kinds(alerts: list[Alert]) -> list[tuple[str, bool]]:
    return [(a.id, bool(a.cleared_ns)) for a in alerts]


def test_a_silent_service_is_raised_once_and_cleared_once() -> None:
    alerts = Alerts(AlertsConfig())
    assert alerts.health({"A": OPEN}, OPEN, 1 * S) == []
    raised = alerts.health({"A": GONE, "B": OPEN}, GONE, 2 * S)
    assert kinds(raised) == [("silent/A", False), ("silent/md_recorder", False)]
    assert raised[0].account == "A" and raised[1].account == ""  # the suite's: every client's
    assert raised[0].severity == "critical" and raised[0].raised_ns == 2 * S
    assert alerts.health({"A": GONE, "B": OPEN}, GONE, 3 * S) == []  # not again each second
    assert [a.id for a in alerts.visible(["B"])] == ["silent/md_recorder"]
    cleared = alerts.health({"A": OPEN, "B": OPEN}, OPEN, 4 * S)
    assert kinds(cleared) == [("silent/A", True), ("silent/md_recorder", True)]
    assert cleared[0].raised_ns == 2 * S and cleared[0].cleared_ns == 4 * S
    assert alerts.visible(["A", "B"]) == []


def test_an_engine_behind_its_feed_and_a_ring_that_cannot_be_archived() -> None:
    alerts = Alerts(AlertsConfig(behind_s=5.0))
    assert alerts.health({"A": engine(4.9)}, recorder(""), 1 * S) == []
    raised = alerts.health({"A": engine(5.0)}, recorder("no space left on device"), 2 * S)
    assert kinds(raised) == [("behind/A", False), ("overrun/md_recorder", False)]
    assert "5 s (50 ticks)" in raised[0].text and "no space left on device" in raised[1].text
    assert kinds(alerts.health({"A": engine(0.1)}, recorder(""), 3 * S)) == [
        ("behind/A", True), ("overrun/md_recorder", True)]  # fmt: skip


def risk(seq: int, scope: str, target: str, state: str) -> Delta:
    key = f"{scope}/{target}"
    return Delta("A", 20210104, seq, "risk", key, RiskView(scope, target, state, "loss", 0))  # type: ignore[arg-type]


def refusal(seq: int) -> Delta:
    return Delta("A", 20210104, seq, "refusals", f"{seq:012d}",
                 Refusal(0, "mm", "o1", "max_position", "too big", "risk"))  # fmt: skip


def test_a_halt_is_raised_until_resumed_or_a_new_day() -> None:
    alerts = Alerts(AlertsConfig())
    raised = alerts.deltas("A", [risk(5, "agent", "mm", "halted")], 1 * S, live=False)
    assert kinds(raised) == [("halt/A/agent/mm", False)]  # a halt found at start counts too
    assert raised[0].text == "A: agent mm is halted: loss."
    assert alerts.deltas("A", [risk(6, "agent", "mm", "reducing")], 2 * S, live=True) == [
        msgspec_replace(raised[0], cleared_ns=2 * S)]  # fmt: skip
    alerts.deltas("A", [risk(7, "account", "", "halted")], 3 * S, live=True)
    day = Delta("A", 20210105, 1, "day", "day", None)
    assert kinds(alerts.deltas("A", [day], 4 * S, live=True)) == [("halt/A/account/", True)]


def msgspec_replace(alert: Alert, **fields: Any) -> Alert:
    import msgspec

    return msgspec.structs.replace(alert, **fields)


def test_a_burst_of_refusals_counts_only_new_ones_within_the_window() -> None:
    alerts = Alerts(AlertsConfig(refusal_burst=20, refusal_window_s=10))
    assert alerts.deltas("A", [refusal(i) for i in range(100)], 0, live=False) == []  # catch-up
    for i in range(19):
        assert alerts.deltas("A", [refusal(200 + i)], i * S // 10, live=True) == []
    raised = alerts.deltas("A", [refusal(300)], 2 * S, live=True)
    assert kinds(raised) == [("refusals/A", False)] and "20 orders or cancels" in raised[0].text
    assert alerts.health({}, OPEN, 11 * S) == [msgspec_replace(raised[0], cleared_ns=11 * S)]
    assert alerts.health({}, OPEN, 12 * S) == []


# -- the notifier ------------------------------------------------------------------------------


class Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def _add(self, event: str, **kw: Any) -> None:
        self.lines.append((event, kw))

    info = warning = error = _add

    def events(self) -> list[str]:
        return [e for e, _ in self.lines]


ALERT = Alert("halt/A/account/", "A", "halt", "critical", "A: the account is halted: loss.", 5)


async def notify(config: AlertsConfig, url: str | None, *alerts: Alert) -> Log:
    log = Log()
    notifier = Notifier(config, url, log)
    notifier.start()
    for alert in alerts:
        notifier.notify(alert)
    await notifier.close()
    return log


def test_the_command_gets_each_alert_on_its_standard_input_in_order(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read())"
    cleared = msgspec_replace(ALERT, cleared_ns=9)
    log = asyncio.run(notify(AlertsConfig(command=[sys.executable, "-c", script]), None,
                             ALERT, cleared))  # fmt: skip
    got = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(g["id"], g["cleared_ns"]) for g in got] == [(ALERT.id, 0), (ALERT.id, 9)]
    assert got[0]["text"] == ALERT.text and got[0]["type"] == "alert"
    assert log.events() == ["alert_sent", "alert_sent"]


def test_a_failing_missing_or_hung_command_is_logged_and_the_next_alert_still_goes(
    tmp_path: Path,
) -> None:
    fails = AlertsConfig(command=[sys.executable, "-c", "import sys; sys.exit('no pager')"])
    log = asyncio.run(notify(fails, None, ALERT))
    assert log.lines[-1][0] == "alert_command_failed"
    assert log.lines[-1][1]["error"] == "exit code 1" and "no pager" in log.lines[-1][1]["stderr"]
    log = asyncio.run(notify(AlertsConfig(command=[str(tmp_path / "nothing-here")]), None, ALERT))
    assert log.events() == ["alert_command_failed"]
    hung = AlertsConfig(command=[sys.executable, "-c", "import time; time.sleep(60)"],
                        timeout_s=0.5)  # fmt: skip
    log = asyncio.run(notify(hung, None, ALERT, ALERT))
    assert log.events() == ["alert_command_failed", "alert_command_failed"]
    assert "killed" in log.lines[0][1]["error"]


class Hook:
    """A real HTTP server on 127.0.0.1 that keeps what is posted to it."""

    def __init__(self, status: int) -> None:
        self.posts: list[tuple[str, str, bytes]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append((self.path, self.headers["Content-Type"], body))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/secret-path"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook(request: pytest.FixtureRequest) -> Iterator[Hook]:
    h = Hook(getattr(request, "param", 200))
    yield h
    h.close()


def test_the_webhook_gets_each_alert_as_json_and_the_log_never_names_its_path(hook: Hook) -> None:
    log = asyncio.run(notify(AlertsConfig(webhook=True), hook.url, ALERT))
    assert [(p, t) for p, t, _ in hook.posts] == [("/hooks/secret-path", "application/json")]
    assert json.loads(hook.posts[0][2])["id"] == ALERT.id
    sent = {"to": "webhook", "host": hook.url.split("/")[2], "alert": ALERT.id, "status": 200,
            "cleared": False}  # fmt: skip
    assert log.lines == [("alert_sent", sent)]
    assert "secret-path" not in json.dumps(log.lines)
    assert asyncio.run(notify(AlertsConfig(webhook=False), hook.url, ALERT)).lines == []  # off


@pytest.mark.parametrize("hook", [500], indirect=True)
def test_a_webhook_that_fails_or_is_not_there_is_logged(hook: Hook) -> None:
    log = asyncio.run(notify(AlertsConfig(webhook=True), hook.url, ALERT))
    assert log.events() == ["alert_webhook_failed"] and log.lines[0][1]["error"] == (
        "HTTP 500 Internal Server Error"
    )
    url = hook.url
    hook.close()
    log = asyncio.run(notify(AlertsConfig(webhook=True, timeout_s=5), url, ALERT))
    assert log.events() == ["alert_webhook_failed"]
    assert "refused" in log.lines[0][1]["error"].lower()


# -- a real monitor ----------------------------------------------------------------------------


def test_a_halt_in_the_journal_reaches_clients_now_and_later_and_the_operators_command(
    deployment: Deployment, tmp_path: Path
) -> None:
    out = tmp_path / "paged.jsonl"
    script = f"import sys; open({str(out)!r}, 'a').write(sys.stdin.read())"
    text = deployment.config.read_text()
    deployment.config.write_text(
        text + f"\n[monitor.alerts]\ncommand = {json.dumps([sys.executable, '-c', script])}\n"
    )
    url = deployment.start()
    viewer, _ = subscribe(url, VIEWER_A)
    t = deployment.frames["A"][2999][1]
    deployment.writers["A"].append(m.encode(m.StateChanged(0, t, "account", "", "halted",
                                                           "monitor test: halt")), t)  # fmt: skip
    deadline = time.monotonic() + 30
    while (message := json.loads(viewer.recv(timeout=30)))["type"] != "alert":
        assert time.monotonic() < deadline
    assert message["id"] == "halt/A/account/" and message["account"] == "A"
    assert message["text"] == "A: the account is halted: monitor test: halt."
    later, _ = subscribe(url, ADMIN)  # a client that connects later is told after its snapshots
    kinds = []
    while (message := json.loads(later.recv(timeout=30)))["type"] != "alert":
        kinds.append(message["type"])
    assert message["id"] == "halt/A/account/" and "snapshot" in kinds
    while not out.exists() or not out.read_text().endswith("\n"):
        assert time.monotonic() < deadline, deployment.log.read_text()[-2000:]
        time.sleep(0.05)
    paged = json.loads(out.read_text().splitlines()[0])
    assert paged["id"] == "halt/A/account/" and paged["cleared_ns"] == 0
    viewer.close()
    later.close()


def test_a_webhook_without_a_url_a_bad_url_and_a_misspelt_key_are_one_line_each(
    tmp_path: Path,
) -> None:
    config = tmp_path / "deploy.toml"
    base = (f'[suite]\nname = "m"\nmode = "paper"\njournal_dir = "{tmp_path / "j"}"\n'
            f'shm_dir = "{tmp_path / "shm"}"\n\n[md_recorder]\nsource = "sim"\n'
            'instruments = ["IF2101"]\n[md_recorder.sim]\n\n[engine]\nadapter = "paper"\n\n'
            "[monitor]\nport = 0\nzmq = false\n[monitor.alerts]\n")  # fmt: skip
    env = {"HFT_MONITOR_TOKEN": VIEWER_A}
    config.write_text(base + "webhook = true\n")
    done = run_hft("monitor", "--config", str(config), env=env)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hft monitor: error: monitor.alerts.webhook is true but no URL is set; export "
        "HFT_ALERT_WEBHOOK_URL or put alert_webhook_url in the credentials file named by "
        "suite.credentials_file"
    ]
    done = run_hft("monitor", "--config", str(config),
                   env={**env, "HFT_ALERT_WEBHOOK_URL": "file:///etc/passwd"})  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hft monitor: error: alert_webhook_url must be an http:// or https:// URL (the "
        "credentials' alert_webhook_url)"
    ]
    config.write_text(base + "refusal_bursts = 5\n")
    done = run_hft("monitor", "--config", str(config), env=env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "monitor.alerts.refusal_bursts" in done.stderr


def test_a_command_that_floods_its_standard_error_costs_only_the_end_of_it() -> None:
    flood = ("import sys\nfor _ in range(800): sys.stderr.write('x' * 65536)\n"
             "sys.stderr.write('the end'); sys.exit(3)")  # 50 MiB, then a message  # fmt: skip
    log = asyncio.run(notify(AlertsConfig(command=[sys.executable, "-c", flood]), None, ALERT))
    assert log.events() == ["alert_command_failed"]
    failed = log.lines[0][1]
    assert failed["error"] == "exit code 3" and failed["stderr"].endswith("the end")
    assert len(failed["stderr"]) == 2000
