"""Latency model: how long an order or a cancel takes to reach the exchange, and an exchange
event to come back (docs/paper.md, "Time"). Constant, or drawn from an exponential distribution
with the configured value as its mean, from a generator seeded once (deterministic)."""

from __future__ import annotations

import random

__all__ = ["Latency"]

US = 1_000


class Latency:
    def __init__(
        self, *, entry_us: float = 0.0, cancel_us: float = 0.0, ack_us: float = 0.0,
        kind: str = "constant", seed: int = 1,
    ) -> None:  # fmt: skip
        if kind not in ("constant", "exponential"):
            raise ValueError(f"latency must be 'constant' or 'exponential', not {kind!r}")
        for name, value in (("entry", entry_us), ("cancel", cancel_us), ("ack", ack_us)):
            if value < 0:
                raise ValueError(f"{name} latency must be >= 0, not {value}")
        self._entry, self._cancel, self._ack = entry_us * US, cancel_us * US, ack_us * US
        self._random = random.Random(seed) if kind == "exponential" else None

    def _draw(self, mean_ns: float) -> int:
        if self._random is None or mean_ns == 0:
            return int(mean_ns)
        return int(self._random.expovariate(1.0 / mean_ns))

    def entry(self) -> int:
        """Nanoseconds from the engine's submit to the exchange."""
        return self._draw(self._entry)

    def cancel(self) -> int:
        return self._draw(self._cancel)

    def ack(self) -> int:
        """Nanoseconds from the exchange's event to the engine."""
        return self._draw(self._ack)
