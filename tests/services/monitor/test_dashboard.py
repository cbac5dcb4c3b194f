"""The dashboard in Debian's headless Chromium (driven by Playwright, the system's browser, no
browser download), served by a real ``hft monitor`` that watches a real ``hft engine`` trading
the real IF2101 day on the paper simulator: a wrong token is refused; an admin logs in, sees a
position and a trade appear after paper fills, cancels an order and halts the account from the
page and sees the engine's acknowledgements; a viewer gets no control; the page has no console
error (a content-security-policy violation would be one). Screenshots are saved as artifacts in
``artifacts/dashboard`` (``HFT_ARTIFACTS`` elsewhere)."""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from libshm import JournalReader, SnapshotWriter, decode_tick
from tests.helpers import ROOT
from tests.services.engine.test_command_socket import Running, recording, running_engine
from tests.services.engine.test_live import DAY
from tests.services.monitor.harness import ADMIN, VIEWER_A
from tests.services.monitor.test_control import start_monitor

__all__ = ["recording"]  # the fixture, shared with the engine's tests

pytestmark = pytest.mark.timeout(300)
ARTIFACTS = Path(os.environ.get("HFT_ARTIFACTS", ROOT / "artifacts")) / "dashboard"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update",
         "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium")
        pytest.skip("no Chromium here (apt install chromium, as .ci/run does)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield browser
        browser.close()


class Feeder:
    """Feeds the recording into the engine's live tick journal, and its ticks into the
    monitor's snapshot table (as md_recorder would), from a thread until stopped."""

    def __init__(self, run: Running, table: SnapshotWriter) -> None:
        self.run, self.table = run, table
        self.go = threading.Event()
        self.idle = threading.Event()
        self.done = threading.Event()
        self.fed = 40  # running_engine fed the first 40
        self.failed: list[BaseException] = []
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        try:
            while not self.done.is_set():
                if not self.go.is_set():
                    self.idle.set()
                    self.go.wait(0.05)
                    continue
                self.idle.clear()
                if not self.feed(20):
                    return
                time.sleep(0.005)
        except BaseException as exc:  # handed to the test, which fails on it
            self.failed.append(exc)

    def feed(self, count: int) -> bool:
        for _ in range(count):
            frame = self.run.source.read()
            if frame is None:
                return False
            tick = decode_tick(frame.payload)
            self.run.writer.append_tick(tick, frame.time_ns)
            self.table.write(tick)
            self.fed += 1
        return True

    def pause(self) -> None:
        """Stop feeding and wait until the engine has taken every tick fed."""
        self.go.clear()
        self.idle.clear()
        assert self.idle.wait(30) and not self.failed, self.failed
        self.run.wait_ticks(self.fed)

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=30)
        assert not self.failed, self.failed


def caught_up(page: Any, root: Path) -> None:
    """Wait until the page shows the state of every frame the engine journaled (the health
    panel counts the frames the monitor applied)."""
    reader = JournalReader(root / "journal" / "engine" / str(DAY))
    frames = sum(1 for _ in iter(reader.read, None))
    reader.close()
    # health comes after the deltas of the frames it counts, and one render draws both
    page.wait_for_selector(f"#health >> text=/ {frames} frames/", timeout=60_000)


def shot(page: Any, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def sign_in(page: Any, token: str) -> None:
    page.fill("#token", token)
    page.click("#sign-in")


def admin_session(page: Any, http: str, feeder: Feeder, root: Path) -> None:
    page.goto(http)
    sign_in(page, "not-the-token-" + "x" * 30)
    page.wait_for_selector("text=The monitor refused this token.")
    shot(page, "1-login-refused")
    sign_in(page, ADMIN)
    page.wait_for_selector("#mode.paper")
    assert page.text_content("#mode") == "PAPER"
    assert page.is_visible("#halt")  # an admin's page
    feeder.go.set()  # the market moves: the agents trade on the paper simulator
    page.wait_for_selector("#positions tbody tr", timeout=90_000)
    page.wait_for_selector("#trades tbody tr", timeout=90_000)
    page.wait_for_selector("#summary .card")
    # the strategy tree: the agent cards name their portfolio; the waiting stop is listed
    page.wait_for_selector('#summary .card[data-agent="mm"] h3 >> text=mm · desk')
    page.wait_for_selector("#conditionals tbody >> text=stop IF2101")
    assert "waiting" in (page.text_content("#conditionals tbody tr") or "")
    feeder.pause()  # a still market: the working orders stay as they are
    caught_up(page, root)
    while page.query_selector("#orders button[data-order]") is None:
        assert feeder.feed(5), "the day ended with no working order"
        feeder.run.wait_ticks(feeder.fed)
        caught_up(page, root)
    trade = page.text_content("#trades tbody tr")
    assert trade is not None and "IF2101" in trade
    shot(page, "2-positions-and-trades")
    order = page.get_attribute("#orders button[data-order]", "data-order")
    page.click(f'#orders button[data-order="{order}"]')
    page.wait_for_selector(f"#toast >> text=Engine: cancel sent for {order}")
    page.click("#halt")
    assert page.is_visible("#confirm")
    shot(page, "3-halt-confirmation")
    page.click("#confirm-ok")
    page.wait_for_selector("#toast >> text=Engine: account is halted")
    page.wait_for_selector("#risk tbody >> text=halted")
    page.wait_for_selector("#alerts >> text=account is halted")
    shot(page, "4-halted")


def viewer_on_a_phone(browser: Any, http: str) -> None:
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.goto(http)
    sign_in(phone, VIEWER_A)
    # the first snapshot over a fresh WebSocket: as long a wait as the admin's, since under a
    # full test run's load it has taken more than the default 30 s
    phone.wait_for_selector("#mode.paper", timeout=90_000)
    phone.wait_for_selector("#positions tbody tr", timeout=90_000)
    assert not phone.is_visible("#halt")  # a viewer's page: no control
    assert phone.query_selector("#orders button") is None
    shot(phone, "5-phone-viewer")
    phone.close()


TREE = """
[[engine.agents]]
name = "stopper"
strategy = "tests.services.engine.agents:HoldsAStop"
instruments = ["IF2101"]
capital = 1000000.0

[[engine.portfolios]]
name = "desk"
agents = ["mm", "trend"]
capital = 2000000.0
"""
"""A portfolio over the deployment's two agents, and an agent holding a stop that waits."""


def test_an_admin_sees_fills_cancels_an_order_and_halts_the_account_from_the_page(
    tmp_path: Path, recording: Path, browser: Any
) -> None:
    with running_engine(tmp_path, recording, more=TREE) as run:
        proc, url = start_monitor(tmp_path, tmp_path / "journal")
        table = SnapshotWriter(tmp_path / "mshm" / "snapshot")
        feeder = Feeder(run, table)
        errors: list[str] = []
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 1000})
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            http = url.replace("ws://", "http://") + "/"
            admin_session(page, http, feeder, tmp_path)
            viewer_on_a_phone(browser, http)
            page.close()
        finally:
            feeder.stop()
            table.close()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    assert not errors, errors  # no script error, no refused resource, no CSP violation
