"""The adapter port: what the engine core asks of where its orders go (the paper simulator in
``adapters/paper/``, the CTP trading adapter in ``adapters/ctp/``). Adapters import this module,
never the core.

Contract:

- **Thread.** Every method is called from the engine's one thread, the one that runs the core;
  none may block (a network adapter hands the work to its own thread and returns).
- **After a submit** the adapter owes the engine exactly one of: an acceptance (then trades and
  at most one cancellation), or a rejection; after a cancel, a cancellation or a cancel
  refusal. Events come back through :meth:`Adapter.events`, which the engine calls after every
  input with the input's time; an event is returned once.
- **Deterministic adapters** (``deterministic = True``: a simulator in this process) produce
  their events only from the ticks and orders they are given, so a recovery feeds them again;
  the events of the others (CTP) are read back from the journal in a recovery.
- **``due_ns``** is the engine time of the next thing a deterministic adapter will do unasked
  (an order reaching the simulated exchange, an event reaching the engine), or ``NEVER``; the
  engine wakes itself then if no input comes first. An attribute, not a call: it is read before
  every tick.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, Protocol

from contracts import messages as m
from libshm import Tick

if TYPE_CHECKING:
    from services.engine.orders import Order

__all__ = ["NEVER", "Adapter", "AdapterEvent"]

NEVER: Final = 2**63 - 1  # a time after every other

AdapterEvent = tuple[Any, ...]
"""("accepted", order_id, exchange_order_id) | ("rejected", order_id, code, text) |
("cancelled", order_id, text) | ("cancel_refused", order_id, text) |
("trade", order_id, trade_id, price, volume)"""


class Adapter(Protocol):
    """Where orders go: the CTP trading adapter or the paper simulator."""

    deterministic: bool
    """True if its events follow only from the ticks and orders it is given (a simulator in this
    process): recovery feeds it again instead of reading its events from the journal."""

    due_ns: int
    """The engine time of the next thing a deterministic adapter does (an order reaching the
    simulated exchange, an event reaching the engine), or ``NEVER``: the engine wakes then
    (:meth:`Engine.wake`) if no input comes first. ``NEVER`` for an adapter that runs on its own
    (CTP). An attribute, not a call: it is read before every tick."""

    def submit(self, order: Order, now_ns: int) -> None: ...

    def cancel(self, order: Order, now_ns: int) -> None: ...

    def on_tick(self, tick: Tick, now_ns: int) -> None: ...

    def open_day(self, trading_day: int, holdings: Iterable[m.Holding], cash: float) -> None:
        """The trading day starts with these holdings (every agent's) and the account's cash."""
        ...

    def events(self, now_ns: int) -> list[AdapterEvent]:
        """Events that have reached the engine by ``now_ns`` and were not returned before (the
        engine calls this after every input, with the input's time)."""
        ...
