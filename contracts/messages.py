"""The engine's messages: every command, order intent, risk decision, order update, trade and
state change, defined once (docs/engine.md, "Messages and the engine journal").

Each is a frozen ``msgspec.Struct`` tagged with its class name and encoded as a msgpack array
(``array_like``: small and fast). The engine appends one message per frame to its journal before it
acts on it; the monitor decodes the same frames. ``ticks`` in every message is the engine's position
in the day's tick journal when the message was made (the sequence number of the next tick to
dispatch), which is what lets recovery interleave ticks and messages exactly as they happened.
``time_ns`` is the engine's time: the time of the input that caused the message (a tick's receive
time, or the wall-clock time an external input arrived), never read again during recovery.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

import msgspec

from libshm import Layout

__all__ = [
    "ENCODER",
    "ENGINE_LAYOUT",
    "AgentStarted",
    "AgentStopped",
    "CancelAll",
    "CancelOrder",
    "CancelRefused",
    "CancelRequested",
    "Command",
    "CommandAck",
    "CommandReply",
    "CommandRequest",
    "ConditionalEnded",
    "ConditionalModified",
    "ConditionalPlaced",
    "ConditionalTriggered",
    "DayClosed",
    "DayOpened",
    "DayRolled",
    "EngineMessage",
    "ExternalOrder",
    "ExternalTrade",
    "Flatten",
    "Halt",
    "Holding",
    "InstrumentSet",
    "OrderAccepted",
    "OrderCancelled",
    "OrderRejected",
    "OrderRequested",
    "OrderRouted",
    "PortfolioSet",
    "Reduce",
    "Resume",
    "RiskRefused",
    "StateChanged",
    "TimerFired",
    "Trade",
    "Wake",
    "decode",
    "encode",
]

ENGINE_LAYOUT: Final = Layout(layout_id=2, version=1)
"""The engine journal's layout: one message per free-form frame, msgpack as below. The version
changes with any change of a message's fields or their order (the golden bytes in
``tests/contracts/test_messages.py`` fail first); an engine refuses a journal of another one."""

Scope = Literal["agent", "instrument", "account", "global"]


class _Message(msgspec.Struct, frozen=True, tag=True, array_like=True, gc=False):
    ticks: int
    time_ns: int


# -- the trading day -----------------------------------------------------------------------------


class Holding(msgspec.Struct, frozen=True, array_like=True, gc=False):
    """One agent's position in one instrument carried into a trading day (all of it yesterday's)."""

    agent: str
    instrument: str
    long: int
    short: int
    long_cost: float  # sum of open price x volume of the long side (its average times volume)
    short_cost: float
    settlement: float  # the price it was marked to at the roll


class DayOpened(_Message, frozen=True):
    """First message of a day's engine journal: what the previous day handed over."""

    trading_day: int
    holdings: list[Holding]
    cash: dict[str, float]  # per agent: capital plus realised PnL minus fees of earlier days


class DayRolled(_Message, frozen=True):
    """The trading day ended; positions are marked to these settlement prices."""

    trading_day: int
    next_day: int
    settlements: dict[str, float]


class DayClosed(_Message, frozen=True):
    """Last message of a day's journal: what the next trading day opens with."""

    trading_day: int
    holdings: list[Holding]
    cash: dict[str, float]


# -- agents ---------------------------------------------------------------------------------------


class AgentStarted(_Message, frozen=True):
    agent: str


class AgentStopped(_Message, frozen=True):
    agent: str
    error: str  # empty for a clean stop; the traceback text when the agent raised


class PortfolioSet(_Message, frozen=True):
    """A portfolio of the day (after ``DayOpened``, before the agents start): agents under one
    capital with limits on their sum, which the risk gate checks above each agent's own (a limit
    not set: -1 for a lot count, 0.0 for the margin ratio or the loss)."""

    name: str
    agents: list[str]
    capital: float
    max_position: int
    max_net_position: int
    max_margin_ratio: float
    max_daily_loss: float


