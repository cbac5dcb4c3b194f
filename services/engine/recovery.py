"""Recovery (``Recovery``, a part of ``core.Engine``): the day rebuilt from its journal.

The engine runs the same code again over the day's ticks with the journal as the expected
output: each message it would journal is compared with the next journaled one instead
(``Engine._record``); external inputs (timer calls, wakes, commands, the day's roll, and the
events and order refs of an adapter that is not deterministic) are fed from the journal at the
tick position they arrived at, through the same entry points as live. When the journal is used
up the engine is exactly where it stopped, and carries on live. A journaled order is never sent
again to a real exchange; a deterministic adapter (the paper simulator) is fed again, which
rebuilds it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Mapping

from mypy_extensions import trait

from contracts import messages as m
from libshm import Tick
from services.engine.adapter import Adapter
from services.engine.agents import RecoveryDiverged

__all__ = ["FROM_ADAPTER", "Recovery", "from_adapter"]

FROM_ADAPTER = (m.OrderAccepted, m.OrderRejected, m.OrderCancelled, m.Trade)


def from_adapter(msg: m.EngineMessage) -> bool:
    """``msg`` records an adapter event (what a recovery feeds back for a CTP adapter)."""
    return isinstance(msg, FROM_ADAPTER) or (
        isinstance(msg, m.CancelRefused) and msg.code == "EXCHANGE"
    )


@trait
class Recovery:
    """The part of ``core.Engine`` that replays a day's journal."""

    # the engine's state this part reads and sets (``core.Engine.__init__`` makes it)
    adapter: Adapter
    now: int
    ticks: int
    _expect: deque[m.EngineMessage]

    def _emit(self, msg: m.EngineMessage) -> bool:
        raise NotImplementedError

    def _pump(self) -> None:
        raise NotImplementedError

    def open_day(
        self,
        trading_day: int,
        now_ns: int,
        first_tick: int = 0,
        holdings: Iterable[m.Holding] = (),
        cash: Mapping[str, float] | None = None,
    ) -> None:
        raise NotImplementedError

    def on_tick(self, tick: Tick, seq: int) -> None:
        raise NotImplementedError

    def on_timer(self, now_ns: int) -> None:
        raise NotImplementedError

    def wake(self, now_ns: int) -> None:
        raise NotImplementedError

    def command(self, cmd: m.Command) -> m.CommandAck:
        raise NotImplementedError

    def roll_day(self, now_ns: int, next_day: int, settlements: Mapping[str, float]) -> None:
        raise NotImplementedError

    def routed(self, msg: m.OrderRouted) -> None:
        raise NotImplementedError

    def set_instrument(self, msg: m.InstrumentSet) -> None:
        raise NotImplementedError

    def external(self, msg: m.ExternalOrder | m.ExternalTrade) -> None:
        raise NotImplementedError

    def recover(self, journal: Iterable[m.EngineMessage], next_tick: Callable[[], tuple[int, Tick]]
                ) -> int:  # fmt: skip
        """Rebuild the day from its journal (see the module doc); ``next_tick`` gives the day's
        ticks in order as (sequence number, tick). Returns how many messages were replayed."""
        self._expect = deque(journal)
        total = len(self._expect)
        if not total:
            return 0
        first = self._expect[0]
        if not isinstance(first, m.DayOpened):
            raise RecoveryDiverged(f"the journal starts with {type(first).__name__}, not DayOpened")
        self.open_day(first.trading_day, first.time_ns, first.ticks, first.holdings, first.cash)
        while self._expect:
            head = self._expect[0]
            if self.ticks < head.ticks:
                seq, tick = next_tick()
                self.on_tick(tick, seq)
                continue
            self._feed(head)
            if self._expect and self._expect[0] is head:
                raise RecoveryDiverged(
                    f"at tick {self.ticks} the journal holds {head!r}, which the engine did not "
                    "produce again"
                )
        return total

    def _feed(self, msg: m.EngineMessage) -> None:
        """Give a journaled external input to the engine through its live entry point."""
        if isinstance(msg, m.TimerFired):
            self.on_timer(msg.time_ns)
        elif isinstance(msg, m.Wake):
            self.wake(msg.time_ns)
            if self._expect and self._expect[0] is msg:
                # nothing reached the engine then, and the engine journals no such wake now; one
                # that journaled them (before 478eac4) wrote it: it carries no state, so it is
                # passed over (the simulator does the same later; docs/engine.md, "Wake")
                self._expect.popleft()
        elif isinstance(msg, m.Command):
            self.command(msg)
        elif isinstance(msg, m.DayRolled):
            self.roll_day(msg.time_ns, msg.next_day, msg.settlements)
        elif isinstance(msg, m.OrderRouted):
            self.routed(msg)
        elif isinstance(msg, m.InstrumentSet):
            self.set_instrument(msg)
        elif isinstance(msg, m.ExternalOrder | m.ExternalTrade):
            self.external(msg)
        elif not self.adapter.deterministic and from_adapter(msg):
            # an event of an adapter that runs on its own, as it arrived
            self.now = msg.time_ns
            self._emit(msg)
        self._pump()
