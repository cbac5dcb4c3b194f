"""A backtest's results (docs/backtest.md, "Results"): orders, trades, positions and equity as
pandas DataFrames, and the statistics, read from the engine journal's frames as the backtest
writes them (``collect.Collector``) and from what a journal does not hold: the equity and
prices sampled in market time and each day's close (``BacktestResult.sample``, ``.close``).

Times are the engine's (the ticks' receive times), shown in China's time zone. Statistics are
computed on the account's equity at each trading day's close (marked to the settlement prices,
as China's daily mark-to-market does), with the formulas and their sources in ``stats_of``.
"""

from __future__ import annotations

import math
from array import array
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import pandas as pd

from services.engine.collect import Collector, Names, OrderCounts
from services.engine.report import Report

if TYPE_CHECKING:
    from services.engine.core import Engine

__all__ = [
    "TRADING_DAYS_PER_YEAR",
    "BacktestResult",
    "Collector",
    "OrderCounts",
    "closing_pnl",
    "orders_frame",
    "stats_of",
    "trades_frame",
]

TRADING_DAYS_PER_YEAR: Final = 242
"""China's futures exchanges trade about 242 days a year (the annualisation factor)."""
TZ: Final = "Asia/Shanghai"


def _decode(names: Names, codes: array[int]) -> pd.Categorical:
    """A column of codes as pandas categories (a code per row, each string once: a million
    orders stay small)."""
    index = pd.Index(names.names, dtype=object)
    column = pd.Categorical.from_codes(np.frombuffer(codes, dtype=np.int32), categories=index)
    return column.remove_unused_categories()


def _id(names: list[str], prefix: int, number: int) -> str:
    """An id from its codes: ``collect.split_id`` undone."""
    return names[prefix] + str(number) if number >= 0 else names[prefix]


def _ids(c: Collector, prefixes: array[int], numbers: array[int]) -> list[str]:
    names = c.names.names
    return [_id(names, p, n) for p, n in zip(prefixes, numbers, strict=True)]


