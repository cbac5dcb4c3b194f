"""``hft engine`` with the CTP adapter as a real process on the real IF2101 day: with openctp-ctp's
real ``TraderApi`` at a closed port it keeps trading the day and refuses each order with the
reason; against a front and exchange that outlive it (``adapters/ctp/venue.py``, which records
every callback it sends and replays them to each new session), it is killed with SIGKILL at
random points, recovers each time, and sends no order twice."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from contracts import messages as m
from contracts.config import load_config
from contracts.ctp_locale import has_locale
from contracts.errors import UserError
from libshm import JournalReader, JournalWriter, decode_tick
from services.engine.journals import read_journal
from services.tools.command import send_command
from tests.helpers import (
    ROOT,
    closed_port,
    import_market,
    live_tick_journal,
    log_lines,
    require_ctp_locale,
    write_config,
)
from tests.services.engine.test_live import DAY, frames

if not has_locale():  # the engine process imports openctp-ctp: it aborts without the locale
    require_ctp_locale()

CONFIG = """\
[suite]
name = "ctp-test"
mode = "live"
journal_dir = "journal"
shm_dir = "shm"

[md_recorder]
source = "ctp"
instruments = ["IF2101"]

[md_recorder.ctp]
fronts = ["tcp://127.0.0.1:1"]
broker_id = "9999"
user_id = "000123"
flow_dir = "md-flow"

[engine]
adapter = "ctp"
command_endpoint = "tcp://127.0.0.1:0"
timer_ms = 600000

[engine.ctp]
fronts = ["tcp://127.0.0.1:PORT"]
broker_id = "9999"
user_id = "000123"
app_id = "client_hft_test"
flow_dir = "td-flow"
connect_timeout_s = 0.2
query_gap_s = 0.0
orders_per_s = 1000.0

[engine.risk]
max_daily_loss = 1e9
cancel_limit = 20000
max_cancel_ratio = 5.0
duplicate_window_ms = 0
max_position = 5
max_net_position = 5

[engine.products.default]
margin_rate = 0.12
open_rate = 0.000023
close_rate = 0.000023
close_today_rate = 0.000345

[[engine.agents]]
name = "churn"
strategy = "tests.services.engine.agents:Churns"
instruments = ["IF2101"]
capital = 1000000.0
params = { every = 20 }
"""


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


def start(args: list[str], log: Path, keep_env: bool = True) -> subprocess.Popen[bytes]:
    """``python -m ARGS``, with a CTP password in the environment unless ``keep_env`` is
    False (then each deployment's credentials file gives it)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HFT_")}
    if keep_env:
        env["HFT_CTP_PASSWORD"] = "not-a-real-password"
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", *args], cwd=ROOT, stdout=out, stderr=out,
                                env=env)  # fmt: skip


def test_at_a_closed_port_the_engine_trades_on_and_refuses_each_order_with_the_reason(
    tmp_path: Path, recording: Path
) -> None:
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    config = write_config(tmp_path, CONFIG.replace("PORT", str(closed_port())))
    log = tmp_path / "engine.log"
    args = ["services.cli", "engine", "--config", str(config), "--log-level", "info"]
    with live_tick_journal(tmp_path / "journal" / "recordings" / str(DAY)) as writer:
        proc = start(args, log)
        try:
            feed_some(recording, writer, 4_000)  # 1.6 s of a busy feed
            wait_ticks(config, proc, 4_000, log)
            deadline = time.monotonic() + 30  # the engine runs on, and retries
            while len([x for x in log_lines(log)
                       if x.get("event") == "ctp_trade_not_connected"]) < 3:  # fmt: skip
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
    journal = read_journal(tmp_path / "journal" / "engine" / str(DAY))
    requested = {x.order_id for x in journal if isinstance(x, m.OrderRequested)}
    rejected = [x for x in journal if isinstance(x, m.OrderRejected)]
    assert len(requested) > 20 and {x.order_id for x in rejected} == requested
    assert {x.code for x in rejected} == {"DISCONNECTED"}
    assert all(x.text.startswith("the order did not leave: ") for x in rejected)
    assert all("CTP front" in x.text or "tcp://127.0.0.1:" in x.text for x in rejected)
    assert any("no login at tcp://127.0.0.1:" in x.text for x in rejected)
    assert not any(isinstance(x, m.OrderRouted | m.Trade) for x in journal)
    retries = [x for x in log_lines(log) if x.get("event") == "ctp_trade_not_connected"]
    waits = [x["retry_in_s"] for x in retries[:3]]  # backoff: 1, 2, 4 s ... +-20 %
    assert 0.8 <= waits[0] <= 1.2 and 1.6 <= waits[1] <= 2.4 and 3.2 <= waits[2] <= 4.8
    assert "Traceback" not in log.read_text()


