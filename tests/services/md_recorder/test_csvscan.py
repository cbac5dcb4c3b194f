"""The C scanner (``services/md_recorder/_ext/csvscan.c``) on its own: numbers exactly as
Python's ``float`` reads them, what it refuses, and the same result on one thread or several.
The import through it is compared with the other paths in ``test_columnar.py``."""

from __future__ import annotations

import math
import random
import struct
from decimal import Decimal, getcontext
from typing import Any

import numpy as np
import pytest

from libshm import TICK_DTYPE
from services.md_recorder import scanned
from services.md_recorder.columnar import NUMBERS
from tests.services.md_recorder.test_columnar import scanner_built

TURNOVER = NUMBERS.index("Turnover")  # kept as read: any finite number below 1e300
TEXT, SKIP, MILLIS = 64, 127, 35


INITIAL = np.array([0.0 if "Volume" in name else np.nan for name in NUMBERS])
"""A mapped file's: a number the file lacks is absent, a volume 0."""


def scan(text: bytes, spec: bytes, threads: int = 1, slots: int = 0) -> Any:
    """``lines`` and ``scan`` of ``text`` (no header) with every number as read and no text
    copied: None, or (rows, texts, and as bytes: records, codes, slow, millis, starts; wide;
    facts)."""
    scanner_built()
    scanner = scanned.SCANNER
    assert scanner is not None
    parts = scanner.lines(text, 0, threads)
    rows = sum(lines for _, _, lines in parts)
    records, codes = np.empty(rows, dtype=TICK_DTYPE), np.empty((slots, rows), dtype=np.int32)
    slow, facts = np.empty(rows, dtype=np.uint8), np.empty(rows, dtype=np.uint8)
    millis, starts = np.empty(rows, dtype=np.int64), np.empty(rows, dtype=np.int64)
    got = scanner.scan(
        text, parts, ord(","), spec, INITIAL, np.ones(len(NUMBERS)),
        np.zeros(len(NUMBERS), dtype=np.uint8), np.full((slots, 2), -1, dtype=np.int32),
        records, codes, slow, facts, millis, starts,
    )  # fmt: skip
    if got is None:
        return None
    return (rows, got[0], *(a.tobytes() for a in (records, codes, slow, millis, starts)), got[1],
            facts)  # fmt: skip


def turnovers(values: list[str]) -> tuple[np.ndarray, np.ndarray]:
    got = scan(("\n".join(values) + "\n").encode(), bytes([TURNOVER]))
    assert got is not None and got[0] == len(values)
    records = np.frombuffer(got[2], dtype=TICK_DTYPE)
    return records["turnover"], np.frombuffer(got[4], dtype=np.uint8)


def bits(x: float) -> int:
    return int(struct.unpack("<q", struct.pack("<d", x))[0])


def hard_numbers(seed: int, count: int) -> list[str]:
    """Decimal texts near the midpoint between two neighbouring doubles (where one rounding
    too many goes wrong), of 15 to 21 significant digits, and ordinary prices of every size."""
    rng = random.Random(seed)
    getcontext().prec = 800
    out = []
    for _ in range(count):
        kind = rng.random()
        if kind < 0.5:
            d = rng.uniform(1, 10) * 10.0 ** rng.randint(-20, 25)
            mid = (Decimal(d) + Decimal(math.nextafter(d, math.inf))) / 2
            digits = rng.randint(15, 21)
            text = f"{mid:.{digits}e}"
            if rng.random() < 0.5:  # the same in plain notation where it is short enough
                plain = format(Decimal(text), "f")
                text = plain if len(plain) < 40 else text
            out.append(text)
        else:
            whole = rng.randint(0, 10 ** rng.randint(1, 19))
            places = rng.randint(0, 8)
            text = f"{whole / 10**places:.{places}f}" if places else str(whole)
            out.append(("-" if rng.random() < 0.2 else "") + text)
    return out


SPECIAL = [
    "0", "-0", "0.0", ".5", "5.", "+7", "007.250", "1e23", "8.5e-5", "9007199254740993",
    "9007199254740992.5", "123456789012345678901234567890", "0.1000000000000000055511151231257827",
    "4.9406564584124654e-324", "2.2250738585072011e-308", "1e-400", "1E5", "5e+0", "1e299",
    "-1.7976931348623157e+308", "3.14159265358979323846264338327950288", "1" * 300,
]  # fmt: skip


@pytest.mark.parametrize("seed", range(3))
def test_numbers_are_read_as_python_reads_them(seed: int) -> None:
    values = [*SPECIAL, *hard_numbers(seed, 20_000)]
    got, slow = turnovers(values)
    assert not slow.any()
    for text, x in zip(values, got.tolist(), strict=True):
        want = float(text)
        if not (math.isfinite(want) and want < 1e300):
            assert math.isnan(x), text  # what the turnover field makes of it
        else:
            assert bits(x) == bits(want), text


