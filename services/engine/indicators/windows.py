"""The rolling parts every windowed indicator is made of: a ring of the last ``n`` values and a
compensated running sum, each O(1) per update (no pass over the window, no pandas)."""

from __future__ import annotations

import math
from typing import Final

__all__ = ["NAN", "Ring", "Sum"]

NAN: Final = math.nan


class Ring:
    """The last ``n`` values pushed; :meth:`push` returns the value it pushed out (NaN while
    the ring is filling)."""

    __slots__ = ("count", "head", "n", "values")

    def __init__(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"window must be a whole number of at least 1, not {n!r}")
        self.n = n
        self.values = [NAN] * n
        self.head = 0  # where the next value goes (the oldest one, once full)
        self.count = 0

    def push(self, x: float) -> float:
        old = self.values[self.head]
        self.values[self.head] = x
        self.head = (self.head + 1) % self.n
        if self.count < self.n:
            self.count += 1
            return NAN
        return old

    @property
    def full(self) -> bool:
        return self.count == self.n


class Sum:
    """A running sum with Neumaier's compensation, so adding and taking away values for a whole
    trading day of ticks keeps it to a few units in the last place of the exact sum (Neumaier,
    "Rundungsfehleranalyse einiger Verfahren zur Summation endlicher Summen", ZAMM 54, 1974)."""

    __slots__ = ("c", "s")

    def __init__(self) -> None:
        self.s = 0.0
        self.c = 0.0

    def add(self, x: float) -> None:
        s = self.s
        t = s + x
        if abs(s) >= abs(x):
            self.c += (s - t) + x
        else:
            self.c += (x - t) + s
        self.s = t

    @property
    def value(self) -> float:
        return self.s + self.c
