"""The adapter port: what the engine core asks of where its orders go (the paper simulator in
``adapters/paper/``, the CTP trading adapter in ``adapters/ctp/``). Adapters import this module,
never the core, and subclass :class:`Adapter` (defined in ``port.py``, which is compiled).

Contract:

- **Thread.** Every method is called from the engine's one thread, the one that runs the core;
  none may block (a network adapter hands the work to its own thread and returns).
- **After a submit** the adapter owes the engine exactly one of: an acceptance (then trades and
  at most one cancellation), or a rejection; after a cancel, a cancellation or a cancel
  refusal. Events are the typed structs below (:data:`AdapterEvent`); they come back through
  :meth:`Adapter.events`, which the engine calls after every input with the input's time; an
  event is returned once.
- **The outbox.** The core never calls :meth:`Adapter.submit` or :meth:`Adapter.cancel` of an
  adapter that is not deterministic on its own stack: it queues :class:`Outgoing` requests that
  the shell drains (``Engine.data_to_send()``) after each input and hands to the adapter, which
  passes them to its own thread. A deterministic adapter is called at once (the drain is
  immediate), so its journals are the same as if it were called directly.
- **Deterministic adapters** (``deterministic = True``: a simulator in this process) produce
  their events only from the ticks and orders they are given, so a recovery feeds them again;
  the events of the others (CTP) are read back from the journal in a recovery.
- **``due_ns``** is the engine time of the next thing a deterministic adapter will do unasked
  (an order reaching the simulated exchange, an event reaching the engine), or ``NEVER``; the
  engine wakes itself then if no input comes first. An attribute, not a call: it is read before
  every tick. Before it, :meth:`Adapter.events` has nothing to give, and the engine does not
  call it (an adapter whose events come through ``Engine.adapter_event``, CTP, keeps it at
  ``NEVER``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import msgspec

from services.engine.events import (
    Accepted,
    AdapterEvent,
    Cancelled,
    CancelRefused,
    Rejected,
    Traded,
)  # fmt: skip
from services.engine.port import NEVER, Adapter

if TYPE_CHECKING:
    from services.engine.orders import Order

__all__ = [
    "NEVER", "Accepted", "Adapter", "AdapterEvent", "CancelRefused", "Cancelled", "Outgoing",
    "Rejected", "Traded",
]  # fmt: skip


class Outgoing(msgspec.Struct, frozen=True):
    """A request in the core's outbox: submit or cancel ``order``, decided at engine time
    ``time_ns``."""

    action: Literal["submit", "cancel"]
    order: Order
    time_ns: int
