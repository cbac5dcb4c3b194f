"""A real ``hft monitor`` and real ZMQ subscribers (pyzmq) on 127.0.0.1, over the two accounts
of the harness: the right credentials receive their account; a wrong token, and a viewer of A on
B's socket, fail the handshake and receive nothing, whatever they subscribe to; a late joiner's
snapshot plus the deltas after it equal the live state; CURVE on an address other hosts reach,
with a registered key, and nothing for an unknown key or for PLAIN there."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from tests.helpers import log_lines, run_hft
from tests.services.monitor.harness import (
    ADMIN,
    VIEWER_A,
    Deployment,
    Mirror,
    wait_caught_up,
)

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def context() -> Iterator[zmq.Context[Any]]:
    ctx: zmq.Context[Any] = zmq.Context()
    yield ctx
    ctx.destroy(linger=0)


def endpoints(deployment: Deployment) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(deployment.zmq_file.read_text())
    return data


def local(endpoint: str) -> str:
    """``tcp://0.0.0.0:PORT`` (what a socket bound to ``*`` reports) as one to connect to."""
    return endpoint.replace("0.0.0.0", "127.0.0.1")


Keys = tuple[bytes, bytes, bytes]


def connect(ctx: zmq.Context[Any], kind: int, endpoint: str, *, token: str | None = None,
            curve: Keys | None = None) -> tuple[zmq.Socket[Any], int]:  # fmt: skip
    """A socket connected with PLAIN (``token``) or CURVE (server key, own public and secret
    key), and the first handshake event its connection got: succeeded or how it failed."""
    sock = ctx.socket(kind)
    sock.linger = 0
    if token is not None:
        sock.plain_username = b"a-program"
        sock.plain_password = token.encode()
    if curve is not None:
        sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = curve
    events = sock.get_monitor_socket()
    sock.connect(local(endpoint))
    done = (zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_AUTH,
            zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)  # fmt: skip
    assert events.poll(30_000), "no handshake within 30 s"
    while (event := recv_monitor_message(events))["event"] not in done:
        assert events.poll(30_000), "no handshake within 30 s"
    sock.disable_monitor()
    events.close()
    return sock, int(event["event"])


def ask(sock: zmq.Socket[Any], request: dict[str, Any]) -> dict[str, Any]:
    sock.send(json.dumps(request).encode())
    assert sock.poll(10_000), f"no answer to {request}"
    reply: dict[str, Any] = json.loads(sock.recv())
    return reply


def receive(sub: zmq.Socket[Any], timeout_ms: int = 30_000) -> tuple[str, dict[str, Any]]:
    assert sub.poll(timeout_ms), "nothing published"
    kind, data = sub.recv_multipart()
    return kind.decode(), json.loads(data)


def follow(sub: zmq.Socket[Any], mirror: Mirror, until: dict[str, int]) -> list[str]:
    """Apply what ``sub`` receives to ``mirror`` (deltas at or before its snapshot's seq are
    dropped, as a late joiner does) until each account reached its seq; the kinds received."""
    kinds = []
    deadline = time.monotonic() + 60
    while any(mirror.accounts[a]["seq"] < s for a, s in until.items()):
        assert time.monotonic() < deadline, {a: x["seq"] for a, x in mirror.accounts.items()}
        kind, message = receive(sub)
        kinds.append(kind)
        if kind == "health":
            assert set(message["engines"]) <= set(until), message
        else:
            assert message["account"] in until, message
        if kind == "delta" and message["seq"] > mirror.accounts[message["account"]]["seq"]:
            mirror.take(message)  # checks the seq is the next one: no gap, no duplicate
    return kinds


