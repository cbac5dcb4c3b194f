"""The engine's command socket against malformed and hostile requests, on a real ``hft engine``
process and real ZMQ sockets: nothing a peer sends stops it, every answer to a bad request is a
refusal, a flood costs a few log lines and does not stop the feed, and a second engine on the
same directory touches nothing of the first."""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import zmq

from contracts import messages as m
from contracts.config import load_config
from contracts.errors import UserError
from contracts.status import EngineStatus, read_status, status_path
from libshm import JournalReader, JournalWriter, decode_tick
from services.engine.journals import read_journal
from services.tools.command import send_command
from tests.helpers import ROOT, import_market, live_tick_journal, log_lines, run_hft, write_config
from tests.services.engine.test_live import CONFIG, DAY, start

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


@dataclass
class Running:
    config: Path
    proc: subprocess.Popen[bytes]
    writer: JournalWriter
    source: JournalReader
    log: Path
    endpoint: str
    token: str

    def feed(self, count: int) -> None:
        """Copy the recording's next ``count`` ticks into the live tick journal."""
        for _ in range(count):
            frame = self.source.read()
            assert frame is not None
            self.writer.append_tick(decode_tick(frame.payload), frame.time_ns)

    def status(self) -> dict[str, Any]:
        reply = send_command(load_config(self.config), {"action": "status"}, timeout_s=10.0)
        assert reply.ok and reply.status is not None
        return reply.status

    def wait_ticks(self, n: int, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "the engine exited"
            status = self.status()
            if status["ticks"] >= n:
                return status
            time.sleep(0.05)
        raise AssertionError(f"the engine did not reach tick {n}")


@contextmanager
def running_engine(tmp_path: Path, recording: Path, first: int = 40, more: str = ""
                   ) -> Iterator[Running]:  # fmt: skip
    """``more``: agents and portfolios added to the deployment file."""
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    config = write_config(tmp_path, CONFIG + more)
    live = tmp_path / "journal" / "recordings" / str(DAY)
    log = tmp_path / "engine.log"
    with live_tick_journal(live) as writer:
        source = JournalReader(recording / str(DAY))
        run = Running(config, None, writer, source, log, "", "")  # type: ignore[arg-type]
        run.feed(first)
        run.proc = start(config, log)
        try:
            root = tmp_path / "journal" / "engine"
            deadline = time.monotonic() + 30
            while not (root / "command.token").exists() or not (root / "command.endpoint").exists():
                assert run.proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            run.wait_ticks(first)
            run.endpoint = (root / "command.endpoint").read_text().strip()
            run.token = (root / "command.token").read_text().strip()
            yield run
        finally:
            run.proc.send_signal(signal.SIGTERM)
            assert run.proc.wait(timeout=30) == 0, log.read_text()[-2000:]


def log_events(log: Path) -> list[dict[str, Any]]:
    return log_lines(log)


def test_a_two_frame_request_without_a_token_is_refused_and_the_engine_goes_on(
    tmp_path: Path, recording: Path
) -> None:
    with running_engine(tmp_path, recording) as run:
        ctx = zmq.Context()
        try:
            req = ctx.socket(zmq.REQ)
            req.setsockopt(zmq.LINGER, 0)
            req.connect(run.endpoint)
            req.send_multipart([b'{"action": "status"}', b"x"])
            assert req.poll(10_000)
            reply = msgspec.json.decode(req.recv(), type=m.CommandReply)
            assert not reply.ok and "one frame" in reply.text
            req.close()
        finally:
            ctx.term()
        run.feed(10)
        assert run.wait_ticks(50)["ticks"] == 50
    assert "Traceback" not in run.log.read_text()


def _garbage(rng: random.Random, token: str) -> list[bytes]:
    """One malformed request: a random number of frames of random bytes or random JSON."""
    shapes: list[Any] = [
        None, 1, -1.5, "halt", [], {}, [1, 2], {"action": 5},
        {"action": "halt"}, {"token": 7, "action": "halt"},
        {"token": "wrong", "action": "status"},
        {"token": token[:-1] + ("1" if token.endswith("0") else "0"), "action": "halt"},
        {"token": token, "action": "explode"}, {"token": token, "action": "halt", "extra": 1},
        {"token": token, "action": "halt", "scope": "galaxy"},
        {"token": token, "action": "halt", "target": "x" * 500},
        {"token": [token], "action": "halt"},
    ]  # fmt: skip
    kind = rng.randrange(4)
    if kind == 0:
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
    elif kind == 1:
        body = json.dumps(rng.choice(shapes)).encode()
    elif kind == 2:
        body = json.dumps(rng.choice(shapes)).encode()[: rng.randrange(1, 20)]
    else:
        body = b"\xff\xfe" + "状态".encode("utf-16")
    frames = rng.choice([1, 1, 1, 2, 3, 5])
    return [body] + [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 8)))
                     for _ in range(frames - 1)]  # fmt: skip


