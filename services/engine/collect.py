"""A backtest's rows as it runs (compiled: ``native.py``): each message the engine journals is
given to :meth:`Collector.message` (the engine's ``observer``), which writes the orders, their
ends and the fills as fixed binary rows to files in its directory, and keeps in memory only the
working orders, the counts and the sums the statistics need. So a backtest's memory stays flat
however many orders it sends; ``results.py`` reads the rows back into DataFrames when asked.

Row layouts (little-endian, no padding; ``ORDER_ROW`` and the others, and the numpy dtypes of
the same fields in ``results.py``): the ids as a prefix code and a number (``split_id``), the
repeated strings as codes into ``Names`` (agent, instrument, side, offset, kind, status,
reason)."""

from __future__ import annotations

import struct
from collections import Counter
from pathlib import Path
from typing import IO, Final

from contracts import messages as m
from contracts.errors import UserError

__all__ = [
    "END_ROW", "FILL_ROW", "MAX_DIGITS", "ORDER_ROW", "Collector", "FillSums", "Names",
    "OrderCounts", "split_id",
]  # fmt: skip

MAX_DIGITS: Final = 18  # a number part that fits an int64 column
_DIGITS: Final = "0123456789"
ORDER_ROW: Final = struct.Struct("<qqiqiiiiidqii")
"""An order: day, time, id prefix, id number, agent, instrument, direction, offset, kind,
price, volume, status, reason (refused, or working until its end row)."""
END_ROW: Final = struct.Struct("<qii")
"""A working order's end: its order row, status (filled, cancelled, rejected), reason."""
FILL_ROW: Final = struct.Struct("<qqqiqdqdiiiiid")
"""A fill: day, time, order row (-1: an order not seen), id prefix, id number, price, volume,
fee, agent, instrument, direction, offset, kind (its order's; -1 if not seen), and its closing
PnL by average cost (NaN for an opening fill: ``Collector._pnl``)."""
BUFFER: Final = 1 << 20  # bytes of rows held before they are written
_REQUESTED, _TRADE, _CANCELLED, _CANCEL_REQUESTED, _REJECTED, _REFUSED, _DAY = range(1, 8)
_KIND: Final[dict[type, int]] = {
    m.OrderRequested: _REQUESTED, m.Trade: _TRADE, m.OrderCancelled: _CANCELLED,
    m.CancelRequested: _CANCEL_REQUESTED, m.OrderRejected: _REJECTED, m.RiskRefused: _REFUSED,
    m.DayOpened: _DAY,
}  # fmt: skip
"""The messages the collector reads, by class (the others: 0)."""


class OrderCounts:
    """What the statistics count of the orders, kept as the backtest runs."""

    def __init__(self) -> None:
        self.sent = 0
        self.cancelled = 0  # sent orders that ended cancelled (partly filled or not)
        self.rejected = 0
        self.refused: Counter[str] = Counter()  # by the risk gate's code
        self.cancel_requests = 0


class FillSums:
    """What the statistics sum of the fills, in the order they happened: the whole run's, and
    each trading day's fees, fills and turnover (``by_day``)."""

    def __init__(self) -> None:
        self.fills = 0
        self.fees = 0.0
        self.turnover = 0.0  # price x lots x multiplier
        self.closes = 0  # closing fills with an open price (a PnL)
        self.wins = 0
        self.win_sum = 0.0
        self.losses = 0
        self.loss_sum = 0.0
        self.by_day: dict[int, list[float]] = {}  # day -> [fees, fills, turnover]


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
    start = max(len(text.rstrip(_DIGITS)), end - MAX_DIGITS)
    if start == end:
        return text, -1
    while start < end - 1 and text[start] == "0":
        start += 1
    return text[:start], int(text[start:])


class _Working:
    """A working order, as the collector needs it until its end."""

    def __init__(  # noqa: PLR0917
        self, row: int, remaining: int, agent: int, instrument: int, direction: int,
        offset: int, kind: int, multiplier: float, side: int,
    ) -> None:  # fmt: skip
        self.row = row
        self.remaining = remaining
        self.agent = agent
        self.instrument = instrument
        self.direction = direction
        self.offset = offset
        self.kind = kind
        self.multiplier = multiplier
        self.side = side  # the position a fill opens or closes: 0 long, 1 short


class _Lots:
    """An agent's open lots of one instrument and side: how many, their cost and open fees."""

    def __init__(self) -> None:
        self.lots = 0
        self.cost = 0.0
        self.fees = 0.0


