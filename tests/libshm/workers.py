"""Processes the cross-process tests start: ``python -m tests.libshm.workers ROLE ARGS``.

Every frame's content is a function of its sequence number, so any process can check any frame.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import signal
import sys
import time
from pathlib import Path

from libshm import TICK_LAYOUT, JournalReader, JournalWriter, Tick, WaitPolicy, encode_tick
from libshm.seqlock import SnapshotReader, SnapshotWriter

INSTRUMENTS = ("IF2101", "rb2105", "cu2102")
BASE_TIME = 1_609_722_600_000_000_000  # 2021-01-04 01:10 UTC


def make_tick(i: int) -> Tick:
    """A tick whose every field is derived from ``i``."""
    price = 1000.0 + (i % 5000) * 0.2
    return Tick._make(
        (INSTRUMENTS[i % 3], "CFFEX", 20210104, i & 7, BASE_TIME + i * 500_000_000,
        BASE_TIME + i * 500_000_000 + 123, price, price - 1, price + 1, price - 2, math.nan,
        price - 3, price - 4, math.nan, price * 1.1, price * 0.9, price, i, price * i,
        float(i % 100_000), 90_000.0,
        *(price - k * 0.2 for k in range(1, 6)), *(price + k * 0.2 for k in range(1, 6)),
        *(i % 97 + k for k in range(5)), *(i % 89 + k for k in range(5)),
    ))  # fmt: skip


def frame_time(seq: int) -> int:
    return BASE_TIME + seq * 1_000


def consistent(tick: Tick) -> bool:
    """True if every field of ``tick`` comes from one ``make_tick(i)`` (NaN-safe: by bytes)."""
    return encode_tick(tick) == encode_tick(make_tick(tick.volume))


def write(args: argparse.Namespace) -> None:
    """Append ticks ``start .. start+count-1`` (continuing the journal's sequence) then close."""
    with JournalWriter(
        args.path, layout=TICK_LAYOUT, segment_size=args.segment, prepare_ahead=args.prepare_ahead
    ) as writer:
        if args.wait_go:
            print("ready", flush=True)
            sys.stdin.readline()
        for _ in range(args.count):
            seq = writer.next_seq
            writer.append_tick(make_tick(seq), frame_time(seq))
            if args.pause_every and seq % args.pause_every == 0:
                time.sleep(0.0005)
        if args.hold:
            time.sleep(args.hold)


def write_forever(args: argparse.Namespace) -> None:
    """Append until killed, recovering whatever a killed predecessor left."""
    writer = JournalWriter(
        args.path, layout=TICK_LAYOUT, segment_size=args.segment, prepare_ahead=args.prepare_ahead
    )
    print("ready", writer.next_seq, flush=True)
    while True:
        for _ in range(5):
            seq = writer.next_seq
            writer.append_tick(make_tick(seq), frame_time(seq))
        time.sleep(0.0002)


def read(args: argparse.Namespace) -> None:
    """Tail the journal to its end; print count, first seq and a hash of (seq, payload)."""
    reader = JournalReader(
        args.path,
        from_seq=args.from_seq,
        from_time_ns=args.from_time,
        live=args.live,
        wait=WaitPolicy(check_writer_ns=50_000_000),
    )
    print("ready", flush=True)
    digest = hashlib.sha256()
    count = 0
    first = None
    for frame in reader.tail():
        if first is None:
            first = frame.seq
        digest.update(frame.seq.to_bytes(8, "little"))
        digest.update(frame.payload)
        count += 1
    print(json.dumps({"count": count, "first": first, "sha": digest.hexdigest()}), flush=True)


def snap_write(args: argparse.Namespace) -> None:
    with SnapshotWriter(args.path, capacity=8) as table:
        for name in INSTRUMENTS:
            table.slot_of(name, "CFFEX")
        print("ready", flush=True)
        deadline = time.monotonic() + args.seconds
        i = 0
        while time.monotonic() < deadline:
            for _ in range(1000):
                table.write(make_tick(i))
                i += 1


def snap_read(args: argparse.Namespace) -> None:
    """Read slots as fast as possible; count reads whose fields do not belong together."""
    from libshm.record import decode_tick
    from libshm.seqlock import RECORD_OFFSET, SLOT_SIZE

    table = SnapshotReader(args.path)
    while len(table.instruments()) < len(INSTRUMENTS):
        time.sleep(0.001)
    slots = [table.slot_of(n) for n in INSTRUMENTS]
    reads = torn = 0
    deadline = time.monotonic() + args.seconds
    mv = table._mv
    base = table._slots
    while time.monotonic() < deadline:
        for slot in slots:
            assert slot is not None
            if args.checked:
                record = table.read_record(slot)
            else:  # the control: the same copy without the sequence check
                off = base + slot * SLOT_SIZE + RECORD_OFFSET
                record = mv[off : off + 304].tobytes()
            if record is None:
                continue
            reads += 1
            if not consistent(decode_tick(record)):
                torn += 1
    print(json.dumps({"reads": reads, "torn": torn}), flush=True)


def main() -> None:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="role", required=True)
    p = sub.add_parser("write")
    p.add_argument("path", type=Path)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--segment", type=int, default=1 << 20)
    p.add_argument("--prepare-ahead", action="store_true", default=None)
    p.add_argument("--pause-every", type=int, default=0)
    p.add_argument("--hold", type=float, default=0.0)
    p.add_argument("--wait-go", action="store_true", help="open, say ready, write after a line")
    p.set_defaults(run=write)
    p = sub.add_parser("write-forever")
    p.add_argument("path", type=Path)
    p.add_argument("--segment", type=int, default=8192)
    p.add_argument("--prepare-ahead", action="store_true", default=None)
    p.set_defaults(run=write_forever)
    p = sub.add_parser("read")
    p.add_argument("path", type=Path)
    p.add_argument("--from-seq", type=int)
    p.add_argument("--from-time", type=int)
    p.add_argument("--live", action="store_true")
    p.set_defaults(run=read)
    p = sub.add_parser("snap-write")
    p.add_argument("path", type=Path)
    p.add_argument("--seconds", type=float, default=2.0)
    p.set_defaults(run=snap_write)
    p = sub.add_parser("snap-read")
    p.add_argument("path", type=Path)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--checked", type=int, default=1)
    p.set_defaults(run=snap_read)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
