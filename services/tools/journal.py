"""``hft journal info|verify|cat|export|repair``: look inside a journal directory, and cut a
damaged one when the user asks."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import msgspec
import numpy as np

from contracts import messages as m
from contracts.clock import CHINA, china_iso
from contracts.errors import JournalProblem, UserError
from libshm import (
    TICK_DTYPE,
    TICK_LAYOUT_ID,
    TYPE_FIXED,
    JournalError,
    JournalReader,
    JournalReport,
    Tick,
    day_journals,
    decode_tick,
    inspect_journal,
    repair_journal,
    segment_name,
)

__all__ = ["add_arguments", "run"]


PATH_HELP = "journal directory, or a directory of day journals (each in order)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    info = sub.add_parser("info", help="segments, frames, sequence and time range, instruments")
    info.add_argument("path", type=Path, help=PATH_HELP)
    info.add_argument("--json", action="store_true", help="print one JSON object a journal")
    verify = sub.add_parser("verify", help="check every frame; exit 0 if intact, 1 if not")
    verify.add_argument("path", type=Path, help=PATH_HELP)
    cat = sub.add_parser("cat", help="print the records, filtered, as CSV or JSON lines")
    cat.add_argument("path", type=Path, help=PATH_HELP)
    cat.add_argument("--instrument", action="append", help="only this instrument (repeatable)")
    cat.add_argument("--from", dest="start", metavar="T", help="exchange time, ISO 8601")
    cat.add_argument("--to", dest="end", metavar="T", help="exchange time, ISO 8601 (exclusive)")
    cat.add_argument(
        "--format",
        choices=("csv", "jsonl"),
        help="tick journals: csv (default) or jsonl; engine journals: jsonl, one decoded "
        "message a line",
    )
    repair = sub.add_parser(
        "repair",
        help="cut a damaged journal at its first damage, after keeping a copy (drops the frames "
        "after it)",
    )
    repair.add_argument("path", type=Path, help="journal directory (no writer may be running)")
    repair.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="where to copy the journal first (default: PATH.damaged-TIME beside it)",
    )
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
        "  hft journal repair var/recordings/20210104   (only after verify says damaged)\n"
        "\ntimes without an offset are China time (UTC+8), as the exchanges keep them"
    )


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "info":
            return max(_info(path, args.json) for path in _each(args.path, blank=not args.json))
        if args.action == "verify":
            return _verify_all(args.path)
        if args.action == "export":
            return _export(args)
        if args.action == "repair":
            return _repair(args.path, args.keep)
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
    if layout.layout_id == m.ENGINE_LAYOUT.layout_id:
        return f"engine messages v{layout.version}"
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


def _each(path: Path, *, blank: bool = False) -> Iterator[Path]:
    """The journals ``path`` names: itself, or each day journal of a recordings directory (a
    blank line between their reports when ``blank``)."""
    for i, journal in enumerate(day_journals(path)):
        if i and blank:
            print()
        yield journal


def _verify_all(path: Path) -> int:
    journals = day_journals(path)
    codes = [_verify(journal) for journal in journals]
    if len(journals) > 1:
        bad = [j.name for j, code in zip(journals, codes, strict=True) if code]
        print(f"{path}: {len(journals)} journals, " + (
            f"{len(bad)} damaged: {', '.join(bad)}" if bad else "all intact"))  # fmt: skip
    return max(codes)


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


def _repair(path: Path, keep: Path | None) -> int:
    stamp = datetime.now(CHINA).strftime("%Y%m%dT%H%M%S")
    copy = keep or path.with_name(f"{path.name}.damaged-{stamp}")
    result = repair_journal(path, copy)
    if result.copy is None:
        print(f"{path}: intact: {result.before.frames} frames; nothing to repair")
        return 0
    print(f"damaged: {result.before.problems[0]}")
    print(f"kept a copy of the whole journal in {result.copy}")
    after = result.after
    if after is None or after.last_seq is None:
        print(f"{path}: cut: no frame was before the damage; the journal is now empty")
    else:
        print(
            f"{path}: cut: {after.frames} frames kept (seq {after.first_seq} .. "
            f"{after.last_seq}); the frames after them are only in the copy, and the next "
            f"writer appends from seq {after.last_seq + 1}"
        )
    if result.removed_segments:
        names = ", ".join(segment_name(i) for i in result.removed_segments)
        print(f"{path}: removed segment(s) {names}")
    return 0


TICK_COLUMNS = ("seq", "exchange_time", *Tick._fields)


def _tick_row(seq: int, tick: Tick) -> dict[str, Any]:
    row: dict[str, Any] = {"seq": seq, "exchange_time": _iso(tick.exchange_time_ns)}
    for name, value in zip(Tick._fields, tick, strict=True):
        row[name] = None if isinstance(value, float) and math.isnan(value) else value
    return row


def _require_intact(path: Path, what: str) -> None:
    """Refuse a damaged journal in one line, before printing or writing anything from it: a
    reader alone cannot tell a frame that lost its commit word from the end of the journal."""
    report = inspect_journal(path, count_instruments=False)
    if not report.intact:
        raise JournalProblem(
            f"{report.problems[0]}; {what} reads intact journals only: `hft journal verify "
            f"{path}` lists the damage, `hft journal repair {path}` cuts the journal there "
            "after keeping a copy"
        )


def _as_builtins(value: Any) -> Any:
    """A message as JSON-ready values, structs as objects with their field names (the journal
    stores them as arrays)."""
    if isinstance(value, msgspec.Struct):
        fields = {name: _as_builtins(getattr(value, name)) for name in value.__struct_fields__}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, list | tuple):
        return [_as_builtins(v) for v in value]
    return value


def _free_form_row(seq: int, time_ns: int, payload: memoryview) -> dict[str, Any]:
    row: dict[str, Any] = {"seq": seq, "time": _iso(time_ns)}
    try:
        row["message"] = _as_builtins(m.decode(payload))
        return row
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass
    try:
        row["payload"] = bytes(payload).decode("utf-8")
    except UnicodeDecodeError:
        row["payload_hex"] = bytes(payload).hex()
    return row


def _cat(args: argparse.Namespace, out: TextIO) -> int:
    """Every frame of the journal, or of each day journal of a recordings directory in day
    order (one CSV header), each checked whole before anything of it is printed."""
    journals = day_journals(args.path)
    for journal in journals:
        _require_intact(journal, "cat")
    writer: csv.DictWriter[str] | None = None
    for journal in journals:
        writer = _cat_one(args, journal, out, writer)
    return 0


def _cat_one(args: argparse.Namespace, path: Path, out: TextIO,
             writer: csv.DictWriter[str] | None) -> csv.DictWriter[str] | None:  # fmt: skip
    start = _parse_time(args.start) if args.start else None
    end = _parse_time(args.end) if args.end else None
    wanted = set(args.instrument or ())
    reader = JournalReader(path, verify=True)
    ticks = reader.layout.layout_id == TICK_LAYOUT_ID
    fmt = args.format or ("csv" if ticks else "jsonl")
    if fmt == "csv" and not ticks:
        raise UserError(
            f"{path}: not a tick journal; its messages print as JSON lines (--format jsonl)"
        )
    while (frame := reader.read()) is not None:
        if frame.type != TYPE_FIXED or not ticks:
            row: dict[str, Any] = _free_form_row(frame.seq, frame.time_ns, frame.payload)
        else:
            tick = decode_tick(frame.payload)
            if wanted and tick.instrument not in wanted:
                continue
            if start is not None and tick.exchange_time_ns < start:
                continue
            if end is not None and tick.exchange_time_ns >= end:
                continue
            row = _tick_row(frame.seq, tick)
        if fmt == "jsonl":
            out.write(msgspec.json.encode(row).decode() + "\n")  # NaN as null
            continue
        if writer is None:
            writer = csv.DictWriter(out, fieldnames=list(row), lineterminator="\n")
            writer.writeheader()
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return writer


def _export(args: argparse.Namespace) -> int:
    """All tick records (filtered) in one Arrow table, written as Parquet or CSV."""
    import pyarrow.csv  # noqa: PLC0415 - heavy; only this subcommand needs it
    import pyarrow.parquet  # noqa: PLC0415

    from services.md_recorder.tables import records_to_table  # noqa: PLC0415

    _require_intact(args.path, "export")
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
