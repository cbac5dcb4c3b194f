from __future__ import annotations

import io
import json
import os
import pty
from collections.abc import Iterator

import pytest
import structlog

from contracts.logs import configure, get_logger, register_secret


def test_json_lines_carry_service_pid_level_event() -> None:
    out = io.StringIO()
    configure("engine", level="info", stream=out)
    get_logger().info("order_sent", order_id=7)
    get_logger().debug("hidden")
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["service"] == "engine"
    assert record["pid"] == os.getpid()
    assert record["level"] == "info"
    assert record["event"] == "order_sent"
    assert record["order_id"] == 7
    assert record["timestamp"].endswith("Z")


def test_level_filter() -> None:
    out = io.StringIO()
    configure("monitor", level="warning", stream=out)
    log = get_logger()
    log.info("quiet")
    log.warning("loud")
    assert [json.loads(line)["event"] for line in out.getvalue().splitlines()] == ["loud"]


def test_terminal_gets_readable_lines() -> None:
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=True) as tty:
            configure("md_recorder", stream=tty)
            get_logger().info("connected", front="tcp://127.0.0.1:1")
            tty.flush()
            text = os.read(master, 4096).decode()
    finally:
        os.close(master)
    assert "connected" in text
    assert "md_recorder" in text
    assert not text.lstrip().startswith("{")


def test_registered_secret_is_redacted_everywhere() -> None:
    out = io.StringIO()
    configure("engine", stream=out)
    register_secret("hunter2-topsecret")
    get_logger().info(
        "login hunter2-topsecret",
        password="hunter2-topsecret",
        nested={"a": ["x hunter2-topsecret y"]},
        obj=ValueError("bad hunter2-topsecret"),
    )
    text = out.getvalue()
    assert "hunter2" not in text
    assert text.count("***") == 4


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure("engine", level="verbose")


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()
