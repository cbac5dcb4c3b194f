"""Order identity for CTP (docs/ctp-trading.md, "Order identity"): the OrderRef each order leaves
with, and the two keys CTP's returns name an order by. A core with no I/O.

- An order's ref is above the login's ``MaxOrderRef`` and above every ref recorded today (the
  journal's routed orders, recovered after a restart), so no session ever reuses one.
- A return is recognised by (FrontID, SessionID, OrderRef), of this session or an earlier one,
  or by (ExchangeID, OrderSysID) once the exchange has numbered the order; a trade by the latter
  (a trade return names no session). A return that matches neither is an external order.
"""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["Identity", "Route"]


class Route(NamedTuple):
    """Where an order left from and under which ref (journaled before it leaves)."""

    front_id: int
    session_id: int
    order_ref: int


class Identity:
    """The day's order refs and keys."""

    def __init__(self) -> None:
        self.front_id = 0
        self.session_id = 0
        self.logged_in = False
        self._next = 1
        self._by_ref: dict[tuple[int, int, int], str] = {}
        self._by_sys: dict[tuple[str, str], str] = {}
        self.routes: dict[str, Route] = {}

    def login(self, front_id: int, session_id: int, max_order_ref: str) -> None:
        """A session began: its FrontID and SessionID, and the MaxOrderRef CTP gave (text,
        possibly blank or padded)."""
        self.front_id, self.session_id, self.logged_in = front_id, session_id, True
        text = max_order_ref.strip()
        if text:
            if not text.isdigit():
                raise ValueError(f"MaxOrderRef {max_order_ref!r} is not a number")
            self._next = max(self._next, int(text) + 1)

    def route(self, order_id: str) -> Route:
        """The next ref, for ``order_id`` (recorded at once: journal it before the order
        leaves)."""
        if not self.logged_in:
            raise RuntimeError("no CTP session: an order cannot be routed before the login")
        route = Route(self.front_id, self.session_id, self._next)
        self.record(order_id, route)
        return route

    def record(self, order_id: str, route: Route) -> None:
        """An order's route, as journaled (now, or read back by a recovery)."""
        self.routes[order_id] = route
        self._by_ref[route] = order_id  # a NamedTuple is its (front, session, ref) key
        self._next = max(self._next, route.order_ref + 1)

    def numbered(self, order_id: str, exchange_id: str, order_sys_id: str) -> None:
        """The exchange numbered the order (its first return with an OrderSysID)."""
        self._by_sys[exchange_id, order_sys_id.strip()] = order_id

    def order_of(self, front_id: int, session_id: int, order_ref: str, exchange_id: str,
                 order_sys_id: str) -> str | None:  # fmt: skip
        """The engine's order an order return is of, or None (an external order)."""
        ref = order_ref.strip()
        if ref.isdigit():
            found = self._by_ref.get((front_id, session_id, int(ref)))
            if found is not None:
                return found
        sys_id = order_sys_id.strip()
        return self._by_sys.get((exchange_id, sys_id)) if sys_id else None

    def order_of_trade(self, exchange_id: str, order_sys_id: str) -> str | None:
        """The engine's order a trade return is of, or None."""
        return self._by_sys.get((exchange_id, order_sys_id.strip()))
