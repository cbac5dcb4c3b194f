"""engine: strategy agents, risk gate, adapters, position ledger and event journal.

The public path for strategy authors: ``from services.engine import Strategy`` (and the views
it hands out), and for research ``from services.engine import Backtest, sweep`` (loaded when first
named, so a strategy's import does not load the backtest's pandas or the live shell's ZMQ);
nothing else of the engine is theirs to import. The engine's errors are one hierarchy under
``EngineError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# isort: off
from services.engine import native as native  # first: compiled modules or sources (native.py)

# isort: on
from services.engine.errors import EngineError, InvalidTransition, Overfill, RecoveryDiverged
from services.engine.strategy import (
    AccountView,
    Bar,
    ConditionalView,
    Factor,
    OrderView,
    PositionView,
    Strategy,
    StrategyContext,
    StrategyParams,
    TradeView,
)

if TYPE_CHECKING:
    from services.engine.backtest import Backtest, BacktestResult
    from services.engine.sweeps import sweep

__all__ = [
    "AccountView", "Backtest", "BacktestResult", "Bar", "ConditionalView", "EngineError", "Factor",
    "InvalidTransition", "OrderView", "Overfill", "PositionView",
    "RecoveryDiverged", "Strategy", "StrategyContext", "StrategyParams", "TradeView", "sweep",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in ("Backtest", "BacktestResult"):
        from services.engine import backtest  # noqa: PLC0415 (on first use)

        return getattr(backtest, name)
    if name == "sweep":
        from services.engine.sweeps import sweep  # noqa: PLC0415

        return sweep
    raise AttributeError(f"module 'services.engine' has no attribute {name!r}")
