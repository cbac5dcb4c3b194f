"""Where the quoter's time goes, by taking parts away: the bench's quoter (``bench.backtest``)
on a recordings directory, each run in a fresh process, interleaved, printing CPU seconds and
µs a tick for

- ``full``: as ``hft bench backtest`` runs it (engine journal written, results collected);
- ``nojournal``: no engine journal (``Backtest(journal=None)`` does the same);
- ``core``: no engine journal and no results collector either (the engine is assembled with no
  observer: what is left is the agent, the engine core, the risk gate, the ledger and the paper
  simulator; not something a user can run, since the results come from the collector).

    OPENBLAS_NUM_THREADS=1 python -m bench.backtest_parts RECORDINGS [--runs 3]

``RECORDINGS``: a directory of recorded days, such as the one ``bench.backtest`` writes
(``make_recordings``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("full", "nojournal", "core")


def child(mode: str, recordings: Path) -> dict[str, float]:
    import bench.backtest as bench
    from services.engine import backtest

    assemble = backtest.assemble  # type: ignore[attr-defined]

    # assemble(config, specs, phases, classes, adapter, journal, log, observer)
    def parts(*given: Any) -> Any:
        args = list(given)
        if mode in ("nojournal", "core"):
            args[5] = None
        if mode == "core":
            args[7] = None
        return assemble(*args)

    backtest.assemble = parts  # type: ignore[attr-defined,assignment]
    with tempfile.TemporaryDirectory() as work:
        start = time.process_time()
        ticks = bench._backtest("quoter", recordings, Path(work))
        return {"ticks": ticks, "cpu_s": time.process_time() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.backtest_parts",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("recordings", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.recordings)))
        return 0
    cpu: dict[str, list[float]] = {mode: [] for mode in MODES}
    ticks = 0
    for _ in range(args.runs):
        for mode in MODES:
            command = [sys.executable, "-m", "bench.backtest_parts", str(args.recordings)]
            out = subprocess.run(
                [*command, "--child", mode], capture_output=True, text=True, check=True
            )
            figures = json.loads(out.stdout.strip().splitlines()[-1])
            ticks = int(figures["ticks"])
            cpu[mode].append(figures["cpu_s"])
    for mode in MODES:
        median = statistics.median(cpu[mode])
        runs = ", ".join(f"{s:.2f}" for s in cpu[mode])
        print(
            f"{mode:10s} {median:6.2f} s CPU (runs {runs})  {median / ticks * 1e6:6.1f} µs a tick  "
            f"({ticks:,} ticks)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
