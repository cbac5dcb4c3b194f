"""engine: strategy agents, risk gate, adapters, position ledger and event journal.

The public path for strategy authors: ``from services.engine import Strategy`` (and the views
it hands out); nothing else of the engine is theirs to import. The engine's errors are one
hierarchy under ``EngineError``.
"""

from services.engine.errors import EngineError, InvalidTransition, Overfill, RecoveryDiverged
from services.engine.strategy import (
    AccountView,
    OrderView,
    PositionView,
    Strategy,
    StrategyContext,
    StrategyParams,
    TradeView,
)

__all__ = [
    "AccountView", "EngineError", "InvalidTransition", "OrderView", "Overfill", "PositionView",
    "RecoveryDiverged", "Strategy", "StrategyContext", "StrategyParams", "TradeView",
]  # fmt: skip
