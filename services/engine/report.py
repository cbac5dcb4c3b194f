"""A backtest's report: the statistics and the charts (equity, drawdown, positions, daily PnL,
trades drawn on the price) as one HTML file that works offline, the vendored chart library
(uPlot, ``contracts/vendor``) and the data inlined. In a notebook the same page is shown inline
(``BacktestResult.plot()``)."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any, Final, Protocol

import numpy as np
import pandas as pd

from contracts.errors import UserError
from contracts.vendor import read

__all__ = ["MAX_TRADES_DRAWN", "Report", "Reported"]


class Reported(Protocol):
    """What the report draws (``services.engine.results.BacktestResult``)."""

    days: list[int]
    capital: dict[str, float]
    sample_times: list[int]
    sample_prices: dict[str, list[float]]
    sample_nets: dict[str, list[int]]

    @property
    def equity(self) -> pd.DataFrame: ...
    @property
    def daily(self) -> pd.DataFrame: ...
    @property
    def trades(self) -> pd.DataFrame: ...
    @property
    def stats(self) -> pd.Series: ...


MAX_TRADES_DRAWN: Final = 5_000
"""Trades drawn on one instrument's price at most (evenly chosen; the trades table has all)."""

_SCRIPT: Final = r"""
const D = JSON.parse(document.getElementById('data').textContent);
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#17becf'];
const when = uPlot.fmtDate('{YYYY}-{MM}-{DD} {HH}:{mm}:{ss}');
const short = uPlot.fmtDate('{M}/{D} {HH}:{mm}');
const china = ts => uPlot.tzDate(new Date(ts * 1e3), 'Asia/Shanghai');
const width = () => Math.max(480, Math.min(1200, document.body.clientWidth - 32));
const money = (u, vs) => vs.map(
  v => v == null ? '' : v.toLocaleString('en', {maximumFractionDigits: 2}));
function line(label, i, extra) {
  const base = {label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true};
  return Object.assign(base, extra || {});
}
// x is the sample's number, not its time: nights, breaks and weekends take no room
function chart(id, title, times, ys, series, extra) {
  const el = document.getElementById(id);
  if (!times.length) { el.textContent = title + ': nothing to draw'; return; }
  const at = i => times[Math.min(times.length - 1, Math.max(0, Math.round(i)))];
  const label = typeof times[0] === 'number' ? (i => short(china(at(i)))) : at;
  const full = typeof times[0] === 'number' ? (i => when(china(at(i)))) : at;
  const x = times.map((_, i) => i);
  new uPlot(Object.assign({
    title, width: width(), height: 230, scales: {x: {time: false}},
    series: [{label: 'time', value: (u, i) => i == null ? '--' : full(i)}].concat(series),
    axes: [{values: (u, splits) => splits.map(label), space: 90},
           {size: 90, values: money}],
  }, extra || {}), [x].concat(ys), el);
}
const E = D.equity;
chart('equity', 'Equity', E.t, E.names.map(n => E.values[n]),
      E.names.map((n, i) => line(n, i, n === 'account' ? {width: 2.5, stroke: '#000'} : {})));
chart('drawdown', 'Drawdown from the highest equity so far (account, %)', E.t,
      [E.drawdown.map(v => v == null ? null : v * 100)],
      [line('drawdown %', 1, {fill: 'rgba(214,39,40,0.15)'})]);
chart('positions', 'Net position (lots, all agents)', E.t, D.nets.names.map(n => D.nets.values[n]),
      D.nets.names.map((n, i) => line(n, i, {paths: uPlot.paths.stepped({align: 1})})));
const days = D.daily.days;
chart('daily', 'PnL per trading day', days, [D.daily.pnl],
      [line('pnl', 0, {paths: uPlot.paths.bars({size: [0.6, 80]}), fill: 'rgba(31,119,180,0.5)'})],
      {scales: {x: {time: false, range: () => [-0.5, days.length - 0.5]},
                y: {range: (u, lo, hi) => [Math.min(0, lo) * 1.1, Math.max(0, hi) * 1.1]}},
       axes: [{splits: () => days.map((_, i) => i), values: (u, vs) => vs.map(i => days[i])},
              {size: 90, values: money}]});
const prices = document.getElementById('prices');
D.prices.forEach((p, i) => {
  const div = document.createElement('div');
  div.id = 'price' + i;
  prices.appendChild(div);
  const dot = (label, color) => ({label, stroke: color, fill: color, paths: () => null,
                                  points: {show: true, size: 7, fill: color}});
  chart(div.id, p.instrument + ': last price, buys and sells' + p.note, p.t,
        [p.price, p.buy, p.sell],
        [line('price', 0, {stroke: '#555'}), dot('buy', '#2ca02c'), dot('sell', '#d62728')]);
});
"""

_STYLE: Final = """
body { font: 14px system-ui, sans-serif; margin: 16px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; }
.meta { color: #666; margin-bottom: 12px; }
table.stats { border-collapse: collapse; margin: 8px 0 16px; }
table.stats td { padding: 2px 12px 2px 0; border-bottom: 1px solid #eee; }
table.stats td.v { text-align: right; font-variant-numeric: tabular-nums; }
.grid { display: flex; flex-wrap: wrap; gap: 0 48px; }
"""