class InstrumentSet(_Message, frozen=True):
    """The broker's facts of an instrument for the rest of the day, where they differ from the
    configured product table (the CTP adapter's login: its instrument, margin-rate and
    commission-rate queries). Margin by money is a share of price x multiplier, by volume an
    amount per lot, each side; fees likewise per open, close and close today."""

    instrument: str
    multiplier: int
    price_tick: float
    long_margin_rate: float
    short_margin_rate: float
    long_margin_per_lot: float
    short_margin_per_lot: float
    open_rate: float
    open_per_lot: float
    close_rate: float
    close_per_lot: float
    close_today_rate: float
    close_today_per_lot: float


class TimerFired(_Message, frozen=True):
    """The periodic timer, an external input in live trading (journaled so recovery repeats it)."""


class Wake(_Message, frozen=True):
    """The engine's clock reached the time something of a deterministic adapter was due (an order
    reaching the simulated exchange, an event reaching the engine) with no tick before it: an
    external input in live paper trading, journaled so recovery repeats it at the same point."""


# -- orders ---------------------------------------------------------------------------------------


class OrderRequested(_Message, frozen=True):
    """An order that passed the risk gate, journaled before it is sent."""

    order_id: str
    agent: str
    instrument: str
    exchange: str
    direction: Literal["buy", "sell"]
    offset: Literal["open", "close", "close_today", "close_yesterday"]
    price: float
    volume: int
    kind: Literal["limit", "market", "fak", "fok"]


class RiskRefused(_Message, frozen=True):
    """An order the risk gate refused; it never left the engine."""

    order_id: str
    agent: str
    instrument: str
    direction: str
    offset: str
    price: float
    volume: int
    kind: str
    code: str
    text: str


class CancelRequested(_Message, frozen=True):
    order_id: str
    agent: str
    protective: bool = False  # from a halt, flatten or a stopped agent: may use the reserve


class CancelRefused(_Message, frozen=True):
    """A cancel refused by the risk gate (``code``) or by the exchange (``code`` = EXCHANGE)."""

    order_id: str
    agent: str
    code: str
    text: str


class OrderRouted(_Message, frozen=True):
    """The CTP adapter gave the order its OrderRef in this session (FrontID, SessionID):
    journaled before the order leaves, so a restart never reuses the ref and recognises the
    order's returns (docs/ctp-trading.md, "Order identity"). It carries no engine state."""

    order_id: str
    front_id: int
    session_id: int
    order_ref: int


class ExternalOrder(_Message, frozen=True):
    """An order of another terminal of the account, as the broker last told of it (the CTP
    adapter's ``OnRtnOrder`` for an order the engine did not send): shown, never traded by an
    agent, never in an agent's ledger. ``order_id`` is ``ext:EXCHANGE:ORDERSYSID``."""

    order_id: str
    instrument: str
    exchange: str
    direction: Literal["buy", "sell"]
    offset: Literal["open", "close", "close_today", "close_yesterday"]
    price: float
    volume: int
    traded: int
    status: Literal["working", "filled", "cancelled", "rejected"]
    text: str


class ExternalTrade(_Message, frozen=True):
    """A fill of an external order (``ExternalOrder``)."""

    order_id: str
    trade_id: str
    instrument: str
    direction: Literal["buy", "sell"]
    offset: Literal["open", "close", "close_today", "close_yesterday"]
    price: float
    volume: int


class OrderAccepted(_Message, frozen=True):
    order_id: str
    exchange_order_id: str


class OrderRejected(_Message, frozen=True):
    order_id: str
    code: str
    text: str


class OrderCancelled(_Message, frozen=True):
    """Cancelled by request, or the rest of a FAK/FOK the exchange did not fill."""

    order_id: str
    text: str


class Trade(_Message, frozen=True):
    order_id: str
    trade_id: str
    price: float
    volume: int
    fee: float


# -- commands and states --------------------------------------------------------------------------


class Command(_Message, frozen=True):
    """An operator's command; ``target`` names the agent, instrument or account ("" for global)."""

    scope: Scope
    target: str
    requester: str
    command_id: str


class Halt(Command, frozen=True):
    pass


class Reduce(Command, frozen=True):
    """Only orders that reduce a position are let through."""


