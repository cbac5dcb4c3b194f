"""One file's columnar work, in this process or in worker processes (several files at once):
the file read as columns (``scanned.py``, else ``arrow.py``) and normalised (``columnar.py``),
with the raw rows the per-row path will need, for ``importer.import_files`` to take in file
order.

Workers hand their records back through ``.npy`` files in a scratch directory (removed when
the import ends), which costs less than sending 300 MB per million rows down a pipe.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from contracts.calendar import Calendar
from services.md_recorder import scanned
from services.md_recorder.arrow import read_ctp_columns, read_mapped_columns
from services.md_recorder.columnar import Normalised, normalise_columns
from services.md_recorder.mapping import Mapping, Reject
from services.md_recorder.normalise import Normaliser, RawTick

__all__ = ["PARALLEL_FROM", "Prepared", "prepare", "prepared_files"]

PARALLEL_FROM: Final = 32 << 20
"""Files smaller than this in all are read in this process: a worker's start costs more."""


@dataclass
class Prepared:
    """One file as the columnar path left it: the rows it read, what it made of them, and the
    raw row (or reject) of each row the per-row path must see: those it left (``done.slow``)
    and, for ``--rejects``, those the per-row checks dropped."""

    rows: int
    done: Normalised
    raws: dict[int, RawTick | Reject]
    saved: str = ""
    pid: int = 0
    """The process that read the file."""
    """Where a worker left ``done.records`` (read back and removed by ``prepared_files``)."""


def prepare(path: Path, fmt: str, mapping: Mapping | None, normaliser: Normaliser,
            keep_rejects: bool) -> Prepared | None:  # fmt: skip
    """The columnar work on one file; None where the per-row reader must read it."""
    import pyarrow as pa  # noqa: PLC0415 - heavy; only imports need it

    try:
        if fmt == "ctp-csv":
            cols = scanned.scan_ctp(path)
            cols = read_ctp_columns(path) if cols is None else cols
        elif fmt == "csv" and mapping is not None:
            cols = scanned.scan_mapped(path, mapping)
            cols = read_mapped_columns(path, mapping) if cols is None else cols
        else:
            return None
    except pa.ArrowException:  # anything the columns cannot take: the per-row path decides
        return None
    if cols is None:
        return None
    done = normalise_columns(cols, normaliser)
    wanted = done.slow.tolist()
    if keep_rejects:
        wanted += done.index[done.drop != 0].tolist()
    return Prepared(len(cols), done, {i: cols.raw(i) for i in wanted}, pid=os.getpid())


def _work(job: tuple[Path, str, Mapping | None, Calendar, bool, Path, int]) -> Prepared | None:
    path, fmt, mapping, calendar, keep_rejects, scratch, threads = job
    scanned.SCAN_THREADS = threads  # the cores shared among the workers
    prepared = prepare(path, fmt, mapping, Normaliser(calendar, check_exchange=True),
                       keep_rejects)  # fmt: skip
    if prepared is not None:  # the records go back by file; the rest is small
        saved = scratch / f"{os.getpid()}-{id(prepared)}.npy"
        np.save(saved, prepared.done.records)
        prepared.done.records = np.zeros(0)
        prepared.saved = str(saved)
    return prepared


def prepared_files(  # noqa: PLR0917
    paths: list[Path], fmt: str, mapping: Mapping | None, calendar: Calendar,
    normaliser: Normaliser, keep_rejects: bool, workers: int,
) -> Iterator[Prepared | None]:  # fmt: skip
    """``prepare`` of each file, in file order: in ``workers`` processes when there are several
    files and enough to read, else here."""
    size = sum(p.stat().st_size for p in paths if p.is_file())
    if workers < 2 or len(paths) < 2 or size < PARALLEL_FROM or fmt not in ("ctp-csv", "csv"):
        for path in paths:
            yield prepare(path, fmt, mapping, normaliser, keep_rejects)
        return
    scratch = Path(tempfile.mkdtemp(prefix="hft-import-"))
    count = min(workers, len(paths))
    share = max(1, (os.cpu_count() or 1) // count)  # the scanner's threads in each worker
    try:
        context = multiprocessing.get_context("spawn")  # pyarrow's threads: no fork
        with ProcessPoolExecutor(count, mp_context=context) as pool:
            jobs = [(p, fmt, mapping, calendar, keep_rejects, scratch, share) for p in paths]
            for prepared in pool.map(_work, jobs):
                if prepared is not None:
                    prepared.done.records = np.load(prepared.saved)
                    Path(prepared.saved).unlink()
                yield prepared
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
