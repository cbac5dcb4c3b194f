"""The adapter events (the adapter port's, ``adapter.py``, which exports them): what an adapter
tells the engine of its orders. A module of their own, so that ``port.py`` (compiled) and
``adapter.py`` both take them from here."""

from __future__ import annotations

import msgspec

__all__ = ["Accepted", "AdapterEvent", "CancelRefused", "Cancelled", "Rejected", "Traded"]

# The adapter events. ``time_ns`` is the engine time the event reached the engine (the
# simulator's delivery time; for CTP, the engine time the callback arrived at);
# ``exchange_time_ns`` the exchange's own time of it where one is given (CTP's InsertTime or
# TradeTime, as nanoseconds of China time), else 0. The engine journals them as the
# ``contracts.messages`` of the same names, stamped with the engine's time.


class Accepted(msgspec.Struct, frozen=True, gc=False):
    """The exchange took the order (CTP: an ``OnRtnOrder`` with an OrderSysID)."""

    order_id: str
    exchange_order_id: str
    time_ns: int = 0
    exchange_time_ns: int = 0


class Rejected(msgspec.Struct, frozen=True, gc=False):
    """The front or the exchange refused the order: ``code`` is its error id, ``text`` its
    message (decoded)."""

    order_id: str
    code: str
    text: str
    time_ns: int = 0
    exchange_time_ns: int = 0


class Cancelled(msgspec.Struct, frozen=True, gc=False):
    """The order's rest is cancelled (by request, or by the exchange: FAK, FOK)."""

    order_id: str
    text: str
    time_ns: int = 0
    exchange_time_ns: int = 0


class CancelRefused(msgspec.Struct, frozen=True, gc=False):
    """The exchange refused a cancel (the order filled or is unknown there)."""

    order_id: str
    text: str
    time_ns: int = 0
    exchange_time_ns: int = 0


class Traded(msgspec.Struct, frozen=True, gc=False):
    """A fill: ``trade_id`` is the exchange's trade id (duplicates are ignored by it)."""

    order_id: str
    trade_id: str
    price: float
    volume: int
    time_ns: int = 0
    exchange_time_ns: int = 0


AdapterEvent = Accepted | Rejected | Cancelled | CancelRefused | Traded