def orders_frame(c: Collector) -> pd.DataFrame:
    names = c.names
    filled = np.frombuffer(c.o_filled, dtype=np.int64)
    value = np.frombuffer(c.o_value, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        fill_price = np.where(filled > 0, value / np.maximum(filled, 1), np.nan)
    return pd.DataFrame({
        "day": np.frombuffer(c.o_day, dtype=np.int64),
        "time_ns": np.frombuffer(c.o_time, dtype=np.int64),
        "order_id": _ids(c, c.o_prefix, c.o_number),
        "agent": _decode(names, c.o_agent),
        "instrument": _decode(names, c.o_instrument),
        "direction": _decode(names, c.o_direction),
        "offset": _decode(names, c.o_offset),
        "price": np.frombuffer(c.o_price, dtype=np.float64),
        "volume": np.frombuffer(c.o_volume, dtype=np.int64),
        "kind": _decode(names, c.o_kind),
        "status": _decode(names, c.o_status),
        "filled": filled, "fill_price": fill_price,
        "reason": _decode(names, c.o_reason),
    })  # fmt: skip


def trades_frame(c: Collector) -> pd.DataFrame:
    rows = np.frombuffer(c.t_order, dtype=np.int64)
    known = rows >= 0
    picked = np.where(known, rows, 0)

    strings = np.asarray([*c.names.names, None], dtype=object)

    def of(column: array[int]) -> np.ndarray:
        codes = np.frombuffer(column, dtype=np.int32)[picked] if len(column) else picked
        return strings[np.where(known, codes, -1)]  # a fill of an order not seen: None

    names, prefixes, numbers = c.names.names, c.o_prefix, c.o_number
    trade_orders = [  # the ids of the filled orders only (a string per order would be ~100 MB)
        None if r < 0 else _id(names, prefixes[r], numbers[r]) for r in c.t_order
    ]
    return pd.DataFrame({
        "day": np.frombuffer(c.t_day, dtype=np.int64),
        "time_ns": np.frombuffer(c.t_time, dtype=np.int64),
        "order_id": trade_orders,
        "trade_id": _ids(c, c.t_prefix, c.t_number),
        "price": np.frombuffer(c.t_price, dtype=np.float64),
        "volume": np.frombuffer(c.t_volume, dtype=np.int64),
        "fee": np.frombuffer(c.t_fee, dtype=np.float64),
        "agent": of(c.o_agent), "instrument": of(c.o_instrument),
        "direction": of(c.o_direction), "offset": of(c.o_offset),
        "kind": of(c.o_kind),
    })  # fmt: skip


@dataclass
class BacktestResult:
    """What a backtest gives: DataFrames (``orders``, ``trades``, ``positions``, ``equity``,
    ``daily_equity``, ``daily``), ``stats``, ``plot()`` and ``report(path)``."""

    days: list[int]
    capital: dict[str, float]  # each agent's starting capital
    multipliers: dict[str, int]
    collector: Collector
    journal: Path | None = None  # where the engine journals are kept, if anywhere
    sample_times: list[int] = field(default_factory=list)
    sample_equity: dict[str, list[float]] = field(default_factory=dict)
    sample_prices: dict[str, list[float]] = field(default_factory=dict)
    sample_nets: dict[str, list[int]] = field(default_factory=dict)
    closes: list[tuple[int, int, str, float]] = field(default_factory=list)
    """(trading day, time, agent, equity at the settlement prices)"""
    holdings: list[tuple[int, str, str, int, int, float]] = field(default_factory=list)
    """(trading day, agent, instrument, long, short, settlement) at each day's close"""
    roll_rows: list[tuple[Any, ...]] = field(default_factory=list)
    """A continuous instrument's position moved to the new main contract (``rolls``)."""

    # -- filled in while the backtest runs -------------------------------------------------

    def sample(self, engine: Engine, time_ns: int) -> None:
        """The equity of each agent, and each instrument's last price and net position."""
        if self.sample_times and self.sample_times[-1] == time_ns:
            return
        self.sample_times.append(time_ns)
        accounts = engine.ledger.accounts
        for agent in self.capital:
            self.sample_equity.setdefault(agent, []).append(accounts[agent].equity())
        for instrument in self.multipliers:
            tick = engine.latest.get(instrument)
            self.sample_prices.setdefault(instrument, []).append(
                tick.last if tick is not None else math.nan
            )
            net = sum(a.lines[instrument].position.net for a in accounts.values()
                      if instrument in a.lines)  # fmt: skip
            self.sample_nets.setdefault(instrument, []).append(net)

    def close(self, day: int, engine: Engine, settlements: dict[str, float]) -> None:
        """The day's close: each agent's equity and positions at the settlement prices."""
        for agent in self.capital:
            account = engine.ledger.accounts[agent]
            self.closes.append((day, engine.now, agent, account.closing_equity(settlements)))
            for instrument, line in account.lines.items():
                p = line.position
                if p.long or p.short:
                    price = settlements.get(instrument, line.mark)
                    self.holdings.append((day, agent, instrument, p.long, p.short, price))

    # -- the frames ----------------------------------------------------------------------------

    @cached_property
    def trades(self) -> pd.DataFrame:
        """Every fill, in time order, with its order's fields and, for a fill that closes,
        ``pnl``: its net profit against the average open price (``closing_pnl``)."""
        out = trades_frame(self.collector)
        out.insert(1, "time", _times(out["time_ns"]))
        out["pnl"] = closing_pnl(out, self.multipliers)
        cols = ["day", "time", "agent", "instrument", "direction", "offset", "price", "volume",
                "fee", "pnl", "order_id", "trade_id", "time_ns"]  # fmt: skip
        return out[cols]

    @cached_property
    def orders(self) -> pd.DataFrame:
        """Every order the agents sent, those the risk gate refused included, in time order,
        with its end: ``status`` filled, cancelled, rejected, refused or working; ``filled``
        lots and their average ``fill_price``; ``reason`` for a refusal, rejection or cancel.
        The repeated strings (agent, instrument, direction, offset, kind, status, reason) are
        pandas categories, as a million orders would otherwise take hundreds of MB."""
        out = orders_frame(self.collector)
        out.insert(1, "time", _times(out["time_ns"]))
        return out

    @cached_property
    def rolls(self) -> pd.DataFrame:
        """Each position in a continuous instrument moved to a new main contract: on ``day``
        (the new contract's first), lots closed in ``old`` at ``old_price`` and opened in
        ``new`` at ``new_price`` (both the previous day's close), ``fee`` for both."""
        return pd.DataFrame(self.roll_rows, columns=[
            "day", "agent", "instrument", "old", "new", "long", "short", "old_price",
            "new_price", "fee"])  # fmt: skip

    @cached_property
    def positions(self) -> pd.DataFrame:
        """Each agent's open positions at each trading day's close, at the settlement price."""
        out = pd.DataFrame(self.holdings, columns=["day", "agent", "instrument", "long", "short",
                                                   "settlement"])  # fmt: skip
        out.insert(5, "net", out["long"] - out["short"])
        return out

    @cached_property
    def equity(self) -> pd.DataFrame:
        """Each agent's equity (cash, realised and mark-to-market PnL less fees) sampled in
        market time, and the ``account``'s (their sum); indexed by time."""
        out = pd.DataFrame(self.sample_equity, index=_times(self.sample_times))
        out["account"] = out.sum(axis=1)
        out.index.name = "time"
        return out

    @cached_property
    def prices(self) -> pd.DataFrame:
        """Each instrument's last price and the agents' net position in it, as sampled."""
        index = _times(self.sample_times)
        frames: dict[str, list[float] | list[int]] = dict(self.sample_prices)
        frames |= {f"{i} net": self.sample_nets[i] for i in self.sample_nets}
        out = pd.DataFrame(frames, index=index)
        out.index.name = "time"
        return out

    @cached_property
    def daily_equity(self) -> pd.DataFrame:
        """Each agent's equity at each trading day's close and the ``account``'s; indexed by
        trading day."""
        rows = pd.DataFrame(self.closes, columns=["day", "time_ns", "agent", "equity"])
        out = rows.pivot(index="day", columns="agent", values="equity")[list(self.capital)]
        out["account"] = out.sum(axis=1)
        out.columns.name = None
        return out

    @cached_property
    def daily(self) -> pd.DataFrame:
        """The account per trading day: closing ``equity``, ``pnl``, ``return``, ``drawdown``
        from the highest close so far (the starting capital counts), ``fees``, ``fills``,
        ``turnover``."""
        equity = self.daily_equity["account"]
        start = sum(self.capital.values())
        before = equity.shift(1).fillna(start)
        peak = equity.cummax().clip(lower=start)
        trades = self.trades
        value = trades["price"] * trades["volume"] * _multiplier(trades, self.multipliers)
        by_day = pd.DataFrame({"day": trades["day"], "fee": trades["fee"], "value": value})
        grouped = by_day.groupby("day")
        out = pd.DataFrame({
            "equity": equity, "pnl": equity - before, "return": equity / before - 1,
            "drawdown": equity / peak - 1,
            "fees": grouped["fee"].sum().reindex(equity.index, fill_value=0.0),
            "fills": grouped["fee"].size().reindex(equity.index, fill_value=0).astype("int64"),
            "turnover": grouped["value"].sum().reindex(equity.index, fill_value=0.0),
        })  # fmt: skip
        out.index.name = "day"
        return out

    @cached_property
    def stats(self) -> pd.Series:
        """The statistics (``stats_of``) of the account."""
        return stats_of(self.daily["equity"], sum(self.capital.values()), self.trades,
                        self.collector.counts, sampled=self.equity["account"],
                        multipliers=self.multipliers)  # fmt: skip

    # -- pictures ------------------------------------------------------------------------------

    def plot(self) -> Any:
        """The report's charts, shown inline in a notebook (an object with ``_repr_html_``)."""
        return Report(self)

    def report(self, path: str | Path) -> Path:
        """The report as one offline HTML file (charts and figures, no network): ``path``."""
        return Report(self).write(Path(path))


def _times(ns: Any) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(np.asarray(ns, dtype="int64"), unit="ns", utc=True)
                            ).tz_convert(TZ)  # fmt: skip


