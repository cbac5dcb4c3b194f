"""Conditional orders held by the engine (``Conditionals``, a part of ``core.Engine``): stop,
stop-limit, take-profit, trailing stop, OCO groups, brackets, icebergs and TWAP execution
(docs/toolkit.md, "Conditional orders").

Each is a journaled ``ConditionalPlaced``; the engine watches the ticks of its instrument (by the
price it names: last, bid, ask or mid) and, when it triggers, journals ``ConditionalTriggered`` and
releases ordinary orders through the agent's own order path, so each passes the risk gate and is
journaled before it leaves. Fills and ends of those orders move the conditional on (an iceberg's
next slice, a bracket's exits growing with its entry's fills); ``ConditionalEnded`` closes it. All
of it is a function of the journaled messages and the ticks, so a recovery rebuilds it exactly.

Size: over 500 lines, since the kinds share one life (placed, triggered, releasing orders,
following their fills, ended) and a change to one is read against the others.
"""

from __future__ import annotations

import math
from typing import Any, Final, Literal, NamedTuple

from mypy_extensions import trait

from contracts import messages as m
from contracts.messages import ConditionalKind
from libshm import Tick
from services.engine.agents import AgentHandle
from services.engine.ledger import Spec
from services.engine.orders import Order
from services.engine.port import NEVER
from services.engine.strategy import ConditionalView

__all__ = ["Cond", "Conditionals"]

KINDS: Final = frozenset({"stop", "stop_limit", "take_profit", "trailing", "iceberg", "twap",
                          "bracket"})  # fmt: skip
TRIGGERS: Final = frozenset({"last", "bid", "ask", "mid"})
OFFSETS: Final = frozenset({"auto", "open", "close"})
MAX_VOLUME: Final = 2**31 - 1
MAX_GROUP: Final = 32
_WAITING: Final = "waiting"  # not triggered yet (a bracket's exits: or no entry filled yet)
_WORKING: Final = "working"  # its orders are out


class Cond:
    """A conditional order's state (applying its messages builds it; nothing else does)."""

    __slots__ = ("agent", "best", "children", "cond_id", "direction", "done_slices", "due_ns",
                 "ended", "entry", "exits", "filled", "group", "instrument", "kind", "offset",
                 "parent", "price", "released", "replacing", "show", "slices", "slip_ticks",
                 "start_ns", "state", "text", "trail", "trigger", "trigger_on", "volume",
                 "window_ns")  # fmt: skip

    def __init__(self, msg: m.ConditionalPlaced) -> None:
        self.cond_id, self.agent, self.instrument = msg.cond_id, msg.agent, msg.instrument
        self.kind, self.direction, self.offset = msg.kind, msg.direction, msg.offset
        self.volume, self.price, self.trigger = msg.volume, msg.price, msg.trigger
        self.trigger_on, self.trail, self.show = msg.trigger_on, msg.trail, msg.show
        self.window_ns, self.slices, self.slip_ticks = msg.window_ns, msg.slices, msg.slip_ticks
        self.group, self.parent = msg.group, msg.parent
        self.state = _WAITING
        self.text = ""
        self.ended = False
        self.best = math.nan  # a trailing stop's extreme of the trigger price since placed
        self.children: dict[str, Order] = {}  # its working orders
        self.filled = 0  # lots its orders filled
        self.released = 0  # lots of orders it released that did not end unfilled
        self.replacing = False  # an iceberg's slice cancelled to be sent again (a modify)
        self.entry = 0  # a bracket: lots its entry filled
        self.exits: list[str] = []  # a bracket: its exits' ids
        self.start_ns = msg.time_ns
        self.done_slices = 0  # a TWAP: slices released
        self.due_ns = NEVER  # a TWAP: its next slice's time

    def view(self) -> ConditionalView:
        return ConditionalView(self.cond_id, self.kind, self.instrument, self.direction,
                               self.volume, self.filled, self.state, self.trigger, self.price,
                               self.text, tuple(self.children))  # fmt: skip


def _reference(tick: Tick, on: str) -> float:
    if on == "last":
        return tick.last
    if on == "bid":
        return tick.bid_price1
    if on == "ask":
        return tick.ask_price1
    return (tick.bid_price1 + tick.ask_price1) / 2


