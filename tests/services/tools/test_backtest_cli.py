"""``hft backtest`` as a user runs it: a deployment file, one bundled day chosen by date, one
more strategy with its parameters from the command line; it prints the statistics and writes the
report, the frames as CSV and the engine journal that ``hft journal cat`` reads. Bad input
(parameters that are not JSON, a day not recorded, a strategy that does not exist, a journal
directory that holds the day already) gets one line and a non-zero exit."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.helpers import MARKET, run_hft
from tests.services.engine.test_backtest import DAYS, deployment, recordings

__all__ = ["recordings"]
pytestmark = pytest.mark.timeout(300)


def test_a_backtest_from_the_shell_prints_its_stats_and_writes_what_was_asked(
    tmp_path: Path, recordings: Path
) -> None:
    config = deployment(tmp_path, recordings)
    out = tmp_path / "out"
    done = run_hft("backtest", "--config", str(config), "--recordings", str(recordings),
                   "--to", "2021-01-04", "--strategy", "strategies.follower:Follower",
                   "--params", '{"fast": 10, "slow": 60}', "--report", str(out / "r.html"),
                   "--csv", str(out / "csv"), "--journal", str(out / "journal"),
                   "--no-progress", "--log-level", "error")  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "backtest of 20210104: agents mm, trend, Follower"
    stats = dict(line.split(None, 1) for line in lines[1:] if line.startswith("  "))
    trades = pd.read_csv(out / "csv" / "trades.csv")
    assert int(stats["fills"].strip().replace(",", "")) == len(trades) > 10
    assert set(trades["agent"]) == {"mm", "trend", "Follower"}
    assert (out / "r.html").read_text(encoding="utf-8").startswith("<!doctype html>")
    assert f"report: {out / 'r.html'}" in lines
    for name in ("orders", "positions", "equity", "daily_equity", "daily", "stats"):
        assert len(pd.read_csv(out / "csv" / f"{name}.csv")) >= 1, name

    cat = run_hft("journal", "cat", str(out / "journal" / str(DAYS[0])))
    assert cat.returncode == 0, cat.stderr
    kept = [json.loads(line) for line in cat.stdout.splitlines()]
    assert sum(x["message"]["type"] == "Trade" for x in kept) == len(trades)


@pytest.mark.parametrize(("args", "says"), [
    (["--strategy", "strategies.follower:Follower", "--params", "{fast: 1}"], "not JSON"),
    (["--strategy", "strategies.follower:Follower", "--params", "[1]"], "a JSON object"),
    (["--params", "{}"], "each belongs to the --strategy"),
    (["--from", "20210107"], "no recording of the days asked"),
    (["--from", "2021-1-7"], "a trading day is YYYYMMDD"),
    (["--strategy", "strategies.nothing:Here"], "cannot import strategy module"),
    (["--only"], "name the strategies"),
    (["--strategy", "strategies.follower:Follower", "--params", '{"fsat": 1}'], "fsat"),
])  # fmt: skip
def test_bad_input_gets_one_line(
    tmp_path: Path, recordings: Path, args: list[str], says: str
) -> None:
    config = deployment(tmp_path, recordings)
    done = run_hft("backtest", "--config", str(config), "--no-progress", *args)
    assert done.returncode != 0
    assert says in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    if done.returncode != 2 or "usage:" not in done.stderr:  # argparse's own: usage, then a line
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_journal_directory_that_holds_the_day_is_refused(
    tmp_path: Path, recordings: Path
) -> None:
    config = deployment(tmp_path, recordings)
    (tmp_path / "j" / str(DAYS[0])).mkdir(parents=True)
    (tmp_path / "j" / str(DAYS[0]) / "precious").write_text("keep me")
    done = run_hft("backtest", "--config", str(config), "--to", str(DAYS[0]), "--journal",
                   str(tmp_path / "j"), "--no-progress")  # fmt: skip
    assert done.returncode != 0 and "already holds the engine journal of 20210104" in done.stderr
    assert (tmp_path / "j" / str(DAYS[0]) / "precious").read_text() == "keep me"


def test_tick_files_are_imported_on_the_fly(tmp_path: Path, recordings: Path) -> None:
    """The bundled CSV file straight into a backtest: the same ticks as its recording, so the
    same statistics as a backtest of the recording."""
    config = deployment(tmp_path, recordings)
    common = ["backtest", "--config", str(config), "--to", str(DAYS[0]), "--no-progress",
              "--log-level", "error"]  # fmt: skip
    from_files = run_hft(*common, "--files", str(MARKET / "IF2101_20210104.csv.gz"),
                         "--format", "ctp-csv")  # fmt: skip
    assert from_files.returncode == 0, from_files.stderr
    assert "ticks written" in from_files.stderr  # the import's summary
    from_recording = run_hft(*common, "--recordings", str(recordings))
    assert from_recording.returncode == 0, from_recording.stderr
    assert from_files.stdout == from_recording.stdout
    assert "fills" in from_files.stdout
    both = run_hft(*common, "--files", "x.csv", "--recordings", str(recordings))
    assert both.returncode != 0 and "give one of them" in both.stderr
    missing = run_hft(*common, "--files", str(tmp_path / "nothing.csv.gz"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr, missing.stderr
