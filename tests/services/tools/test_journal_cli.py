"""``hft journal info|verify|cat`` as a user runs them."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from libshm import TICK_LAYOUT, JournalWriter
from libshm.layout import FRAME_HEADER_SIZE, SEGMENT_HEADER_SIZE, segment_name
from tests.helpers import run_hft
from tests.libshm.workers import BASE_TIME, INSTRUMENTS, make_tick


def _journal(path: Path, count: int = 30, segment: int = 4096) -> Path:
    with JournalWriter(path, layout=TICK_LAYOUT, segment_size=segment) as w:
        for i in range(count):
            w.append_tick(make_tick(i), BASE_TIME + i)
    return path


def test_info_summarises(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j")
    done = run_hft("journal", "info", str(path))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "tick record v1 (336-byte frames)" in out
    assert "frames       30 (seq 0 .. 29)" in out
    assert "instruments  3: IF2101 (10), cu2102 (10), rb2105 (10)" in out
    assert "writer       closed" in out
    assert "integrity    intact" in out
    info = json.loads(run_hft("journal", "info", "--json", str(path)).stdout)
    assert info["segments"] == 3
    assert info["instruments"] == dict.fromkeys(sorted(INSTRUMENTS), 10)


def test_verify_passes_an_intact_journal(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j")
    done = run_hft("journal", "verify", str(path))
    assert done.returncode == 0
    assert "intact: 30 frames in 3 segments, seq 0 .. 29" in done.stdout


def test_verify_names_segment_and_offset_of_a_flipped_byte(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j")
    seg = path / segment_name(1)
    data = bytearray(seg.read_bytes())
    offset = SEGMENT_HEADER_SIZE + 4 * 336
    data[offset + FRAME_HEADER_SIZE + 50] ^= 0x80
    seg.write_bytes(data)
    done = run_hft("journal", "verify", str(path))
    assert done.returncode == 1
    assert f"damaged: {seg}: offset {offset}: checksum mismatch in frame 15" in done.stdout
    assert "Traceback" not in done.stdout + done.stderr


def test_verify_names_a_truncated_segment(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j")
    seg = path / segment_name(2)
    seg.write_bytes(seg.read_bytes()[:1000])
    done = run_hft("journal", "verify", str(path))
    assert done.returncode == 1
    assert f"{seg}: offset 0: segment size 1000 differs" in done.stdout


def test_verify_of_something_that_is_not_a_journal(tmp_path: Path) -> None:
    done = run_hft("journal", "verify", str(tmp_path))
    assert done.returncode == 1
    assert done.stderr.strip() == (
        f"hft journal: error: {tmp_path}: neither a journal (no segment files) nor a directory "
        "of journals (such as the recordings directory `hft import` writes, one per trading day)"
    )
    done = run_hft("journal", "info", str(tmp_path / "nope"))
    assert done.returncode == 1
    assert "no such journal directory" in done.stderr


def test_verify_passes_a_crashed_writers_torn_tail_with_a_note(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j", count=5, segment=1 << 16)
    seg = path / segment_name(0)
    data = bytearray(seg.read_bytes())
    end = SEGMENT_HEADER_SIZE + 5 * 336
    data[end + 8 : end + 100] = b"\x11" * 92  # a frame body whose commit word never landed
    seg.write_bytes(data)
    done = run_hft("journal", "verify", str(path))
    assert done.returncode == 0
    assert f"note: {seg}: offset {end}: an uncommitted frame" in done.stdout


def test_cat_filters_by_instrument_and_time_as_csv(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j")
    # ticks are 500 ms apart from BASE_TIME (2021-01-04 09:10:00 China time)
    done = run_hft(
        "journal", "cat", str(path), "--instrument", "rb2105",
        "--from", "2021-01-04T09:10:03", "--to", "2021-01-04T09:10:10",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [int(r["volume"]) for r in rows] == [7, 10, 13, 16, 19]
    first = make_tick(7)
    assert rows[0]["exchange_time"] == "2021-01-04T09:10:03.500+08:00"
    assert float(rows[0]["last"]) == first.last
    assert int(rows[0]["exchange_time_ns"]) == first.exchange_time_ns
    assert rows[0]["close"] == ""  # absent price (NaN) is an empty cell
    assert int(rows[0]["bid_volume3"]) == first.bid_volume3


def test_cat_jsonl_round_trips_every_field(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j", count=12)
    done = run_hft("journal", "cat", str(path), "--format", "jsonl")
    lines = [json.loads(x) for x in done.stdout.splitlines()]
    assert len(lines) == 12
    for row in lines:
        tick = make_tick(row["seq"])
        for name, value in zip(tick._fields, tick, strict=True):
            if isinstance(value, float) and math.isnan(value):
                assert row[name] is None
            else:
                assert row[name] == value, name


def test_cat_bad_time_is_one_line(tmp_path: Path) -> None:
    path = _journal(tmp_path / "j")
    done = run_hft("journal", "cat", str(path), "--from", "yesterday")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "hft journal: error: 'yesterday' is not an ISO 8601 time, such as 2021-01-04T09:30:00"
    )


def test_a_recordings_directory_is_every_day_journal_in_it(tmp_path: Path) -> None:
    """What `hft import` writes (one journal per trading day) given whole to info, verify and
    cat: each day in order; a directory with no journal says what it expected."""
    recs = tmp_path / "recordings"
    _journal(recs / "20210104", count=30)
    _journal(recs / "20210105", count=12)
    (recs / "notes").mkdir()  # not a journal: passed over
    info = run_hft("journal", "info", str(recs))
    assert info.returncode == 0, info.stderr
    assert info.stdout.count("journal      ") == 2
    assert info.stdout.index("20210104") < info.stdout.index("20210105")
    lines = run_hft("journal", "info", "--json", str(recs)).stdout.splitlines()
    assert [json.loads(x)["frames"] for x in lines] == [30, 12]
    verify = run_hft("journal", "verify", str(recs))
    assert verify.returncode == 0
    assert verify.stdout.splitlines()[-1] == f"{recs}: 2 journals, all intact"
    cat = run_hft("journal", "cat", str(recs))
    rows = list(csv.DictReader(io.StringIO(cat.stdout)))
    assert [int(r["seq"]) for r in rows] == list(range(30)) + list(range(12))  # one header
    seg = recs / "20210105" / segment_name(1)
    data = bytearray(seg.read_bytes())
    data[SEGMENT_HEADER_SIZE + FRAME_HEADER_SIZE + 50] ^= 0x80
    seg.write_bytes(data)
    damaged = run_hft("journal", "verify", str(recs))
    assert damaged.returncode == 1
    assert damaged.stdout.splitlines()[-1] == f"{recs}: 2 journals, 1 damaged: 20210105"
    refused = run_hft("journal", "cat", str(recs))
    assert refused.returncode == 1 and refused.stdout == ""  # nothing printed, not even day 1
    empty = run_hft("journal", "verify", str(tmp_path / "recordings" / "notes"))
    assert empty.returncode == 1
    assert "neither a journal (no segment files) nor a directory of journals" in empty.stderr
