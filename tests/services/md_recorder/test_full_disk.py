"""A real full disk under a real ``hft md-recorder``: the recordings directory is a 1.1 MiB tmpfs
(in a private mount namespace) and a replay at full speed needs a second 1 MiB segment. The
recorder stops with one line naming the segment, and every tick committed before is intact."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from libshm import JournalReader
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
    assert lines[0].startswith(f"hft md-recorder: error: {segment}: cannot allocate a 1 MiB "
                               "segment (No space left on device); free space there")  # fmt: skip
    assert "every frame committed before is intact" in lines[0]
    verify = run_hft("journal", "verify", str(kept))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    source = JournalReader(recording / str(DAY))
    copy = JournalReader(kept)
    n = 0
    while (frame := copy.read()) is not None:  # the ticks it kept are the recording's first ones
        original = source.read()
        assert original is not None and bytes(frame.payload) == bytes(original.payload)
        n += 1
    assert 3000 < n < 27_953
