"""Operator commands in the engine (``Commands``, a part of ``core.Engine``): halt, reduce and
resume a scope, cancel its working orders, flatten its positions. A command is a journaled
message like every other input, answered by a journaled ``CommandAck``."""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Final, Literal

import msgspec
from mypy_extensions import trait

from contracts import messages as m
from libshm import Tick
from services.engine.agents import AgentHandle
from services.engine.ledger import Ledger, Spec
from services.engine.offsets import plan
from services.engine.orders import Order
from services.engine.risk import ACTIVE, HALTED, REDUCING, RiskGate

__all__ = ["RECENT_COMMANDS", "Commands"]

RECENT_COMMANDS: Final = 20  # what `status` lists of the commands applied, newest last
FLATTEN_TICKS: Final = 5  # a flatten's FAK closes are priced this many ticks through the best
_STATE_OF: Final[dict[type, Literal["active", "reducing", "halted"]]] = {
    m.Halt: HALTED, m.Reduce: REDUCING, m.Resume: ACTIVE,
}  # fmt: skip


@trait
class Commands:
    """The part of ``core.Engine`` that applies operator commands."""

    # the engine's state this part reads and sets (``core.Engine.__init__`` makes it)
    agents: dict[str, AgentHandle]
    specs: dict[str, Spec]
    orders: dict[str, Order]
    latest: dict[str, Tick]
    ledger: Ledger
    gate: RiskGate
    log: Any
    now: int
    ticks: int
    _expect: deque[m.EngineMessage]
    _ack: m.CommandAck
    _fresh: bool
    _last_refusal: str
    recent_commands: deque[dict[str, object]]

    def _emit(self, msg: m.EngineMessage) -> bool:
        raise NotImplementedError

    def _pump(self) -> None:
        raise NotImplementedError

    def cancel(self, handle: AgentHandle | None, order_id: str, protective: bool = False) -> None:
        raise NotImplementedError

    def _send_leg(  # noqa: PLR0917
        self,
        handle: AgentHandle,
        spec: Spec,
        direction: str,
        price: float,
        offset: str,
        volume: int,
        kind: str,
    ) -> str:
        raise NotImplementedError

    def command(self, cmd: m.Command) -> m.CommandAck:
        """An operator's command (its ``ticks`` and ``time_ns`` are set here)."""
        if self._expect:  # recovery: the journaled command as it was
            self.now = cmd.time_ns
        else:
            cmd = msgspec.structs.replace(cmd, ticks=self.ticks, time_ns=self.now)
        self._emit(cmd)  # type: ignore[arg-type]
        ack = self._ack
        self._pump()
        return ack

    def _apply_command(self, cmd: m.Command) -> None:
        targets = [] if isinstance(cmd, m.CancelOrder) else self._targets(cmd)
        text = ""
        ok = True
        if isinstance(cmd, m.CancelOrder):
            order = self.orders.get(cmd.target)
            if order is None or not order.active:
                ok, text = False, (f"no working order {cmd.target!r}" if order is None
                                   else f"order {cmd.target} is no longer working")  # fmt: skip
            else:
                self.cancel(None, cmd.target, protective=True)
                text = f"cancel sent for {cmd.target}"
        elif cmd.scope == "agent" and cmd.target not in self.agents:
            ok, text = False, f"no agent named {cmd.target!r} (agents: {', '.join(self.agents)})"
        elif cmd.scope == "instrument" and cmd.target not in self.specs:
            ok, text = False, (f"no instrument {cmd.target!r} is traded by this engine "
                               f"(instruments: {', '.join(self.specs)})")  # fmt: skip
        elif isinstance(cmd, (m.Halt, m.Reduce, m.Resume)):
            state = _STATE_OF[type(cmd)]
            if self.gate.state(cmd.scope, cmd.target) != state:
                self._emit(m.StateChanged(self.ticks, self.now, cmd.scope, cmd.target, state,
                                          f"command by {cmd.requester}"))  # fmt: skip
            text = f"{cmd.scope} {cmd.target or ''} is {state}".replace("  ", " ")
        elif isinstance(cmd, m.CancelAll):
            n = 0
            for order in targets:
                self.cancel(None, order.order_id, protective=True)
                n += 1
            text = f"{n} cancel(s) sent"
        elif isinstance(cmd, m.Flatten):
            ok, text = self._flatten(cmd, targets)
        self._ack = m.CommandAck(self.ticks, self.now, cmd.command_id, ok, text)
        self.recent_commands.append({"command_id": cmd.command_id, "action": type(cmd).__name__,
                                     "scope": cmd.scope, "target": cmd.target, "ok": ok,
                                     "text": text, "time_ns": self.now})  # fmt: skip
        self._emit(self._ack)

    def _flatten(self, cmd: m.Flatten, targets: list[Order]) -> tuple[bool, str]:
        """Only closing orders from now on in the scope (even if it was halted), its working
        orders cancelled, and every free lot closed by FAK; (ok, what was done and left)."""
        if self.gate.state(cmd.scope, cmd.target) != REDUCING:
            self._emit(m.StateChanged(self.ticks, self.now, cmd.scope, cmd.target, REDUCING,
                                      f"flatten by {cmd.requester}"))  # fmt: skip
        for order in targets:
            self.cancel(None, order.order_id, protective=True)
        n, problems, left = 0, [], []
        for name, instrument, direction, volume in self._positions_in(cmd):
            sent, why = self._close_out(name, instrument, direction, volume)
            n += sent
            if why:
                side = "long" if direction == "sell" else "short"
                problems.append(f"{name} {instrument} {side} {volume}: {why}")
                left.append(f"{name} {instrument} {side} {volume}")
        text = f"{len(targets)} cancel(s) and {n} closing order(s) sent"
        if not problems:
            return True, text
        return False, (f"{text}; not closed: {'; '.join(problems)}; positions left open: "
                       f"{', '.join(left)}")  # fmt: skip

    def _apply_state(self, msg: m.StateChanged) -> None:
        self.gate.set_state(msg.scope, msg.target, msg.state)
        if self._fresh:  # a recovery does not report the day's earlier changes again
            self.log.warning("state_changed", scope=msg.scope, target=msg.target, state=msg.state,
                             reason=msg.reason)  # fmt: skip

    def _targets(self, cmd: m.Command) -> list[Order]:
        """Working orders in the command's scope."""
        out = []
        for order in self.orders.values():
            if not order.active:
                continue
            if (
                cmd.scope in ("global", "account")
                or (cmd.scope == "agent" and order.agent == cmd.target)
                or (cmd.scope == "instrument" and order.instrument == cmd.target)
            ):
                out.append(order)
        return out

    def _positions_in(self, cmd: m.Command) -> list[tuple[str, str, str, int]]:
        out = []
        for name, account in self.ledger.accounts.items():
            if cmd.scope == "agent" and name != cmd.target:
                continue
            for instrument, line in account.lines.items():
                if cmd.scope == "instrument" and instrument != cmd.target:
                    continue
                long_free = sum(line.position.closable("long"))
                short_free = sum(line.position.closable("short"))
                if long_free:
                    out.append((name, instrument, "sell", long_free))
                if short_free:
                    out.append((name, instrument, "buy", short_free))
        return out

    def _close_out(self, agent: str, instrument: str, direction: str, volume: int
                   ) -> tuple[int, str]:  # fmt: skip
        """Closing orders for a flatten: FAK at the opposite best, 5 ticks through it. Returns
        how many were sent and, if any lot got no closing order, why."""
        tick = self.latest.get(instrument)
        spec = self.specs[instrument]
        if tick is None:
            return 0, f"no price for {instrument} yet"
        best = tick.ask_price1 if direction == "buy" else tick.bid_price1
        if math.isnan(best):
            best = tick.last
        if math.isnan(best):
            return 0, f"no price for {instrument} yet"
        step = FLATTEN_TICKS * spec.price_tick * (1 if direction == "buy" else -1)
        price = round((best + step) / spec.price_tick) * spec.price_tick
        if not math.isnan(tick.upper_limit):
            price = min(max(price, tick.lower_limit), tick.upper_limit)
        price = float(f"{price:.10g}")
        handle = self.agents[agent]
        legs = plan(self.ledger.position(agent, instrument), direction, volume, spec.exchange,
                    today_first=spec.close_today_first, open_rest=False)  # fmt: skip
        max_volume = handle.limits.max_order_volume
        n, refused = 0, []
        for leg in legs:
            left = leg.volume
            while left:
                take = min(left, max_volume)
                order_id = self._send_leg(handle, spec, direction, price, leg.text,
                                          take, "fak")  # fmt: skip
                if order_id in self.orders:
                    n += 1
                else:  # the gate refused it: its RiskRefused is the last message
                    refused.append(f"{take} refused ({self._last_refusal})")
                left -= take
        planned = sum(leg.volume for leg in legs)
        if planned < volume:
            refused.append(f"{volume - planned} lot(s) not closable now")
        return n, "; ".join(refused)
