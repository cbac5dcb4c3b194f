"""A real ``hft monitor`` and real WebSocket clients on 127.0.0.1, over two accounts whose engine
journals hold the real IF2101 day as the real engine journals it, growing while clients watch:
no token, a wrong token and a token in the URL get nothing; a viewer of A gets A and never B;
an admin gets both; a resumed client gets exactly what it missed; a restarted monitor serves the
same snapshot; a stalled client is coalesced then closed while a healthy one gets every delta."""

from __future__ import annotations

import copy
import json
import socket
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from contracts import messages as m
from contracts.monitor import Ticks
from contracts.status import EngineStatus, Latency, RecorderStatus, status_path, write_status
from libshm import JournalWriter, SnapshotWriter, book_tick
from tests.helpers import log_lines, run_hft
from tests.services.monitor.harness import (
    ADMIN,
    DAY,
    VIEWER_A,
    Deployment,
    Mirror,
    received_nothing,
    subscribe,
    wait_caught_up,
)

pytestmark = pytest.mark.timeout(300)


def test_no_token_a_wrong_token_and_a_token_in_the_url_get_nothing(
    deployment: Deployment,
) -> None:
    url = deployment.start()
    with connect(url) as ws:  # no header, and no auth message
        assert received_nothing(ws) == 1008
    with connect(url, additional_headers={"Authorization": "Bearer not-a-token"}) as ws:
        assert received_nothing(ws) == 1008
    with connect(url) as ws:
        ws.send(json.dumps({"type": "auth", "token": "wrong" * 10}))
        assert received_nothing(ws) == 1008
    with connect(f"{url}/?token={ADMIN}") as ws:  # a valid token, but in the URL
        assert received_nothing(ws) == 1008
    with pytest.raises(InvalidStatus) as refused:  # a browser page of another origin
        connect(url, additional_headers={"Origin": "http://evil.example"})
    assert refused.value.response.status_code == 403
    log = deployment.log.read_text()
    assert ADMIN not in log and "not-a-token" not in log
    failures = [x for x in log_lines(deployment.log) if x["event"] == "monitor_auth_failed"]
    assert [f["how"] for f in failures] == [
        "first message", "header", "first message",
        "query string (tokens are never taken from a URL)",
    ]  # fmt: skip


def test_a_viewer_of_a_sees_a_and_never_b_and_an_admin_sees_both(deployment: Deployment) -> None:
    url = deployment.start()
    viewer, hello = subscribe(url, VIEWER_A)
    assert (hello["role"], hello["accounts"]) == ("viewer", ["A"])
    admin, hello = subscribe(url, ADMIN)
    assert (hello["role"], hello["accounts"]) == ("admin", ["A", "B"])
    for account in ("A", "B"):  # the accounts grow while both watch
        deployment.write(account, 2000)
    seqs = wait_caught_up(deployment, url)
    seen_by_viewer, seen_by_admin = Mirror(), Mirror()
    seen_by_viewer.follow(viewer, {"A": seqs["A"]})
    seen_by_admin.follow(admin, seqs)
    assert {a for _, a, _ in seen_by_viewer.seen} == {"A"}
    assert {a for _, a, _ in seen_by_admin.seen} == {"A", "B"}
    assert seen_by_viewer.accounts["A"] == seen_by_admin.accounts["A"]
    agents = set(seen_by_admin.accounts["B"]["topics"]["pnl"])
    assert agents == {"trend-b"} and "trend-b" not in json.dumps(seen_by_viewer.accounts)
    while (message := json.loads(viewer.recv(timeout=5)))["type"] != "health":
        assert message["account"] == "A"
    assert list(message["engines"]) == ["A"]  # the health of A's engine only
    viewer.close()
    admin.close()


