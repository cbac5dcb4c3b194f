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
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec
import numpy as np
import pandas as pd

from services.engine.bars import Bar
from services.engine.collect import Collector, FillSums, Names, OrderCounts
from services.engine.report import Report

if TYPE_CHECKING:
    from services.engine.core import Engine

__all__ = [
    "TRADING_DAYS_PER_YEAR",
    "BacktestResult",
    "Collector",
    "FillSums",
    "OrderCounts",
    "orders_frame",
    "stats_of",
    "trades_frame",
]

TRADING_DAYS_PER_YEAR: Final = 242
"""China's futures exchanges trade about 242 days a year (the annualisation factor)."""
TZ: Final = "Asia/Shanghai"


_I4, _I8, _F8 = "<i4", "<i8", "<f8"
ORDER_DTYPE: Final = np.dtype([
    ("day", _I8), ("time_ns", _I8), ("prefix", _I4), ("number", _I8), ("agent", _I4),
    ("instrument", _I4), ("direction", _I4), ("offset", _I4), ("kind", _I4), ("price", _F8),
    ("volume", _I8), ("status", _I4), ("reason", _I4),
])  # fmt: skip
"""``collect.ORDER_ROW`` as numpy reads it."""
END_DTYPE: Final = np.dtype([("row", _I8), ("status", _I4), ("reason", _I4)])
FILL_DTYPE: Final = np.dtype([
    ("day", _I8), ("time_ns", _I8), ("order", _I8), ("prefix", _I4), ("number", _I8),
    ("price", _F8), ("volume", _I8), ("fee", _F8), ("agent", _I4), ("instrument", _I4),
    ("direction", _I4), ("offset", _I4), ("kind", _I4), ("pnl", _F8),
])  # fmt: skip


def _rows(c: Collector, name: str, dtype: np.dtype[Any]) -> np.ndarray:
    c.flush()
    return np.fromfile(c.directory / name, dtype=dtype)


def _decode(names: Names, codes: np.ndarray) -> pd.Categorical:
    """A column of codes as pandas categories (a code per row, each string once: a million
    orders stay small); -1 (unknown) is missing."""
    index = pd.Index(names.names, dtype=object)
    column = pd.Categorical.from_codes(codes.astype(np.int32), categories=index)
    return column.remove_unused_categories()


def _id(names: list[str], prefix: int, number: int) -> str:
    """An id from its codes: ``collect.split_id`` undone."""
    return names[prefix] + str(number) if number >= 0 else names[prefix]


def _ids(c: Collector, prefixes: np.ndarray, numbers: np.ndarray) -> list[str]:
    names = c.names.names
    return [_id(names, p, n) for p, n in zip(prefixes.tolist(), numbers.tolist(), strict=True)]


def orders_frame(c: Collector) -> pd.DataFrame:
    """Every order row with its end (status and reason) and what filled of it."""
    rows = _rows(c, "orders.bin", ORDER_DTYPE)
    ends = _rows(c, "ends.bin", END_DTYPE)
    fills = _rows(c, "fills.bin", FILL_DTYPE)
    status, reason = rows["status"].copy(), rows["reason"].copy()
    status[ends["row"]] = ends["status"]  # at most one end per order
    reason[ends["row"]] = ends["reason"]
    seen = fills[fills["order"] >= 0]
    filled = np.bincount(seen["order"], weights=seen["volume"], minlength=len(rows))
    value = np.bincount(seen["order"], weights=seen["price"] * seen["volume"],
                        minlength=len(rows))  # fmt: skip
    with np.errstate(invalid="ignore", divide="ignore"):
        fill_price = np.where(filled > 0, value / np.maximum(filled, 1), np.nan)
    names = c.names
    return pd.DataFrame({
        "day": rows["day"], "time_ns": rows["time_ns"],
        "order_id": _ids(c, rows["prefix"], rows["number"]),
        "agent": _decode(names, rows["agent"]),
        "instrument": _decode(names, rows["instrument"]),
        "direction": _decode(names, rows["direction"]),
        "offset": _decode(names, rows["offset"]),
        "price": rows["price"], "volume": rows["volume"],
        "kind": _decode(names, rows["kind"]),
        "status": _decode(names, status),
        "filled": filled.astype(np.int64), "fill_price": fill_price,
        "reason": _decode(names, reason),
    })  # fmt: skip


