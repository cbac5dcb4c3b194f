"""The one frame between the engine and an agent's callback.

The engine's core may be compiled (``services.engine.native``), and compiled functions leave no
Python frame; this function is never compiled, so its frame marks where the suite's code ends
and an agent's begins. ``interrupts`` looks for it to tell an agent's own code (which a stop may
interrupt) from the engine's (which must never be left half done)."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["call_agent"]


def call_agent(fn: Callable[..., object], args: tuple[object, ...]) -> None:
    """``fn(*args)``: an agent's callback."""
    fn(*args)
