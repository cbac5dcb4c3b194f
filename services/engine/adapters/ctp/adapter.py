"""The CTP trading adapter the engine calls (docs/ctp-trading.md): ``submit``, ``cancel``,
``route`` and ``drain``, all on the engine's thread, handing requests to the session's thread
(``session.py``) and turning what comes back into adapter events.

It holds the order identity (``identity.py``), so every return is matched on the engine's thread;
which orders were accepted, finished and traded, so a return that CTP replays after a reconnect
(``THOST_TERT_RESUME``) changes nothing; and the orders of other terminals of the account
(external orders), which are shown and never traded by an agent. After a restart
:meth:`CtpAdapter.restore` rebuilds all of it from the day's journal.

Trading needs a session that logged in and whose broker state the shell reconciled with the
ledger (``ctp_link.py``); until then, and while disconnected, a new order is rejected with the
reason (``DISCONNECTED``, ``RECONCILING``, ``LOGIN_REFUSED``), and a cancel is refused or queued
for the next session (``engine.ctp.cancel_while_disconnected``).
"""

from __future__ import annotations

import queue
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from contracts import messages as m
from services.engine.adapter import (
    NEVER,
    AdapterEvent,
    Cancelled,
    CancelRefused,
    Rejected,
)  # fmt: skip
from services.engine.adapters.ctp.identity import Identity, Route
from services.engine.adapters.ctp.items import BrokerState, Cancel, Kind
from services.engine.adapters.ctp.translate import (
    D_BUY,
    OFFSET_OF,
    OSS_INSERT_REJECTED,
    OrderReturn,
    TradeReturn,
    Untranslatable,
    events_of,
    input_order,
    traded,
)
from services.engine.port import Adapter

if TYPE_CHECKING:
    from libshm import Tick
    from services.engine.orders import Order

__all__ = ["CtpAdapter", "External"]

Status = Literal["disconnected", "reconciling", "trading", "failed"]
WORKING = frozenset({"1", "3", "a", "b", "c"})
EXTERNAL_STATUS = {"0": "filled", "5": "cancelled"}  # CTP's AllTraded, Canceled
PRUNE_AT = 4096
"""The submitted orders kept before the finished ones are dropped (amortised: the next prune
waits for twice the working ones)."""
"""CTP's order statuses of an order still working at the exchange: part traded queueing (1), no
trade queueing (3), unknown (a), not touched (b), touched (c)."""
_CODES = {"disconnected": "DISCONNECTED", "reconciling": "RECONCILING", "failed": "LOGIN_REFUSED"}


def _nothing() -> None:
    pass


def _progress(seen: tuple[str, int]) -> tuple[int, int]:
    """How far an order's life went: its fills, then whether it ended. Returns of it only move
    forward; a replay shows an earlier point."""
    status, traded = seen
    return traded, 0 if status == "working" else 1


Item = AdapterEvent | BrokerState | m.ExternalOrder | m.ExternalTrade
"""What :meth:`CtpAdapter.drain` gives: events for the engine, the broker's state for the
reconciliation, and another terminal's orders and fills for the journal."""


class External(NamedTuple):
    """An order of another terminal of the account (by its last return)."""

    key: str  # EXCHANGE:ORDERSYSID
    ret: OrderReturn