def test_a_resumed_client_gets_exactly_what_it_missed_and_a_restart_changes_nothing(
    deployment: Deployment,
) -> None:
    url = deployment.start()
    seqs = wait_caught_up(deployment, url)
    ws, _ = subscribe(url, VIEWER_A)
    mirror = Mirror()
    mirror.follow(ws, {"A": seqs["A"]})
    ws.close()
    halfway = (DAY, mirror.accounts["A"]["seq"])
    halfway_state = copy.deepcopy(mirror.accounts["A"])
    deployment.write("A", 3000)  # while the client is away
    seqs = wait_caught_up(deployment, url)
    since = {"A": [DAY, mirror.accounts["A"]["seq"]]}
    ws, _ = subscribe(url, VIEWER_A, since)
    mirror.seen.clear()
    mirror.follow(ws, {"A": seqs["A"]})
    ws.close()
    assert mirror.seen[0][0] == "delta", (mirror.seen[:3], since)  # the missed ones, no snapshot
    fresh = Mirror()
    ws, _ = subscribe(url, VIEWER_A)
    fresh.follow(ws, {"A": seqs["A"]})
    ws.close()
    assert fresh.accounts["A"] == mirror.accounts["A"]
    deployment.stop()
    url = deployment.start()  # the same journals, a new process
    again = Mirror()
    ws, _ = subscribe(url, VIEWER_A)
    again.follow(ws, {"A": seqs["A"]})
    ws.close()
    assert again.accounts["A"] == mirror.accounts["A"]  # the same snapshot as before
    ws, _ = subscribe(url, VIEWER_A, since={"A": list(halfway)})
    resumed = Mirror()
    resumed.accounts["A"] = halfway_state
    resumed.follow(ws, {"A": seqs["A"]})
    ws.close()
    assert resumed.seen[0][0] == "delta"  # numbers survive a restart: the deltas, no snapshot
    assert resumed.accounts["A"] == mirror.accounts["A"]


@pytest.mark.queue(500)
def test_a_stalled_client_is_coalesced_then_closed_while_a_healthy_one_gets_every_delta(
    deployment: Deployment,
) -> None:
    url = deployment.start()
    wait_caught_up(deployment, url)
    small = socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])))
    small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled, _ = subscribe(url, VIEWER_A, sock=small, max_queue=1)  # reads nothing from now on
    healthy, _ = subscribe(url, ADMIN)
    mirror = Mirror()
    mirror.follow(healthy, {"A": 1, "B": 1})
    failed: list[BaseException] = []

    def read() -> None:  # a healthy client reads as fast as it can
        try:
            while True:
                mirror.take(json.loads(healthy.recv()))
        except ConnectionClosed:
            return
        except BaseException as exc:  # handed to the test below, which fails on it
            failed.append(exc)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while not any(x["event"] == "monitor_client_too_slow" and x["name"] == "desk-a"
                  for x in log_lines(deployment.log)):  # fmt: skip
        assert time.monotonic() < deadline, "the stalled client was never closed"
        assert deployment.written["A"] < len(deployment.frames["A"]), "ran out of frames"
        deployment.write("A", 1000)
        time.sleep(0.2)
    deployment.write("A", 2000)
    seqs = wait_caught_up(deployment, url)
    while mirror.accounts["A"]["seq"] < seqs["A"] and not failed:
        assert time.monotonic() < deadline + 60, "the healthy client fell behind"
        time.sleep(0.05)
    assert not failed, failed  # every delta came, consecutive (Mirror checks each)
    assert [t for t, _, _ in mirror.seen].count("snapshot") == 2  # its first two: never coalesced
    code = None
    try:  # it drains what the kernel buffered, then finds the connection closed
        while True:
            stalled.recv(timeout=30)
    except ConnectionClosed as closed:
        code = closed.rcvd.code if closed.rcvd else 1006
    assert code in (1013, 1006)  # the close frame, or the abort after close_timeout
    slow = [x for x in log_lines(deployment.log) if x["event"] == "monitor_client_too_slow"]
    assert [x["name"] for x in slow if x["name"] == "desk-a"] == ["desk-a"]
    healthy.close()


