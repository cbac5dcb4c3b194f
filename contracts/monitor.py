"""What the monitor serves: an account's state and its changes, as typed msgspec Structs.

Defined once here, used by the monitor to build and send them and by any client (tests, programs,
the dashboard's schema) to read them. docs/monitor.md describes the protocol. Prices are points,
money is in the account's currency, times are engine nanoseconds since the epoch.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from contracts.status import ServiceStatus

__all__ = [
    "MAX_TICK_INSTRUMENTS",
    "PROTOCOL_VERSION",
    "TOPICS",
    "AccountSnapshot",
    "AgentView",
    "Alert",
    "Auth",
    "BusRequest",
    "ClientMessage",
    "Command",
    "ConditionalView",
    "Day",
    "DayCurves",
    "Delta",
    "Deltas",
    "EndpointsRequest",
    "ErrorReply",
    "Health",
    "Hello",
    "Marks",
    "OrderView",
    "PnlView",
    "PortfolioView",
    "PositionView",
    "Refusal",
    "Reply",
    "RiskView",
    "Sample",
    "ServerMessage",
    "ServiceHealth",
    "SnapshotRequest",
    "Subscribe",
    "TickView",
    "Ticks",
    "TradeView",
    "ZmqEndpoints",
]

MAX_TICK_INSTRUMENTS = 100
"""Instruments one client may ask ticks of."""

Topic = Literal["day", "agents", "positions", "orders", "trades", "pnl", "risk", "refusals",
                "portfolios", "conditionals"]  # fmt: skip
TOPICS: tuple[Topic, ...] = (
    "day", "agents", "positions", "orders", "trades", "pnl", "risk", "refusals", "portfolios",
    "conditionals",
)  # fmt: skip


class _View(msgspec.Struct, frozen=True, tag_field="view", tag=True):
    """A value of the state; ``view`` (the class name) tells them apart on the wire."""


class Day(_View, frozen=True):
    trading_day: int
    status: Literal["open", "rolled", "closed"]
    opened_ns: int
    next_day: int = 0


class AgentView(_View, frozen=True):
    agent: str
    running: bool
    error: str = ""


class PositionView(_View, frozen=True):
    """One agent's position in one instrument; each side's basis is the sum over its lots of the
    open price (today's) or the last settlement (yesterday's)."""

    agent: str
    instrument: str
    long_today: int
    long_yesterday: int
    short_today: int
    short_yesterday: int
    long_basis: float
    short_basis: float
    long_average: float  # average open price, for display (PnL uses the basis)
    short_average: float


class OrderView(_View, frozen=True):
    order_id: str
    agent: str
    instrument: str
    direction: str
    offset: str
    price: float
    volume: int
    kind: str
    state: Literal["submitted", "accepted", "cancelling"]
    filled: int
    requested_ns: int
    exchange_order_id: str = ""


class TradeView(_View, frozen=True):
    trade_id: str
    order_id: str
    agent: str
    instrument: str
    direction: str
    offset: str
    price: float
    volume: int
    fee: float
    realised: float
    time_ns: int


class PnlView(_View, frozen=True):
    """An agent's money today: ``cash`` = ``opening_cash`` + ``realised`` - ``fees`` (marks add
    the unrealised PnL of open positions, sent apart as live samples)."""

    agent: str
    opening_cash: float
    realised: float
    fees: float
    cash: float


class RiskView(_View, frozen=True):
    scope: str
    target: str
    state: Literal["active", "reducing", "halted"]
    reason: str
    since_ns: int


class Refusal(_View, frozen=True):
    time_ns: int
    agent: str
    order_id: str
    code: str
    text: str
    what: Literal["risk", "exchange", "cancel"]


class PortfolioView(_View, frozen=True):
    """A portfolio: agents under one capital with limits on their sum (-1 or 0.0: not set)."""

    name: str
    agents: list[str]
    capital: float
    max_position: int
    max_net_position: int
    max_margin_ratio: float
    max_daily_loss: float


class ConditionalView(_View, frozen=True):
    """A conditional order the engine holds (docs/toolkit.md), while it has not ended: ``state``
    waiting (not triggered) or working (its orders are out)."""

    cond_id: str
    agent: str
    instrument: str
    kind: str
    direction: str
    volume: int
    trigger: float  # 0: none
    price: float  # 0: marketable
    state: str
    text: str
    placed_ns: int


Value = (
    Day
    | AgentView
    | PositionView
    | OrderView
    | TradeView
    | PnlView
    | RiskView
    | Refusal
    | PortfolioView
    | ConditionalView
)


class Delta(msgspec.Struct, frozen=True, tag_field="type", tag="delta"):
    """One change of an account's state: ``value`` is the new state of ``key`` in ``topic``,
    or None when it is gone (an order that ended). ``seq`` counts from 1 in each trading day."""

    account: str
    trading_day: int
    seq: int
    topic: Topic
    key: str
    value: Value | None


class Deltas(msgspec.Struct, frozen=True, tag_field="type", tag="deltas"):
    """Consecutive deltas of one account and day, oldest first: what WebSocket clients get
    (a batch per ``monitor.batch_ms``, so a busy engine costs a frame per client per batch,
    not one per change)."""

    account: str
    trading_day: int
    deltas: list[Delta]


class AccountSnapshot(msgspec.Struct, frozen=True, tag_field="type", tag="snapshot"):
    """The whole state of an account after delta ``seq`` of ``trading_day``; each topic maps
    key to value."""

    account: str
    trading_day: int
    seq: int
    topics: dict[str, dict[str, Value]]


# -- the wire: what else the server sends, and what a client sends ------------------------------


class Hello(msgspec.Struct, frozen=True, tag_field="type", tag="hello"):
    """The first message after authentication."""

    server: str
    version: int
    role: str
    accounts: list[str]
    mode: str
    topics: list[str]


class ErrorReply(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    """A client message the server could not take; the connection stays open."""

    text: str


class Auth(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="auth"):
    """A browser's first message: its token (a browser cannot send an Authorization header)."""

    token: str


