"""A real full disk under a real ``hft md-recorder``: the recordings directory (the ring's archive)
is a 1.1 MiB tmpfs (in a private mount namespace) and a replay at full speed fills a ring of four
1 MiB segments, so the second segment's copy finds no room before the ring would delete it. The
recorder stops with one line naming the segment, and every tick committed before is intact: in
the ring and the one archived segment, together the recording's first ticks."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from libshm import JournalReader, list_segments
from tests.helpers import ROOT, import_market, in_small_tmpfs, run_hft

pytestmark = pytest.mark.timeout(300)
DAY = 20210104


def test_a_full_disk_stops_the_recorder_in_one_line_and_keeps_what_it_committed(
    tmp_path: Path,
) -> None:
    recording = import_market(tmp_path / "rec", "IF2101_20210104.csv.gz")
    config = tmp_path / "replay.toml"
    config.write_text(
        (ROOT / "configs/replay.toml").read_text()
        .replace('"../var/replay/journal"', f'"{tmp_path / "journal"}"')
        .replace('"/dev/shm/hft-replay"', f'"{tmp_path / "shm"}"')
        .replace('"127.0.0.1:9105"', '""').replace('"127.0.0.1:9106"', '""')
        .replace('"../var/recordings/20210104"', f'"{recording / str(DAY)}"')
        .replace("pace = 10.0", 'pace = "max"')
        .replace('source = "replay"\n', 'source = "replay"\nsegment_mb = 1\n', 1)
    )  # fmt: skip
    recordings = tmp_path / "journal" / "recordings"
    recordings.mkdir(parents=True)
    kept = tmp_path / "kept"
    done = in_small_tmpfs(
        recordings, "1100k",
        f"{{ {sys.executable} -m services.cli md-recorder --config {config} --log-level error; "
        "echo exit $?; }",
        f"cp -r {recordings / str(DAY)} {kept}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exit 1", done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    segment = recordings / str(DAY) / "0000000001.seg"
    ring = tmp_path / "shm" / "ticks" / str(DAY)
    assert lines[0] == (
        f"hft md-recorder: error: {segment}: cannot archive segment (No space left on device); "
        f"free space there: every frame committed before is intact in {ring}, and archiving "
        "goes on when there is room"
    )
    assert list_segments(kept) == [0]
    assert list_segments(ring) == [1, 2, 3, 4]  # nothing was deleted unarchived
    verify = run_hft("journal", "verify", str(ring))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    source = JournalReader(recording / str(DAY))
    copy = JournalReader(ring, archive_dir=kept, verify=True)
    n = 0
    while (frame := copy.read()) is not None:  # the ticks it kept are the recording's first ones
        original = source.read()
        assert original is not None and bytes(frame.payload) == bytes(original.payload)
        n += 1
    assert 4 * 3000 < n < 27_954
