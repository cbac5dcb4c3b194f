"""Streaming indicators for strategies (docs/toolkit.md, "Indicators"): O(1) work per update, no
pandas, the same in live trading, replay and backtests. Each class keeps its state and returns
its value from ``update``; the book measures are functions of one tick.

    from services.engine.indicators import EMA, OFI, microprice

    self.ema = EMA(20)
    ...
    value = self.ema.update(bar.close)

Price (``trend``): SMA, EMA, StdDev, ATR, RSI, MACD, Bollinger, Donchian. Book (``book``):
spread, mid, microprice, book_imbalance, OFI. Trading (``flow``): VWAP, TWAP, RealisedVol,
KyleLambda, Amihud, RollSpread. Each docstring cites where its definition comes from.
"""

from __future__ import annotations

from services.engine.indicators.book import OFI, book_imbalance, microprice, mid, spread
from services.engine.indicators.flow import TWAP, VWAP, Amihud, KyleLambda, RealisedVol, RollSpread
from services.engine.indicators.trend import ATR, EMA, MACD, RSI, SMA, Bollinger, Donchian, StdDev

__all__ = [
    "ATR", "EMA", "MACD", "OFI", "RSI", "SMA", "TWAP", "VWAP", "Amihud", "Bollinger", "Donchian",
    "KyleLambda", "RealisedVol", "RollSpread", "StdDev", "book_imbalance", "microprice", "mid",
    "spread",
]  # fmt: skip
