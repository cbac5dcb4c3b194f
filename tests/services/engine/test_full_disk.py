"""A real full disk under a real ``hft engine``: a 1.1 MiB tmpfs (in a private mount namespace)
holds the engine's journal, which needs a second 1 MiB segment during the day. The engine stops
with one line naming the segment and the orders left working, and every frame committed before
is intact, so the day recovers when there is space again."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from contracts import messages as m
from services.engine.journals import read_journal
from tests.helpers import import_market, in_small_tmpfs
from tests.services.engine.test_live import DAY, deployment, outcome, run_to_end_of_day

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return import_market(tmp_path_factory.mktemp("rec"), "IF2101_20210104.csv.gz")


def still_working(journal: list[m.EngineMessage]) -> set[str]:
    volume = {x.order_id: x.volume for x in journal if isinstance(x, m.OrderRequested)}
    filled: dict[str, int] = {}
    for x in journal:
        if isinstance(x, m.Trade):
            filled[x.order_id] = filled.get(x.order_id, 0) + x.volume
    done = {x.order_id for x in journal if isinstance(x, (m.OrderCancelled, m.OrderRejected))}
    return {o for o, v in volume.items() if o not in done and filled.get(o, 0) < v}


def test_a_full_disk_stops_the_engine_in_one_line_and_the_day_recovers(
    tmp_path: Path, recording: Path
) -> None:
    config = deployment(tmp_path, recording)
    config.write_text(config.read_text().replace("[engine]\n", "[engine]\nsegment_mb = 1\n"))
    engine_dir = tmp_path / "journal" / "engine"
    engine_dir.mkdir()
    kept = tmp_path / "kept"
    done = in_small_tmpfs(
        engine_dir, "1100k",
        f"{{ {sys.executable} -m services.cli engine --config {config} --log-level error; "
        f"echo exit $?; }}",
        f"cp -r {engine_dir} {kept}",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exit 1", done.stderr
    last = done.stderr.strip().splitlines()[-1]
    segment = engine_dir / str(DAY) / "0000000001.seg"
    assert last.startswith(f"hft engine: error: {segment}: cannot allocate a 1 MiB segment "
                           "(No space left on device)")  # fmt: skip
    assert "every frame committed before is intact; the engine stopped" in last
    assert "free space and start it again: the day recovers from the journal" in last
    assert "Traceback" not in done.stderr
    journal = read_journal(kept / str(DAY))  # every checksum checked
    reported = {json.loads(line)["order_id"] for line in done.stderr.splitlines()
                if '"order_left_working"' in line}  # fmt: skip
    assert reported == still_working(journal)  # what the journal says is still out there
    assert reported and f"{len(reported)} order(s) still working at the exchange" in last
    assert len(journal) > 1000 and not isinstance(journal[-1], m.DayClosed)

    # with space again: the day recovers from the kept journal and ends like an uninterrupted run
    shutil.rmtree(engine_dir)
    shutil.copytree(kept, engine_dir)
    for stale in ("command.endpoint", "command.token"):
        (engine_dir / stale).unlink(missing_ok=True)
    run_to_end_of_day(config, tmp_path / "engine.log")
    recovered = read_journal(engine_dir / str(DAY))
    assert recovered[: len(journal)] == journal
    calm = tmp_path / "calm"
    calm.mkdir()
    run_to_end_of_day(deployment(calm, recording), calm / "engine.log")
    assert outcome(recovered) == outcome(read_journal(calm / "journal" / "engine" / str(DAY)))