def trades_frame(c: Collector) -> pd.DataFrame:
    """Every fill with its order's fields (None for an order the backtest did not see) and its
    closing PnL (``collect.Collector._pnl``)."""
    fills = _rows(c, "fills.bin", FILL_DTYPE)
    orders = _rows(c, "orders.bin", ORDER_DTYPE)[["prefix", "number"]]
    strings = np.asarray([*c.names.names, None], dtype=object)  # code -1: None
    names = c.names.names
    rows = fills["order"]
    picked = orders[np.maximum(rows, 0)] if len(orders) else np.zeros(len(rows), orders.dtype)
    trade_orders = [  # the ids of the filled orders only (a string per order would be ~100 MB)
        None if r < 0 else _id(names, p, n)
        for r, p, n in zip(
            rows.tolist(), picked["prefix"].tolist(), picked["number"].tolist(), strict=True
        )
    ]
    return pd.DataFrame({
        "day": fills["day"], "time_ns": fills["time_ns"], "order_id": trade_orders,
        "trade_id": _ids(c, fills["prefix"], fills["number"]),
        "price": fills["price"], "volume": fills["volume"], "fee": fills["fee"],
        "agent": strings[fills["agent"]], "instrument": strings[fills["instrument"]],
        "direction": strings[fills["direction"]], "offset": strings[fills["offset"]],
        "kind": strings[fills["kind"]], "pnl": fills["pnl"],
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
    portfolios: dict[str, tuple[float, list[str]]] = field(default_factory=dict)
    """The deployment's portfolios: name -> (capital, agents)."""
    bar_rows: list[Bar] = field(default_factory=list)
    """The K-lines the agents subscribed to, as they closed (``bars``)."""

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

    def add_bars(self, engine: Engine) -> None:
        """The day's closed K-lines (the engine's bar book), after its roll."""
        self.bar_rows.extend(engine.bars.bars())

    # -- the frames ----------------------------------------------------------------------------

    @cached_property
    def tree(self) -> pd.DataFrame:
        """The strategy tree at the last close: a row per portfolio (``agent`` empty: its agents
        together), one per agent under it, and the agents in no portfolio (``portfolio``
        empty): ``capital``, ``equity`` and ``pnl`` (equity less capital)."""
        last = self.daily_equity.iloc[-1] if len(self.days) and self.closes else None
        rows = []
        placed = set()
        for name, (capital, agents) in self.portfolios.items():
            equity = sum(float(last[a]) for a in agents) if last is not None else math.nan
            rows.append((name, "", capital, equity, equity - sum(self.capital[a] for a in agents)))
            for agent in agents:
                placed.add(agent)
                value = float(last[agent]) if last is not None else math.nan
                rows.append((name, agent, self.capital[agent], value, value - self.capital[agent]))
        for agent, capital in self.capital.items():
            if agent not in placed:
                value = float(last[agent]) if last is not None else math.nan
                rows.append(("", agent, capital, value, value - capital))
        return pd.DataFrame(rows, columns=["portfolio", "agent", "capital", "equity", "pnl"])

    @cached_property
    def bars(self) -> pd.DataFrame:
        """Every K-line an agent subscribed to (docs/toolkit.md): ``instrument``, ``period``,
        ``day`` (the trading day), ``start`` and ``end`` (exchange time), open, high, low,
        close, ``volume``, ``turnover``, ``open_interest``, ``ticks``; by instrument, period
        and time. A bar still open when the last day's recording ends is not in it."""
        columns = ["instrument", "period", "day", "start_ns", "end_ns", "open", "high", "low",
                   "close", "volume", "turnover", "open_interest", "ticks"]  # fmt: skip
        out = pd.DataFrame([msgspec.structs.astuple(b) for b in self.bar_rows], columns=columns)
        out = out.sort_values(["instrument", "period", "start_ns"], kind="stable")
        out.insert(3, "start", _times(out["start_ns"]))
        out.insert(4, "end", _times(out["end_ns"]))
        return out.reset_index(drop=True)

    @cached_property
    def trades(self) -> pd.DataFrame:
        """Every fill, in time order, with its order's fields and, for a fill that closes,
        ``pnl``: its net profit against the average open price (``collect.Collector._pnl``)."""
        out = trades_frame(self.collector)
        out.insert(1, "time", _times(out["time_ns"]))
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
        by_day = self.collector.sums.by_day  # summed as the fills came (collect.FillSums)
        sums = [by_day.get(int(day), [0.0, 0.0, 0.0]) for day in equity.index]
        out = pd.DataFrame({
            "equity": equity, "pnl": equity - before, "return": equity / before - 1,
            "drawdown": equity / peak - 1,
            "fees": [x[0] for x in sums], "fills": [int(x[1]) for x in sums],
            "turnover": [x[2] for x in sums],
        }, index=equity.index)  # fmt: skip
        out.index.name = "day"
        return out

    @cached_property
    def stats(self) -> pd.Series:
        """The statistics (``stats_of``) of the account."""
        return stats_of(self.daily["equity"], sum(self.capital.values()), self.collector.sums,
                        self.collector.counts, sampled=self.equity["account"])  # fmt: skip

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


def stats_of(
    daily_equity: pd.Series, start: float, fills: FillSums, counts: OrderCounts, *,
    sampled: pd.Series | None = None,
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
    run). Of the closing fills' PnL by average cost (``collect.Collector._pnl``; ``fills`` holds
    their sums): win rate the share above 0, profit factor the sum of gains over the sum of
    losses, average win and average loss. Turnover: price x lots x multiplier of every fill;
    order-to-trade: orders sent per fill."""
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
    sent, refused = counts.sent, sum(counts.refused.values())
    f = fills
    out: dict[str, Any] = {
        "days": days, "start_equity": float(start),
        "end_equity": float(equity.iloc[-1]) if days else math.nan,
        "total_return": total, "annual_return": annual,
        "volatility": sd * root if days > 1 else math.nan,
        "sharpe": mean / sd * root if days > 1 and sd > 0 else math.nan,
        "sortino": mean / downside * root if days and downside > 0 else math.nan,
        "max_drawdown": drawdown, "max_drawdown_days": longest,
        "calmar": annual / -drawdown if drawdown < 0 else math.nan,
        "closes": f.closes,
        "win_rate": f.wins / f.closes if f.closes else math.nan,
        "profit_factor": f.win_sum / -f.loss_sum if f.losses else math.nan,
        "avg_win": f.win_sum / f.wins if f.wins else math.nan,
        "avg_loss": f.loss_sum / f.losses if f.losses else math.nan,
        "turnover": f.turnover, "fees": f.fees,
        "orders": sent, "fills": f.fills, "cancels": counts.cancelled,
        "rejected": counts.rejected, "refused": refused,
        "order_to_trade": sent / f.fills if f.fills else math.nan,
        "cancel_requests": counts.cancel_requests,
    }  # fmt: skip
    if sampled is not None and len(sampled):
        curve = np.concatenate([[start], sampled.to_numpy(dtype="float64")])
        out["max_drawdown_intraday"] = float(np.min(curve / np.maximum.accumulate(curve) - 1))
    for code, n in counts.refused.most_common():
        out[f"refused[{code}]"] = n
    return pd.Series(out, dtype="object")