def test_ten_thousand_malformed_requests_get_refusals_and_the_feed_goes_on(
    tmp_path: Path, recording: Path
) -> None:
    rng = random.Random(13)
    with running_engine(tmp_path, recording) as run:
        ctx = zmq.Context()
        try:
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(run.endpoint)
            sent = replies = 0
            fed = 40
            for i in range(10_000):
                parts = _garbage(rng, run.token)
                dealer.send_multipart([b"", *parts])  # as a REQ client frames it
                sent += 1
                if i % 500 == 0:  # the feed runs during the flood
                    run.feed(5)
                    fed += 5
                while dealer.poll(0):
                    got = dealer.recv_multipart()
                    assert got[0] == b""
                    reply = msgspec.json.decode(got[1], type=m.CommandReply)
                    assert not reply.ok, reply
                    replies += 1
            deadline = time.monotonic() + 60
            while replies < sent and time.monotonic() < deadline:
                if dealer.poll(1000):
                    got = dealer.recv_multipart()
                    reply = msgspec.json.decode(got[1], type=m.CommandReply)
                    assert not reply.ok, reply
                    replies += 1
            assert replies == sent  # every malformed request got its refusal
            # an oversized request drops that peer and nothing else
            big = ctx.socket(zmq.DEALER)
            big.setsockopt(zmq.LINGER, 0)
            big.connect(run.endpoint)
            big.send_multipart([b"", b"{" + b" " * 100_000 + b"}"])
            assert not big.poll(500)
            big.close()
            dealer.close()
        finally:
            ctx.destroy(linger=0)  # closes what a failed assertion left open (term would wait)
        assert run.wait_ticks(fed)["ticks"] == fed  # the engine kept up with the feed
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    commands = (m.Halt, m.Reduce, m.Resume, m.CancelAll, m.Flatten)
    own = {x.command_id for x in journal  # the engine's own, cancelling as it stops
           if isinstance(x, commands) and x.requester.startswith("engine: stopping")}  # fmt: skip
    assert not [
        x for x in journal if isinstance(x, (*commands, m.CommandAck)) and x.command_id not in own
    ]  # nothing a peer sent reached the engine
    events = log_events(run.log)
    refused = [e for e in events if e["event"] == "command_refused"]
    assert 1 <= len(refused) <= 5, len(refused)  # not one line per bad request
    assert "Traceback" not in run.log.read_text()


def test_a_flood_of_bad_tokens_is_logged_as_one_count(tmp_path: Path, recording: Path) -> None:
    with running_engine(tmp_path, recording) as run:
        ctx = zmq.Context()
        try:
            dealer = ctx.socket(zmq.DEALER)
            dealer.setsockopt(zmq.LINGER, 0)
            dealer.connect(run.endpoint)
            bad = json.dumps({"token": "not-the-token", "action": "halt"}).encode()
            for _ in range(3_000):
                dealer.send_multipart([b"", bad])
            got = 0
            while got < 3_000:
                assert dealer.poll(30_000)
                dealer.recv_multipart()
                got += 1
            dealer.close()
        finally:
            ctx.term()
        deadline = time.monotonic() + 40
        summary: list[dict[str, Any]] = []
        while not summary and time.monotonic() < deadline:
            assert run.proc.poll() is None
            summary = [e for e in log_events(run.log) if e["event"] == "commands_refused"]
            time.sleep(0.2)
        assert run.status()["agents"]["mm"]["state"] == "active"  # nothing was halted
    first = [e for e in log_events(run.log) if e["event"] == "command_refused"]
    assert len(first) == 1 and first[0]["peer"] == "127.0.0.1"
    assert summary[0]["count"] == 2_999 and summary[0]["reasons"] == {"bad token": 2_999}
    assert "2999 refused requests from 127.0.0.1 in the last" in summary[0]["text"]


def test_a_second_engine_on_the_same_directory_leaves_the_first_in_control(
    tmp_path: Path, recording: Path
) -> None:
    with running_engine(tmp_path, recording) as run:
        root = tmp_path / "journal" / "engine"
        endpoint, token = (
            (root / "command.endpoint").read_bytes(),
            (root / "command.token").read_bytes(),
        )
        second = run_hft("engine", "--config", str(run.config))
        assert second.returncode == 1
        assert "another engine" in second.stderr and "Traceback" not in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        assert (root / "command.endpoint").read_bytes() == endpoint
        assert (root / "command.token").read_bytes() == token
        halt = run_hft("command", "--config", str(run.config), "halt")
        assert halt.returncode == 0, halt.stdout + halt.stderr
        assert run.status()["ticks"] == 40