class Resume(Command, frozen=True):
    pass


class CancelAll(Command, frozen=True):
    pass


class Flatten(Command, frozen=True):
    """Cancel every order in scope and close every position in scope at the opposite best."""


class CancelOrder(Command, frozen=True):
    """Cancel one working order: ``target`` is its order id (the scope is ``account``)."""


# -- conditional orders (held by the engine; docs/toolkit.md) ------------------------------------

ConditionalKind = Literal["stop", "stop_limit", "take_profit", "trailing", "iceberg", "twap",
                          "bracket"]  # fmt: skip


class ConditionalPlaced(_Message, frozen=True):
    """A conditional order an agent placed, held by the engine until it releases orders. A price
    of 0 is none (0 for ``price``: marketable, ``slip_ticks`` through the opposite best)."""

    cond_id: str
    agent: str
    instrument: str
    kind: ConditionalKind
    direction: Literal["buy", "sell"]
    offset: Literal["auto", "open", "close"]
    volume: int  # a bracket's exits: 0, growing with its entry's fills
    price: float
    trigger: float
    trigger_on: Literal["last", "bid", "ask", "mid"]
    trail: float  # a trailing stop's distance, in price
    show: int  # an iceberg's lots shown at a time
    window_ns: int  # a TWAP's window
    slices: int  # a TWAP's slices
    slip_ticks: int
    group: str  # OCO: the first of a group to trigger ends the others ("" none)
    parent: str  # the bracket this is an exit of ("" none)


class ConditionalTriggered(_Message, frozen=True):
    """A conditional order's trigger price was reached (at ``price``, by its ``trigger_on``)."""

    cond_id: str
    price: float


class ConditionalModified(_Message, frozen=True):
    """An agent changed a conditional order's trigger, price or volume (0: unchanged)."""

    cond_id: str
    trigger: float
    price: float
    volume: int


class ConditionalEnded(_Message, frozen=True):
    cond_id: str
    state: Literal["done", "cancelled", "expired", "refused"]
    text: str


class CommandAck(_Message, frozen=True):
    command_id: str
    ok: bool
    text: str


class StateChanged(_Message, frozen=True):
    scope: Literal["agent", "instrument", "account", "global", "portfolio"]
    target: str
    state: Literal["active", "reducing", "halted"]
    reason: str


EngineMessage = (
    DayOpened
    | DayRolled
    | DayClosed
    | AgentStarted
    | AgentStopped
    | TimerFired
    | Wake
    | OrderRequested
    | OrderRouted
    | ExternalOrder
    | ExternalTrade
    | RiskRefused
    | CancelRequested
    | CancelRefused
    | OrderAccepted
    | OrderRejected
    | OrderCancelled
    | Trade
    | Halt
    | Reduce
    | Resume
    | CancelAll
    | Flatten
    | CancelOrder
    | CommandAck
    | StateChanged
    | ConditionalPlaced
    | ConditionalTriggered
    | ConditionalModified
    | ConditionalEnded
    | PortfolioSet
    | InstrumentSet
)

ENCODER: Final = msgspec.msgpack.Encoder()  # encode(message) -> bytes, for hot paths
_decoder: Final = msgspec.msgpack.Decoder(EngineMessage)


def encode(message: EngineMessage) -> bytes:
    return ENCODER.encode(message)


_Name = Annotated[str, msgspec.Meta(max_length=64)]


class CommandRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A command as it arrives on the engine's command socket (JSON)."""

    token: Annotated[str, msgspec.Meta(max_length=256)]
    action: Literal["halt", "reduce", "resume", "cancel_all", "flatten", "cancel_order", "status"]
    scope: Scope = "account"
    target: _Name = ""
    requester: _Name = "cli"
    command_id: _Name = ""


class CommandReply(msgspec.Struct, frozen=True):
    ok: bool
    text: str
    command_id: str = ""
    status: dict[str, object] | None = None


def decode(data: bytes | memoryview) -> EngineMessage:
    """Raises ``msgspec.DecodeError`` (or ``ValidationError``) for bytes that are not a message."""
    result: EngineMessage = _decoder.decode(data)
    return result