class _Rows:
    """Fixed rows appended to a file through a buffer."""

    def __init__(self, path: Path, row: struct.Struct) -> None:
        self.path = path
        self.size = row.size
        self.count = 0
        self.buffer = bytearray(BUFFER)
        self.used = 0
        try:
            self.file: IO[bytes] = open(path, "wb")  # noqa: SIM115 (closed by close())
        except OSError as exc:
            raise _unwritable(path, exc) from None

    def room(self) -> int:
        """The offset to pack the next row at (the buffer written out first if full)."""
        used = self.used
        if used + self.size > BUFFER:
            self.flush()
            used = 0
        self.used = used + self.size
        self.count += 1
        return used

    def flush(self) -> None:
        if self.file.closed:
            return
        try:
            if self.used:
                self.file.write(memoryview(self.buffer)[: self.used])
                self.used = 0
            self.file.flush()
        except OSError as exc:
            raise _unwritable(self.path, exc) from None

    def close(self) -> None:
        if self.file.closed:
            return
        try:
            self.flush()
        finally:
            self.file.close()


def _unwritable(path: Path, exc: OSError) -> UserError:
    return UserError(f"{path}: cannot write the backtest's results ({exc.strerror}); free space "
                     "there, or set TMPDIR to a directory with room, and run it again")  # fmt: skip


