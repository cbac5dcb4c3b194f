"""The monitor tests' deployment: two accounts whose engine journals hold the real IF2101 day as
the real engine journals it (A trades with a quoter and a follower, B with a follower alone),
written a slice at a time while a real ``hft monitor`` watches; and a client's mirror of the
stream (fixtures in conftest.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from contracts import messages as m
from contracts.config import ProductRates, RiskConfig
from libshm import JournalWriter
from tests.helpers import ROOT

DAY = 20210104
VIEWER_A = "viewer-of-a-" + "a" * 32
ADMIN = "admin-token-" + "b" * 32
RATES = {"IF": ProductRates(margin_rate=0.12, open_rate=0.000023, close_rate=0.000023,
                            close_today_rate=0.000345)}  # fmt: skip
RISK = RiskConfig(max_position=5, max_net_position=5, cancel_limit=5000, cancel_reserve=20,
                  max_cancel_ratio=2.0, duplicate_window_ms=0, max_daily_loss=1e9)  # fmt: skip


class Deployment:
    """Two accounts' engine journals (written here, as the engine writes them) and a monitor."""

    def __init__(self, root: Path, frames: dict[str, list[tuple[bytes, int]]],
                 client_queue: int = 1_000_000, *, zmq_pub: str = "tcp://127.0.0.1:0",
                 curve: tuple[str, str] | None = None) -> None:  # fmt: skip
        """``curve``: the monitor's CURVE secret key and desk-a's public key (Z85)."""
        self.root = root
        self.frames = frames
        self.written = dict.fromkeys(frames, 0)
        self.writers = {
            a: JournalWriter(root / a / "engine" / str(DAY), layout=m.ENGINE_LAYOUT) for a in frames
        }
        creds = root / "credentials.toml"
        creds.write_text(
            (f'monitor_curve_secret_key = "{curve[0]}"\n\n' if curve else "")
            + f'[[monitor_tokens]]\nname = "desk-a"\ntoken = "{VIEWER_A}"\nrole = "viewer"\n'
            + 'accounts = ["A"]\n'
            + (f'curve_public_key = "{curve[1]}"\n' if curve else "")
            + f'\n[[monitor_tokens]]\nname = "ops"\ntoken = "{ADMIN}"\nrole = "admin"\n'
            + 'accounts = ["*"]\n'
        )
        creds.chmod(0o600)
        self.config = root / "deploy.toml"
        self.config.write_text(
            f'[suite]\nname = "m"\nmode = "paper"\njournal_dir = "{root / "own"}"\n'
            f'shm_dir = "{root / "shm"}"\ncredentials_file = "{creds}"\n\n'
            '[md_recorder]\nsource = "sim"\ninstruments = ["IF2101"]\n[md_recorder.sim]\n\n'
            '[engine]\nadapter = "paper"\n\n'
            f"[monitor]\nport = 0\nclient_queue = {client_queue}\nslow_grace_s = 30\n"
            f'zmq_pub = "{zmq_pub}"\nzmq_snapshot = "tcp://127.0.0.1:0"\n'
            f'[[monitor.accounts]]\nname = "A"\njournal_dir = "{root / "A"}"\n'
            f'[[monitor.accounts]]\nname = "B"\njournal_dir = "{root / "B"}"\n'
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / "monitor.log"
        self.url = ""
        self.zmq_file = root / "own" / "monitor" / "zmq.json"
        """The ZMQ endpoints the monitor bound (written before ``endpoint``)."""

    def write(self, account: str, count: int) -> None:
        start = self.written[account]
        for data, t in self.frames[account][start : start + count]:
            self.writers[account].append(data, t)
        self.written[account] = min(start + count, len(self.frames[account]))

    def start(self) -> str:
        endpoint = self.root / "own" / "monitor" / "endpoint"
        endpoint.unlink(missing_ok=True)
        self.zmq_file.unlink(missing_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "monitor", "--config", str(self.config)],
                stdout=out, stderr=out, cwd=ROOT, env=env,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while not endpoint.exists():
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log.read_text()[-3000:]
            time.sleep(0.02)
        self.url = endpoint.read_text().strip()
        return self.url

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            assert self.proc.wait(timeout=30) == 0, self.log.read_text()[-3000:]
        self.proc = None

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for writer in self.writers.values():
            writer.close()


def received_nothing(ws: ClientConnection) -> int:
    """The close code of a connection the server closed without sending a message."""
    with pytest.raises(ConnectionClosed) as closed:
        ws.recv(timeout=10)
    assert closed.value.rcvd is not None
    return closed.value.rcvd.code


def subscribe(url: str, token: str, since: dict[str, list[int]] | None = None,
              instruments: list[str] | None = None,
              **kwargs: Any) -> tuple[ClientConnection, dict[str, Any]]:  # fmt: skip
    ws = connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, legacy=True, **kwargs
    )
    hello = json.loads(ws.recv(timeout=10))
    assert hello["type"] == "hello"
    ws.send(
        json.dumps({"type": "subscribe", "since": since or {}, "instruments": instruments or []})
    )
    return ws, hello


