"""The order state machine: a core with no I/O (docs/engine.md, "Order state machine").

``Order`` holds one order's state; ``apply`` moves it by one event along the explicit transition
table ``TRANSITIONS`` or refuses with ``InvalidTransition`` and leaves it unchanged. Fills carry the
exchange trade id: an id already applied is ignored (feeds resend trades after a reconnect) and a
fill beyond the order's volume is refused as an overfill.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from services.engine.errors import InvalidTransition, Overfill

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Event",
    "InvalidTransition",
    "Order",
    "OrderIds",
    "Overfill",
    "State",
]


class State(enum.StrEnum):
    CREATED = "created"
    PENDING_SUBMIT = "pending_submit"
    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    PENDING_CANCEL = "pending_cancel"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class Event(enum.StrEnum):
    SUBMIT = "submit"
    ACCEPT = "accept"
    FILL = "fill"  # partial or complete: the table is looked up with PARTIAL_FILL / LAST_FILL
    CANCEL_REQUEST = "cancel_request"
    CANCELLED = "cancelled"
    CANCEL_REFUSED = "cancel_refused"
    REJECT = "reject"


PARTIAL_FILL: Final = "partial_fill"
LAST_FILL: Final = "last_fill"
PREVIOUS: Final = "previous"  # a refused cancel returns the order to where it was

S = State
TRANSITIONS: Final[dict[State, dict[str, State | str]]] = {
    S.CREATED: {
        Event.SUBMIT: S.PENDING_SUBMIT, Event.CANCEL_REQUEST: S.CANCELLED, Event.REJECT: S.REJECTED,
    },
    S.PENDING_SUBMIT: {
        Event.ACCEPT: S.ACCEPTED, PARTIAL_FILL: S.PARTIALLY_FILLED, LAST_FILL: S.FILLED,
        Event.CANCEL_REQUEST: S.PENDING_CANCEL, Event.CANCELLED: S.CANCELLED,
        Event.REJECT: S.REJECTED,
    },
    S.ACCEPTED: {
        PARTIAL_FILL: S.PARTIALLY_FILLED, LAST_FILL: S.FILLED,
        Event.CANCEL_REQUEST: S.PENDING_CANCEL, Event.CANCELLED: S.CANCELLED,
    },
    S.PARTIALLY_FILLED: {
        PARTIAL_FILL: S.PARTIALLY_FILLED, LAST_FILL: S.FILLED,
        Event.CANCEL_REQUEST: S.PENDING_CANCEL, Event.CANCELLED: S.CANCELLED,
    },
    S.PENDING_CANCEL: {
        Event.ACCEPT: S.PENDING_CANCEL, PARTIAL_FILL: S.PENDING_CANCEL, LAST_FILL: S.FILLED,
        Event.CANCELLED: S.CANCELLED, Event.CANCEL_REFUSED: PREVIOUS, Event.REJECT: S.REJECTED,
    },
    S.FILLED: {},
    S.CANCELLED: {},
    S.REJECTED: {},
}  # fmt: skip
TERMINAL: Final = frozenset(s for s, moves in TRANSITIONS.items() if not moves)
# An exchange's acknowledgement may arrive after the order's first fills or its cancel (CTP
# sends OnRtnOrder and OnRtnTrade in no fixed order; the simulator's random latencies too): it
# tells nothing new and changes nothing.
LATE_ACCEPT: Final = frozenset({S.ACCEPTED, S.PARTIALLY_FILLED, S.FILLED, S.CANCELLED})


@dataclass(slots=True, init=False)  # its own __init__: compiled (a dataclass's is interpreted)
class Order:
    """One order as the engine knows it."""

    order_id: str
    agent: str
    instrument: str
    direction: str  # "buy" | "sell"
    offset: str  # "open" | "close" | "close_today" | "close_yesterday"
    price: float
    volume: int
    kind: str  # "limit" | "market" | "fak" | "fok"
    state: State
    filled: int
    fill_cost: float  # sum of price x volume of the fills
    trade_ids: set[str]
    reason: str
    _before_cancel: State

    def __init__(  # noqa: PLR0917 (the fields, in order)
        self, order_id: str, agent: str, instrument: str, direction: str, offset: str,
        price: float, volume: int, kind: str = "limit",
    ) -> None:  # fmt: skip
        self.order_id = order_id
        self.agent = agent
        self.instrument = instrument
        self.direction = direction
        self.offset = offset
        self.price = price
        self.volume = volume
        self.kind = kind
        self.state = State.CREATED
        self.filled = 0
        self.fill_cost = 0.0
        self.trade_ids = set()
        self.reason = ""
        self._before_cancel = State.CREATED

    @property
    def remaining(self) -> int:
        return self.volume - self.filled

    @property
    def active(self) -> bool:
        return self.state not in TERMINAL

    @property
    def average_fill_price(self) -> float:
        return self.fill_cost / self.filled if self.filled else 0.0

    def apply(
        self, event: Event, *, trade_id: str = "", volume: int = 0, price: float = 0.0,
        reason: str = "",
    ) -> bool:  # fmt: skip
        """Move by ``event``; True if the order changed, False for a duplicate trade id or an
        acknowledgement that comes after the order moved on (``LATE_ACCEPT``).
        Raises ``InvalidTransition`` or ``Overfill`` and leaves the order as it was."""
        key: str = event
        if event is Event.ACCEPT and self.state in LATE_ACCEPT:
            return False
        if event is Event.FILL:
            if not trade_id:
                raise ValueError("a fill needs its exchange trade id")
            if trade_id in self.trade_ids:
                return False
            if volume <= 0:
                raise ValueError(f"fill volume must be positive, found {volume}")
            if volume > self.remaining:
                raise Overfill(
                    f"order {self.order_id}: fill of {volume} (trade {trade_id}) exceeds the "
                    f"{self.remaining} lots remaining of {self.volume}"
                )
            key = LAST_FILL if volume == self.remaining else PARTIAL_FILL
        target = TRANSITIONS[self.state].get(key)
        if target is None:
            raise InvalidTransition(f"order {self.order_id}: {key} is not allowed in {self.state}")
        if event is Event.FILL:
            self.filled += volume
            self.fill_cost += volume * price
            self.trade_ids.add(trade_id)
        if event is Event.CANCEL_REQUEST:
            self._before_cancel = self.state
        if target == PREVIOUS:
            # the order may have filled while the cancel was pending
            target = self._before_cancel
            if self.filled and target in (State.ACCEPTED, State.PENDING_SUBMIT):
                target = State.PARTIALLY_FILLED
        if reason:
            self.reason = reason
        self.state = target if target.__class__ is State else State(target)
        return True


class OrderIds:
    """Local order ids ``AGENT-DAY-N``: deterministic, and never repeated after a restart
    because recovery replays every issued id through :meth:`seen`."""

    def __init__(self) -> None:
        self._next: dict[tuple[str, int], int] = {}
        self._prefix: dict[tuple[str, int], str] = {}

    def issue(self, agent: str, trading_day: int, dry: bool = False) -> str:
        """The next id; ``dry``: the id the next issue would give, without taking it."""
        key = (agent, trading_day)
        n = self._next.get(key, 1)
        if not dry:
            self._next[key] = n + 1
        prefix = self._prefix.get(key)
        if prefix is None:
            prefix = self._prefix[key] = f"{agent}-{trading_day}-"
        return prefix + str(n)

    def seen(self, order_id: str) -> None:
        """Account for an id issued earlier (recovery)."""
        agent, day, n = order_id.rsplit("-", 2)
        key = (agent, int(day))
        self._next[key] = max(self._next.get(key, 1), int(n) + 1)
