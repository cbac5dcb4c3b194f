"""One frame damaged in the middle of a real tick journal and of a real engine journal, in each
of the four ways (payload, sequence, commit word, checksum): every command of the suite that
meets it refuses in one line or reports it, and no command but ``hft journal repair`` changes a
byte of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import MARKET, ROOT, run_hft, write_config
from tests.libshm.test_journal import DAMAGE, damage, frame_offsets, snapshot_files
from tests.services.engine.test_live import CONFIG, DAY, run_to_end_of_day

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A deployment directory after the engine traded the whole real IF2101 day."""
    root = tmp_path_factory.mktemp("pristine")
    done = run_hft("import", "-f", "ctp-csv", str(MARKET / "IF2101_20210104.csv.gz"),
                   "-o", str(root / "journal" / "recordings"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    run_to_end_of_day(write_config(root, CONFIG), root / "engine.log")
    return root


def deployment(pristine: Path, tmp_path: Path) -> Path:
    shutil.copytree(pristine / "journal", tmp_path / "journal")
    return write_config(tmp_path, CONFIG)


def damage_the_middle(journal: Path, how: str) -> int:
    """Damage the middle frame of the journal's one segment; its sequence number."""
    segments = sorted(journal.glob("*.seg"))
    assert len(segments) == 1
    offsets = frame_offsets(segments[0])
    middle = len(offsets) // 2
    damage(segments[0], offsets[middle], how)
    return middle


def one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if not line.startswith("{")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


def replay_into(tmp_path: Path, source: Path) -> Path:
    """A replay deployment whose md-recorder writes into ``tmp_path/journal``."""
    return write_config(
        tmp_path,
        (ROOT / "configs/replay.toml").read_text()
        .replace('"../var/replay/journal"', f'"{tmp_path / "journal"}"')
        .replace('"/dev/shm/hft-replay"', f'"{tmp_path / "shm"}"')
        .replace('"127.0.0.1:9105"', '""').replace('"127.0.0.1:9106"', '""')
        .replace('"../var/recordings/20210104"', f'"{source}"')
        .replace("pace = 10.0", 'pace = "max"'),
        name="replay.toml",
    )  # fmt: skip


def check_repair(journal: Path, tmp_path: Path, kept: int) -> None:
    damaged = snapshot_files(journal)
    keep = tmp_path / "kept-copy"
    done = run_hft("journal", "repair", str(journal), "--keep", str(keep))
    assert done.returncode == 0, done.stderr
    assert f"{kept} frames kept (seq 0 .. {kept - 1})" in done.stdout
    assert snapshot_files(keep) == damaged  # every byte of the damaged journal kept
    verify = run_hft("journal", "verify", str(journal))
    assert verify.returncode == 0, verify.stdout
    assert f"intact: {kept} frames" in verify.stdout


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_recording_is_refused_and_kept(pristine: Path, tmp_path: Path, how: str) -> None:
    config = deployment(pristine, tmp_path)
    journal = tmp_path / "journal" / "recordings" / str(DAY)
    shutil.rmtree(tmp_path / "journal" / "engine")
    middle = damage_the_middle(journal, how)
    before = snapshot_files(journal)
    name = f"{journal}"

    info = run_hft("journal", "info", name)
    assert info.returncode == 0 and "integrity    damaged" in info.stdout, info.stderr
    verify = run_hft("journal", "verify", name)
    assert verify.returncode == 1 and f"damaged: {journal}/0000000000.seg: offset" in verify.stdout
    for args in (("journal", "cat", name), ("journal", "export", name, "-o", "x.parquet")):
        done = run_hft(*args)
        assert done.returncode == 1
        assert "reads intact journals only" in one_error_line(done.stderr)
    assert not (ROOT / "x.parquet").exists()
    csv = str(MARKET / "IF2101_20210104.csv.gz")
    done = run_hft("import", "-f", "ctp-csv", csv, "-o", str(journal.parent), "--append")
    assert done.returncode == 1  # the journal is damaged: a problem found, not a wrong input
    assert f"{journal}/0000000000.seg: offset" in one_error_line(done.stderr)
    copy = tmp_path / "source" / str(DAY)
    shutil.copytree(pristine / "journal" / "recordings" / str(DAY), copy)
    done = run_hft("md-recorder", "--config", str(replay_into(tmp_path, copy)))
    assert done.returncode == 1
    assert "the replay would continue this day's journal" in one_error_line(done.stderr)
    done = run_hft("engine", "--config", str(config))
    assert done.returncode == 1
    assert "the engine trades intact recordings only" in one_error_line(done.stderr)
    assert snapshot_files(journal) == before
    assert not (tmp_path / "journal" / "engine" / str(DAY)).exists()
    check_repair(journal, tmp_path, middle)


@pytest.mark.parametrize("how", DAMAGE)
def test_a_damaged_engine_journal_is_refused_and_kept(
    pristine: Path, tmp_path: Path, how: str
) -> None:
    config = deployment(pristine, tmp_path)
    journal = tmp_path / "journal" / "engine" / str(DAY)
    middle = damage_the_middle(journal, how)
    before = snapshot_files(journal)

    verify = run_hft("journal", "verify", str(journal))
    assert verify.returncode == 1
    done = run_hft("journal", "cat", str(journal))
    assert done.returncode == 1
    assert "reads intact journals only" in one_error_line(done.stderr)
    done = run_hft("engine", "--config", str(config))
    assert done.returncode == 1
    line = one_error_line(done.stderr)
    assert f"{journal}/0000000000.seg: offset" in line and "hft journal repair" in line
    assert snapshot_files(journal) == before
    check_repair(journal, tmp_path, middle)