def test_no_token_configured_and_a_port_in_use_are_one_line_each(tmp_path: Path) -> None:
    config = tmp_path / "deploy.toml"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config.write_text(
            f'[suite]\nname = "m"\nmode = "paper"\njournal_dir = "{tmp_path / "j"}"\n'
            f'shm_dir = "{tmp_path / "shm"}"\n\n[md_recorder]\nsource = "sim"\n'
            'instruments = ["IF2101"]\n[md_recorder.sim]\n\n[engine]\nadapter = "paper"\n\n'
            f"[monitor]\nport = {port}\nzmq = false\n"
        )
        none = run_hft("monitor", "--config", str(config))
        assert none.returncode == 2
        assert none.stderr.strip().splitlines() == [
            "hft monitor: error: monitor: no token is configured, so no client could connect; "
            "export HFT_MONITOR_TOKEN (a viewer) and HFT_MONITOR_ADMIN_TOKEN, or add "
            "[[monitor_tokens]] to the credentials file named by suite.credentials_file"
        ]
        busy = run_hft("monitor", "--config", str(config), env={"HFT_MONITOR_TOKEN": VIEWER_A})
        assert busy.returncode == 1
        assert busy.stderr.strip().splitlines() == [
            f"hft monitor: error: monitor: 127.0.0.1:{port} is in use by another program; stop "
            "it or set monitor.port"
        ]
        assert VIEWER_A not in busy.stderr


def test_a_new_trading_day_reaches_a_watching_client_as_its_snapshot(
    deployment: Deployment,
) -> None:
    """Day one of A closes (rolled, then closed, as the engine ends a day) and day two's journal
    begins: a client watching all along gets day two's snapshot, then its deltas numbered on,
    and ends where a client that connects afterwards starts."""
    a = deployment.frames["A"]
    last_time = a[2999][1]
    writer = deployment.writers["A"]
    for msg in (m.DayRolled(0, last_time, DAY, DAY + 1, {"IF2101": 5200.0}),
                m.DayClosed(0, last_time, DAY, [], {"mm": 1e6, "trend-a": 1e6})):  # fmt: skip
        writer.append(m.encode(msg), last_time)
    url = deployment.start()
    seqs = wait_caught_up(deployment, url)
    ws, _ = subscribe(url, ADMIN)
    mirror = Mirror()
    mirror.follow(ws, seqs)
    day_two = JournalWriter(deployment.root / "A" / "engine" / str(DAY + 1), layout=m.ENGINE_LAYOUT)
    try:
        opened = m.decode(a[0][0])
        assert isinstance(opened, m.DayOpened)
        day_two.append(m.encode(msgspec.structs.replace(opened, trading_day=DAY + 1)), a[0][1])
        for data, t in a[1:800]:
            day_two.append(data, t)
        deadline = time.monotonic() + 60
        while True:  # until day two's snapshot and deltas have come
            assert time.monotonic() < deadline, mirror.seen[-3:]
            message = json.loads(ws.recv(timeout=30))
            mirror.take(message)
            if message["type"] == "snapshot" and message["trading_day"] == DAY + 1:
                break
        seqs = wait_caught_up(deployment, url)
        mirror.follow(ws, {"A": seqs["A"]})
    finally:
        day_two.close()
        ws.close()
    fresh = Mirror()
    ws, _ = subscribe(url, ADMIN)
    fresh.follow(ws, {"A": seqs["A"]})
    ws.close()
    assert fresh.accounts["A"] == mirror.accounts["A"]
    assert mirror.accounts["A"]["topics"]["day"]["day"]["trading_day"] == DAY + 1


