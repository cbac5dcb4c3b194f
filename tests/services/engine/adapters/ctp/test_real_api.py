"""openctp-ctp's real ``TraderApi`` against sockets on 127.0.0.1 (no CTP front can run here): a
closed port, where the library retries silently and calls nothing, so the session's own connect
timeout reports the disconnection and retries with backoff; and a server that accepts and drops
each connection, which gives the disconnect path (``OnFrontDisconnected``). Meanwhile the
adapter refuses new orders with the reason."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.ctp_locale import has_locale
from contracts.logs import get_logger
from tests.helpers import closed_port, dropping_server, require_ctp_locale

if not has_locale():  # importing openctp-ctp without it aborts the process
    require_ctp_locale()  # skips the module, or fails it under CI

from services.engine.adapters.ctp.adapter import CtpAdapter
from services.engine.adapters.ctp.items import Kind
from services.engine.adapters.ctp.session import CtpSession, SessionConfig
from services.engine.events import Rejected
from services.engine.orders import Order


@pytest.fixture
def dropping() -> Iterator[tuple[int, list[int]]]:
    with dropping_server() as server:
        yield server


def session_for(tmp_path: Path, port: int, timeout_s: float) -> CtpSession:
    config = SessionConfig([f"tcp://127.0.0.1:{port}"], "9999", "000123", "pw", "app", "",
                           tmp_path / "flow", ["rb2105"], connect_timeout_s=timeout_s)  # fmt: skip
    return CtpSession(config, log=get_logger())


def states(outbox: queue.SimpleQueue[tuple[Any, ...]], until: str, count: int,
           timeout_s: float = 30.0) -> list[tuple[Any, ...]]:  # fmt: skip
    """The session's STATE items, read off its outbox until ``count`` of state ``until`` came."""
    seen: list[tuple[Any, ...]] = []
    deadline = time.monotonic() + timeout_s
    while sum(1 for s in seen if s[1] == until) < count:
        item = outbox.get(timeout=max(0.0, deadline - time.monotonic()))
        if item[0] is Kind.STATE:
            seen.append(item)
    return seen


def test_a_closed_port_reports_disconnection_and_retries_with_backoff(tmp_path: Path) -> None:
    session = session_for(tmp_path, closed_port(), 0.3)
    # the adapter reads a copy of the session's outbox: the test reads the session's own
    mirror: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
    adapter = CtpAdapter(session.requests, mirror, {"rb2105": "SHFE"}, log=get_logger())
    session.start()
    try:
        seen = states(session.outbox, "disconnected", 2)
    finally:
        session.stop()
    texts = [s[2] for s in seen]
    assert texts[0].startswith("connecting to tcp://127.0.0.1:")
    down = [t for t in texts if "no login at tcp://127.0.0.1:" in t and "within 0.3 s" in t]
    assert len(down) == 2
    # a round of one front: each failure waits before the next (1 s, then 2 s, +-20 %)
    waits = [float(t.rsplit("trying again in ", 1)[1].removesuffix(" s")) for t in down]
    assert 0.8 <= waits[0] <= 1.2 and 1.6 <= waits[1] <= 2.4
    assert [s[2] for s in seen if s[1] == "connecting"][1].endswith("(attempt 2)")
    for item in seen:
        mirror.put(item)
    assert adapter.drain(5) == []  # the live loop drains before the agents act
    order = Order("mm-20210105-1", "mm", "rb2105", "buy", "open", 4300.0, 1)
    assert adapter.route(order) is None
    adapter.submit(order, 5)
    (refusal,) = adapter.drain(5)
    assert isinstance(refusal, Rejected) and refusal.code == "DISCONNECTED"
    assert refusal.text.startswith("the order did not leave: no login at tcp://127.0.0.1:")


def test_a_server_that_drops_the_connection_gives_the_disconnect_path(
    tmp_path: Path, dropping: tuple[int, list[int]]
) -> None:
    port, taken = dropping
    session = session_for(tmp_path, port, 30.0)  # the timeout never decides here
    session.start()
    try:
        seen = states(session.outbox, "disconnected", 2)
    finally:
        session.stop()
    down = [s[2] for s in seen if s[1] == "disconnected"]
    assert all(f"front tcp://127.0.0.1:{port} disconnected (reason 0x" in t for t in down)
    assert taken[0] >= 2  # a new API connected again after the backoff
