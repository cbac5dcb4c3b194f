"""``hft import``: the command-line shell around ``services.md_recorder.importer``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from contracts.calendar import DEFAULT_CALENDAR, load_calendar
from contracts.errors import UserError
from services.md_recorder.importer import FORMATS, import_files, inspect_file, load_mapping

INSPECT_ROWS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="input files (or .gz)")
    parser.add_argument("--format", "-f", required=True, choices=FORMATS, help="input format")
    parser.add_argument(
        "--out", "-o", type=Path, metavar="DIR",
        help="recordings directory: ticks go to DIR/YYYYMMDD, one journal per trading day "
        "(needed unless --inspect)",
    )  # fmt: skip
    parser.add_argument(
        "--calendar", type=Path, default=DEFAULT_CALENDAR, metavar="FILE",
        help="sessions and products (default: configs/calendar.toml)",
    )  # fmt: skip
    parser.add_argument(
        "--mapping", type=Path, metavar="FILE",
        help="--format csv: which column is which field (TOML; docs/import-mapping.md)",
    )  # fmt: skip
    parser.add_argument(
        "--rejects", type=Path, metavar="FILE",
        help="write every dropped row there (CSV: file, line, reason, column, value, detail)",
    )  # fmt: skip
    parser.add_argument(
        "--inspect", action="store_true",
        help=f"write nothing: show the first {INSPECT_ROWS} rows of each file as the format "
        "(and mapping) reads them and what the normaliser makes of them",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", "-j", type=int, default=None, metavar="N",
        help="read up to N files at once in worker processes (default: half the machine's "
        "cores, as each file's reader uses several threads; small imports use one)",
    )  # fmt: skip
    parser.add_argument("--strict", action="store_true", help="stop at the first bad row")
    parser.add_argument(
        "--append", action="store_true", help="add to a trading day that is already recorded"
    )


def run(args: argparse.Namespace) -> int:
    calendar = load_calendar(args.calendar)
    mapping = load_mapping(args.mapping) if args.mapping is not None else None
    if args.inspect:
        for path in args.files:
            _show(path, inspect_file(path, args.format, calendar, mapping, INSPECT_ROWS))
        return 0
    if args.out is None:
        raise UserError("--out DIR is needed: where the trading days' journals go")
    if args.jobs is not None and args.jobs < 1:
        raise UserError(f"--jobs {args.jobs}: give 1 or more")
    bar = None
    if sys.stderr.isatty():
        bar = tqdm(unit=" rows", unit_scale=True, file=sys.stderr, desc="import")
    try:
        report = import_files(
            args.files, args.format, args.out, calendar, strict=args.strict,
            append=args.append, progress=bar.update if bar is not None else None,
            mapping=mapping, rejects=args.rejects, workers=args.jobs,
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.close()
    for line in report.bad_rows:
        print(f"bad row: {line}", file=sys.stderr)
    if report.bad_count > len(report.bad_rows):
        print(f"... and {report.bad_count - len(report.bad_rows):,} more bad rows", file=sys.stderr)
    for line in report.bad_files:
        print(f"bad file: {line}", file=sys.stderr)
    print(report.summary())
    for journal in report.journals:
        print(f"wrote {journal}")
    if args.rejects is not None:
        print(f"rejects: {sum(report.dropped.values()):,} rows in {args.rejects}")
    unknown = sorted(report.unknown_products)
    if unknown:
        print(
            f"note: not in {args.calendar} (no trading-hours filter): {', '.join(unknown[:10])}",
            file=sys.stderr,
        )
    if report.bad_files:
        n, of = len(report.bad_files), len(args.files)
        rest = "no file was imported" if n == of else "the others were imported"
        print(f"{n} of {of} files could not be read; {rest}", file=sys.stderr)
        return 1
    if report.written == 0 and report.already == 0:
        if not report.rows:
            print("nothing was imported: the files hold no rows", file=sys.stderr)
            return 1
        top = ", ".join(f"{k} {v:,}" for k, v in report.dropped.most_common(3))
        hint = "" if args.rejects else "; --rejects FILE lists every dropped row"
        print(f"nothing was imported ({top}){hint}", file=sys.stderr)
        return 1
    return 0


def _show(path: Path, rows: list[dict[str, str]]) -> None:
    print(f"{path}: the first {len(rows)} rows as read")
    for entry in rows:
        line, result = entry.pop("line"), entry.pop("result")
        fields = "  ".join(f"{k}={v}" for k, v in entry.items())
        print(f"  line {line}: {fields}" if fields else f"  line {line}:")
        print(f"    -> {result}")
