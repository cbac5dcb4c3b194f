"""engine: strategy agents, risk gate, adapters, position ledger and event journal.

The public path for strategy authors: ``from services.engine import Strategy`` (and the views
it hands out); nothing else of the engine is theirs to import.
"""

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
    "AccountView", "OrderView", "PositionView", "Strategy", "StrategyContext", "StrategyParams",
    "TradeView",
]  # fmt: skip