def _clean(values: Any) -> list[Any]:
    """A JSON list: NaN and infinities become null."""
    return [None if isinstance(v, float) and not math.isfinite(v) else v
            for v in np.asarray(values).tolist()]  # fmt: skip


def _fmt(value: Any) -> str:
    if isinstance(value, float | np.floating):
        number = float(value)
        if not math.isfinite(number):
            return "n/a"
        return f"{number:,.4f}" if abs(number) < 10 else f"{number:,.2f}"
    if isinstance(value, int | np.integer):
        return f"{value:,}"
    return str(value)


class Report:
    """The report of a ``BacktestResult``: ``html()``, ``write(path)``, inline in Jupyter."""

    def __init__(self, result: Reported) -> None:
        self.result = result

    def data(self) -> dict[str, Any]:
        """What the charts draw (times in seconds since the epoch)."""
        r = self.result
        equity = r.equity
        x = (np.asarray(r.sample_times, dtype="int64") / 1e9).tolist()
        account = equity["account"].to_numpy(dtype="float64") if len(equity) else np.array([])
        start = sum(r.capital.values())
        peak = np.maximum.accumulate(np.concatenate([[start], account]))[1:]
        names = [*r.capital, "account"] if len(r.capital) > 1 else ["account"]
        daily = r.daily
        out: dict[str, Any] = {
            "equity": {"t": x, "names": names,
                       "values": {n: _clean(equity[n]) for n in names} if len(equity) else {},
                       "drawdown": _clean(account / peak - 1) if len(account) else []},
            "nets": {"names": list(r.sample_nets),
                     "values": {i: _clean(v) for i, v in r.sample_nets.items()}},
            "daily": {"days": [str(d) for d in daily.index], "pnl": _clean(daily["pnl"])},
            "prices": [self._price(i) for i in r.sample_prices],
        }  # fmt: skip
        return out

    def _price(self, instrument: str) -> dict[str, Any]:
        r = self.result
        trades = r.trades[r.trades["instrument"] == instrument]
        note = ""
        if len(trades) > MAX_TRADES_DRAWN:
            keep = np.linspace(0, len(trades) - 1, MAX_TRADES_DRAWN).round().astype(int)
            note = f" ({MAX_TRADES_DRAWN:,} of {len(trades):,} trades drawn)"
            trades = trades.iloc[np.unique(keep)]
        times = np.asarray(r.sample_times, dtype="int64")
        trade_times = trades["time_ns"].to_numpy(dtype="int64")
        x = np.concatenate([times, trade_times])
        order = np.argsort(x, kind="stable")
        n = len(times)
        price = np.concatenate([np.asarray(r.sample_prices[instrument], dtype="float64"),
                                np.full(len(trades), np.nan)])[order]  # fmt: skip
        is_buy = (trades["direction"] == "buy").to_numpy()
        fills = trades["price"].to_numpy(dtype="float64")
        buy = np.concatenate([np.full(n, np.nan), np.where(is_buy, fills, np.nan)])[order]
        sell = np.concatenate([np.full(n, np.nan), np.where(is_buy, np.nan, fills)])[order]
        return {"instrument": instrument, "note": note, "t": (x[order] / 1e9).tolist(),
                "price": _clean(price), "buy": _clean(buy), "sell": _clean(sell)}  # fmt: skip

    def html(self) -> str:
        r = self.result
        stats = r.stats
        rows = "\n".join(f"<tr><td>{html.escape(str(k))}</td><td class=v>{_fmt(v)}</td></tr>"
                         for k, v in stats.items())  # fmt: skip
        days = f"{r.days[0]} to {r.days[-1]}" if len(r.days) > 1 else str(r.days[0])
        agents = ", ".join(f"{html.escape(a)} ({c:,.0f})" for a, c in r.capital.items())
        data = json.dumps(self.data(), separators=(",", ":")).replace("</", "<\\/")
        return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Backtest {days}</title>
<style>{read("uPlot.min.css")}</style><style>{_STYLE}</style></head>
<body>
<h1>Backtest, trading days {days}</h1>
<div class=meta>{len(r.days)} trading day(s); agents and capital: {agents}</div>
<div class=grid><table class=stats>{rows}</table>
<div><div id=equity></div><div id=drawdown></div><div id=positions></div><div id=daily></div>
</div></div>
<div id=prices></div>
<script type="application/json" id="data">{data}</script>
<script>{read("uPlot.iife.min.js")}</script>
<script>{_SCRIPT}</script>
</body></html>
"""

    def write(self, path: Path) -> Path:
        text = self.html()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"{path}: cannot write the report ({exc.strerror})") from None
        return path

    def _repr_html_(self) -> str:
        """Jupyter: the page in a frame of its own (its scripts run there)."""
        return (f'<iframe srcdoc="{html.escape(self.html(), quote=True)}" '
                'style="width:100%;height:1500px;border:0"></iframe>')  # fmt: skip