def _multiplier(trades: pd.DataFrame, multipliers: Mapping[str, int]) -> pd.Series:
    """Each fill's contract multiplier (1 where unknown)."""
    return trades["instrument"].astype(object).map(multipliers).fillna(1).astype("float64")


def closing_pnl(trades: pd.DataFrame, multipliers: Mapping[str, int]) -> pd.Series:
    """Each closing fill's net profit by the average-cost method: (price - average open price)
    x lots x multiplier for a long position closed (the reverse for a short), less the fill's
    fee and the open fees of the lots it closes (their average per lot). Opening fills: NaN.
    Rows in time order; a position's lots and cost are kept per agent, instrument and side."""
    held: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    out = np.full(len(trades), math.nan)
    rows = zip(trades["agent"], trades["instrument"], trades["direction"], trades["offset"],
               trades["price"], trades["volume"], trades["fee"], strict=True)  # fmt: skip
    for i, (agent, instrument, direction, offset, price, volume, fee) in enumerate(rows):
        if offset == "open":
            lots = held[agent, instrument, "long" if direction == "buy" else "short"]
            lots[0] += volume
            lots[1] += price * volume
            lots[2] += fee
            continue
        side = "long" if direction == "sell" else "short"
        lots = held[agent, instrument, side]
        if lots[0] < volume:  # a close of lots this backtest did not open: no open price
            continue
        average, fee_each = lots[1] / lots[0], lots[2] / lots[0]
        points = price - average if side == "long" else average - price
        out[i] = points * volume * multipliers[instrument] - fee - fee_each * volume
        lots[0] -= volume
        lots[1] -= average * volume
        lots[2] -= fee_each * volume
    return pd.Series(out, index=trades.index, name="pnl")


