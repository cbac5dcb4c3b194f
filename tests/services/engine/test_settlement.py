"""The day's settlement record in the engine: the real IF2101 day, imported as md_recorder
records it, ends with a post-close row carrying CFFEX's settlement price 5278.6 (the last trade
was 5260.0). The engine marks the day to it at the roll; no agent and not the simulator sees
it."""

from __future__ import annotations

from contracts import messages as m
from contracts.calendar import load_calendar
from contracts.config import PaperConfig
from libshm import FLAG_SETTLEMENT, Tick
from services.engine import Strategy
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.core import Engine
from services.engine.live import settlements_of
from services.engine.products import specs_for
from services.engine.risk import RiskLimits
from tests.services.engine.test_golden_day import DAY, RATES, RISK


class Holds(Strategy):
    """Buys one lot at the first tick and keeps every tick it is given."""

    def on_start(self) -> None:
        self.seen: list[Tick] = []

    def on_tick(self, tick: Tick) -> None:
        if not self.seen:
            self.buy("IF2101", tick.ask_price1, 1)
        self.seen.append(tick)


def test_the_roll_marks_to_the_settlement_record_and_no_agent_sees_it(
    ticks: list[tuple[int, Tick]],
) -> None:
    settled = [t for _, t in ticks if t.flags & FLAG_SETTLEMENT]
    assert [(t.settlement, t.last) for t in settled] == [(5278.6, 5260.0)]
    specs, phases = specs_for(["IF2101"], load_calendar(), RATES)
    out: list[bytes] = []
    engine = Engine(specs=specs, gate_config=RISK, adapter=PaperBroker(specs, phases,
                    PaperConfig.instant()), phases=phases,
                    journal=lambda data, _time: out.append(bytes(data)))  # fmt: skip
    engine.add_agent("holder", Holds, ["IF2101"], 1e7, RiskLimits.from_config(RISK), {})
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    for seq, tick in ticks:
        engine.on_tick(tick, seq)
    holder = engine.agents["holder"].strategy
    assert isinstance(holder, Holds)
    seen = holder.seen
    assert len(seen) == len(ticks) - 1 and not any(t.flags & FLAG_SETTLEMENT for t in seen)
    assert settlements_of(engine) == {"IF2101": 5278.6}
    engine.roll_day(ticks[-1][1].local_time_ns + 1, DAY + 1, settlements_of(engine))
    journal = [m.decode(frame) for frame in out]
    (rolled,) = [x for x in journal if isinstance(x, m.DayRolled)]
    assert rolled.settlements == {"IF2101": 5278.6}
    (closed,) = [x for x in journal if isinstance(x, m.DayClosed)]
    (holding,) = closed.holdings
    assert (holding.agent, holding.long, holding.settlement) == ("holder", 1, 5278.6)
