"""Agents that block (``Interrupts``, a part of ``live.EngineService``, and its watchdog thread):
a callback that runs for a second is logged by name; a stop, or a recovery that reaches the place
where the journal says an agent was interrupted, raises ``AgentInterrupted`` into the agent's
own code, never into the suite's."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import Any, Final, Protocol

from contracts.stop import StopSignals
from services.engine.agents import INTERRUPTED, AgentInterrupted
from services.engine.calling import call_agent
from services.engine.core import Engine
from services.engine.health import STATUS_EVERY_NS

__all__ = ["Interrupts", "Watchdog"]

SUITE_CODE: Final = tuple(
    str(Path(__file__).resolve().parents[2] / package) + os.sep
    for package in ("services", "libshm", "contracts")
)  # an agent's strategies live elsewhere (strategies/, engine.strategy_paths)
BLOCKED_NS: Final = 1_000_000_000  # an agent's callback this long: the watchdog says so
WATCH_EVERY_S: Final = 0.1


class Interrupts:
    """The part of the engine's shell that interrupts a blocked agent."""

    engine: Engine | None
    stop: StopSignals

    def _interrupt_text(self) -> str | None:
        """Why the running agent callback must be interrupted now, if it must: in a recovery,
        the journal says the agent was interrupted there; or a stop was asked for while the
        callback has run past its budget (one within its budget finishes first)."""
        engine = self.engine
        handle = engine.calling if engine is not None else None
        if engine is None or handle is None:
            return None
        journaled = engine.journaled_interrupt()
        if journaled is not None:
            return journaled
        elapsed = time.monotonic_ns() - engine.call_started
        if not self.stop.requested or elapsed <= engine.callback_budget_ns:
            return None
        fn = getattr(engine.calling_fn, "__name__", "a callback")
        budget = engine.callback_budget_ns / 1e6
        return (f"{INTERRUPTED}{handle.name}.{fn} had run {elapsed / 1e9:.1f} s (budget "
                f"{budget:g} ms) when the engine was asked to stop")  # fmt: skip

    def _interrupt(self, frame: FrameType | None) -> None:
        """From a signal handler (SIGTERM, SIGINT, or the watchdog's SIGUSR1), in the main
        thread wherever it was: raise into the agent's own code, or, if the agent is inside the
        engine (send, cancel), leave it for the engine to raise at the agent's next call."""
        text = self._interrupt_text()
        if text is None:
            return
        engine = self.engine
        assert engine is not None
        if _inside_the_suite(frame):
            engine.pending_interrupt = text
            return
        raise AgentInterrupted(text)


class _Watched(Protocol):
    engine: Engine | None
    log: Any

    def _interrupt(self, frame: FrameType | None) -> None: ...

    def _interrupt_text(self) -> str | None: ...


def _inside_the_suite(frame: FrameType | None) -> bool:
    """Whether the main thread, interrupted at ``frame``, is in the suite's own code (the engine,
    the journal, the messages: an exception there could leave them half done) rather than in
    an agent's callback and what that calls outside the suite."""
    while frame is not None:
        code = frame.f_code
        if code is _CALL_CODE:
            return False  # reached the engine's call of the agent: all above it was the agent's
        if os.path.abspath(code.co_filename).startswith(SUITE_CODE):
            return True
        frame = frame.f_back
    return True  # not in an agent's callback at all


_CALL_CODE: Final = call_agent.__code__  # never compiled: its frame is always there


class Watchdog:
    """A thread that looks at the engine's running agent callback every ``WATCH_EVERY_S``: one
    running for ``BLOCKED_NS`` is logged (and again every 10 s) with the agent's name, since
    every agent, command and tick waits for it; in a recovery, one that blocks where the
    journal says the agent was interrupted is interrupted again (SIGUSR1 to the main thread)."""

    def __init__(self, service: _Watched) -> None:
        self.service = service
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-watchdog", daemon=True)
        self._main = threading.main_thread().ident
        signal.signal(signal.SIGUSR1, lambda _signum, frame: service._interrupt(frame))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        logged: tuple[int, int] = (0, 0)  # (call started, when last logged)
        while not self._stop.wait(WATCH_EVERY_S):
            engine = self.service.engine
            handle = engine.calling if engine is not None else None
            if engine is None or handle is None:
                continue
            started = engine.call_started
            now = time.monotonic_ns()
            if now - started >= BLOCKED_NS and (
                logged[0] != started or now - logged[1] >= STATUS_EVERY_NS
            ):
                logged = (started, now)
                fn = getattr(engine.calling_fn, "__name__", "a callback")
                self.service.log.error(
                    "agent_blocked", agent=handle.name, callback=fn,
                    seconds=round((now - started) / 1e9, 1),
                    text=f"{handle.name}.{fn} has run {(now - started) / 1e9:.1f} s; every "
                    "agent, tick and command waits for it; SIGTERM stops that agent and the "
                    "engine",
                )  # fmt: skip
            if self.service._interrupt_text() is not None:  # again each pass until it stops
                assert self._main is not None
                signal.pthread_kill(self._main, signal.SIGUSR1)