class Mirror:
    """What a client builds from the stream: per account the day, last seq and topics."""

    def __init__(self) -> None:
        self.accounts: dict[str, dict[str, Any]] = {}
        self.seen: list[tuple[str, str, int]] = []  # (type, account, seq) of every message
        self.health: dict[str, Any] = {}
        self.alerts: list[dict[str, Any]] = []
        self.samples: dict[str, dict[str, Any]] = {}

    def take(self, message: dict[str, Any]) -> None:
        if message["type"] == "health":  # a live sample, not part of the state
            self.health = message
            return
        if message["type"] == "alert":
            self.alerts.append(message)
            return
        if message["type"] in ("marks", "history", "ticks"):  # live samples, not the state
            self.samples[message["type"]] = message
            return
        if message["type"] == "deltas":  # a batch: each delta of it, in order
            assert message["deltas"], "an empty batch"
            for delta in message["deltas"]:
                assert delta["account"] == message["account"], message
                assert delta["trading_day"] == message["trading_day"], message
                self.take(delta)
            return
        account = message["account"]
        self.seen.append((message["type"], account, message["seq"]))
        if message["type"] == "snapshot":
            self.accounts[account] = {"seq": message["seq"], "topics": message["topics"]}
            return
        assert message["type"] == "delta", message
        mine = self.accounts[account]
        assert message["seq"] == mine["seq"] + 1, (mine["seq"], message["seq"])  # no gap, no dup
        mine["seq"] = message["seq"]
        values = mine["topics"].setdefault(message["topic"], {})
        if message["value"] is None:
            values.pop(message["key"], None)
        else:
            values[message["key"]] = message["value"]

    def follow(self, ws: ClientConnection, until: dict[str, int]) -> None:
        """Read until every account of ``until`` reached that seq."""
        deadline = time.monotonic() + 60
        while any(self.accounts.get(a, {}).get("seq", -1) < s for a, s in until.items()):
            assert time.monotonic() < deadline, {a: x["seq"] for a, x in self.accounts.items()}
            self.take(json.loads(ws.recv(timeout=30)))


def final_seq(deployment: Deployment, url: str, account: str) -> int:
    """The account's current seq, as a fresh admin snapshot gives it."""
    ws, _ = subscribe(url, ADMIN)
    try:
        while True:
            message = json.loads(ws.recv(timeout=10))
            if message["type"] == "snapshot" and message["account"] == account:
                return int(message["seq"])
    finally:
        ws.close()


def wait_caught_up(deployment: Deployment, url: str) -> dict[str, int]:
    """Wait until the monitor has applied every frame written so far; each account's seq."""
    seqs: dict[str, int] = {}
    for account in ("A", "B"):
        before = -1
        while (now := final_seq(deployment, url, account)) != before:  # stable across a pass
            before = now
            time.sleep(0.2)
        seqs[account] = now
    return seqs