class CtpAdapter(Adapter):
    """The engine's adapter to one CTP account."""

    deterministic = False

    def __init__(
        self, requests: queue.SimpleQueue[tuple[Any, ...]],
        outbox: queue.SimpleQueue[tuple[Any, ...]], exchanges: Mapping[str, str], *, log: Any,
        cancel_while_disconnected: Literal["queue", "refuse"] = "refuse",
        wake: Callable[[], object] | None = None,
    ) -> None:  # fmt: skip
        """``requests`` and ``outbox``: the session's queues (``CtpSession``), ``wake`` what
        wakes its thread for a request (``CtpSession.wake.set``); ``exchanges``: each traded
        instrument's exchange."""
        super().__init__()
        self.due_ns = NEVER
        self._requests = requests
        self._wake = wake or _nothing
        self._outbox = outbox
        self.exchanges = dict(exchanges)
        self.log = log
        self.cancel_policy = cancel_while_disconnected
        self.identity = Identity()
        self.status: Status = "disconnected"
        self.reason = "not connected to a CTP front yet"
        self.accepted: set[str] = set()
        self.finished: set[str] = set()
        self.trade_ids: set[str] = set()
        self.orders: dict[str, Order] = {}  # what was submitted (or restored) and may work
        self._prune_at = PRUNE_AT
        self.sys_ids: dict[str, tuple[str, str]] = {}  # order id -> (exchange, OrderSysID as sent)
        self.external: dict[str, External] = {}
        self._external_seen: dict[str, tuple[str, int]] = {}  # key -> (status, traded) journaled
        self._external_trade_ids: set[str] = set()
        self.limits: dict[str, tuple[float, float]] = {}  # instrument -> (upper, lower)
        self._events: list[Item] = []
        self._queued_cancels: list[Order] = []
        self.trading_day = 0
        self._last_down = ""
        self.session: Any = None  # the CtpSession whose queues these are (stopped by close)

    # -- the port --------------------------------------------------------------------------------

    def route(self, order: Order) -> tuple[int, int, int] | None:
        """The (FrontID, SessionID, OrderRef) ``order`` leaves under (the shell journals it
        before :meth:`submit`); None while no session trades (``submit`` then rejects it)."""
        if self.status != "trading":
            return None
        return tuple(self.identity.route(order.order_id))  # type: ignore[return-value]

    def submit(self, order: Order, now_ns: int) -> None:
        self.orders[order.order_id] = order
        if len(self.orders) >= self._prune_at:  # keep the working ones: memory follows them
            self.orders = {k: o for k, o in self.orders.items() if o.active}
            self._prune_at = max(PRUNE_AT, 2 * len(self.orders))
        route = self.identity.routes.get(order.order_id)
        if self.status != "trading" or route is None:
            self._reject(order.order_id, _CODES.get(self.status, "NOT_ROUTED"),
                         f"the order did not leave: {self.reason}", now_ns)  # fmt: skip
            return
        exchange = self.exchanges.get(order.instrument, "")
        upper, lower = self.limits.get(order.instrument, (0.0, 0.0))
        try:
            fields = input_order(order, exchange, route.order_ref, upper, lower)
        except Untranslatable as exc:
            self._reject(order.order_id, "UNTRANSLATABLE", str(exc), now_ns)
            return
        self._requests.put(("insert", fields, order.order_id))
        self._wake()

    def cancel(self, order: Order, now_ns: int) -> None:
        self.orders.setdefault(order.order_id, order)
        if self.status != "trading":
            if self.cancel_policy == "queue":
                self._queued_cancels.append(order)
                self.log.info("ctp_cancel_queued", order_id=order.order_id, reason=self.reason)
            else:
                self._events.append(CancelRefused(
                    order.order_id, f"{_CODES.get(self.status, 'NOT_ROUTED')}: the cancel did not "
                    f"leave: {self.reason}", now_ns))  # fmt: skip
            return
        self._send_cancel(order, now_ns)

    def _send_cancel(self, order: Order, now_ns: int) -> None:
        route = self.identity.routes.get(order.order_id)
        exchange, sys_id = self.sys_ids.get(order.order_id, ("", ""))
        if route is None and not sys_id:
            self._events.append(CancelRefused(order.order_id, "NOT_ROUTED: the order never left, "
                                              "so there is nothing to cancel", now_ns))  # fmt: skip
            return
        exchange = exchange or self.exchanges.get(order.instrument, "")
        front, session, ref = route if route is not None else (0, 0, 0)
        self._requests.put(("cancel", Cancel(order.instrument, exchange, sys_id, front, session,
                                             ref), order.order_id))  # fmt: skip
        self._wake()

    def on_tick(self, tick: Tick, now_ns: int) -> None:
        if tick.upper_limit > 0.0 and tick.lower_limit > 0.0:  # NaN compares False
            self.limits[tick.instrument] = (tick.upper_limit, tick.lower_limit)

    def open_day(self, trading_day: int, holdings: Iterable[m.Holding], cash: float) -> None:
        self.trading_day = trading_day

    def events(self, now_ns: int) -> list[AdapterEvent]:
        return []  # everything comes through drain (due_ns is NEVER: the engine never asks)

    def close(self) -> None:
        session = self.session
        if session is not None:
            session.stop()

    # -- what the session sent -----------------------------------------------------------------

    def waiting(self) -> bool:
        """Whether :meth:`drain` has something (cheap: the live loop asks while idle)."""
        return bool(self._events) or not self._outbox.empty()

    def drain(self, now_ns: int) -> list[Item]:
        """What the session's thread handed over since the last call, as adapter events (and
        the broker's state, for the shell to reconcile), oldest first. ``now_ns``: the engine
        time they reach the engine at."""
        get = self._outbox.get_nowait
        while True:
            try:
                item = get()
            except queue.Empty:
                break
            self._take(item, now_ns)
        out, self._events = self._events, []
        return out

    def _take(self, item: tuple[Any, ...], now_ns: int) -> None:
        kind = item[0]
        if kind is Kind.ORDER:
            self._order_return(item[1], now_ns)
        elif kind is Kind.TRADE:
            self._trade_return(item[1], now_ns)
        elif kind is Kind.INSERT_ERROR:
            _, ref, error, text = item
            order_id = self.identity.order_of(self.identity.front_id, self.identity.session_id,
                                              ref, "", "")  # fmt: skip
            if order_id is not None:
                self._reject(order_id, f"CTP-{error}", text, now_ns)
        elif kind is Kind.ACTION_ERROR:
            _, front, session, ref, exchange, sys_id, error, text = item
            order_id = self.identity.order_of(front, session, ref, exchange, sys_id)
            if order_id is not None:
                self._events.append(CancelRefused(order_id, f"CTP-{error}: {text}", now_ns))
        elif kind is Kind.NOT_SENT:
            _, action, _, order_id, why = item
            if action == "insert":
                self._reject(order_id, "NOT_SENT", f"the order did not leave: {why}", now_ns)
            else:
                self._events.append(CancelRefused(order_id, f"NOT_SENT: the cancel did not "
                                                  f"leave: {why}", now_ns))  # fmt: skip
        elif kind is Kind.LOGGED_IN:
            _, front, session, max_ref, _day = item
            try:
                self.identity.login(front, session, max_ref)
            except ValueError as exc:  # refs then start above the journal's own
                self.log.warning("ctp_max_order_ref_unreadable", error=str(exc))
                self.identity.login(front, session, "")
            self.status, self.reason = "reconciling", "the account is being reconciled"
        elif kind is Kind.BROKER:
            self._broker_state(item[1], now_ns)
        elif kind is Kind.STATE:
            _, state, text = item
            if state in ("disconnected", "connecting") and self.status != "failed":
                if self.status == "trading":
                    self.log.warning("ctp_trading_stopped", reason=text)
                if state == "disconnected":
                    self._last_down = text
                elif self._last_down:  # a new attempt: the reason stays the last failure's
                    text = f"{self._last_down}; now {text}"
                self.status, self.reason = "disconnected", text
                self.identity.logged_in = False
            elif state == "failed":
                self.status, self.reason = "failed", text
                self.identity.logged_in = False

    def _reject(self, order_id: str, code: str, text: str, now_ns: int) -> None:
        if order_id in self.finished:
            return  # OnRspOrderInsert and OnErrRtnOrderInsert both come for one refusal
        self.finished.add(order_id)
        self._events.append(Rejected(order_id, code, text, now_ns))

    def _order_return(self, ret: OrderReturn, now_ns: int) -> None:
        i = self.identity
        order_id = i.order_of(ret.FrontID, ret.SessionID, ret.OrderRef, ret.ExchangeID,
                              ret.OrderSysID)  # fmt: skip
        if order_id is None:
            self._external(ret, now_ns)
            return
        if order_id in self.finished:
            return  # a replay of a finished order's return
        for event in events_of(ret, order_id, order_id in self.accepted, now_ns):
            kind = type(event)
            if kind is Rejected or kind is Cancelled:
                self.finished.add(order_id)
            else:
                self.accepted.add(order_id)
                i.numbered(order_id, ret.ExchangeID, ret.OrderSysID)
                self.sys_ids[order_id] = (ret.ExchangeID, ret.OrderSysID)
            self._events.append(event)

    def _trade_return(self, ret: TradeReturn, now_ns: int) -> None:
        key = f"{ret.ExchangeID}:{ret.TradeID.strip()}"
        order_id = self.identity.order_of_trade(ret.ExchangeID, ret.OrderSysID)
        if order_id is None:
            if key not in self._external_trade_ids:
                self._external_trade_ids.add(key)
                self.log.warning(
                    "ctp_external_trade",
                    trade_id=key,
                    instrument=ret.InstrumentID,
                    price=ret.Price,
                    volume=ret.Volume,
                    hint="another terminal traded this account: not booked to any agent",
                )
                self._events.append(m.ExternalTrade(
                    0, now_ns, f"ext:{ret.ExchangeID}:{ret.OrderSysID.strip()}", key,
                    ret.InstrumentID, "buy" if ret.Direction == D_BUY else "sell",
                    OFFSET_OF.get(ret.OffsetFlag, "close"), ret.Price, ret.Volume))  # type: ignore[arg-type]  # fmt: skip
            return
        if key in self.trade_ids:
            return  # a replay
        self.trade_ids.add(key)
        self._events.append(traded(ret, order_id, now_ns))

    def _external(self, ret: OrderReturn, now_ns: int) -> None:
        """An order of another terminal: kept, logged once, and journaled (``ExternalOrder``)
        each time it fills more or ends, never for a replay of an earlier point."""
        sys_id = ret.OrderSysID.strip()
        if not sys_id:
            return  # not at the exchange yet: it is shown once the exchange numbers it
        key = f"{ret.ExchangeID}:{sys_id}"
        if key not in self.external:
            self.log.warning("ctp_external_order", key=key, instrument=ret.InstrumentID,
                             direction=ret.Direction, price=ret.LimitPrice,
                             volume=ret.VolumeTotalOriginal, status=ret.OrderStatus,
                             hint="an order of another terminal of this account: shown, never "
                                  "traded by an agent")  # fmt: skip
        if ret.OrderSubmitStatus == OSS_INSERT_REJECTED:
            status = "rejected"
        else:
            status = EXTERNAL_STATUS.get(ret.OrderStatus, "working")
        seen = (status, ret.VolumeTraded)
        last = self._external_seen.get(key)
        if last is not None and _progress(seen) <= _progress(last):
            return  # nothing new: the same state, or an earlier one replayed after a reconnect
        self._external_seen[key] = seen
        self.external[key] = External(key, ret)
        self._events.append(m.ExternalOrder(
            0, now_ns, f"ext:{key}", ret.InstrumentID, ret.ExchangeID,
            "buy" if ret.Direction == D_BUY else "sell",
            OFFSET_OF.get(ret.CombOffsetFlag[:1], "close"),  # type: ignore[arg-type]
            ret.LimitPrice, ret.VolumeTotalOriginal, ret.VolumeTraded, status,  # type: ignore[arg-type]
            ret.StatusMsg.strip()))  # fmt: skip

    def _broker_state(self, state: BrokerState, now_ns: int) -> None:
        """The start-up queries' answers: the broker's working and finished orders are returns
        like any other (a replayed one changes nothing); an order of ours that left (routed)
        and is still working in the engine but unknown to the broker never reached it. Then
        the shell reconciles positions and trades (``ctp_link.reconcile_account``)."""
        seen = set()
        for ret in state.orders:
            self._order_return(ret, now_ns)
            order_id = self.identity.order_of(ret.FrontID, ret.SessionID, ret.OrderRef,
                                              ret.ExchangeID, ret.OrderSysID)  # fmt: skip
            if order_id is None:
                continue
            seen.add(order_id)
            order = self.orders.get(order_id)
            if (order is not None and order.state == "pending_cancel"
                    and order_id not in self.finished and ret.OrderStatus in WORKING
                    and order not in self._queued_cancels):  # fmt: skip
                # its cancel was journaled, but the engine stopped or the line dropped before
                # the broker had it: sent again once trading starts (a second cancel is harmless)
                self._queued_cancels.append(order)
        for order_id in self.identity.routes:
            order = self.orders.get(order_id)
            if order_id in seen or order_id in self.finished or order is None or not order.active:
                continue
            self._reject(order_id, "NOT_AT_BROKER", "the broker has no such order: it never "
                         "reached the broker (the engine stopped or the connection dropped as it "
                         "left)", now_ns)  # fmt: skip
        self._events.append(state)

    def reconciled(self, ok: bool, now_ns: int) -> None:
        """The shell's verdict on the broker state: trading starts (and queued cancels leave),
        or the account stays halted by the shell's command, which still lets cancels through."""
        self.status = "trading"
        self.reason = "" if ok else "the account is halted: reconciliation found differences"
        queued, self._queued_cancels = self._queued_cancels, []
        for order in queued:
            if order.active:
                self._send_cancel(order, now_ns)

    def restore(self, journal: Sequence[m.EngineMessage], orders: Mapping[str, Order]) -> None:
        """After a recovery: the refs, exchange numbers, finished orders and trade ids of the
        day's journal, so the earlier sessions' returns are recognised, and an order journaled
        but never routed (the engine stopped between the two) is rejected: it never left.
        ``orders``: the engine's, working or lately finished."""
        self.orders.update(orders)
        requested: list[str] = []
        for msg in journal:
            if isinstance(msg, m.OrderRouted):
                route = Route(msg.front_id, msg.session_id, msg.order_ref)
                self.identity.record(msg.order_id, route)
            elif isinstance(msg, m.OrderRequested):
                requested.append(msg.order_id)
            elif isinstance(msg, m.OrderAccepted):
                exchange, _, sys_id = msg.exchange_order_id.partition(":")
                self.accepted.add(msg.order_id)
                if sys_id:
                    self.identity.numbered(msg.order_id, exchange, sys_id)
            elif isinstance(msg, m.OrderRejected | m.OrderCancelled):
                self.finished.add(msg.order_id)
            elif isinstance(msg, m.Trade):
                self.trade_ids.add(msg.trade_id)
            elif isinstance(msg, m.ExternalOrder):
                self._external_seen[msg.order_id.removeprefix("ext:")] = (msg.status, msg.traded)
            elif isinstance(msg, m.ExternalTrade):
                self._external_trade_ids.add(msg.trade_id)
        for order_id in requested:
            if order_id not in self.identity.routes and order_id not in self.finished:
                self._reject(order_id, "NOT_SENT", "the engine stopped before the order left: "
                             "it never reached the broker", 0)  # fmt: skip
