"""Reconciliation that fails closed (docs/ctp-trading.md): the ledger against the broker's
positions, working orders and the day's trades, at start and after every reconnect. A core with
no I/O: the session queries, this decides.

The verdict is one of: the two agree (trading starts); the broker's list holds trades of the
engine's own orders that the journal lacks, and booking exactly those makes the positions agree
(``repair``: each is journaled as a trade repaired from the broker's list; also when the
positions agree already, since a missed round trip still has its fees and profit); or anything
else (``halt``, with a report
naming each instrument, side, expected and found). A synthetic fill is never made up to make the
numbers agree.

Positions are compared per instrument and side; today's and yesterday's lots apart on the
exchanges that close them apart (SHFE, INE), as a total elsewhere, where the broker's split is its
own bookkeeping and the exchange closes either.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Final, Literal, NamedTuple

__all__ = ["BrokerTrade", "Lots", "Side", "Verdict", "effect", "positions_from_rows", "reconcile"]

SPLIT_EXCHANGES: Final = frozenset({"SHFE", "INE"})
POSI_LONG: Final = "2"  # THOST_FTDC_PD_Long
POSI_SHORT: Final = "3"  # THOST_FTDC_PD_Short


class Lots(NamedTuple):
    """One side of one instrument's position: today's and yesterday's lots."""

    today: int
    yesterday: int

    @property
    def total(self) -> int:
        return self.today + self.yesterday


Side = Literal["long", "short"]
Positions = Mapping[tuple[str, Side], Lots]


class BrokerTrade(NamedTuple):
    """A trade in the broker's list of the day (``ReqQryTrade``)."""

    exchange: str
    trade_id: str
    order_sys_id: str
    instrument: str
    direction: Literal["buy", "sell"]
    offset: Literal["open", "close", "close_today", "close_yesterday"]
    price: float
    volume: int


class Verdict(NamedTuple):
    action: Literal["agree", "repair", "halt"]
    repairs: list[tuple[str, BrokerTrade]]  # (the engine's order id, the trade it lacks)
    report: list[str]  # for a halt: one line per difference


def positions_from_rows(rows: Iterable[Mapping[str, object]]) -> dict[tuple[str, Side], Lots]:
    """The broker's positions from ``CThostFtdcInvestorPositionField`` rows (by their field
    names): today's lots are ``TodayPosition``, yesterday's the rest of ``Position``, summed over
    the rows of one instrument and side (SHFE and INE give today's and yesterday's as rows of
    their own)."""
    out: dict[tuple[str, Side], Lots] = {}
    for row in rows:
        direction = row["PosiDirection"]
        if direction not in (POSI_LONG, POSI_SHORT):
            continue  # net positions (options' "1"): not traded by the engine
        side: Side = "long" if direction == POSI_LONG else "short"
        position, today = int(row["Position"]), int(row["TodayPosition"])  # type: ignore[call-overload]
        key = (str(row["InstrumentID"]), side)
        before = out.get(key, Lots(0, 0))
        out[key] = Lots(before.today + today, before.yesterday + position - today)
    return {k: v for k, v in out.items() if v.total}


def effect(trade: BrokerTrade) -> tuple[Side, int, int]:
    """(side, today's change, yesterday's change) a trade makes."""
    if trade.offset == "open":
        return ("long" if trade.direction == "buy" else "short"), trade.volume, 0
    side: Side = "short" if trade.direction == "buy" else "long"  # a buy closes a short
    if trade.offset == "close_today":
        return side, -trade.volume, 0
    return side, 0, -trade.volume  # close (yesterday's first; compared as a total there)


def reconcile(  # noqa: PLR0917 (the two sides and how to read them)
    ledger: Positions, broker: Positions, trades: Iterable[BrokerTrade], known: set[str],
    order_of: Callable[[str, str], str | None], exchange_of: Callable[[str], str],
) -> Verdict:  # fmt: skip
    """The verdict for the ``ledger``'s positions (the account's: every agent's, and the
    external orders') against the ``broker``'s. ``known``: the trade ids the journal holds
    (``EXCHANGE:TRADEID``); ``order_of(exchange, order_sys_id)``: the engine's order of a
    trade, or None; ``exchange_of(instrument)``."""
    repairs = []
    repaired: dict[tuple[str, Side], Lots] = dict(ledger)
    for trade in trades:
        if f"{trade.exchange}:{trade.trade_id.strip()}" in known:
            continue
        order_id = order_of(trade.exchange, trade.order_sys_id)
        if order_id is None:
            continue  # another terminal's trade: not the engine's to book
        repairs.append((order_id, trade))
        side, today, yesterday = effect(trade)
        before = repaired.get((trade.instrument, side), Lots(0, 0))
        repaired[trade.instrument, side] = Lots(before.today + today, before.yesterday + yesterday)
    left = _differences(repaired, broker, exchange_of)
    if not left:  # missed trades that net to nothing (a round trip) are booked too
        return Verdict("repair", repairs, []) if repairs else Verdict("agree", [], [])
    return Verdict("halt", [], left)


def _differences(ledger: Positions, broker: Positions,
                 exchange_of: Callable[[str], str]) -> list[str]:  # fmt: skip
    out = []
    for key in sorted(set(ledger) | set(broker)):
        instrument, side = key
        mine, theirs = ledger.get(key, Lots(0, 0)), broker.get(key, Lots(0, 0))
        if exchange_of(instrument) in SPLIT_EXCHANGES:
            if mine != theirs:
                out.append(f"{instrument} {side}: expected {mine.today} today and "
                           f"{mine.yesterday} yesterday, found {theirs.today} today and "
                           f"{theirs.yesterday} yesterday")  # fmt: skip
        elif mine.total != theirs.total:
            out.append(f"{instrument} {side}: expected {mine.total} lots, found {theirs.total}")
    return out