FED = 27_954  # the day's ticks (and its settlement record) fed live, at FED_PER_S a second
FED_PER_S = 2_500


def feed(recording: Path, writer: JournalWriter) -> None:
    """The day's ``FED`` ticks into a live journal at the pace of a busy feed."""
    feed_some(recording, writer, FED)


def feed_some(recording: Path, writer: JournalWriter, count: int) -> None:
    """The day's first ``count`` ticks into a live journal at ``FED_PER_S`` a second."""
    source = JournalReader(recording / str(DAY))
    began = time.monotonic()
    for i in range(count):
        frame = source.read()
        assert frame is not None
        writer.append_tick(decode_tick(frame.payload), frame.time_ns)
        if i % 100 == 99:  # the feed's pace, not a wait for an event
            time.sleep(max(0.0, began + (i + 1) / FED_PER_S - time.monotonic()))


def wait_ticks(config: Path, proc: subprocess.Popen[bytes], ticks: int, log: Path) -> None:
    cfg = load_config(config)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        try:
            reply = send_command(cfg, {"action": "status"}, timeout_s=2.0)
        except UserError:  # no token file yet, or no answer yet
            reply = None
        if reply is not None and reply.status and reply.status.get("ticks") == ticks:
            return
        time.sleep(0.1)


def test_an_engine_killed_at_random_points_recovers_and_sends_no_order_twice(  # noqa: PLR0915
    tmp_path: Path, recording: Path
) -> None:
    """A live feed (the day's ticks written as they come), the engine killed three times while
    it trades against the venue, then run to the feed's end: every order the venue took was
    sent once, every fill booked once, every login's books agreed."""
    (tmp_path / "journal" / "recordings").mkdir(parents=True)
    config = write_config(tmp_path, CONFIG.replace("PORT", "1"))
    venue = tmp_path / "venue"
    log = tmp_path / "engine.log"
    journal_dir = tmp_path / "journal" / "engine" / str(DAY)
    args = ["tests.services.engine.ctp_engine", str(config), str(venue)]
    rng = random.Random(19)
    kills = []
    with live_tick_journal(tmp_path / "journal" / "recordings" / str(DAY)) as writer:
        feeder = threading.Thread(target=feed, args=(recording, writer), daemon=True)
        feeder.start()
        for _ in range(3):
            target = frames(journal_dir) + rng.randrange(100, 400)
            proc = start(args, log)
            try:
                deadline = time.monotonic() + 60
                while frames(journal_dir) < target:
                    assert proc.poll() is None, log.read_text()[-3000:]
                    assert time.monotonic() < deadline, log.read_text()[-3000:]
                    time.sleep(0.005)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=30)
            kills.append(frames(journal_dir))
        proc = start(args, log)
        feeder.join()
    try:
        wait_ticks(config, proc, FED, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    journal = read_journal(journal_dir)
    assert kills == sorted(kills) and kills[-1] < len(journal)  # each kill inside the day
    inserts = [json.loads(line) for line in (venue / "inserts.jsonl").read_text().splitlines()]
    assert len(inserts) > 200
    refs = [x["ref"] for x in inserts]
    assert len(refs) == len(set(refs))  # no ref reused, across four sessions
    routed = {(x.session_id, x.order_ref): x.order_id for x in journal
              if isinstance(x, m.OrderRouted)}  # fmt: skip
    sent = Counter(routed[x["session"], x["ref"]] for x in inserts)  # each insert is journaled
    assert max(sent.values()) == 1  # no order sent twice
    assert len({x["session"] for x in inserts}) >= 2  # sessions before and after kills sent

    trades = [x.trade_id for x in journal if isinstance(x, m.Trade)]
    flow = [r for line in (venue / "flow.jsonl").read_text().splitlines()
            for r in json.loads(line)]  # fmt: skip
    filled = {f"CFFEX:{v['TradeID'].strip()}" for kind, v in flow if kind == "trade"}
    assert len(trades) == len(set(trades))  # each fill booked once
    assert set(trades) == filled  # and every fill of the exchange is booked
    assert not any(isinstance(x, m.Halt) for x in journal)  # every login's books agreed
    finished = {x.order_id for x in journal
                if isinstance(x, m.OrderRejected | m.OrderCancelled)}  # fmt: skip
    never_left = set(routed.values()) - set(sent)
    assert never_left <= finished  # a route without an insert: rejected, never reached it
    assert "Traceback" not in log.read_text()


def test_two_accounts_at_once_each_with_its_own_session_credentials_and_reconciliation(
    tmp_path: Path, recording: Path
) -> None:
    """One engine process per account (docs/ctp-trading.md, "Several accounts"): two at once on
    the same live feed, each with its own credentials file, venue and journal. Account B's
    broker holds a position its journal does not (another terminal's, from an earlier day): B
    halts with the report and sends nothing; A, unaffected, trades."""
    (tmp_path / "recordings").mkdir()
    accounts = {}
    for name, user in (("a", "000123"), ("b", "000456")):
        root = tmp_path / name
        (root / "journal").mkdir(parents=True)
        (root / "journal" / "recordings").symlink_to(tmp_path / "recordings")
        secrets = root / "credentials.toml"
        secrets.write_text(f'ctp_password = "pw-of-{name}"\n', encoding="utf-8")
        secrets.chmod(0o600)
        text = CONFIG.replace("PORT", "1").replace('user_id = "000123"', f'user_id = "{user}"')
        text = text.replace('name = "ctp-test"', f'name = "{name}"\ncredentials_file = '
                            f'"{secrets}"')  # fmt: skip
        accounts[name] = (write_config(root, text), root / "venue")
    # B's broker: 3 lots short of IF2101 since an earlier day, which the engine never booked
    (tmp_path / "b" / "venue").mkdir()
    carried = {"InstrumentID": "IF2101", "PosiDirection": "3", "Position": 3}
    (tmp_path / "b" / "venue" / "flow.jsonl").write_text(json.dumps([["carried", carried]]) + "\n")
    procs = {}
    with live_tick_journal(tmp_path / "recordings" / str(DAY)) as writer:
        for name, (config, venue) in accounts.items():
            env_log = tmp_path / name / "engine.log"
            procs[name] = start(["tests.services.engine.ctp_engine", str(config), str(venue)],
                                env_log, keep_env=False)  # fmt: skip
        feed_some(recording, writer, 4_000)
    try:
        for name, (config, _) in accounts.items():
            wait_ticks(config, procs[name], 4_000, tmp_path / name / "engine.log")
    finally:
        for proc in procs.values():
            proc.send_signal(signal.SIGTERM)
        assert [proc.wait(timeout=30) for proc in procs.values()] == [0, 0]
    a = read_journal(tmp_path / "a" / "journal" / "engine" / str(DAY))
    b = read_journal(tmp_path / "b" / "journal" / "engine" / str(DAY))
    (halt,) = [x for x in b if isinstance(x, m.Halt) and x.requester.startswith("ctp")]
    assert halt.requester == "ctp reconciliation: IF2101 short: expected 0 lots, found 3"
    assert not (tmp_path / "b" / "venue" / "inserts.jsonl").exists()  # B sent nothing
    assert not any(isinstance(x, m.Halt) and x.requester.startswith("ctp") for x in a)
    assert any(isinstance(x, m.Trade) for x in a)  # A traded meanwhile
    logins = {name: [json.loads(line) for line in (venue / "logins.jsonl").read_text().splitlines()]
              for name, (_, venue) in accounts.items()}  # fmt: skip
    assert logins == {"a": [{"user": "000123", "password": "pw-of-a"}],
                      "b": [{"user": "000456", "password": "pw-of-b"}]}  # fmt: skip