def test_marks_give_each_agent_its_unrealised_pnl_at_the_tables_last_price(
    deployment: Deployment,
) -> None:
    """md_recorder's snapshot table holds IF2101 at a price: a viewer of A gets A's marks at it,
    each agent's unrealised PnL what its published positions give at that price."""
    url = deployment.start()
    table = SnapshotWriter(deployment.root / "shm" / "snapshot")
    try:
        mirror = Mirror()
        ws, _ = subscribe(url, VIEWER_A)
        mirror.follow(ws, {"A": 1})
        table.write(book_tick("IF2101", "CFFEX", DAY, 1_609_750_000 * 10**9, last=5250.0,
                              bid=5249.8, ask=5250.2, upper=5700.0, lower=4700.0))  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            assert time.monotonic() < deadline
            message = json.loads(ws.recv(timeout=10))
            if message["type"] == "marks":
                break
            mirror.take(message)
        ws.close()
        late, _ = subscribe(url, VIEWER_A)  # a page opened now gets the day's curves so far
        first = json.loads(late.recv(timeout=10))
        history = json.loads(late.recv(timeout=10))
        late.close()
    finally:
        table.close()
    assert message["account"] == "A" and message["prices"] == {"IF2101": 5250.0}
    assert (first["type"], history["type"], history["account"]) == ("snapshot", "history", "A")
    assert history["samples"][0] == [message["time_ns"], message["prices"], message["equity"]]
    cash = {a: p["cash"] for a, p in mirror.accounts["A"]["topics"]["pnl"].items()}
    assert message["equity"] == pytest.approx(
        {a: cash[a] + u for a, u in message["unrealised"].items()}
    )
    assert message["time_ns"] == 1_609_750_000 * 10**9  # market time: the tick's, not the clock's
    positions = mirror.accounts["A"]["topics"]["positions"]
    assert positions  # something is held, so the marks mean something
    expected: dict[str, float] = {}
    for p in positions.values():
        lots_long = p["long_today"] + p["long_yesterday"]
        lots_short = p["short_today"] + p["short_yesterday"]
        points = lots_long * 5250.0 - p["long_basis"] + p["short_basis"] - lots_short * 5250.0
        expected[p["agent"]] = expected.get(p["agent"], 0.0) + points * 300
    for agent, value in message["unrealised"].items():
        assert value == pytest.approx(expected.get(agent, 0.0))


def test_the_dashboards_files_come_with_their_policy_and_nothing_else_is_served(
    deployment: Deployment,
) -> None:
    import urllib.error
    import urllib.request

    http = deployment.start().replace("ws://", "http://")
    with urllib.request.urlopen(http + "/") as page:
        body = page.read().decode()
        assert page.headers["Content-Type"] == "text/html; charset=utf-8"
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
        assert page.headers["X-Frame-Options"] == "DENY"
    assert '<script src="app.js">' in body and "vendor/uPlot.iife.min.js" in body
    with urllib.request.urlopen(http + "/vendor/uPlot.iife.min.js") as script:
        assert script.headers["Content-Type"] == "text/javascript; charset=utf-8"
        assert script.read().startswith(b"/*! https://github.com/leeoniya/uPlot (v1.6.32)")
    for path in ("/../credentials.toml", "/%2e%2e/deploy.toml", "/nothing.js", "/static/app.js"):
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(http + path)
        missing.value.close()
        assert missing.value.code == 404, path
    with urllib.request.urlopen(http + "/healthz") as health:
        assert health.read() == b"ok\n"


