"""The CTP source with the real openctp-ctp library: real ``CThostFtdcDepthMarketDataField``
objects built from the bundled real rows, and a real ``MdApi`` against fronts on 127.0.0.1 that
do not answer (no CTP front can run here)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from contracts.ctp_locale import has_locale
from contracts.logs import get_logger
from contracts.ticks import TickStore
from libshm import FLAG_SETTLEMENT, JournalReader, Tick, decode_tick, encode_tick
from services.md_recorder.normalise import CTP_FIELDS
from services.md_recorder.recorder import Recorder
from tests.helpers import closed_port, dropping_server, import_market, run_hft_until
from tests.services.md_recorder.test_normalise import CAL, CU_ROWS, IF_ROWS

if not has_locale():  # importing openctp-ctp without it aborts the process
    if os.environ.get("CI"):  # CI installs it: a missing locale there fails the run
        pytest.fail("no zh_CN.GB18030 locale under CI: .ci/run should have made it", False)
    pytest.skip("no zh_CN.GB18030 locale (.ci/run installs it)", allow_module_level=True)

from openctp_ctp import mdapi

from services.md_recorder.ctp import (
    LAYOUT_MATCHES,
    CtpMdSource,
    raw_from_attributes,
    raw_from_field,
    raw_from_memory,
)

RECEIVED = 1_700_000_000 * 10**9  # a fixed receive time after every bundled tick


def field_of(row: tuple[str, ...]) -> Any:
    """A real CTP struct filled from one CSV row, typed as CTP types it."""
    field = mdapi.CThostFtdcDepthMarketDataField()
    for i, name in enumerate(CTP_FIELDS):
        value: object = row[i]
        if i >= 6:
            value = int(row[i]) if "Volume" in name else float(row[i])
        elif name == "UpdateMillisec":
            value = int(row[i])
        setattr(field, name, value)
    return field


def ticks_in(journal: Path) -> list[Tick]:
    return [decode_tick(f.payload) for f in iter(JournalReader(journal).read, None)]


def make_source(tmp_path: Path, fronts: list[str] | None = None) -> CtpMdSource:
    return CtpMdSource(
        fronts or ["tcp://127.0.0.1:1"], "9999", "user", "secret", ["IF2101"], tmp_path / "flow",
        log=get_logger(), clock=lambda: RECEIVED,
    )  # fmt: skip


def test_struct_memory_read_matches_the_attributes_on_every_real_row() -> None:
    assert LAYOUT_MATCHES  # this library version's layout is the one the fast read assumes
    assert raw_from_field is raw_from_memory
    for row in IF_ROWS[::50] + CU_ROWS:
        field = field_of(row)
        assert raw_from_memory(field) == raw_from_attributes(field)


def test_raw_from_field_reads_every_field() -> None:
    field = field_of(CU_ROWS[126])
    raw = raw_from_field(field)
    assert len(raw) == len(CTP_FIELDS)
    assert raw[4] == "cu1909" and raw[2] == "14:39:27" and raw[3] == 500
    assert raw[CTP_FIELDS.index("BidPrice5")] == 1.7976931348623157e308


def test_real_structs_through_the_spi_into_the_journal(tmp_path: Path) -> None:
    """Every real IF2101 row as a CTP struct, handed to the SPI as the API thread does (from
    another thread): the journal holds the same records as `hft import` of the same file."""
    source = make_source(tmp_path)
    recorder = Recorder(CAL, TickStore(tmp_path / "ring", tmp_path / "live"), tmp_path / "snapshot")
    fields = [field_of(row) for row in IF_ROWS]

    def feed() -> None:  # as CTP's API thread does
        for field in fields:
            source.spi.OnRtnDepthMarketData(field)

    feeder = threading.Thread(target=feed)
    feeder.start()
    handled = 0
    deadline = time.monotonic() + 60
    while handled < len(fields) and time.monotonic() < deadline:
        handled += source.poll(0.05, recorder.record)
    feeder.join()
    recorder.close()
    assert handled == len(fields)
    import_market(tmp_path / "imported", "IF2101_20210104.csv.gz")
    live = ticks_in(tmp_path / "live/20210104")
    want = ticks_in(tmp_path / "imported/20210104")
    # the second post-close tick dropped; the first kept as the settlement record
    assert len(live) == len(want) == len(IF_ROWS) - 1
    assert live[-1].flags == FLAG_SETTLEMENT and live[-1].settlement == 5278.6
    for got, expected in zip(live, want, strict=True):
        assert got.local_time_ns == RECEIVED
        assert encode_tick(got._replace(local_time_ns=0)) == encode_tick(
            expected._replace(local_time_ns=0)
        )
    assert recorder.filters.summary() == {"kept": len(live), "outside_hours": 1}


CTP_CONFIG = """\
[suite]
name = "ctp-test"
mode = "paper"
journal_dir = "journal"
shm_dir = "shm"

[md_recorder]
source = "ctp"
instruments = ["IF2101", "cu2102"]

