"""``hft systemd install`` on the shipped paper deployment: the units pass ``systemd-analyze
verify`` with no warning, each service's exposure (``systemd-analyze security --offline=yes``)
is below 3.0, and they say what docs/OPERATIONS.md promises: notify with a watchdog, restart on
failure, the start order, write access to the state directories only."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_hft

ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def units(tmp_path: Path) -> Path:
    config = tmp_path / "deploy.toml"
    relay = '\n[relay]\nbind = "tcp://*:5590"\nclients = ["' + "k" * 40 + '"]\n'
    paper = (ROOT / "configs" / "paper.toml").read_text()
    config.write_text(paper.replace('"../var/paper/journal"', f'"{tmp_path / "journal"}"') + relay)
    done = run_hft("systemd", "install", "--config", str(config), "--user", "root",
                   "--prefix", str(tmp_path / "units"), "--environment-file",
                   str(tmp_path / "hft.env"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote {tmp_path / 'units' / 'hft-engine.service'}" in done.stdout
    assert (tmp_path / "journal").is_dir()  # made, since systemd mounts it writable
    return tmp_path / "units"


def analyze() -> str:
    if ANALYZE is None:
        if os.environ.get("CI"):
            pytest.fail("no systemd-analyze: .ci/run installs Debian's systemd")
        pytest.skip("no systemd-analyze here (apt install systemd, as .ci/run does)")
    return ANALYZE


def test_the_units_verify_with_no_warning(units: Path) -> None:
    tool = analyze()
    files = sorted(str(p) for p in units.iterdir())
    done = subprocess.run([tool, "verify", *files], capture_output=True, text=True, cwd=units,
                          check=False)  # fmt: skip
    assert done.returncode == 0 and done.stdout + done.stderr == "", done.stdout + done.stderr


@pytest.mark.parametrize("unit", ["hft-md-recorder", "hft-engine", "hft-monitor", "hft-relay"])
def test_each_service_is_exposed_below_3(units: Path, unit: str) -> None:
    tool = analyze()
    done = subprocess.run([tool, "security", "--offline=yes", str(units / f"{unit}.service")],
                          capture_output=True, text=True, check=False)  # fmt: skip
    found = re.search(r"Overall exposure level for \S+: ([0-9.]+) (\w+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) < 3.0 and found.group(2) == "OK", found.group(0)


def test_the_units_say_what_operations_promises(units: Path, tmp_path: Path) -> None:
    engine = (units / "hft-engine.service").read_text()
    for line in ("Type=notify", "WatchdogSec=10", "Restart=on-failure", "PartOf=hft.target",
                 "After=hft-md-recorder.service ", "NoNewPrivileges=yes", "ProtectSystem=strict",
                 f"EnvironmentFile=-{tmp_path / 'hft.env'}", "User=root",
                 f"ReadWritePaths=/dev/shm {tmp_path / 'journal'}"):  # fmt: skip
        assert any(x == line or (x.startswith(line) and line.endswith(" "))
                   for x in engine.splitlines()), line  # fmt: skip
    assert re.search(r"^ExecStart=/\S+/hft engine --config /\S+/deploy.toml$", engine, re.M)
    assert "\nAfter=hft-engine.service " in (units / "hft-monitor.service").read_text()
    assert "@" not in re.sub(r"SystemCallFilter=.*", "", engine)  # every placeholder filled
    target = (units / "hft.target").read_text()
    assert (
        "Wants=hft-md-recorder.service hft-engine.service hft-monitor.service hft-relay.service\n"
    ) in target  # the deployment has a [relay] section
    relay = (units / "hft-relay.service").read_text()
    assert re.search(r"^ExecStart=/\S+/hft relay serve --config /\S+/deploy.toml$", relay, re.M)
    assert "Type=notify" in relay.splitlines() and "PartOf=hft.target" in relay.splitlines()


def test_without_a_relay_section_no_relay_unit(tmp_path: Path) -> None:
    config = tmp_path / "deploy.toml"
    config.write_text((ROOT / "configs" / "paper.toml").read_text()
                      .replace('"../var/paper/journal"', f'"{tmp_path / "journal"}"'))  # fmt: skip
    done = run_hft("systemd", "install", "--config", str(config), "--user", "root",
                   "--prefix", str(tmp_path / "units"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "units").iterdir()) == [
        "hft-engine.service",
        "hft-md-recorder.service",
        "hft-monitor.service",
        "hft.target",
    ]
    target = (tmp_path / "units" / "hft.target").read_text()
    assert "Wants=hft-md-recorder.service hft-engine.service hft-monitor.service\n" in target


def test_an_unknown_user_is_one_line(tmp_path: Path) -> None:
    done = run_hft("systemd", "install", "--config", str(ROOT / "configs" / "paper.toml"),
                   "--user", "no-such-user-here", "--prefix", str(tmp_path))  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "hft systemd: error: hft systemd: no user 'no-such-user-here' on this machine; create it "
        f"first (useradd --system --home-dir {ROOT / 'configs'} --shell /usr/sbin/nologin "
        "no-such-user-here) or name another with --user"
    ]
    assert list(tmp_path.iterdir()) == []


def test_a_further_account_gets_its_own_engine_unit(tmp_path: Path, units: Path) -> None:
    """One engine per trading account: ``--account b`` writes that deployment's engine unit
    alone, named for it, beside the first deployment's units."""
    config = tmp_path / "account-b.toml"
    paper = (ROOT / "configs" / "paper.toml").read_text()
    config.write_text(paper.replace('"../var/paper/journal"', f'"{tmp_path / "journal-b"}"'))
    done = run_hft("systemd", "install", "--config", str(config), "--user", "root",
                   "--prefix", str(units), "--account", "b", "--environment-file",
                   str(tmp_path / "hft.env"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    unit = (units / "hft-engine-b.service").read_text()
    assert f"engine --config {config}" in unit and "Description=hft engine (b):" in unit
    assert "PartOf=hft.target" in unit
    assert (
        f"engine --config {tmp_path / 'deploy.toml'}" in (units / "hft-engine.service").read_text()
    )
    assert "hft-engine-b.service" in done.stdout.splitlines()[-1]
    bad = run_hft("systemd", "install", "--config", str(config), "--user", "root",
                  "--prefix", str(units), "--account", "b/../x")  # fmt: skip
    assert bad.returncode == 2 and "--account 'b/../x'" in bad.stderr
