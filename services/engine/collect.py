"""A backtest's rows as it runs (compiled: ``native.py``): each message the engine journals is
given to :meth:`Collector.message` (the engine's ``observer``), which keeps the orders and fills
as typed columns. ``results.py`` turns them into DataFrames at the end."""

from __future__ import annotations

from array import array
from collections import Counter
from typing import Final

from contracts import messages as m

__all__ = ["MAX_DIGITS", "Collector", "Names", "OrderCounts", "split_id"]

MAX_DIGITS: Final = 18  # a number part that fits an int64 column
_DIGITS: Final = frozenset("0123456789")


class OrderCounts:
    """What the statistics count of the orders, kept as the backtest runs."""

    def __init__(self) -> None:
        self.sent = 0
        self.cancelled = 0  # sent orders that ended cancelled (partly filled or not)
        self.rejected = 0
        self.refused: Counter[str] = Counter()  # by the risk gate's code
        self.cancel_requests = 0


class Names:
    """Repeated strings (agents, instruments, sides, states, reasons, id prefixes) as small
    integer codes, so that a row of the results holds numbers only."""

    def __init__(self) -> None:
        self.codes: dict[str, int] = {}
        self.names: list[str] = []

    def code(self, name: str) -> int:
        found = self.codes.get(name)
        if found is None:
            found = self.codes[name] = len(self.names)
            self.names.append(name)
        return found


def split_id(text: str) -> tuple[str, int]:
    """An id as (prefix, number) such that ``prefix + str(number)`` gives it back, or (the id,
    -1) when it does not end in such a number: the number is the id's trailing ASCII digits (at
    most ``MAX_DIGITS``) without leading zeros, which stay in the prefix ("P007" is "P00", 7)."""
    end = len(text)
    start = end
    while start > 0 and end - start < MAX_DIGITS and text[start - 1] in _DIGITS:
        start -= 1
    if start == end:
        return text, -1
    while start < end - 1 and text[start] == "0":
        start += 1
    return text[:start], int(text[start:])


class Collector:
    """The results' rows from the engine journal's messages in the order they are written,
    kept as typed columns (about 90 bytes an order, 60 a fill, whatever the strings): each order
    sent or refused, with its end once it has one, and each fill. Only the working orders are
    looked up by id, so the lookup table stays small."""

    def __init__(self) -> None:
        self.day = 0
        self.names = Names()
        code = self.names.code
        self._working_code = code("working")
        self._filled = code("filled")
        self._cancelled = code("cancelled")
        self._rejected = code("rejected")
        self._refused = code("refused")
        self._none = code("")
        self.working: dict[str, int] = {}  # order id -> its row, while it works
        # orders: one row each
        self.o_day, self.o_time = array("q"), array("q")
        self.o_prefix, self.o_number = array("i"), array("q")  # the id: prefix + number
        self.o_agent, self.o_instrument = array("i"), array("i")
        self.o_direction, self.o_offset, self.o_kind = array("i"), array("i"), array("i")
        self.o_price, self.o_volume = array("d"), array("q")
        self.o_status, self.o_reason = array("i"), array("i")
        self.o_filled, self.o_value = array("q"), array("d")
        # fills: one row each
        self.t_day, self.t_time, self.t_order = array("q"), array("q"), array("q")
        self.t_prefix, self.t_number = array("i"), array("q")
        self.t_price, self.t_volume, self.t_fee = array("d"), array("q"), array("d")
        self.counts = OrderCounts()

    def _order(self, msg: m.OrderRequested | m.RiskRefused, status: int, reason: int) -> int:
        code = self.names.code
        row = len(self.o_time)
        prefix, number = split_id(msg.order_id)
        self.o_day.append(self.day)
        self.o_time.append(msg.time_ns)
        self.o_prefix.append(code(prefix))
        self.o_number.append(number)
        self.o_agent.append(code(msg.agent))
        self.o_instrument.append(code(msg.instrument))
        self.o_direction.append(code(msg.direction))
        self.o_offset.append(code(msg.offset))
        self.o_kind.append(code(msg.kind))
        self.o_price.append(msg.price)
        self.o_volume.append(msg.volume)
        self.o_status.append(status)
        self.o_reason.append(reason)
        self.o_filled.append(0)
        self.o_value.append(0.0)
        return row

    def _end(self, order_id: str, status: int, reason: str) -> int:
        """Mark a working order's end; 1 if it was working, else 0."""
        row = self.working.pop(order_id, -1)
        if row < 0:
            return 0
        self.o_status[row] = status
        self.o_reason[row] = self.names.code(reason)
        return 1

    def message(self, msg: m.EngineMessage) -> None:
        if isinstance(msg, m.OrderRequested):
            self.working[msg.order_id] = self._order(msg, self._working_code, self._none)
            self.counts.sent += 1
        elif isinstance(msg, m.Trade):
            self._fill(msg)
        elif isinstance(msg, m.OrderCancelled):
            self.counts.cancelled += self._end(msg.order_id, self._cancelled, msg.text)
        elif isinstance(msg, m.CancelRequested):
            self.counts.cancel_requests += 1
        elif isinstance(msg, m.OrderRejected):
            reason = f"{msg.code}: {msg.text}"
            self.counts.rejected += self._end(msg.order_id, self._rejected, reason)
        elif isinstance(msg, m.RiskRefused):
            self._order(msg, self._refused, self.names.code(f"{msg.code}: {msg.text}"))
            self.counts.refused[msg.code] += 1
        elif isinstance(msg, m.DayOpened):
            self.day = msg.trading_day

    def _fill(self, t: m.Trade) -> None:
        row = self.working.get(t.order_id, -1)
        prefix, number = split_id(t.trade_id)
        self.t_day.append(self.day)
        self.t_time.append(t.time_ns)
        self.t_order.append(row)
        self.t_prefix.append(self.names.code(prefix))
        self.t_number.append(number)
        self.t_price.append(t.price)
        self.t_volume.append(t.volume)
        self.t_fee.append(t.fee)
        if row >= 0:
            filled = self.o_filled[row] + t.volume
            self.o_filled[row] = filled
            self.o_value[row] += t.price * t.volume
            if filled >= self.o_volume[row]:
                self.o_status[row] = self._filled
                del self.working[t.order_id]