def test_a_huge_number_is_no_value_and_too_many_digits_go_row_by_row() -> None:
    got, slow = turnovers(
        ["1.7976931348623157e+308", "1e300", "9" * 600, "1e400", "1." + "0" * 600]
    )
    assert math.isnan(got[0]) and math.isnan(got[1]) and math.isnan(got[2]) and math.isnan(got[3])
    assert slow.tolist() == [0, 0, 0, 0, 1]  # 1.000...: 602 characters, the per-row path's


@pytest.mark.parametrize(
    "text",
    ["", "1e", "e5", "+", "-", ".", "1.2.3", "0x10", "1_000", " 1", "1 ", "inf", "nan", "--1",
     "1e+", "١٢"],
)  # fmt: skip
def test_what_is_no_plain_number_is_left_to_the_per_row_path(text: str) -> None:
    got = scan((text + "\n").encode(), bytes([TURNOVER]))
    assert got is not None
    empty_value = text == ""  # empty: the initial value (NaN), as empty_slow is 0 here
    assert np.frombuffer(got[4], dtype=np.uint8).tolist() == [0 if empty_value else 1]


def test_milliseconds_are_plain_digits_below_1000() -> None:
    values = ["0", "999", "1000", "-1", "5.0", "", " 7", "042", "1234567890"]
    got = scan(("\n".join(values) + "\n").encode(), bytes([MILLIS]))
    assert np.frombuffer(got[5], dtype=np.int64).tolist() == [0, 999, -1, -1, -1, -1, -1, 42, -1]


@pytest.mark.parametrize(
    "text",
    [b'1,"a"\n', b"1,a\rb\n", b"1,a\r", b"1,a\x00\n", b"1,a\n\n", b"1\n", b"1,a,b\n", b"1,a\tb\n"],
    ids=["quote", "lone CR", "CR at the end", "NUL", "blank line", "too few", "too many", "tab"],
)
def test_a_file_that_is_not_plain_is_refused_whole(text: bytes) -> None:
    assert scan(b"2,x\n" + text, bytes([TURNOVER, TEXT]), slots=1) is None


def test_line_ends_and_a_last_line_without_one() -> None:
    for text in (b"1,a\r\n2,b\r\n3,a", b"1,a\n2,b\n3,a\n"):
        got = scan(text, bytes([TURNOVER, TEXT]), slots=1)
        rows, texts, records, codes = got[:4]
        assert rows == 3 and texts == [["a", "b"]]
        assert np.frombuffer(codes, dtype=np.int32).tolist() == [0, 1, 0]
        assert np.frombuffer(records, dtype=TICK_DTYPE)["turnover"].tolist() == [1.0, 2.0, 3.0]
        assert not got[7]  # nothing beyond ASCII


def test_bytes_beyond_ascii_are_fine_where_skipped_and_slow_elsewhere() -> None:
    text = "1,沪深300,a\n2,x,沪\n".encode()
    got = scan(text, bytes([TURNOVER, SKIP, TEXT]), slots=1)
    assert got is not None and got[7]  # wide: the caller checks the file is UTF-8
    assert np.frombuffer(got[4], dtype=np.uint8).tolist() == [0, 1]


def big_file(rows: int) -> bytes:
    rng = random.Random(5)
    lines = []
    for i in range(rows):
        price = f"{rng.randint(100_000, 999_999) / 10:.1f}"
        name = rng.choice(["IF2101", "IC2101", "IH2101", f"X{i % 977}"])
        lines.append(f"{price},{name},{rng.randint(0, 999)},{i}")
    return ("\n".join(lines) + "\n").encode()


def test_several_threads_give_what_one_gives() -> None:
    """A file of some MB cut into parts read at once: the same records, the same texts per
    row (each part's distinct values merged into one list), the same line starts."""
    text = big_file(200_000)
    assert len(text) > 4 << 20  # enough for four parts of at least 1 MiB
    spec = bytes([TURNOVER, TEXT, MILLIS, TEXT + 1])
    one, four = scan(text, spec, threads=1, slots=2), scan(text, spec, threads=4, slots=2)
    assert len(scanned.SCANNER.lines(text, 0, 4)) == 4  # type: ignore[union-attr]
    assert one[0] == four[0] == 200_000
    assert one[2] == four[2] and one[4] == four[4] and one[5] == four[5] and one[6] == four[6]
    for got in (one, four):
        codes = np.frombuffer(got[3], dtype=np.int32).reshape(2, -1)
        names = [got[1][0][c] for c in codes[0].tolist()]
        numbers = [int(got[1][1][c]) for c in codes[1].tolist()]
        assert names[:3] == [line.split(",")[1] for line in text.decode().splitlines()[:3]]
        assert numbers == list(range(200_000))
    assert sorted(one[1][0]) == sorted(four[1][0]) and len(four[1][0]) == 980
