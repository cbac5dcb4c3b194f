"""What passes between the CTP session's thread and the engine's (docs/ctp-trading.md,
"Threads"): the kinds of items on the session's queues, the broker's state after a login, and a
cancel request. Plain values, no openctp-ctp: the engine's side imports this without the
library."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from services.engine.adapters.ctp.translate import OrderReturn, TradeReturn

__all__ = ["BrokerState", "Cancel", "Kind"]


class Kind(enum.Enum):
    """What the SPI puts on the session's inbox, and the session on its outbox."""

    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    HEARTBEAT = "heartbeat"
    AUTHENTICATED = "authenticated"
    LOGGED_IN = "logged_in"
    CONFIRMED = "confirmed"
    ROWS = "rows"
    ORDER = "order"
    TRADE = "trade"
    INSERT_ERROR = "insert_error"
    ACTION_ERROR = "action_error"
    ERROR = "error"
    # the session's own, for the engine's thread
    STATE = "state"
    BROKER = "broker"
    NOT_SENT = "not_sent"


@dataclass
class BrokerState:
    """The broker's answers to the start-up queries, by query (rows as field dicts)."""

    trading_day: str = ""
    rows: dict[str, list[dict[str, object]]] = field(default_factory=dict)

    @property
    def orders(self) -> list[OrderReturn]:
        return [OrderReturn(**r) for r in self.rows.get("order", [])]  # type: ignore[arg-type]

    @property
    def trades(self) -> list[TradeReturn]:
        return [TradeReturn(**r) for r in self.rows.get("trade", [])]  # type: ignore[arg-type]


class Cancel(NamedTuple):
    """A cancel request: by the exchange's number once known, else by the session's ref."""

    instrument: str
    exchange_id: str
    order_sys_id: str
    front_id: int
    session_id: int
    order_ref: int