def test_right_credentials_receive_their_account_and_wrong_ones_nothing(
    deployment: Deployment, context: zmq.Context[Any]
) -> None:
    deployment.start()
    where = endpoints(deployment)
    assert set(where["accounts"]) == {"A", "B"}
    viewer, how = connect(context, zmq.SUB, where["accounts"]["A"], token=VIEWER_A)
    assert how == zmq.EVENT_HANDSHAKE_SUCCEEDED
    wrong, how = connect(context, zmq.SUB, where["accounts"]["A"], token="not-a-token" * 4)
    assert how == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    snooper, how = connect(context, zmq.SUB, where["accounts"]["B"], token=VIEWER_A)
    assert how == zmq.EVENT_HANDSHAKE_FAILED_AUTH  # a viewer of A on B's socket
    admin_b, how = connect(context, zmq.SUB, where["accounts"]["B"], token=ADMIN)
    assert how == zmq.EVENT_HANDSHAKE_SUCCEEDED
    for sock in (viewer, wrong, snooper, admin_b):
        sock.subscribe(b"")  # every topic
    for sub in (viewer, admin_b):  # each is subscribed once its first health sample comes
        while receive(sub)[0] != "health":
            pass
    rep, how = connect(context, zmq.REQ, where["snapshot"], token=VIEWER_A)
    assert how == zmq.EVENT_HANDSHAKE_SUCCEEDED
    mine = ask(rep, {"type": "endpoints"})
    assert (mine["type"], set(mine["accounts"])) == ("endpoints", {"A"})
    assert ask(rep, {"type": "snapshot", "account": "B"}) == {
        "type": "error", "text": "no account 'B' for this token"
    }  # fmt: skip
    assert ask(rep, {"type": "snapshot", "acount": "A"})["type"] == "error"
    start = {a: ask(rep, {"type": "snapshot", "account": a}) for a in ("A",)}
    admin_rep, _ = connect(context, zmq.REQ, where["snapshot"], token=ADMIN)
    start["B"] = ask(admin_rep, {"type": "snapshot", "account": "B"})
    for account in ("A", "B"):
        deployment.write(account, 2000)
    seqs = wait_caught_up(deployment, deployment.url)
    assert all(seqs[a] > start[a]["seq"] for a in ("A", "B"))
    for sub, account in ((viewer, "A"), (admin_b, "B")):
        mirror = Mirror()
        mirror.take(start[account])
        kinds = follow(sub, mirror, {account: seqs[account]})
        assert "delta" in kinds
        assert mirror.accounts[account] == {
            k: v for k, v in ask(admin_rep, {"type": "snapshot", "account": account}).items()
            if k in ("seq", "topics")
        }  # fmt: skip
    for sock in (wrong, snooper):
        assert not sock.poll(0)  # nothing at all, though both subscribed to everything
    log = deployment.log.read_text()
    assert "not-a-token" not in log and VIEWER_A not in log and ADMIN not in log
    failed = [x for x in log_lines(deployment.log) if x["event"] == "monitor_zmq_auth_failed"]
    whys = {(x["domain"], x["why"]) for x in failed}
    assert whys == {("A", "unknown credentials"), ("B", "account not granted")}, whys
    for sock in (viewer, wrong, snooper, admin_b, rep, admin_rep):
        sock.close()


def test_a_late_joiners_snapshot_plus_the_deltas_after_it_equal_the_live_state(
    deployment: Deployment, context: zmq.Context[Any]
) -> None:
    """It joins while the monitor is busy with 2,000 new frames, as the clone pattern does:
    subscribe, wait until the subscription took (a health sample came), ask for a snapshot,
    drop the deltas it already holds, apply the rest."""
    deployment.start()
    where = endpoints(deployment)
    deployment.write("A", 2000)
    sub, _ = connect(context, zmq.SUB, where["accounts"]["A"], token=ADMIN)
    sub.subscribe(b"")
    while receive(sub)[0] != "health":
        pass
    rep, _ = connect(context, zmq.REQ, where["snapshot"], token=ADMIN)
    mirror = Mirror()
    mirror.take(ask(rep, {"type": "snapshot", "account": "A"}))
    joined_at = mirror.accounts["A"]["seq"]
    deployment.write("A", 2000)
    seqs = wait_caught_up(deployment, deployment.url)
    follow(sub, mirror, {"A": seqs["A"]})
    live = ask(rep, {"type": "snapshot", "account": "A"})
    assert live["seq"] == seqs["A"] > joined_at
    assert mirror.accounts["A"] == {"seq": live["seq"], "topics": live["topics"]}
    sub.close()
    rep.close()