def test_the_page_under_any_host_name_may_connect_and_another_sites_page_may_not(
    deployment: Deployment,
) -> None:
    """A monitor reached as http://desk-host:PORT/ (bound to an address, opened by name) takes
    the WebSocket of its own page, whose Origin is that name; a page of another site is 403."""
    import http.client

    port = int(deployment.start().rsplit(":", 1)[1])

    def upgrade(origin: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.putrequest("GET", "/", skip_host=True)
        for name, value in (("Host", f"desk-host:{port}"), ("Origin", origin),
                            ("Upgrade", "websocket"), ("Connection", "Upgrade"),
                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                            ("Sec-WebSocket-Version", "13")):  # fmt: skip
            conn.putheader(name, value)
        conn.endheaders()
        status = conn.getresponse().status
        conn.close()
        return status

    assert upgrade(f"http://desk-host:{port}") == 101
    assert upgrade("http://evil.example") == 403
    assert upgrade(f"http://desk-host:{port + 1}") == 403


def test_health_carries_each_services_figures_to_those_who_may_see_them(
    deployment: Deployment,
) -> None:
    root = deployment.root
    figures = {a: EngineStatus(100 + i, time.time_ns(), 20210104, 1000 * (i + 1), 7 + i, 0, 0.0,
                               "live", Latency(5, 5, 20.0 + i, 90.0, 99.0))
               for i, a in enumerate("AB")}  # fmt: skip
    for account, status in figures.items():
        assert write_status(status_path(root / account, "engine"), status) is None
    md = RecorderStatus(99, time.time_ns(), 20210104, 27_953, 120.5,
                        {"duplicate": 2, "outside_hours": 11}, 3.5, 1, 0)  # fmt: skip
    assert write_status(status_path(root / "own", "md_recorder"), md) is None
    url = deployment.start()
    viewer, _ = subscribe(url, VIEWER_A)
    while (message := json.loads(viewer.recv(timeout=5)))["type"] != "health":
        pass
    assert list(message["engines"]) == ["A"]  # B's figures never reach a viewer of A
    a = message["engines"]["A"]
    assert msgspec.convert(a["status"], EngineStatus) == figures["A"]
    assert 0 <= a["status_age_s"] < 60
    assert msgspec.convert(message["market"]["status"], RecorderStatus) == md
    viewer.close()
    port = url.rsplit(":", 1)[1]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        text = answer.read().decode()
    for line in (
        'hft_md_recorder_ticks_dropped_total{reason="outside_hours"} 11.0',
        "hft_md_recorder_ticks_per_second 120.5",
        'hft_engine_tick_to_order_us{account="B",quantile="0.5"} 21.0',
        'hft_engine_tick_to_order_us{account="A",quantile="0.99"} 90.0',
        'hft_engine_behind_ticks{account="A"} 0.0',
        'hft_engine_orders_today{account="B"} 8.0',
        "hft_monitor_clients 0.0",
    ):
        assert line in text.splitlines(), text


def test_a_client_gets_the_ticks_it_asked_for_when_they_change_and_no_other(
    deployment: Deployment,
) -> None:
    url = deployment.start()
    table = SnapshotWriter(deployment.root / "shm" / "snapshot")
    try:
        t0 = 1_609_750_000 * 10**9
        for name, price in (("IF2101", 5250.0), ("IF2102", 5260.0)):
            table.write(book_tick(name, "CFFEX", DAY, t0, last=price, bid=price - 0.2,
                                  ask=price + 0.2, upper=5700.0, lower=4700.0))  # fmt: skip
        asks, _ = subscribe(url, VIEWER_A, instruments=["IF2101", "IF2199"])  # one not traded
        quiet, _ = subscribe(url, VIEWER_A)
        first = next_of(asks, "ticks")
        assert [t["instrument"] for t in first["ticks"]] == ["IF2101"]
        got = msgspec.convert(first, Ticks)
        assert (got.ticks[0].last, got.ticks[0].bid1, got.ticks[0].ask1) == (5250.0, 5249.8, 5250.2)
        assert got.time_ns == t0 and got.ticks[0].exchange_time_ns == t0
        table.write(book_tick("IF2101", "CFFEX", DAY, t0 + 10**9, last=5251.0, bid=5250.8,
                              ask=5251.2, upper=5700.0, lower=4700.0))  # fmt: skip
        second = next_of(asks, "ticks")  # a new tick: sent again; an unchanged one never is
        assert [(t["instrument"], t["last"]) for t in second["ticks"]] == [("IF2101", 5251.0)]
        late, _ = subscribe(url, VIEWER_A, instruments=["IF2102", "IF2101"])
        told = next_of(late, "ticks")  # IF2101 at once, unchanged since it was last sent
        assert [(t["instrument"], t["last"]) for t in told["ticks"]] == [("IF2101", 5251.0)]
        told = next_of(late, "ticks")  # IF2102, which no client had asked for, at the next round
        assert [(t["instrument"], t["last"]) for t in told["ticks"]] == [("IF2102", 5260.0)]
        late.close()
        deployment.write("A", 200)  # some deltas, so the quiet client's stream moves
        while (message := json.loads(quiet.recv(timeout=10)))["type"] != "health":
            assert message["type"] != "ticks"  # it asked for none
        quiet.close()
        asks.close()
        many, _ = subscribe(url, VIEWER_A, instruments=[f"X{i}" for i in range(101)])
        refused = json.loads(many.recv(timeout=10))
        assert refused["type"] == "error" and "length <= 100" in refused["text"], refused
        many.close()
    finally:
        table.close()


def next_of(ws: Any, kind: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while (message := json.loads(ws.recv(timeout=10)))["type"] != kind:
        assert time.monotonic() < deadline
    return message  # type: ignore[no-any-return]