class Subscribe(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="subscribe"
):
    """Start the stream. ``since`` maps an account to the trading day and last sequence number
    the client applied: the server resumes after it, or sends a snapshot."""

    since: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)
    instruments: Annotated[
        list[Annotated[str, msgspec.Meta(min_length=1, max_length=32)]],
        msgspec.Meta(max_length=MAX_TICK_INSTRUMENTS),
    ] = msgspec.field(default_factory=list)
    """Instruments whose latest ticks the client wants (``ticks``, ``monitor.ticks_hz``)."""


class Command(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="command"
):
    """An admin's command for one account's engine (docs/monitor.md, "Control")."""

    account: str
    action: Literal["halt", "reduce", "resume", "cancel_all", "flatten", "cancel_order", "status"]
    scope: Literal["agent", "instrument", "account", "global"] = "account"
    target: str = ""
    command_id: str = ""


class Reply(msgspec.Struct, frozen=True, tag_field="type", tag="reply"):
    """The engine's answer to a command, as the engine gave it (or why none came)."""

    account: str
    command_id: str
    ok: bool
    text: str


class ServiceHealth(msgspec.Struct, frozen=True):
    """A service as its journal's head says: ``open`` (alive and heard from within the feed
    timeout), ``closed`` (stopped cleanly), ``gone`` (died, or silent), ``absent`` (nothing
    to read yet)."""

    state: Literal["open", "closed", "gone", "absent"]
    trading_day: int = 0
    frames: int = 0  # engine: the frames of its day's journal the monitor has applied
    caught_up: bool = True  # engine: the monitor had read all its journal held, at its last look
    status: ServiceStatus | None = None
    """The figures of the service's status file (``contracts.status``), None when unknown."""
    status_age_s: float = 0.0  # how long ago the service wrote them