def test_curve_on_an_address_other_hosts_reach(
    tmp_path: Path, frames: dict[str, list[tuple[bytes, int]]], context: zmq.Context[Any]
) -> None:
    """Bound to every interface, the PUB sockets take CURVE only: desk-a's registered key
    receives A; an unknown key and a PLAIN token fail the handshake."""
    server_public, server_secret = zmq.curve_keypair()
    desk_public, desk_secret = zmq.curve_keypair()
    stranger_public, stranger_secret = zmq.curve_keypair()
    deployment = Deployment(tmp_path, frames, zmq_pub="tcp://*:0",
                            curve=(server_secret.decode(), desk_public.decode()))  # fmt: skip
    try:
        deployment.write("A", 3000)
        deployment.start()
        where = endpoints(deployment)
        assert where["curve_public_key"] == server_public.decode()
        desk, how = connect(context, zmq.SUB, where["accounts"]["A"],
                            curve=(server_public, desk_public, desk_secret))  # fmt: skip
        assert how == zmq.EVENT_HANDSHAKE_SUCCEEDED
        desk_b, how = connect(context, zmq.SUB, where["accounts"]["B"],
                              curve=(server_public, desk_public, desk_secret))  # fmt: skip
        assert how == zmq.EVENT_HANDSHAKE_FAILED_AUTH  # desk-a sees A only
        strange = (server_public, stranger_public, stranger_secret)
        stranger, how = connect(context, zmq.SUB, where["accounts"]["A"], curve=strange)
        assert how == zmq.EVENT_HANDSHAKE_FAILED_AUTH
        plain, how = connect(context, zmq.SUB, where["accounts"]["A"], token=ADMIN)
        assert how != zmq.EVENT_HANDSHAKE_SUCCEEDED  # no token in clear across a network
        for sock in (desk, desk_b, stranger, plain):
            sock.subscribe(b"")
        while (kind_message := receive(desk))[0] != "health":  # deltas of A may come first
            assert kind_message[1]["account"] == "A"
        assert list(kind_message[1]["engines"]) == ["A"]
        deployment.write("A", 500)
        while (kind_message := receive(desk))[0] != "delta":
            pass
        assert kind_message[1]["account"] == "A"
        for sock in (desk_b, stranger, plain):
            assert not sock.poll(0)
        for sock in (desk, desk_b, stranger, plain):
            sock.close()
    finally:
        deployment.close()


def test_a_reachable_address_without_a_curve_key_and_a_zmq_port_in_use_are_one_line_each(
    deployment: Deployment, context: zmq.Context[Any]
) -> None:
    text = deployment.config.read_text()
    deployment.config.write_text(text.replace('zmq_pub = "tcp://127.0.0.1:0"',
                                              'zmq_pub = "tcp://*:0"'))  # fmt: skip
    reachable = run_hft("monitor", "--config", str(deployment.config))
    assert reachable.returncode == 2
    assert reachable.stderr.strip().splitlines() == [
        "hft monitor: error: monitor: tcp://*:0 is reachable from other hosts, where PLAIN "
        "would send tokens in clear; set monitor_curve_secret_key in the credentials file (or "
        "HFT_MONITOR_CURVE_SECRET_KEY) so subscribers use CURVE, or bind to 127.0.0.1"
    ]
    taken = context.socket(zmq.REP)
    port = taken.bind_to_random_port("tcp://127.0.0.1")
    taken_at = f'zmq_snapshot = "tcp://127.0.0.1:{port}"'
    deployment.config.write_text(text.replace('zmq_snapshot = "tcp://127.0.0.1:0"', taken_at))
    busy = run_hft("monitor", "--config", str(deployment.config))
    taken.close()
    assert busy.returncode == 1
    assert busy.stderr.strip().splitlines() == [
        f"hft monitor: error: monitor: tcp://127.0.0.1:{port} is in use by another program; "
        "stop it or set monitor.zmq_pub and monitor.zmq_snapshot"
    ]
