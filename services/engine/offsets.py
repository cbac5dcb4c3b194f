"""Offsets: which open and close legs carry out a wanted buy or sell (a core with no I/O).

Chinese futures positions are long and short at once, each split into today's and yesterday's
volume, where "today" means opened in the current *trading day* (a night session belongs to the
next trading day: a position opened on Monday evening is today's for Tuesday's day session and
yesterday's from Tuesday's roll on). SHFE and INE take explicit close-today and close-yesterday
orders; the other exchanges take one "close" and apply it to yesterday's volume first.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "CLOSE",
    "CLOSE_TODAY",
    "CLOSE_TODAY_EXCHANGES",
    "CLOSE_YESTERDAY",
    "OPEN",
    "Leg",
    "Offset",
    "Position",
    "plan",
]

CLOSE_TODAY_EXCHANGES: Final = frozenset({"SHFE", "INE"})


class Offset(enum.StrEnum):
    OPEN = "open"
    CLOSE = "close"
    CLOSE_TODAY = "close_today"
    CLOSE_YESTERDAY = "close_yesterday"


# The members as module constants: a global is read in a fifth of the time of an enum attribute,
# and these comparisons are on every order and fill.
OPEN: Final = Offset.OPEN
CLOSE: Final = Offset.CLOSE
CLOSE_TODAY: Final = Offset.CLOSE_TODAY
CLOSE_YESTERDAY: Final = Offset.CLOSE_YESTERDAY


@dataclass(init=False)  # its own __init__: compiled (a dataclass's is interpreted)
class Leg:
    """A part of an order: its offset and lots (a value: never changed once made)."""

    offset: Offset
    volume: int

    def __init__(self, offset: Offset, volume: int, text: str = "") -> None:
        self.offset = offset
        self.volume = volume
        # the offset as messages spell it (plan() gives it: an enum's value is read by
        # interpreted code)
        self.text = text or offset.value


@dataclass
class Position:
    """One instrument's position of one agent (or account), with pending closes frozen."""

    long_today: int = 0
    long_yesterday: int = 0
    short_today: int = 0
    short_yesterday: int = 0
    frozen_long_today: int = 0
    frozen_long_yesterday: int = 0
    frozen_short_today: int = 0
    frozen_short_yesterday: int = 0

    @property
    def long(self) -> int:
        return self.long_today + self.long_yesterday

    @property
    def short(self) -> int:
        return self.short_today + self.short_yesterday

    @property
    def net(self) -> int:
        return self.long - self.short

    def closable(self, side: str) -> tuple[int, int]:
        """(today, yesterday) volume of ``side`` ("long" or "short") not frozen by a close."""
        if side == "long":
            return (
                self.long_today - self.frozen_long_today,
                self.long_yesterday - self.frozen_long_yesterday,
            )
        return (
            self.short_today - self.frozen_short_today,
            self.short_yesterday - self.frozen_short_yesterday,
        )

    def roll(self) -> None:
        """The trading day ended: today's volume becomes yesterday's."""
        self.long_yesterday += self.long_today
        self.short_yesterday += self.short_today
        self.long_today = self.short_today = 0
        self.frozen_long_yesterday += self.frozen_long_today
        self.frozen_short_yesterday += self.frozen_short_today
        self.frozen_long_today = self.frozen_short_today = 0


def plan(
    position: Position,
    direction: str,
    volume: int,
    exchange: str,
    *,
    today_first: bool = False,
    open_rest: bool = True,
) -> list[Leg]:
    """The legs that buy (``direction="buy"``) or sell ``volume`` lots: close the opposite side
    first (yesterday's first, unless ``today_first``), then open the rest (if ``open_rest``).
    On SHFE and INE closes are split into close-today and close-yesterday legs."""
    if direction not in ("buy", "sell"):
        raise ValueError(f"direction must be buy or sell, found {direction!r}")
    if volume <= 0:
        raise ValueError(f"volume must be positive, found {volume}")
    today, yesterday = position.closable("short" if direction == "buy" else "long")
    legs: list[Leg] = []
    left = volume
    if exchange in CLOSE_TODAY_EXCHANGES:
        buckets = [(CLOSE_TODAY, today, "close_today"),
                   (CLOSE_YESTERDAY, yesterday, "close_yesterday")]  # fmt: skip
        if not today_first:
            buckets.reverse()
        for offset, available, text in buckets:
            take = min(left, available)
            if take:
                legs.append(Leg(offset, take, text))
                left -= take
    else:
        take = min(left, today + yesterday)
        if take:
            legs.append(Leg(CLOSE, take, "close"))
            left -= take
    if left and open_rest:
        legs.append(Leg(OPEN, left, "open"))
    return legs