@trait
class Conditionals:
    """The part of ``core.Engine`` that holds conditional orders."""

    # the engine's state this part reads and sets (``core.Engine.__init__`` makes it)
    agents: dict[str, AgentHandle]
    specs: dict[str, Spec]
    orders: dict[str, Order]
    latest: dict[str, Tick]
    log: Any
    now: int
    ticks: int
    trading_day: int
    _last_refusal: str
    conds: dict[str, Cond]
    cond_by_instrument: dict[str, list[Cond]]
    cond_of_order: dict[str, Cond]
    cond_due: int
    cond_count: int

    def _emit(self, msg: m.EngineMessage) -> bool:
        raise NotImplementedError

    def _call(self, handle: AgentHandle, fn: Any, *args: object) -> None:
        raise NotImplementedError

    def send(  # noqa: PLR0917
        self, handle: AgentHandle, instrument_: object, direction: object, price_: object,
        volume_: object, offset: object, kind: object,
    ) -> list[str]:  # fmt: skip
        raise NotImplementedError

    def cancel(self, handle: AgentHandle | None, order_id: str, protective: bool = False) -> None:
        raise NotImplementedError

    # -- an agent's calls ------------------------------------------------------------------------

    def place(  # noqa: PLR0917
        self, handle: AgentHandle, kind: str, instrument: object, direction: object,
        volume: object, p: dict[str, Any],
    ) -> str:  # fmt: skip
        """An agent's conditional order (``Strategy.stop`` and the others fill in ``p``); its
        id. A bracket also places its two exits. A mistake raises ``ValueError`` naming it."""
        if not handle.running:
            return ""
        f = _placement(kind, instrument, direction, volume, p, self.specs)
        self.cond_count += 1
        cond_id = f"{handle.name}-{self.trading_day}-C{self.cond_count}"
        group = f"{handle.name}:{f.group}" if f.group else ""
        self._emit(m.ConditionalPlaced(
            self.ticks, self.now, cond_id, handle.name, f.instrument, f.kind, f.direction,
            f.offset, f.volume, f.price, f.trigger, f.trigger_on, f.trail, f.show, f.window_ns,
            f.slices, f.slip_ticks, group, "",
        ))  # fmt: skip
        if f.kind == "bracket":
            exit_side = "sell" if f.direction == "buy" else "buy"
            for exit_kind, level in (("take_profit", f.take), ("stop", f.stop)):
                self.cond_count += 1
                exit_id = f"{handle.name}-{self.trading_day}-C{self.cond_count}"
                self._emit(m.ConditionalPlaced(
                    self.ticks, self.now, exit_id, handle.name, f.instrument,
                    exit_kind, exit_side, "close", 0, 0.0, level,  # type: ignore[arg-type]
                    f.trigger_on, 0.0, 0, 0, 0, f.slip_ticks, cond_id, cond_id,
                ))  # fmt: skip
        return cond_id

    def cancel_conditional(self, handle: AgentHandle, cond_id: object) -> None:
        cond = self.conds.get(cond_id) if isinstance(cond_id, str) else None
        if cond is None or cond.agent != handle.name or cond.ended:
            return
        self._emit(m.ConditionalEnded(self.ticks, self.now, cond.cond_id, "cancelled",
                                      "cancelled by the agent"))  # fmt: skip

    def modify_conditional(self, handle: AgentHandle, cond_id: object, trigger: object,
                           price: object, volume: object) -> None:  # fmt: skip
        cond = self.conds.get(cond_id) if isinstance(cond_id, str) else None
        if cond is None or cond.agent != handle.name or cond.ended:
            raise ValueError(f"no working conditional order {cond_id!r} of this agent")
        new_trigger, new_price = _price("trigger", trigger), _price("price", price)
        lots = 0 if volume is None else _whole("volume", volume, 1)
        if lots and lots < cond.filled:
            raise ValueError(f"volume {lots} is below the {cond.filled} lots already filled")
        if new_trigger and cond.state != _WAITING:
            raise ValueError(f"{cond.cond_id} has triggered: its trigger cannot change")
        self._emit(m.ConditionalModified(self.ticks, self.now, cond.cond_id, new_trigger,
                                         new_price, lots))  # fmt: skip

    def conditional_views(self, handle: AgentHandle) -> list[ConditionalView]:
        return [c.view() for c in self.conds.values() if c.agent == handle.name and not c.ended]

    # -- the engine's inputs ---------------------------------------------------------------------

    def _cond_tick(self, tick: Tick) -> None:
        """Trigger what this tick's prices reach, in the order they were placed."""
        for cond in list(self.cond_by_instrument.get(tick.instrument, ())):
            if cond.ended or cond.state != _WAITING or not cond.trigger_on:
                continue
            if cond.kind in ("iceberg", "twap", "bracket"):
                continue
            if cond.parent and not cond.volume:
                continue  # a bracket's exit before its entry filled
            ref = _reference(tick, cond.trigger_on)
            if math.isnan(ref):
                continue
            if _reached(cond, ref):
                self._emit(m.ConditionalTriggered(self.ticks, self.now, cond.cond_id, ref))

    def _cond_wake(self, now_ns: int) -> None:
        """A TWAP's slices due by ``now_ns``."""
        for cond in list(self.conds.values()):
            if not cond.ended and cond.kind == "twap" and cond.due_ns <= now_ns:
                self._slice(cond)
        self._cond_next_due()

    def _cond_fill(self, order: Order, volume: int) -> None:
        """A fill of an order a conditional released (after the ledger took it; its end, if it
        ended, comes after through ``_cond_order_ended``)."""
        cond = self.cond_of_order.get(order.order_id)
        if cond is None:
            return
        cond.filled += volume
        if cond.kind == "bracket":  # its exits grow with it (one that triggered already sends
            cond.entry += volume  # its orders once the entry's rest is cancelled: _child_ended)
            for exit_id in cond.exits:
                leg = self.conds[exit_id]
                if not leg.ended:
                    leg.volume += volume

    def _cond_order_ended(self, order: Order) -> None:
        """An order a conditional released ended (filled, cancelled or rejected)."""
        cond = self.cond_of_order.get(order.order_id)
        if cond is not None:
            self._child_ended(cond, order)

    # -- applying its messages -------------------------------------------------------------------

    def _apply_cond_placed(self, msg: m.ConditionalPlaced) -> None:
        cond = Cond(msg)
        self.conds[cond.cond_id] = cond
        self.cond_by_instrument.setdefault(cond.instrument, []).append(cond)
        if cond.parent:
            self.conds[cond.parent].exits.append(cond.cond_id)
        if cond.kind in ("bracket", "iceberg", "twap"):
            cond.state = _WORKING  # its orders go out at once
        self._tell(cond)
        if cond.kind == "bracket":
            self._release(cond, cond.volume)
        elif cond.kind == "iceberg":
            self._release(cond, min(cond.show, cond.volume))
        elif cond.kind == "twap":
            self._slice(cond)
            self._cond_next_due()

    def _apply_cond_triggered(self, msg: m.ConditionalTriggered) -> None:
        cond = self.conds[msg.cond_id]
        cond.state = _WORKING
        cond.text = f"triggered at {msg.price:g}"
        self._tell(cond)
        if cond.group:  # OCO: the others of its group end
            for other in self.cond_by_instrument.get(cond.instrument, ()):
                if other is not cond and other.group == cond.group and not other.ended:
                    self._emit(m.ConditionalEnded(self.ticks, self.now, other.cond_id,
                                                  "cancelled", f"OCO: {cond.cond_id} "
                                                  "triggered"))  # fmt: skip
        if cond.parent:  # a bracket's exit: the entry's unfilled rest is cancelled first, and
            parent = self.conds[cond.parent]  # the exit sent once it is (never crossing it)
            if parent.children:
                for order_id in list(parent.children):
                    self.cancel(None, order_id, protective=True)
                return
        self._release(cond, cond.volume)

    def _apply_cond_modified(self, msg: m.ConditionalModified) -> None:
        cond = self.conds[msg.cond_id]
        if msg.trigger:
            cond.trigger = msg.trigger
        if msg.volume:
            cond.volume = msg.volume
        if msg.price:
            cond.price = msg.price
        self._tell(cond)
        if cond.state == _WORKING and cond.kind in ("iceberg", "bracket") and (
                msg.price or msg.volume):  # fmt: skip
            for order_id in list(cond.children):  # sent again at the new price and volume
                cond.replacing = True
                self.cancel(None, order_id, protective=True)
        if cond.kind != "twap" and cond.filled >= cond.volume and cond.volume:
            self._end(cond, "done", f"{cond.filled} lots filled")

    def _apply_cond_ended(self, msg: m.ConditionalEnded) -> None:
        cond = self.conds[msg.cond_id]
        if cond.ended:
            return
        cond.ended = True
        cond.state, cond.text = msg.state, msg.text
        self._tell(cond)
        for order_id in list(cond.children):
            self.cancel(None, order_id, protective=True)
        for exit_id in cond.exits:
            leg = self.conds[exit_id]
            # a bracket that ends takes its waiting exits with it; an exit that triggered
            # stays until its lots are closed
            if not leg.ended and leg.state == _WAITING:
                self._emit(
                    m.ConditionalEnded(
                        self.ticks,
                        self.now,
                        exit_id,
                        msg.state,
                        f"its bracket {cond.cond_id} ended: {msg.text}",
                    )
                )
        self._cond_next_due()

    # -- helpers -----------------------------------------------------------------------------------

    def _release(self, cond: Cond, volume: int) -> None:
        """Send ``volume`` lots for ``cond`` through the agent's order path (the risk gate)."""
        if volume <= 0 or cond.ended:
            return
        handle = self.agents[cond.agent]
        price, kind = cond.price, "limit"
        if cond.kind == "twap":
            kind = "fak"
        if not price or cond.kind == "twap":
            quote = self.latest.get(cond.instrument)
            opposite = math.nan if quote is None else (
                quote.ask_price1 if cond.direction == "buy" else quote.bid_price1)  # fmt: skip
            if math.isnan(opposite):
                if cond.kind == "twap":
                    return  # no quote: this slice waits for the next
                self._end(cond, "refused", "no quote to price a marketable order")
                return
            step = self.specs[cond.instrument].price_tick * cond.slip_ticks
            marketable = opposite + step if cond.direction == "buy" else opposite - step
            if not price:
                price = marketable
            else:  # a TWAP's limit bounds its slices
                price = (
                    min(price, marketable) if cond.direction == "buy" else max(price, marketable)
                )
        offset = "close" if cond.parent else cond.offset
        ids = self.send(handle, cond.instrument, cond.direction, price, volume, offset, kind)
        sent = [i for i in ids if i in self.orders]
        for order_id in sent:
            order = self.orders[order_id]
            cond.children[order_id] = order
            self.cond_of_order[order_id] = cond
            cond.released += order.volume
        if not sent:
            self._end(cond, "refused", self._last_refusal or "no order was sent")

    def _child_ended(self, cond: Cond, order: Order) -> None:
        cond.children.pop(order.order_id, None)
        cond.released -= order.volume - order.filled
        if cond.ended:
            return
        if cond.kind == "bracket":
            triggered = any(self.conds[e].state == _WORKING for e in cond.exits)
            if cond.replacing and not cond.children and not triggered:
                cond.replacing = False  # a modify: the entry's rest again, at its new price
                if cond.volume > cond.entry:
                    self._release(cond, cond.volume - cond.entry)
                    return
            self._bracket_check(cond, order.reason or "its entry ended unfilled")
            return
        if cond.kind == "iceberg":
            rest = cond.volume - cond.filled
            if rest <= 0:
                self._end(cond, "done", f"{cond.filled} lots filled")
            elif order.filled == order.volume or cond.replacing:
                cond.replacing = False
                self._release(cond, min(cond.show, rest))
            else:
                self._end(cond, "cancelled", f"its order {order.order_id} ended: {order.reason}")
            return
        if cond.kind == "twap":
            if cond.done_slices >= cond.slices and not cond.children:
                rest = cond.volume - cond.filled
                text = f"{cond.filled} of {cond.volume} lots filled" + (
                    "; the window ended" if rest else "")  # fmt: skip
                self._end(cond, "done", text)
            return
        if cond.filled >= cond.volume:
            parent = self.conds[cond.parent] if cond.parent else None
            if parent is not None and not parent.ended:  # more of the entry may fill
                self._bracket_check(parent, "")
            else:
                self._end(cond, "done", f"{cond.filled} lots filled")
        elif not cond.children:
            text = f"its order {order.order_id} ended: {order.reason}"
            self._end(cond, "cancelled" if order.state.value == "cancelled" else "refused", text)
            if cond.parent:
                self._end(self.conds[cond.parent], "cancelled", f"its exit {cond.cond_id}: {text}")

    def _bracket_check(self, bracket: Cond, why: str) -> None:
        """Once a bracket's entry is over: a triggered exit sends what it has not sent; the
        bracket ends when nothing filled (its exits go with it) or when that exit closed every
        lot the entry filled."""
        if bracket.ended or bracket.children:
            return
        if bracket.entry == 0:
            self._end(bracket, "cancelled", why)
            return
        for exit_id in bracket.exits:
            leg = self.conds[exit_id]
            if leg.state == _WORKING and not leg.ended and leg.released < leg.volume:
                self._release(leg, leg.volume - leg.released)
            if leg.state == _WORKING and not leg.children and leg.filled >= leg.volume:
                self._end(leg, "done", f"{leg.filled} lots closed")
                self._end(bracket, "done", f"entry {bracket.entry} lots, closed by {exit_id}")

    def _slice(self, cond: Cond) -> None:
        """A TWAP's next slice: what its schedule wants filled by now, less what is filled or
        out (an unfilled slice's lots carry to the next)."""
        cond.done_slices += 1
        k = cond.done_slices
        want = cond.volume * k // cond.slices
        out = sum(o.remaining for o in cond.children.values())
        self._release(cond, want - cond.filled - out)
        if k >= cond.slices:
            cond.due_ns = NEVER
            if not cond.children and not cond.ended:
                rest = cond.volume - cond.filled
                self._end(cond, "done", f"{cond.filled} of {cond.volume} lots filled" + (
                    "; the window ended" if rest else ""))  # fmt: skip
        else:
            cond.due_ns = cond.start_ns + cond.window_ns * k // cond.slices

    def _cond_next_due(self) -> None:
        due = NEVER
        for cond in self.conds.values():
            if not cond.ended and cond.kind == "twap" and cond.due_ns < due:
                due = cond.due_ns
        self.cond_due = due

    def _end(self, cond: Cond, state: str, text: str) -> None:
        if not cond.ended:
            self._emit(m.ConditionalEnded(self.ticks, self.now, cond.cond_id, state,  # type: ignore[arg-type]
                                          text))  # fmt: skip

    def _end_all(self, text: str, agent: str | None = None) -> None:
        """End every conditional still open (of ``agent``): the day's roll, an agent's stop."""
        for cond in list(self.conds.values()):
            if not cond.ended and (agent is None or cond.agent == agent):
                self._emit(
                    m.ConditionalEnded(
                        self.ticks,
                        self.now,
                        cond.cond_id,
                        "expired" if agent is None else "cancelled",
                        text,
                    )
                )

    def _tell(self, cond: Cond) -> None:
        handle = self.agents[cond.agent]
        if handle.running and handle.wants_conditionals:
            self._call(handle, handle.strategy.on_conditional, cond.view())  # type: ignore[union-attr]