[md_recorder.ctp]
fronts = ["tcp://127.0.0.1:{port}"]
broker_id = "9999"
user_id = "000001"
flow_dir = "flow"
connect_timeout_s = {timeout}

[engine]
adapter = "paper"
command_endpoint = "tcp://127.0.0.1:0"

[monitor]
port = 0
zmq_pub = "tcp://127.0.0.1:0"
zmq_snapshot = "tcp://127.0.0.1:0"
"""


def run_recorder(
    tmp_path: Path, port: int, timeout: float, until: Callable[[list[dict[str, Any]]], bool]
) -> tuple[int, list[dict[str, Any]]]:
    """Run ``hft md-recorder`` against ``port`` until its log lines satisfy ``until`` (waited
    for, up to 60 s, never guessed), then stop it with SIGTERM."""
    config = tmp_path / "deploy.toml"
    config.write_text(CTP_CONFIG.format(port=port, timeout=timeout))
    env = {"HFT_CTP_PASSWORD": "not-a-real-password"}
    code, printed = run_hft_until("md-recorder", "--config", str(config), until=until, env=env)
    assert "not-a-real-password" not in printed
    return code, [json.loads(line) for line in printed.splitlines() if line.startswith("{")]


def _count(event: str, n: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda lines: sum(1 for line in lines if line["event"] == event) >= n


def test_closed_port_is_reported_and_retried_with_backoff(tmp_path: Path) -> None:
    code, lines = run_recorder(tmp_path, closed_port(), timeout=0.5,
                               until=_count("ctp_md_not_connected", 3))  # fmt: skip
    assert code == 0
    events = [line["event"] for line in lines]
    assert events[0] == "md_recorder_started"
    assert events[-1] == "md_recorder_stopped"
    failures = [line for line in lines if line["event"] == "ctp_md_not_connected"]
    assert len(failures) >= 3
    assert [f["retry_in_s"] for f in failures[:3]] == [1.0, 2.0, 4.0]
    assert all(f["level"] == "warning" and "hint" in f for f in failures)
    attempts = [line["attempt"] for line in lines if line["event"] == "ctp_md_connecting"]
    assert attempts[:3] == [1, 2, 3]


class Log:
    """Collects what the source logs: (level, event, fields)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict[str, Any]]] = []

    def __getattr__(self, level: str) -> Callable[..., None]:
        return lambda event, **fields: self.lines.append((level, event, fields))


def test_a_successful_login_resets_the_reconnect_backoff(tmp_path: Path) -> None:
    """Three failed attempts at a real MdApi on a closed port wait 1, 2, 4 s; then the front
    answers (the real SPI callback with CTP's own login structs) and the session is later
    lost: the first retry waits 1 s again, not 8 s. Time is an injected clock."""
    now = [1000.0]
    log = Log()
    source = CtpMdSource(
        [f"tcp://127.0.0.1:{closed_port()}"], "9999", "user", "secret", ["IF2101"],
        tmp_path / "flow", connect_timeout_s=5.0, log=log, monotonic=lambda: now[0],
    )  # fmt: skip

    def fail_once() -> float:
        now[0] += 5.0  # past the connect timeout
        source.poll(0.0, lambda raw, at: None)
        waits = [f["retry_in_s"] for _, e, f in log.lines if e == "ctp_md_not_connected"]
        now[0] += waits[-1]  # the backoff over: the next poll connects again
        source.poll(0.0, lambda raw, at: None)
        return float(waits[-1])

    source.start()
    try:
        assert [fail_once() for _ in range(3)] == [1.0, 2.0, 4.0]
        login = mdapi.CThostFtdcRspUserLoginField()
        login.TradingDay = "20210104"
        source.spi.OnRspUserLogin(login, mdapi.CThostFtdcRspInfoField(), 1, True)
        source.poll(0.01, lambda raw, at: None)  # handles the queued login (the clock stands)
        assert source.state.logged_in and source.state.trading_day == "20210104"
        source.spi.OnFrontDisconnected(0x1001)
        source.poll(0.01, lambda raw, at: None)
        assert not source.state.logged_in
        assert [fail_once() for _ in range(2)] == [1.0, 2.0]
    finally:
        source.stop()
    attempts = [f["attempt"] for _, e, f in log.lines if e == "ctp_md_connecting"]
    assert attempts == [1, 2, 3, 4, 5, 6]


@pytest.fixture
def accept_then_close() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts every connection and closes it at once."""
    with dropping_server() as (port, _):
        yield port


def test_front_that_drops_the_connection_is_reported(
    tmp_path: Path, accept_then_close: int
) -> None:
    code, lines = run_recorder(tmp_path, accept_then_close, timeout=30,
                               until=_count("ctp_md_disconnected", 1))  # fmt: skip
    assert code == 0
    drops = [line for line in lines if line["event"] == "ctp_md_disconnected"]
    assert drops, [line["event"] for line in lines]
    assert drops[0]["reason"] == "0x1001"
    assert drops[0]["level"] == "warning"
