from __future__ import annotations

import datetime as dt
import socket
from pathlib import Path

from services.tools.doctor import check_calendar, check_locale, check_port, check_space
from tests.helpers import CONFIGS, PAPER_CONFIG, run_hft, write_config


def _hidden_locales(tmp_path: Path) -> dict[str, str]:
    # An empty LOCPATH makes glibc look only there, so the locale is missing for that process
    # even on a machine (like CI) where it is installed.
    empty = tmp_path / "no-locales"
    empty.mkdir()
    return {"LOCPATH": str(empty)}


def test_doctor_passes_on_the_paper_config() -> None:
    done = run_hft("doctor", "--config", str(CONFIGS / "paper.toml"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok    config:" in done.stdout
    assert "checks passed" in done.stdout.splitlines()[-1]


def test_missing_locale_is_explained_with_the_fix(tmp_path: Path) -> None:
    text = (CONFIGS / "live-ctp.example.toml").read_text("utf-8")
    text = text.replace('credentials_file = "/etc/hft/credentials.toml"\n', "")
    config = write_config(tmp_path, text)
    done = run_hft("doctor", "--config", str(config), env=_hidden_locales(tmp_path))
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if "zh_CN.GB18030" in x)
    assert line.startswith("FAIL")
    assert "openctp-ctp aborts the process" in line
    assert "localedef -i zh_CN -f GB18030 zh_CN.GB18030" in line
    assert "failed: locale zh_CN.GB18030" in done.stdout


def test_missing_locale_only_warns_without_ctp(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = run_hft("doctor", "--config", str(config), env=_hidden_locales(tmp_path))
    assert done.returncode == 0, done.stdout
    assert any(x.startswith("warn  locale") for x in done.stdout.splitlines())


def test_port_in_use_fails_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = write_config(tmp_path, PAPER_CONFIG.replace("port = 0", f"port = {port}"))
        done = run_hft("doctor", "--config", str(config))
    assert done.returncode == 1
    line = next(x for x in done.stdout.splitlines() if "monitor port" in x)
    assert line.startswith("FAIL")
    assert f"ss -ltnp 'sport = :{port}'" in line


def test_invalid_config_is_a_failed_check(tmp_path: Path) -> None:
    config = write_config(tmp_path, PAPER_CONFIG.replace("seed = 1", "seed = 1\nsead = 2"))
    done = run_hft("doctor", "--config", str(config))
    assert done.returncode == 1
    assert "FAIL  config:" in done.stdout
    assert "md_recorder.sim.sead: unknown key" in done.stdout


def test_without_config_skips_config_checks() -> None:
    done = run_hft("doctor")
    assert "no --config given" in done.stdout


def test_check_locale_unit() -> None:
    missing = check_locale("xx_XX.NOPE", required=True)
    assert not missing.ok
    assert missing.line().startswith("FAIL")
    assert "localedef" in missing.line()


def test_check_space_unwritable_and_short(tmp_path: Path) -> None:
    ok = check_space("x", tmp_path / "deep" / "er", need_mib=1, want_mib=1)
    assert ok.ok
    short = check_space("x", tmp_path, need_mib=1 << 40, want_mib=1 << 41)
    assert not short.ok
    assert short.required


def test_check_port_zero_is_any_port() -> None:
    assert check_port("p", "127.0.0.1", 0).ok


def test_a_relay_without_its_secret_key_fails_with_the_fix(tmp_path: Path) -> None:
    relay = '\n[relay]\nbind = "tcp://127.0.0.1:0"\nclients = ["' + "k" * 40 + '"]\n'
    config = write_config(tmp_path, PAPER_CONFIG + relay)
    done = run_hft("doctor", "--config", str(config))
    assert done.returncode == 1, done.stdout
    lines = done.stdout.splitlines()
    assert "ok    relay: 127.0.0.1: any free port (0)" in lines
    line = next(x for x in lines if "relay_secret_key" in x)
    assert line.startswith("FAIL") and "export HFT_RELAY_SECRET_KEY=..." in line
    key = "k" * 40
    done = run_hft("doctor", "--config", str(config), env={"HFT_RELAY_SECRET_KEY": key})
    assert done.returncode == 0, done.stdout


def test_a_year_without_its_holidays_is_a_warning_with_the_fix(tmp_path: Path) -> None:
    calendar = tmp_path / "calendar.toml"
    calendar.write_text('holidays_file = "h.toml"\n' + (CONFIGS / "calendar.toml").read_text())
    (tmp_path / "h.toml").write_text('[years.2026]\nsource = "s"\nclosed = [2026-01-01]\n')
    assert check_calendar(calendar, dt.date(2026, 11, 30)).ok
    december = check_calendar(calendar, dt.date(2026, 12, 1))
    assert not december.ok and not december.required
    assert "holidays of 2027 are not listed" in december.line()
    assert "add the year to configs/holidays.toml" in december.line()
    (tmp_path / "h.toml").write_text("[years.2026]\n")
    broken = check_calendar(calendar, dt.date(2026, 11, 30))
    assert not broken.ok and broken.required and "h.toml" in broken.detail


def test_the_shipped_calendar_loads_and_names_its_last_year() -> None:
    """The doctor's calendar line on the shipped files, for a date they cover."""
    check = check_calendar(CONFIGS / "calendar.toml", dt.date(2026, 6, 1))
    assert check.ok and "holidays listed to 2026" in check.detail


def test_the_import_scanner_line_says_which_reader_runs() -> None:
    """Built (CI always builds it): the C scanner; with HFT_PURE_PYTHON=1, pyarrow's reader as a
    warning that names why, and the doctor still passes."""
    from tests.services.md_recorder.test_columnar import scanner_built

    scanner_built()
    done = run_hft("doctor")
    assert "ok    import scanner: C scanner (services.md_recorder._csvscan)" in done.stdout
    pure = run_hft("doctor", env={"HFT_PURE_PYTHON": "1"})
    line = next(x for x in pure.stdout.splitlines() if "import scanner:" in x)
    assert "pyarrow's reader (HFT_PURE_PYTHON=1)" in line and not line.startswith("ok")
    assert pure.returncode == 0, pure.stdout + pure.stderr
