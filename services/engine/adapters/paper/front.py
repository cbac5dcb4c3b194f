"""The simulated CTP front's view of the account (docs/paper.md, "Refusals", "Fees and margin").

One investor account for all agents: positions per instrument split into today and yesterday with
pending closes frozen, the margin and fees of pending opens frozen, and every fill, computed with
the engine's own ledger code and product rates so the two agree. A core with no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from contracts.messages import Holding
from services.engine.adapters.paper.exchange import REFUSALS
from services.engine.ledger import Ledger, Spec
from services.engine.offsets import CLOSE, CLOSE_TODAY, CLOSE_YESTERDAY, OPEN
from services.engine.orders import Order

__all__ = ["Front"]

ACCOUNT = "account"


class Front:
    def __init__(self, specs: Mapping[str, Spec]) -> None:
        self.specs = dict(specs)
        self.ledger = Ledger()
        self.ledger.open_account(ACCOUNT, 0.0)
        self._frozen: dict[str, tuple[float, int]] = {}  # open order -> (money per lot, lots)
        self._frozen_total = 0.0
        self._base: float | None = None  # equity minus margin, until a fill or a held mark
        self._checked: tuple[Order | None, float] = (None, 0.0)  # the last open checked

    def open_day(self, holdings: Iterable[Holding], cash: float) -> None:
        """The account at the start of the day: every agent's carried positions, summed."""
        self.ledger = Ledger()
        self.ledger.open_account(ACCOUNT, cash)
        self._frozen.clear()
        self._frozen_total = 0.0
        self._base = None
        for holding in holdings:
            spec = self.specs.get(holding.instrument)
            if spec is not None:
                self.ledger.carry(ACCOUNT, spec, holding)

    def mark(self, instrument: str, price: float) -> None:
        if self.ledger.mark(instrument, price):  # a held position's value moved
            self._base = None

    def available(self) -> float:
        """Equity minus the margin of positions and what pending opens froze."""
        base = self._base
        if base is None:
            account = self.ledger.accounts[ACCOUNT]
            base = self._base = account.equity() - account.margin()
        return base - self._frozen_total

    def check(self, order: Order, limit_price: float) -> tuple[str, str] | None:
        """The front's refusal of ``order`` (CTP code, text), or None; ``limit_price`` is the
        price margin is frozen at (a market order's limit price)."""
        spec = self.specs[order.instrument]
        offset = self._offset(order, spec)
        if offset == OPEN:
            per_lot = _per_lot(spec, order, limit_price)
            self._checked = (order, per_lot)  # for accept(), which follows unless refused
            if per_lot * order.volume > self.available() + 1e-9:
                return REFUSALS["funds"]
            return None
        line = self.ledger.line(ACCOUNT, spec)
        side = "short" if order.direction == "buy" else "long"
        today, yesterday = line.position.closable(side)
        if offset == CLOSE_TODAY:
            return REFUSALS["close_today"] if order.volume > today else None
        if offset == CLOSE_YESTERDAY:
            return REFUSALS["close_yesterday"] if order.volume > yesterday else None
        return REFUSALS["position"] if order.volume > today + yesterday else None

    def accept(self, order: Order, limit_price: float) -> None:
        """Freeze what an accepted order will use: a close's volume, an open's margin and fee."""
        spec = self.specs[order.instrument]
        offset = self._offset(order, spec)
        if offset == OPEN:
            checked, per_lot = self._checked
            if checked is not order:
                per_lot = _per_lot(spec, order, limit_price)
            self._frozen[order.order_id] = (per_lot, order.volume)
            self._frozen_total += per_lot * order.volume
        else:
            line = self.ledger.line(ACCOUNT, spec)
            self.ledger.freeze(line, order.direction, offset, order.volume)

    def fill(self, order: Order, price: float, volume: int) -> float:
        """Apply a fill; returns its fee (what the broker charges)."""
        spec = self.specs[order.instrument]
        offset = self._offset(order, spec)
        line = self.ledger.line(ACCOUNT, spec)
        fee = self.ledger.fee(line, order.direction, offset, price, volume)
        self.ledger.fill(line, order.direction, offset, price, volume, fee=fee, frozen=True)
        self._base = None
        self._release(order, volume)
        return fee

    def release(self, order: Order, volume: int) -> None:
        """The rest of an order (``volume`` lots) will not fill: unfreeze it."""
        spec = self.specs[order.instrument]
        offset = self._offset(order, spec)
        if offset != OPEN:
            line = self.ledger.line(ACCOUNT, spec)
            self.ledger.freeze(line, order.direction, offset, volume, sign=-1)
        self._release(order, volume)

    def _release(self, order: Order, volume: int) -> None:
        frozen = self._frozen.get(order.order_id)
        if frozen is None:
            return
        per_lot, lots = frozen
        released = min(lots, volume)
        self._frozen_total -= per_lot * released
        if lots <= volume:
            del self._frozen[order.order_id]
        else:
            self._frozen[order.order_id] = (per_lot, lots - volume)
        if not self._frozen:
            self._frozen_total = 0.0  # no rounding left behind

    @staticmethod
    def _offset(order: Order, spec: Spec) -> str:
        """SHFE and INE take a plain close as close-yesterday; elsewhere every close is one."""
        if order.offset == OPEN:
            return OPEN
        if spec.splits_close_today:
            return CLOSE_YESTERDAY if order.offset == CLOSE else order.offset
        return CLOSE


def _per_lot(spec: Spec, order: Order, limit_price: float) -> float:
    """What one lot of an opening order needs: margin and fee at its limit price."""
    price = limit_price if not math.isnan(limit_price) else order.price
    return spec.order_margin(order.direction == "buy", price, 1) + spec.fee(OPEN, price, 1)