def stats_of(
    daily_equity: pd.Series, start: float, trades: pd.DataFrame, counts: OrderCounts, *,
    sampled: pd.Series | None = None, multipliers: Mapping[str, int] | None = None,
) -> pd.Series:  # fmt: skip
    """The statistics of an account from its equity at each trading day's close.

    With r_t = E_t / E_{t-1} - 1 (E_0 = ``start``), N days and A = ``TRADING_DAYS_PER_YEAR``:
    total return E_N / E_0 - 1; annual return (1 + total)^(A / N) - 1 (compounded);
    volatility stdev(r) sqrt(A) (sample standard deviation); Sharpe mean(r) / stdev(r) sqrt(A)
    with a zero risk-free rate (Sharpe 1994, "The Sharpe Ratio", ex post); Sortino
    mean(r) / DD sqrt(A) with the downside deviation DD = sqrt(mean(min(r, 0)^2)) against a zero
    target (Sortino and Price 1994, "Performance Measurement in a Downside Risk Framework");
    maximum drawdown min_t(E_t / max_{s<=t} E_s - 1), the peak including E_0 (Magdon-Ismail and
    Atiya 2004); its duration the most trading days from a peak to the close that regains it
    (or to the end); Calmar annual return / |maximum drawdown| (Young 1991, here over the whole
    run). Of the closing fills' ``pnl``: win rate the share above 0, profit factor the sum of
    gains over the sum of losses, average win and average loss. Turnover: price x lots x
    multiplier of every fill; order-to-trade: orders sent per fill."""
    equity = daily_equity.astype("float64")
    days = len(equity)
    before = np.concatenate([[start], equity.to_numpy()[:-1]])
    r = equity.to_numpy() / before - 1
    total = equity.iloc[-1] / start - 1 if days else math.nan
    annual = (1 + total) ** (TRADING_DAYS_PER_YEAR / days) - 1 if days else math.nan
    sd = float(np.std(r, ddof=1)) if days > 1 else math.nan
    root = math.sqrt(TRADING_DAYS_PER_YEAR)
    mean = float(np.mean(r)) if days else math.nan
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if days else math.nan
    path = np.concatenate([[start], equity.to_numpy()])
    peaks = np.maximum.accumulate(path)
    drawdown = float(np.min(path / peaks - 1))
    longest = run = 0
    for value, peak in zip(path, peaks, strict=True):
        run = 0 if value >= peak else run + 1
        longest = max(longest, run)
    pnl = trades["pnl"].dropna() if len(trades) else pd.Series(dtype="float64")
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    sent, refused = counts.sent, sum(counts.refused.values())
    fills = len(trades)
    turnover = 0.0
    if fills:
        lots = trades["volume"] * _multiplier(trades, multipliers or {})
        turnover = float((trades["price"] * lots).sum())
    out: dict[str, Any] = {
        "days": days, "start_equity": float(start),
        "end_equity": float(equity.iloc[-1]) if days else math.nan,
        "total_return": total, "annual_return": annual,
        "volatility": sd * root if days > 1 else math.nan,
        "sharpe": mean / sd * root if days > 1 and sd > 0 else math.nan,
        "sortino": mean / downside * root if days and downside > 0 else math.nan,
        "max_drawdown": drawdown, "max_drawdown_days": longest,
        "calmar": annual / -drawdown if drawdown < 0 else math.nan,
        "closes": len(pnl),
        "win_rate": len(wins) / len(pnl) if len(pnl) else math.nan,
        "profit_factor": wins.sum() / -losses.sum() if len(losses) else math.nan,
        "avg_win": wins.mean() if len(wins) else math.nan,
        "avg_loss": losses.mean() if len(losses) else math.nan,
        "turnover": turnover, "fees": float(trades["fee"].sum()) if fills else 0.0,
        "orders": sent, "fills": fills, "cancels": counts.cancelled,
        "rejected": counts.rejected, "refused": refused,
        "order_to_trade": sent / fills if fills else math.nan,
        "cancel_requests": counts.cancel_requests,
    }  # fmt: skip
    if sampled is not None and len(sampled):
        curve = np.concatenate([[start], sampled.to_numpy(dtype="float64")])
        out["max_drawdown_intraday"] = float(np.min(curve / np.maximum.accumulate(curve) - 1))
    for code, n in counts.refused.most_common():
        out[f"refused[{code}]"] = n
    return pd.Series(out, dtype="object")