class Collector:
    """The results' rows from the engine journal's messages in the order they are written,
    as files in ``directory`` (``orders.bin``, ``ends.bin``, ``fills.bin``; rows of
    ``ORDER_ROW``, ``END_ROW``, ``FILL_ROW``). Only the working orders are held, by id, so the
    table stays small. ``multipliers``: each instrument's contract multiplier (turnover and
    closing PnL; 1 if not given)."""

    def __init__(self, directory: Path, multipliers: dict[str, int] | None = None) -> None:
        self.day = 0
        self.directory = directory
        self.multipliers = {k: float(v) for k, v in (multipliers or {}).items()}
        self.names = Names()
        code = self.names.code
        self._working_code = code("working")
        self._filled = code("filled")
        self._cancelled = code("cancelled")
        self._rejected = code("rejected")
        self._refused = code("refused")
        self._none = code("")
        self._buy = code("buy")
        self._open = code("open")
        self.working: dict[str, _Working] = {}
        self._prefix = ""  # the last order id's prefix (_split)
        self.orders = _Rows(directory / "orders.bin", ORDER_ROW)
        self.ends = _Rows(directory / "ends.bin", END_ROW)
        self.fills = _Rows(directory / "fills.bin", FILL_ROW)
        self._held: dict[int, _Lots] = {}  # (agent, instrument, side) as one int -> open lots
        self.counts = OrderCounts()
        self.sums = FillSums()

    def flush(self) -> None:
        """Every row written to its file (before the files are read)."""
        self.orders.flush()
        self.ends.flush()
        self.fills.flush()

    def close(self) -> None:
        try:
            self.orders.close()
        finally:
            try:
                self.ends.close()
            finally:
                self.fills.close()

    def message(self, msg: m.EngineMessage) -> None:
        kind = _KIND.get(type(msg), 0)  # one lookup: the message classes live in another module
        if kind == 0:
            return
        if kind == _REQUESTED:
            self._requested(msg)  # type: ignore[arg-type]
        elif kind == _TRADE:
            self._fill(msg)  # type: ignore[arg-type]
        elif kind == _CANCELLED:
            self.counts.cancelled += self._end(msg.order_id, self._cancelled, msg.text)  # type: ignore[union-attr]
        elif kind == _CANCEL_REQUESTED:
            self.counts.cancel_requests += 1
        elif kind == _REJECTED:
            reason = f"{msg.code}: {msg.text}"  # type: ignore[union-attr]
            self.counts.rejected += self._end(msg.order_id, self._rejected, reason)  # type: ignore[union-attr]
        elif kind == _REFUSED:
            self._refused_row(msg)  # type: ignore[arg-type]
        else:
            self.day = msg.trading_day  # type: ignore[union-attr]

    def _order_row(  # noqa: PLR0917
        self, msg: m.OrderRequested | m.RiskRefused, agent: int, instrument: int,
        direction: int, offset: int, kind: int, status: int, reason: int,
    ) -> int:  # fmt: skip
        rows = self.orders
        row = rows.count
        at = rows.room()
        prefix, number = self._split(msg.order_id)
        ORDER_ROW.pack_into(rows.buffer, at, self.day, msg.time_ns, self.names.code(prefix),
                            number, agent, instrument, direction, offset, kind, msg.price,
                            msg.volume, status, reason)  # fmt: skip
        return row

    def _requested(self, msg: m.OrderRequested) -> None:
        names = self.names  # called as names.code(...): a bound method kept aside is called by name
        agent, instrument = names.code(msg.agent), names.code(msg.instrument)
        direction, offset, kind = (
            names.code(msg.direction),
            names.code(msg.offset),
            names.code(msg.kind),
        )
        row = self._order_row(msg, agent, instrument, direction, offset, kind,
                              self._working_code, self._none)  # fmt: skip
        # the position a fill of it opens (buy: long) or closes (sell: long)
        buys = direction == self._buy
        side = (0 if buys else 1) if offset == self._open else (1 if buys else 0)
        self.working[msg.order_id] = _Working(row, msg.volume, agent, instrument, direction,
                                              offset, kind,
                                              self.multipliers.get(msg.instrument, 1.0),
                                              side)  # fmt: skip
        self.counts.sent += 1

    def _refused_row(self, msg: m.RiskRefused) -> None:
        names = self.names
        self._order_row(msg, names.code(msg.agent), names.code(msg.instrument),
                        names.code(msg.direction), names.code(msg.offset), names.code(msg.kind),
                        self._refused, names.code(f"{msg.code}: {msg.text}"))  # fmt: skip
        self.counts.refused[msg.code] += 1

    def _split(self, order_id: str) -> tuple[str, int]:
        """``split_id`` of an order id, the prefix of the one before tried first (the engine's
        ids of an agent and day share it): its prefix and number give the id back exactly."""
        prefix = self._prefix
        if prefix and order_id.startswith(prefix):
            tail = order_id[len(prefix) :]
            if (0 < len(tail) <= MAX_DIGITS and tail.isascii() and tail.isdigit()
                    and (tail[0] != "0" or len(tail) == 1)):  # fmt: skip
                return prefix, int(tail)
        prefix, number = split_id(order_id)
        if number >= 0:
            self._prefix = prefix
        return prefix, number

    def _end(self, order_id: str, status: int, reason: str) -> int:
        """Mark a working order's end; 1 if it was working, else 0."""
        working = self.working.pop(order_id, None)
        if working is None:
            return 0
        ends = self.ends
        END_ROW.pack_into(ends.buffer, ends.room(), working.row, status, self.names.code(reason))
        return 1

    def _fill(self, t: m.Trade) -> None:
        working = self.working.get(t.order_id)
        price, volume, fee = t.price, t.volume, t.fee
        prefix, number = split_id(t.trade_id)
        sums = self.sums
        sums.fills += 1
        sums.fees += fee
        day = sums.by_day.get(self.day)
        if day is None:
            day = sums.by_day[self.day] = [0.0, 0.0, 0.0]
        day[0] += fee
        day[1] += 1.0
        fills = self.fills
        at = fills.room()
        if working is None:  # an order this backtest did not see sent: its fields unknown
            FILL_ROW.pack_into(fills.buffer, at, self.day, t.time_ns, -1,
                               self.names.code(prefix), number, price, volume, fee, -1, -1, -1,
                               -1, -1, float("nan"))  # fmt: skip
            return
        value = price * volume * working.multiplier
        sums.turnover += value
        day[2] += value
        pnl = self._pnl(working, price, volume, fee)
        FILL_ROW.pack_into(fills.buffer, at, self.day, t.time_ns, working.row,
                           self.names.code(prefix), number, price, volume, fee, working.agent,
                           working.instrument, working.direction, working.offset, working.kind,
                           pnl)  # fmt: skip
        working.remaining -= volume
        if working.remaining <= 0:
            del self.working[t.order_id]
            ends = self.ends
            END_ROW.pack_into(ends.buffer, ends.room(), working.row, self._filled, self._none)

    def _pnl(self, working: _Working, price: float, volume: int, fee: float) -> float:
        """A fill's closing PnL by the average-cost method: (price - average open price) x
        lots x multiplier for a long position closed (the reverse for a short), less the fill's
        fee and the open fees of the lots it closes (their average per lot); NaN for an opening
        fill, and for a close of lots this backtest did not open. Lots are kept per agent,
        instrument and side, in the order of the fills."""
        key = (working.agent << 33) | (working.instrument << 1) | working.side
        lots = self._held.get(key)
        if lots is None:
            lots = self._held[key] = _Lots()
        if working.offset == self._open:
            lots.lots += volume
            lots.cost += price * volume
            lots.fees += fee
            return float("nan")
        if lots.lots < volume:
            return float("nan")
        average, fee_each = lots.cost / lots.lots, lots.fees / lots.lots
        points = price - average if working.side == 0 else average - price
        pnl = points * volume * working.multiplier - fee - fee_each * volume
        lots.lots -= volume
        lots.cost -= average * volume
        lots.fees -= fee_each * volume
        sums = self.sums
        sums.closes += 1
        if pnl > 0:
            sums.wins += 1
            sums.win_sum += pnl
        elif pnl < 0:
            sums.losses += 1
            sums.loss_sum += pnl
        return pnl