class Placement(NamedTuple):
    """An agent's conditional order, checked (``_placement``)."""

    kind: ConditionalKind
    instrument: str
    direction: Literal["buy", "sell"]
    volume: int
    price: float
    trigger: float
    trigger_on: Literal["last", "bid", "ask", "mid"]
    offset: Literal["auto", "open", "close"]
    slip_ticks: int
    trail: float
    show: int
    window_ns: int
    slices: int
    group: str
    take: float
    stop: float


def _placement(  # noqa: PLR0917
    kind: object, instrument: object, direction: object, volume: object, p: dict[str, Any],
    specs: dict[str, Spec],
) -> Placement:  # fmt: skip
    """The fields of a conditional order, or a ``ValueError`` that names what is wrong."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(sorted(KINDS))}, not {kind!r}")
    if not isinstance(instrument, str) or instrument not in specs:
        raise ValueError(f"{instrument!r} is not traded by this engine; its instruments: "
                         f"{', '.join(sorted(specs))}")  # fmt: skip
    if direction not in ("buy", "sell"):
        raise ValueError(f"direction must be 'buy' or 'sell', not {direction!r}")
    if isinstance(volume, bool) or not isinstance(volume, int) or not 0 < volume <= MAX_VOLUME:
        raise ValueError(f"volume must be a whole number of lots from 1, not {volume!r}")
    spec = specs[instrument]
    price, trigger = _price("price", p.get("price")), _price("trigger", p.get("trigger"))
    on, offset = p.get("trigger_on", "last"), p.get("offset", "auto")
    if on not in TRIGGERS:
        raise ValueError(f"trigger_on must be last, bid, ask or mid, not {on!r}")
    if offset not in OFFSETS:
        raise ValueError(f"offset must be auto, open or close, not {offset!r}")
    slip = _whole("slip_ticks", p.get("slip_ticks", 5), 0)
    trail, show, window, slices, take, stop = 0.0, 0, 0, 0, 0.0, 0.0
    if kind in ("stop", "stop_limit", "take_profit") and not trigger:
        raise ValueError(f"a {kind} needs a trigger price")
    if kind == "stop_limit" and not price:
        raise ValueError("a stop_limit needs a limit price")
    if kind == "trailing":
        trail = _price("trail", p.get("trail"))
        ticks = p.get("trail_ticks")
        if (trail == 0) == (ticks is None):
            raise ValueError("a trailing stop needs one of trail (a price distance) or "
                             "trail_ticks")  # fmt: skip
        if ticks is not None:
            trail = _whole("trail_ticks", ticks, 1) * spec.price_tick
    if kind == "iceberg":
        show = _whole("show", p.get("show"), 1)
        if not price:
            raise ValueError("an iceberg needs a limit price")
    if kind == "twap":
        window = _whole("window_ns", p.get("window_ns"), 1)
        slices = _whole("slices", p.get("slices", 10), 1)
    group = p.get("oco") or ""
    if not isinstance(group, str) or len(group) > MAX_GROUP:
        raise ValueError(f"oco must be a name of at most {MAX_GROUP} characters, not {group!r}")
    if kind == "bracket":
        take, stop = _price("take_profit", p.get("take_profit")), _price("stop", p.get("stop"))
        if not price or not take or not stop:
            raise ValueError("a bracket needs its entry's price, take_profit and stop")
        above, below = (take, stop) if direction == "buy" else (stop, take)
        if not below < price < above:
            raise ValueError(f"a {direction} bracket's stop and take_profit must lie on either "
                             f"side of its entry price {price}")  # fmt: skip
    return Placement(kind, instrument, direction, volume, price, trigger, on, offset,  # type: ignore[arg-type]
                     slip, trail, show, window, slices, group, take, stop)  # fmt: skip


def _reached(cond: Cond, ref: float) -> bool:
    """Whether the trigger price ``ref`` reaches ``cond``'s trigger (a trailing stop's moves)."""
    buy = cond.direction == "buy"
    if cond.kind == "trailing":
        best = cond.best
        if math.isnan(best) or (ref < best if buy else ref > best):
            cond.best = best = ref
        return ref >= best + cond.trail if buy else ref <= best - cond.trail
    if cond.kind == "take_profit":
        return ref <= cond.trigger if buy else ref >= cond.trigger
    return ref >= cond.trigger if buy else ref <= cond.trigger  # stop, stop_limit


def _price(name: str, value: object) -> float:
    """A price given by an agent (None or 0: none): a finite positive number."""
    if value is None:
        return 0.0
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number, not {value!r}")
    price = float(value)
    if not math.isfinite(price) or price < 0:
        raise ValueError(f"{name} must be a finite positive price, not {value!r}")
    return price


def _whole(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise ValueError(f"{name} must be a whole number of at least {least}, not {value!r}")
    return value