class Health(msgspec.Struct, frozen=True, tag_field="type", tag="health"):
    """Once a second: each visible account's engine, and the market data (md_recorder's
    snapshot table)."""

    time_ns: int
    engines: dict[str, ServiceHealth]
    market: ServiceHealth


class Alert(msgspec.Struct, frozen=True, tag_field="type", tag="alert"):
    """A condition the operator should look at, raised by the monitor and sent again, with
    ``cleared_ns`` set, when it ends. ``id`` names the condition (the same while it lasts);
    ``account`` is empty for the suite's own services (md_recorder), which every client sees."""

    id: str
    account: str
    kind: Literal["silent", "halt", "refusals", "behind", "overrun", "reconciliation"]
    severity: Literal["critical", "warning"]
    text: str
    raised_ns: int  # wall clock, epoch ns
    cleared_ns: int = 0


class TickView(msgspec.Struct, frozen=True):
    """An instrument's latest tick from md_recorder's snapshot table, top of the book (a price
    or level the feed left out is null)."""

    instrument: str
    exchange_time_ns: int
    last: float | None
    bid1: float | None
    bid_volume1: int
    ask1: float | None
    ask_volume1: int
    volume: int
    turnover: float | None
    open_interest: float | None
    upper_limit: float | None
    lower_limit: float | None


class Ticks(msgspec.Struct, frozen=True, tag_field="type", tag="ticks"):
    """The latest ticks of the instruments a client asked for that changed since it was last
    sent them, at most ``monitor.ticks_hz`` times a second."""

    time_ns: int
    ticks: list[TickView]


class Marks(msgspec.Struct, frozen=True, tag_field="type", tag="marks"):
    """The latest prices of an account's open positions (md_recorder's snapshot table) and the
    mark-to-market PnL they give each agent against the positions' basis; a live sample."""

    time_ns: int
    account: str
    prices: dict[str, float]
    unrealised: dict[str, float]
    equity: dict[str, float] = msgspec.field(default_factory=dict)
    """Each agent's cash plus its unrealised PnL."""


class Sample(msgspec.Struct, frozen=True, array_like=True):
    """One point of an account's curves: ``[time_ns, prices, equity]``."""

    time_ns: int
    prices: dict[str, float]
    equity: dict[str, float]


class DayCurves(msgspec.Struct, frozen=True, tag_field="type", tag="history"):
    """An account's curves of the day so far (prices of its instruments, each agent's equity),
    sampled from the marks: sent after its snapshot, so a page opened late draws the whole
    day; the marks that follow extend them."""

    account: str
    trading_day: int
    samples: list[Sample]


# -- ZMQ: what a program asks the snapshot socket, and its answers -----------------------------


class SnapshotRequest(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="snapshot"
):
    """Ask the snapshot socket for an account's snapshot (answered by an
    :class:`AccountSnapshot` or an :class:`ErrorReply`)."""

    account: str


class EndpointsRequest(
    msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type", tag="endpoints"
):
    """Ask the snapshot socket where the PUB sockets of one's accounts are."""


class ZmqEndpoints(msgspec.Struct, frozen=True, tag_field="type", tag="endpoints"):
    """The monitor's ZMQ sockets: the snapshot socket and a PUB socket per account (those the
    asker may see), and the server's CURVE public key (Z85) when it has one."""

    version: int
    mode: str
    snapshot: str
    accounts: dict[str, str]
    curve_public_key: str | None = None


PROTOCOL_VERSION = 2  # 2: deltas go to WebSocket clients in batches (`deltas`)
ServerMessage = (
    Hello
    | AccountSnapshot
    | Delta
    | Deltas
    | ErrorReply
    | Reply
    | Health
    | Marks
    | DayCurves
    | Alert
)
ClientMessage = Auth | Subscribe | Command
BusRequest = SnapshotRequest | EndpointsRequest
