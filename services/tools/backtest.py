"""``hft backtest``: ``Backtest`` from a shell. It runs a deployment's agents (and strategies
named on the command line) over its recorded days, or over tick files imported on the fly through
md_recorder's normaliser and filters (``--files``), prints the statistics, and writes what was
asked: the HTML report, the result frames as CSV files, the engine journals."""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path

from contracts.calendar import DEFAULT_CALENDAR, load_calendar
from contracts.config import load_config
from contracts.errors import UserError
from services.engine.backtest import Backtest
from services.engine.live import load_strategy
from services.engine.results import BacktestResult
from services.md_recorder.importer import FORMATS, import_files, load_mapping

__all__ = ["add_arguments", "recordings_from_files", "run"]


def recordings_from_files(files: Iterable[str | Path], fmt: str, mapping: str | Path | None = None,
                          calendar: str | Path = DEFAULT_CALENDAR) -> Path:  # fmt: skip
    """Tick files (``ctp-csv``, ``vnpy-csv``, ``parquet``, or ``csv`` with a ``mapping``)
    imported as ``hft import`` does into a scratch recordings directory, deleted when the
    process exits: ``Backtest(config, recordings=recordings_from_files([...], "ctp-csv"))``."""
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r}: choose one of {', '.join(FORMATS)}")
    out = Path(tempfile.mkdtemp(prefix="hft-backtest-files-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    report = import_files([Path(f) for f in files], fmt, out, load_calendar(calendar),
                          mapping=load_mapping(Path(mapping)) if mapping else None)  # fmt: skip
    print(report.summary(), file=sys.stderr)
    if report.bad_files:
        raise UserError("; ".join(report.bad_files))
    if not report.journals:
        raise UserError("the files hold no tick to backtest (see the summary above)")
    return out


FRAMES = ("trades", "orders", "positions", "equity", "daily_equity", "daily", "rolls", "bars",
          "tree")  # fmt: skip


def _day(text: str) -> int:
    digits = text.replace("-", "")
    if len(digits) != 8 or not digits.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a trading day is YYYYMMDD (or YYYY-MM-DD)")
    return int(digits)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, metavar="FILE",
                        help="deployment file: its recordings, products, risk limits, "
                             "paper simulator and agents")  # fmt: skip
    parser.add_argument("--recordings", type=Path, metavar="DIR",
                        help="recorded days to read (a directory of YYYYMMDD journals, or "
                             "one); default: the deployment's, or what a replay deployment "
                             "replays")  # fmt: skip
    parser.add_argument("--files", nargs="+", type=Path, metavar="FILE",
                        help="backtest these tick files, imported on the fly as hft import does "
                             "(with --format)")  # fmt: skip
    parser.add_argument("--format", "-f", choices=FORMATS, default="ctp-csv",
                        help="format of --files (default ctp-csv)")  # fmt: skip
    parser.add_argument("--mapping", type=Path, metavar="FILE",
                        help="--format csv: which column is which field "
                             "(docs/import-mapping.md)")  # fmt: skip
    parser.add_argument("--continuous", action="append", default=[], metavar="PRODUCT",
                        help="trade this product's main contract as one instrument, PRODUCT888 "
                             "(repeatable; docs/backtest.md)")  # fmt: skip
    parser.add_argument("--from", dest="start", type=_day, metavar="DAY",
                        help="first trading day (YYYYMMDD; default: the first "
                             "recorded)")  # fmt: skip
    parser.add_argument("--to", dest="end", type=_day, metavar="DAY",
                        help="last trading day (default: the last recorded)")  # fmt: skip
    parser.add_argument("--strategy", action="append", default=[], metavar="MODULE:CLASS",
                        help="one more agent running this strategy (repeatable); it trades the "
                             "deployment's instruments")  # fmt: skip
    parser.add_argument("--params", action="append", default=[], metavar="JSON",
                        help="the parameters of the --strategy in the same position, as a JSON "
                             "object, for example '{\"fast\": 10}'")  # fmt: skip
    parser.add_argument("--only", action="store_true",
                        help="run the --strategy agents only, not the deployment's")  # fmt: skip
    parser.add_argument("--capital", type=float, default=1_000_000.0,
                        help="capital of each --strategy agent (default 1,000,000)")  # fmt: skip
    parser.add_argument("--report", type=Path, metavar="FILE",
                        help="write the HTML report here (one offline file)")  # fmt: skip
    parser.add_argument("--csv", type=Path, metavar="DIR",
                        help=f"write these as CSV files here: {', '.join(FRAMES)}, "
                             "stats")  # fmt: skip
    parser.add_argument("--journal", type=Path, metavar="DIR",
                        help="keep each day's engine journal in DIR/YYYYMMDD (hft journal cat); "
                             "DIR must not hold those days yet")  # fmt: skip
    parser.add_argument("--sample-s", type=float, default=60.0, metavar="S",
                        help="step of the equity curve in market time (default 60 s)")  # fmt: skip
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if len(args.params) > len(args.strategy):
        raise UserError("--params: each belongs to the --strategy in the same position; "
                        f"there are {len(args.params)} --params for {len(args.strategy)} "
                        "--strategy")  # fmt: skip
    if args.only and not args.strategy:
        raise UserError("--only: name the strategies to run with --strategy MODULE:CLASS")
    if args.files and args.recordings:
        raise UserError("--files and --recordings: give one of them")
    recordings = args.recordings
    if args.files:
        recordings = recordings_from_files(args.files, args.format, args.mapping)
    bt = Backtest(load_config(args.config), start=args.start, end=args.end,
                  recordings=recordings, journal=args.journal, continuous=args.continuous,
                  sample_s=args.sample_s, keep_agents=not args.only)  # fmt: skip
    for i, ref in enumerate(args.strategy):
        text = args.params[i] if i < len(args.params) else "{}"
        try:
            params = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserError(f"--params {text!r}: not JSON ({exc.msg}); for example "
                            "'{\"fast\": 10}'") from None  # fmt: skip
        if not isinstance(params, dict):
            raise UserError(f"--params {text!r}: a JSON object of parameters, for example "
                            "'{\"fast\": 10}'")  # fmt: skip
        bt.add_strategy(load_strategy(ref, ref), capital=args.capital, **params)
    result = bt.run(progress=False if args.no_progress else None)
    print(_stats_text(result))
    if args.report is not None:
        print(f"report: {result.report(args.report)}")
    if args.csv is not None:
        for name, path in write_csv(result, args.csv).items():
            print(f"{name}: {path}")
    if len(result.rolls):
        print(f"rolls of continuous instruments: {len(result.rolls)}")
        print(result.rolls.to_string(index=False))
    if args.journal is not None:
        print(f"engine journals: {args.journal}/YYYYMMDD (hft journal cat)")
    return 0


def _stats_text(result: BacktestResult) -> str:
    days = result.days
    span = f"{days[0]} to {days[-1]}" if len(days) > 1 else str(days[0])
    lines = [f"backtest of {span}: agents {', '.join(result.capital)}"]
    for key, value in result.stats.items():
        if isinstance(value, float):
            shown = f"{value:.6g}" if abs(value) < 1000 else f"{value:,.2f}"
        else:
            shown = f"{value:,}" if isinstance(value, int) else str(value)
        lines.append(f"  {key:<24} {shown:>18}")
    return "\n".join(lines)


def write_csv(result: BacktestResult, directory: Path) -> dict[str, Path]:
    """Each frame and the statistics as ``DIR/NAME.csv``."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--csv {directory}: cannot create it ({exc.strerror})") from None
    written = {}
    for name in FRAMES:
        path = directory / f"{name}.csv"
        getattr(result, name).to_csv(path)
        written[name] = path
    path = directory / "stats.csv"
    result.stats.rename("value").to_csv(path, header=True, index_label="statistic")
    written["stats"] = path
    return written
