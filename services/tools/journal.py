"""``hft journal info|verify|cat``: look inside a journal directory."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from contracts.clock import CHINA, china_iso
from contracts.errors import UserError
from libshm import TICK_DTYPE, JournalError, JournalReader, Tick, decode_tick
from libshm.inspect import JournalReport, inspect_journal
from libshm.layout import TYPE_FIXED, segment_name
from libshm.record import TICK_LAYOUT_ID

__all__ = ["add_arguments", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="segments, frames, sequence and time range, instruments")
    info.add_argument("path", type=Path, help="journal directory")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    verify = sub.add_parser("verify", help="check every frame; exit 0 if intact, 1 if not")
    verify.add_argument("path", type=Path, help="journal directory")
    cat = sub.add_parser("cat", help="print the records, filtered, as CSV or JSON lines")
    cat.add_argument("path", type=Path, help="journal directory")
    cat.add_argument("--instrument", action="append", help="only this instrument (repeatable)")
    cat.add_argument("--from", dest="start", metavar="T", help="exchange time, ISO 8601")
    cat.add_argument("--to", dest="end", metavar="T", help="exchange time, ISO 8601 (exclusive)")
    cat.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    export = sub.add_parser(
        "export", help="write the ticks as a Parquet or CSV file for pandas, polars, DuckDB"
    )
    export.add_argument("path", type=Path, help="tick journal directory")
    export.add_argument("--out", "-o", type=Path, required=True, metavar="FILE", help="output")
    export.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    export.add_argument("--instrument", action="append", help="only this instrument (repeatable)")
    export.add_argument("--from", dest="start", metavar="T", help="exchange time, ISO 8601")
    export.add_argument("--to", dest="end", metavar="T", help="exchange time, ISO 8601 (exclusive)")
    parser.epilog = (
        "examples:\n"
        "  hft journal info var/recordings/20210104\n"
        "  hft journal verify var/recordings/20210104\n"
        "  hft journal cat var/recordings/20210104 --instrument IF2101 \\\n"
        "      --from 2021-01-04T09:30 --to 2021-01-04T10:00 --format jsonl\n"
        "  hft journal export var/recordings/20210104 -o IF2101_20210104.parquet\n"
        "\ntimes without an offset are China time (UTC+8), as the exchanges keep them"
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "info":
            return _info(args.path, args.json)
        if args.action == "verify":
            return _verify(args.path)
        if args.action == "export":
            return _export(args)
        return _cat(args, sys.stdout)
    except JournalError as exc:
        raise UserError(str(exc), exit_code=1) from None
    except BrokenPipeError:  # `hft journal cat ... | head`
        sys.stderr.close()
        return 0


def _iso(ns: int | None) -> str:
    if ns is None:
        return "-"
    return china_iso(ns)


def _parse_time(text: str) -> int:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UserError(f"{text!r} is not an ISO 8601 time, such as 2021-01-04T09:30:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CHINA)
    return int(moment.timestamp() * 1e9)


def _layout_name(report: JournalReport) -> str:
    layout = report.segments[0].layout if report.segments else None
    if layout is None:
        return "-"
    if layout.layout_id == TICK_LAYOUT_ID:
        return f"tick record v{layout.version} ({report.segments[0].frame_size}-byte frames)"
    return "free-form payloads" if not layout.layout_id else f"layout {layout.layout_id}"


def _info(path: Path, as_json: bool) -> int:
    report = inspect_journal(path)
    segs = report.segments
    summary: dict[str, Any] = {
        "journal": str(path),
        "layout": _layout_name(report),
        "segments": len(segs),
        "segment_size": segs[0].segment_size if segs else 0,
        "retention": f"ring of {report.ring_segments}" if report.ring_segments else "keep all",
        "frames": report.frames,
        "first_seq": report.first_seq,
        "last_seq": report.last_seq,
        "first_time": _iso(report.first_time_ns),
        "last_time": _iso(report.last_time_ns),
        "writer": report.writer,
        "instruments": dict(sorted(report.instruments.items())),
        "integrity": "intact" if report.intact else "damaged",
        "problems": report.problems,
        "notes": report.notes,
    }
    if as_json:
        print(json.dumps(summary))
        return 0
    first = segment_name(segs[0].index) if segs else "-"
    last = segment_name(segs[-1].index) if segs else "-"
    print(f"journal      {path}")
    print(f"layout       {summary['layout']}")
    print(
        f"segments     {len(segs)} ({first} .. {last}), "
        f"{summary['segment_size'] >> 10} KiB each, {summary['retention']}"
    )
    print(f"frames       {report.frames} (seq {report.first_seq} .. {report.last_seq})")
    print(f"written      {summary['first_time']} .. {summary['last_time']}")
    print(f"writer       {report.writer}")
    if report.instruments:
        names = ", ".join(f"{k} ({v})" for k, v in summary["instruments"].items())
        print(f"instruments  {len(report.instruments)}: {names}")
    print(
        f"integrity    {summary['integrity']}"
        + (
            f": {len(report.problems)} problem(s); run hft journal verify"
            if report.problems
            else ""
        )
    )
    return 0


def _verify(path: Path) -> int:
    report = inspect_journal(path, count_instruments=False)
    for note in report.notes:
        print(f"note: {note}")
    if report.intact:
        print(
            f"{path}: intact: {report.frames} frames in {len(report.segments)} segments, "
            f"seq {report.first_seq} .. {report.last_seq}"
        )
        return 0
    for problem in report.problems:
        print(f"damaged: {problem}")
    print(
        f"{path}: damaged: {len(report.problems)} problem(s); frames before the first are readable"
    )
    return 1


TICK_COLUMNS = ("seq", "exchange_time", *Tick._fields)


def _tick_row(seq: int, tick: Tick) -> dict[str, Any]:
    row: dict[str, Any] = {"seq": seq, "exchange_time": _iso(tick.exchange_time_ns)}
    for name, value in zip(Tick._fields, tick, strict=True):
        row[name] = None if isinstance(value, float) and math.isnan(value) else value
    return row


def _cat(args: argparse.Namespace, out: TextIO) -> int:
    start = _parse_time(args.start) if args.start else None
    end = _parse_time(args.end) if args.end else None
    wanted = set(args.instrument or ())
    reader = JournalReader(args.path, verify=True)
    writer: csv.DictWriter[str] | None = None
    while (frame := reader.read()) is not None:
        if frame.type != TYPE_FIXED or reader.layout.layout_id != TICK_LAYOUT_ID:
            row: dict[str, Any] = {"seq": frame.seq, "time": _iso(frame.time_ns)}
            try:
                row["payload"] = bytes(frame.payload).decode("utf-8")
            except UnicodeDecodeError:
                row["payload_hex"] = bytes(frame.payload).hex()
        else:
            tick = decode_tick(frame.payload)
            if wanted and tick.instrument not in wanted:
                continue
            if start is not None and tick.exchange_time_ns < start:
                continue
            if end is not None and tick.exchange_time_ns >= end:
                continue
            row = _tick_row(frame.seq, tick)
        if args.format == "jsonl":
            out.write(json.dumps(row) + "\n")
            continue
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
            writer.writeheader()
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return 0


def _export(args: argparse.Namespace) -> int:
    """All tick records (filtered) in one Arrow table, written as Parquet or CSV."""
    import pyarrow.csv  # noqa: PLC0415 - heavy; only this subcommand needs it
    import pyarrow.parquet  # noqa: PLC0415

    from services.md_recorder.tables import records_to_table  # noqa: PLC0415

    reader = JournalReader(args.path, verify=True)
    if reader.layout.layout_id != TICK_LAYOUT_ID:
        raise UserError(f"{args.path}: not a tick journal; export writes tick records only")
    start = _parse_time(args.start) if args.start else None
    end = _parse_time(args.end) if args.end else None
    wanted = np.array([n.encode() for n in args.instrument or ()], dtype="S32")
    parts = []
    while len(frames := reader.read_array()):
        records: Any = frames["payload"]
        keep = np.ones(len(records), dtype=bool)
        if len(wanted):
            keep &= np.isin(records["instrument"], wanted)
        if start is not None:
            keep &= records["exchange_time_ns"] >= start
        if end is not None:
            keep &= records["exchange_time_ns"] < end
        parts.append(records[keep].copy())
    records = np.concatenate(parts) if parts else np.empty(0, dtype=TICK_DTYPE)
    table = records_to_table(records)
    try:
        if args.format == "parquet":
            pyarrow.parquet.write_table(table, args.out, compression="zstd")
        else:
            pyarrow.csv.write_csv(table, args.out)
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write: {exc}") from None
    print(f"wrote {len(records):,} ticks to {args.out}")
    return 0
