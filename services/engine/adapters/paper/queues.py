"""Queue models: how much of the volume cancelled at a resting order's price was ahead of it
(docs/paper.md, "Resting orders and queue position").

Traded volume always uses up the queue ahead first; what a model decides is only the share of
cancellations. Both models are deterministic for a given seed and input.
"""

from __future__ import annotations

import random
from typing import Protocol

__all__ = ["Conservative", "Probabilistic", "QueueModel", "make_queue_model"]


class QueueModel(Protocol):
    def cancelled_ahead(self, ahead: float, behind: float, cancelled: float) -> float:
        """Of ``cancelled`` lots cancelled at the order's price, how many were ahead of it
        (``ahead`` lots are in front of the order, ``behind`` lots after it)."""
        ...


class Conservative:
    """A fixed share of cancellations is ahead of the order (0: cancellations never help)."""

    def __init__(self, cancel_share: float = 0.0) -> None:
        if not 0.0 <= cancel_share <= 1.0:
            raise ValueError(f"cancel_share must be between 0 and 1, not {cancel_share}")
        self.cancel_share = cancel_share

    def cancelled_ahead(self, ahead: float, behind: float, cancelled: float) -> float:
        return min(ahead, cancelled * self.cancel_share)


class Probabilistic:
    """Each cancelled lot was ahead of the order with probability ``ahead / (ahead + behind)``,
    drawn from a generator seeded once: the further back the order, the likelier a cancel
    helps it."""

    def __init__(self, seed: int = 1) -> None:
        self._random = random.Random(seed)

    def cancelled_ahead(self, ahead: float, behind: float, cancelled: float) -> float:
        lots = int(cancelled)
        if lots <= 0 or ahead <= 0:
            return 0.0
        p = ahead / (ahead + behind) if ahead + behind > 0 else 1.0
        draw = self._random.random
        hits = sum(1 for _ in range(lots) if draw() < p)
        return float(min(ahead, hits))


def make_queue_model(kind: str, *, cancel_share: float = 0.0, seed: int = 1) -> QueueModel:
    if kind == "conservative":
        return Conservative(cancel_share)
    if kind == "probabilistic":
        return Probabilistic(seed)
    raise ValueError(f"queue model must be 'conservative' or 'probabilistic', not {kind!r}")
