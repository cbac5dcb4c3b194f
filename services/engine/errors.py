"""The engine's errors, one hierarchy: ``EngineError`` is what the engine raises of its own (a
user's mistake reaches the command line as ``contracts.errors.UserError`` instead)."""

from __future__ import annotations

__all__ = ["EngineError", "InvalidTransition", "Overfill", "RecoveryDiverged"]


class EngineError(Exception):
    """Base of the engine's own errors."""


class RecoveryDiverged(EngineError):
    """Re-running the day did not produce what the journal holds: an agent is not deterministic
    or the inputs changed. The engine does not trade on a state it cannot trust."""


class InvalidTransition(EngineError, ValueError):
    """An event the table has no move for in the order's state; the order is unchanged."""


class Overfill(EngineError, ValueError):
    """A fill beyond the order's volume; nothing is applied."""
