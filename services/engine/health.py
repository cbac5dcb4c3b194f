"""What the engine's shell tells the operator (``Health``, a part of ``live.EngineService``):
the feed's state and what a loss of it does, the lag behind the feed, the orders, fills and
refusals of the day in the log, and the status every command client and the log get."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import msgspec

from contracts import messages as m
from contracts.clock import china_iso
from contracts.config import DeploymentConfig
from contracts.metrics import Buckets, MetricsEndpoint
from contracts.refusals import RefusalLog
from contracts.status import EngineStatus, LatencyWindow, StatusFile
from contracts.ticks import TickStore
from libshm import JournalReader
from services.engine.core import Engine
from services.engine.metrics import AgentFigures, EngineFigures

__all__ = ["STATUS_EVERY_NS", "Health"]

STATUS_EVERY_NS: Final = 10_000_000_000
LAG_TICKS: Final = 1_000  # behind the feed by this many ticks or seconds: say so
LAG_SECONDS: Final = 1.0


class Health:
    """The part of the engine's shell that watches and reports."""

    # the service's state this part reads and sets (``live.EngineService.__init__`` makes it)
    config: DeploymentConfig
    log: Any
    ticks_store: TickStore
    feed: dict[str, object]
    lag: dict[str, float]
    refusals: RefusalLog
    order_refusals: RefusalLog
    _behind_since: int
    _lag_logged: int
    _next_status: int
    _last_tick_time: int
    _feed_timeout_ns: int
    clock: Callable[[], int]
    tick_to_order: LatencyWindow
    status_file: StatusFile
    metrics: MetricsEndpoint[EngineFigures]
    counts: Counter[tuple[str, ...]]
    tick_to_order_buckets: Buckets
    _tick_to_order_seen: int

    if TYPE_CHECKING:

        def _engine_now(self, engine: Engine) -> int: ...

    def _each_second(self, engine: Engine, ticks: JournalReader, day: int, now: int, *,
                     caught_up: bool) -> None:  # fmt: skip
        """Refused requests' summaries, the feed's health, the lag behind it, the status line."""
        self._log_refusals(now)
        self._watch_feed(engine, ticks, day, caught_up=caught_up)
        self._check_lag(ticks)
        figures = self._figures(engine, day)
        self.status_file.publish(figures)
        if self.metrics.url:
            self.metrics.publish(self._metric_figures(engine, figures))
        if now >= self._next_status:
            self._next_status = now + STATUS_EVERY_NS
            self._status(engine, day)

    def _watch_feed(self, engine: Engine, ticks: JournalReader, day: int, *, caught_up: bool
                    ) -> None:  # fmt: skip
        """The feed is lost when the recording's writer died or fell silent (no tick and no
        heartbeat for ``feed_timeout_s``), and ended when the recording is closed, every tick of
        it handled, and no newer day is being recorded (a closed day with a newer one rolls).
        Either is logged at once and acted on as ``engine.on_feed_loss`` says; a new writer on
        the day's journal (md_recorder restarted) is logged, and a halt stays until resumed."""
        state = ticks.writer_state(self._feed_timeout_ns)
        if state == "open":
            feed = "live"
        elif state == "gone":
            feed = "lost"
        elif caught_up and not any(d > day for d in self.ticks_store.days()):
            feed = "ended"
        else:
            return  # closed, with ticks still to handle or the next day starting
        was = self.feed["state"]
        if feed == was:
            return
        path = str(self.ticks_store.where(day))
        since = self._engine_now(engine)
        self.feed = {"state": feed, "since": china_iso(since), "ticks": engine.ticks}
        if feed == "live":
            halted = self.config.engine.on_feed_loss == "halt"
            hint = "trading stays halted until `hft command resume --account`" if halted else None
            self.log.info("feed_restored", recording=path, after=was, hint=hint)
            return
        action = self.config.engine.on_feed_loss
        if feed == "lost":
            timeout = self.config.engine.feed_timeout_s
            text = f"the md_recorder writing {path} is gone (died, or silent for {timeout:g} s)"
        else:
            text = f"the recording {path} has ended (closed, every tick handled, no newer day)"
        done = self._on_feed_loss(engine, f"feed {feed}")
        emit = self.log.error if feed == "lost" else self.log.warning
        emit(f"feed_{feed}", text=text, action=action, done=done, ticks=engine.ticks)
        self.feed["action"] = done

    def _on_feed_loss(self, engine: Engine, why: str) -> str:
        """What ``engine.on_feed_loss`` says to do, as journaled commands (recovery repeats
        them where they happened); returns what was done."""
        action = self.config.engine.on_feed_loss
        if action == "log":
            return "nothing (on_feed_loss = log)"
        engine.now = self._engine_now(engine)
        tag = uuid.uuid4().hex[:12]
        cancel = engine.command(m.CancelAll(0, 0, "account", "", f"engine: {why}", f"{tag}-c"))
        if action == "cancel":
            return cancel.text
        engine.command(m.Halt(0, 0, "account", "", f"engine: {why}", f"{tag}-h"))
        return f"{cancel.text}; the account is halted"

    def _check_lag(self, ticks: JournalReader) -> None:
        """Log when the engine falls behind the feed (and when it has caught up again)."""
        behind, newest = ticks.backlog()
        seconds = 0.0
        if newest is not None and self._last_tick_time:
            seconds = max(newest - self._last_tick_time, 0) / 1e9
        self.lag = {"ticks": behind, "seconds": round(seconds, 3)}
        now = self.clock()
        if behind >= LAG_TICKS or seconds >= LAG_SECONDS:
            if not self._behind_since or now - self._lag_logged >= STATUS_EVERY_NS:
                self._lag_logged = now
                self.log.warning("engine_behind_feed", ticks=behind, seconds=round(seconds, 3),
                                 hint="the engine handles ticks slower than they arrive; "
                                 "lighten the agents or the feed")  # fmt: skip
            self._behind_since = self._behind_since or now
        elif self._behind_since:
            self.log.info("engine_caught_up", after_s=round((now - self._behind_since) / 1e9, 1))
            self._behind_since = 0

    def _log_refusals(self, now: int, *, flush: bool = False) -> None:
        for s in self.refusals.due(now, flush=flush):
            self.log.warning(
                "commands_refused", peer=s.peer, count=s.count, reasons=s.reasons,
                text=f"{s.count} refused requests from {s.peer} in the last {s.seconds:g} s",
            )  # fmt: skip
        for s in self.order_refusals.due(now, flush=flush):
            self.log.warning(
                "orders_refused", agent=s.peer, count=s.count, reasons=s.reasons,
                text=f"{s.count} more orders of {s.peer} refused by the risk gate in the last "
                f"{s.seconds:g} s",
            )  # fmt: skip

    def _report(self, engine: Engine, now: int) -> None:
        """Log what the engine journaled since the last pass: every order and fill at info, an
        exchange's rejection as a warning, the gate's refusals once per agent and then summed
        every 10 s (a strategy that retries a refused order would otherwise write a line per
        try). A recovery repeats none of these: only messages journaled now are reported."""
        activity = engine.activity
        log = self.log
        counts = self.counts
        while activity:
            msg = activity.popleft()
            if isinstance(msg, m.CancelRequested):
                counts["cancels", msg.agent] += 1
                continue
            if isinstance(msg, m.OrderRequested):
                counts["orders", msg.agent] += 1
                log.info("order", order_id=msg.order_id, agent=msg.agent,
                         instrument=msg.instrument, direction=msg.direction, offset=msg.offset,
                         price=msg.price, volume=msg.volume, kind=msg.kind)  # fmt: skip
            elif isinstance(msg, m.Trade):
                order = engine.orders.get(msg.order_id)
                counts["fills", order.agent if order else ""] += 1
                counts["lots", order.agent if order else ""] += msg.volume
                log.info("fill", order_id=msg.order_id, trade_id=msg.trade_id,
                         agent=order.agent if order else None,
                         instrument=order.instrument if order else None,
                         direction=order.direction if order else None, price=msg.price,
                         volume=msg.volume, fee=round(msg.fee, 2))  # fmt: skip
            elif isinstance(msg, m.OrderRejected):
                order = engine.orders.get(msg.order_id)
                counts["rejections", order.agent if order else "", msg.code] += 1
                log.warning("order_rejected", order_id=msg.order_id, code=msg.code,
                            text=msg.text)  # fmt: skip
            elif isinstance(msg, m.RiskRefused):
                counts["refusals", msg.agent, msg.code] += 1
                if self.order_refusals.refused(now, msg.agent, msg.code):
                    log.warning(
                        "order_refused",
                        agent=msg.agent,
                        order_id=msg.order_id,
                        code=msg.code,
                        text=msg.text,
                        hint="more refusals of this agent are counted for 10 s",
                    )

    def _figures(self, engine: Engine, day: int) -> EngineStatus:
        """The status file's figures (``contracts.status``), for the monitor."""
        return EngineStatus(
            os.getpid(), time.time_ns(), day, engine.ticks, engine.order_count,
            int(self.lag["ticks"]), float(self.lag["seconds"]), str(self.feed["state"]),
            self.tick_to_order.summary(),
        )  # fmt: skip

    def _metric_figures(self, engine: Engine, status: EngineStatus) -> EngineFigures:
        """What the metrics endpoint shows (``services.engine.metrics``), copied now."""
        buckets = self.tick_to_order_buckets
        for ns in self.tick_to_order.since(self._tick_to_order_seen):
            buckets.add(ns)
        self._tick_to_order_seen = self.tick_to_order.count
        agents = {}
        for name, handle in engine.agents.items():
            view = handle.account()
            lines = engine.ledger.accounts[name].lines.items()
            agents[name] = AgentFigures(
                view.day_pnl, view.realised, view.fees, view.margin, len(handle.orders),
                tuple((i, line.position.long, line.position.short) for i, line in lines
                      if line.position.long or line.position.short),
            )  # fmt: skip
        gate = engine.gate
        states = (("global", "", gate.state("global", "")),
                  ("account", "", gate.state("account", "")),
                  *(("instrument", i, gate.state("instrument", i)) for i in engine.specs),
                  *(("agent", a, gate.state("agent", a)) for a in engine.agents))  # fmt: skip
        return EngineFigures(status, dict(self.counts), agents, states, len(engine.outbox),
                             buckets.cumulative())  # fmt: skip

    def _status(self, engine: Engine, day: int) -> dict[str, object]:
        gate = engine.gate
        agents = {}
        for name, handle in engine.agents.items():
            view = handle.account()
            positions = {}
            for instrument, line in engine.ledger.accounts[name].lines.items():
                p = line.position
                if p.long or p.short:
                    positions[instrument] = {
                        "long": p.long, "long_today": p.long_today, "short": p.short,
                        "short_today": p.short_today, "mark": line.mark,
                    }  # fmt: skip
            agents[name] = {"running": handle.running, "state": view.state,
                            "day_pnl": round(view.day_pnl, 2), "margin": round(view.margin, 2),
                            "working_orders": len(handle.orders),
                            "positions": positions}  # fmt: skip
        instruments = {i: gate.state("instrument", i) for i in engine.specs}
        states = {"global": gate.state("global", ""), "account": gate.state("account", ""),
                  "instruments": instruments}  # fmt: skip
        status: dict[str, object] = {"trading_day": day, "ticks": engine.ticks,
                                     "orders": engine.order_count, "states": states,
                                     "agents": agents, "feed": self.feed,
                                     "behind_feed": self.lag,
                                     "tick_to_order_us": msgspec.structs.asdict(
                                         self.tick_to_order.summary()),
                                     "recent_commands": list(engine.recent_commands)}  # fmt: skip
        self.log.info("engine_status", **status)
        return status
