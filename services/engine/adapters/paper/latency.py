"""Latency model: how long an order or a cancel takes to reach the exchange, and an exchange
event to come back (docs/paper.md, "Time"). Constant, or drawn from an exponential distribution
with the configured value as its mean, from a generator seeded once (deterministic)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from functools import partial

__all__ = ["Latency"]

US = 1_000


class Latency:
    """``entry()``: nanoseconds from the engine's submit to the exchange; ``cancel()``: the same
    for a cancel; ``ack()``: from the exchange's event to the engine. Each is called once per
    order, cancel or event, so a constant model answers from a C iterator."""

    entry: Callable[[], int]
    cancel: Callable[[], int]
    ack: Callable[[], int]

    def __init__(
        self, *, entry_us: float = 0.0, cancel_us: float = 0.0, ack_us: float = 0.0,
        kind: str = "constant", seed: int = 1,
    ) -> None:  # fmt: skip
        if kind not in ("constant", "exponential"):
            raise ValueError(f"latency must be 'constant' or 'exponential', not {kind!r}")
        for name, value in (("entry", entry_us), ("cancel", cancel_us), ("ack", ack_us)):
            if value < 0:
                raise ValueError(f"{name} latency must be >= 0, not {value}")
        means = [int(us * US) for us in (entry_us, cancel_us, ack_us)]
        if kind == "constant":
            self.entry, self.cancel, self.ack = (itertools.repeat(ns).__next__ for ns in means)
        else:
            self._random = random.Random(seed)
            self.entry, self.cancel, self.ack = (partial(self._draw, ns) for ns in means)

    def _draw(self, mean_ns: int) -> int:
        if mean_ns == 0:
            return 0
        return int(self._random.expovariate(1.0 / mean_ns))
