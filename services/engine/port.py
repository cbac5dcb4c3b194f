"""The adapter's base class (compiled: ``native.py``), so the compiled core calls a compiled
adapter (the paper simulator) directly; the port's contract and its events are in
``adapter.py``, which exports this class too."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, ClassVar, Final

from mypy_extensions import mypyc_attr

from contracts import messages as m
from libshm import Tick

if TYPE_CHECKING:
    from services.engine.events import AdapterEvent
    from services.engine.orders import Order

__all__ = ["NEVER", "Adapter"]

NEVER: Final = 2**62 - 1
"""A time after every other (in the year 2116): the largest int mypyc keeps unboxed, so the
compiled core compares times with it natively."""


@mypyc_attr(allow_interpreted_subclasses=True)
class Adapter:
    """Where orders go: the CTP trading adapter or the paper simulator. A base class, so that
    the compiled core calls a compiled adapter directly (docs/engine.md, "Compiled core"); an
    adapter in plain Python subclasses it too. Every method is the adapter's to define."""

    deterministic: ClassVar[bool] = False
    """True if its events follow only from the ticks and orders it is given (a simulator in this
    process): recovery feeds it again instead of reading its events from the journal."""

    def __init__(self) -> None:
        self.due_ns = NEVER
        """The engine time of the next thing a deterministic adapter does (an order reaching
        the simulated exchange, an event reaching the engine), or ``NEVER``: the engine wakes
        then (:meth:`Engine.wake`) if no input comes first. ``NEVER`` for an adapter that runs
        on its own (CTP). An attribute, not a call: it is read before every tick."""

    def submit(self, order: Order, now_ns: int) -> None:
        raise NotImplementedError(f"{type(self).__name__}.submit")

    def cancel(self, order: Order, now_ns: int) -> None:
        raise NotImplementedError(f"{type(self).__name__}.cancel")

    def on_tick(self, tick: Tick, now_ns: int) -> None:
        raise NotImplementedError(f"{type(self).__name__}.on_tick")

    def open_day(self, trading_day: int, holdings: Iterable[m.Holding], cash: float) -> None:
        """The trading day starts with these holdings (every agent's) and the account's cash."""
        raise NotImplementedError(f"{type(self).__name__}.open_day")

    def route(self, order: Order) -> tuple[int, int, int] | None:
        """Where ``order`` leaves from, for the shell to journal (``OrderRouted``) before it
        hands the order over: CTP's (FrontID, SessionID, OrderRef). None: nothing to journal
        (the simulator, or an adapter that will reject the order)."""
        return None

    def restore(self, journal: Sequence[m.EngineMessage], orders: Mapping[str, Order]) -> None:
        """After a recovery, the day's journal and the engine's orders: an adapter that is not
        deterministic rebuilds what it must know of them (CTP: its order refs)."""

    def close(self) -> None:
        """The day's engine is done with it (CTP: its session logs out)."""

    def events(self, now_ns: int) -> list[AdapterEvent]:
        """Events that have reached the engine by ``now_ns`` and were not returned before (the
        engine calls this after every input, with the input's time, once ``due_ns`` is
        reached)."""
        raise NotImplementedError(f"{type(self).__name__}.events")