def test_status_into_a_closed_pipe_stops_quietly(tmp_path: Path, recording: Path) -> None:
    """`hft command status | head -1`: the reader leaves; no traceback, the shell's 141."""
    with running_engine(tmp_path, recording) as run:
        read_end, write_end = os.pipe()
        os.close(read_end)  # a reader that has gone: every write fails with EPIPE
        try:
            done = subprocess.run(
                [sys.executable, "-m", "services.cli", "command", "--config", str(run.config),
                 "status"],
                stdout=write_end, stderr=subprocess.PIPE, cwd=ROOT, timeout=60, check=False,
            )  # fmt: skip
        finally:
            os.close(write_end)
        assert done.returncode == 141, done.stderr
        assert done.stderr == b""
        assert run.status()["ticks"] == 40  # the engine answered and goes on


def test_the_status_file_counts_the_days_orders_and_times_the_ticks_that_caused_them(
    tmp_path: Path, recording: Path
) -> None:
    with running_engine(tmp_path, recording) as run:
        run.feed(400)
        run.wait_ticks(440)
        path = status_path(tmp_path / "journal", "engine")
        deadline = time.monotonic() + 30
        while not (isinstance(s := read_status(path), EngineStatus) and s.ticks == 440):
            assert time.monotonic() < deadline, s
            time.sleep(0.05)
        assert isinstance(s, EngineStatus)
        requested = [x for x in read_journal(tmp_path / "journal" / "engine" / str(DAY))
                     if isinstance(x, m.OrderRequested)]  # fmt: skip
        assert s.orders == len(requested) > 0
        assert s.trading_day == DAY and s.feed == "live" and s.behind_ticks == 0
        latency = s.tick_to_order
        # some ticks caused orders and others none (the quoter re-quotes on a change of price)
        assert 0 < latency.count < 440 and latency.count <= s.orders
        assert 0 < latency.p50_us <= latency.p99_us <= latency.max_us
        assert run.status()["tick_to_order_us"]["count"] >= latency.count


def test_sigterm_cancels_the_working_orders_journaled_and_a_restart_recovers_past_it(
    tmp_path: Path, recording: Path
) -> None:
    """engine.on_stop = "cancel" (the default): the account is halted so no agent sends more,
    every working order is cancelled and its answer awaited, the account resumed, all of it
    journaled; the restarted engine's recovery replays it and the account trades on."""
    with running_engine(tmp_path, recording) as run:
        run.feed(400)
        status = run.wait_ticks(440)
        assert any(a["working_orders"] for a in status["agents"].values()), status  # resting
    path = tmp_path / "journal" / "engine" / str(DAY)
    journal = read_journal(path)
    commands = [x for x in journal if isinstance(x, m.Halt | m.CancelAll | m.Resume)]
    assert [type(x) for x in commands[-3:]] == [m.Halt, m.CancelAll, m.Resume]
    assert {x.requester for x in commands[-3:]} == {"engine: stopping (engine.on_stop = cancel)"}
    ended = {x.order_id for x in journal
             if isinstance(x, m.OrderCancelled | m.OrderRejected)}  # fmt: skip
    filled: dict[str, int] = {}
    for x in journal:
        if isinstance(x, m.Trade):
            filled[x.order_id] = filled.get(x.order_id, 0) + x.volume
    working = [x.order_id for x in journal if isinstance(x, m.OrderRequested)
               and x.order_id not in ended and filled.get(x.order_id, 0) < x.volume]  # fmt: skip
    assert working == []  # nothing left at the exchange
    states = [x for x in journal if isinstance(x, m.StateChanged) and x.scope == "account"]
    assert [x.state for x in states[-2:]] == ["halted", "active"]  # the next start trades
    assert not [e for e in log_events(tmp_path / "engine.log")  # a warning had one been left
                if e["event"] == "engine_stop_cancelled"]  # fmt: skip
    log = tmp_path / "restart.log"
    config = write_config(tmp_path, CONFIG)
    proc = start(config, log)
    try:
        deadline = time.monotonic() + 60
        while True:  # recovered: it answers with the day's ticks, the account active
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-2000:]
            with contextlib.suppress(UserError):
                reply = send_command(load_config(config), {"action": "status"}, timeout_s=2.0)
                got: dict[str, Any] = dict(reply.status or {})
                if reply.ok and got.get("ticks", 0) >= 440:
                    break
            time.sleep(0.1)
        assert got["trading_day"] == DAY
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0, log.read_text()[-2000:]
    assert read_journal(path)[: len(journal)] == journal  # the recovery went past it unchanged
