"""The live shell's side of the CTP adapter (docs/ctp-trading.md): building it from the
deployment, handing what its session's thread sent to the engine (each event journaled before it
is applied, ``Engine.adapter_event``), and reconciling the ledger with the broker's state at
every login, failing closed.

The adapter (``adapters/ctp/``) never touches the engine; this module does, on the engine's
thread.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Final

import msgspec

from contracts import messages as m
from contracts.config import DeploymentConfig
from contracts.credentials import load_credentials
from contracts.ctp_locale import require_ctp_locale
from services.engine.adapters.ctp.items import BrokerState
from services.engine.adapters.ctp.rates import ledger_rates, rates_from_rows
from services.engine.adapters.ctp.reconcile import (
    BrokerTrade,
    Lots,
    Side,
    effect,
    positions_from_rows,
    reconcile,
)
from services.engine.adapters.ctp.translate import D_BUY, OFFSET_OF, china_time_ns
from services.engine.events import Traded

if TYPE_CHECKING:
    from services.engine.adapters.ctp.adapter import CtpAdapter
    from services.engine.core import Engine
    from services.engine.ledger import Spec

__all__ = ["SWITCH_INTERVAL_S", "apply_broker_facts", "ctp_factory", "ledger_positions", "pump",
           "reconcile_account"]  # fmt: skip

SWITCH_INTERVAL_S: Final = 0.0002


def ctp_factory(config: DeploymentConfig, log: Any,
                api_factory: Callable[[str], Any] | None = None) -> Any:  # fmt: skip
    """The live service's adapter factory for ``engine.adapter = "ctp"``: each trading day a
    session of its own (a fresh login, and a reconciliation against that day's ledger), started
    at once on its own thread. Checks the locale and the credentials first, so a missing one
    stops the service in one line. ``api_factory``: the ``TraderApi`` (openctp-ctp's by
    default; a test's stand-in for a front)."""
    require_ctp_locale()
    # openctp-ctp aborts the process without the locale: imported only after the check
    from services.engine.adapters.ctp.adapter import CtpAdapter  # noqa: PLC0415
    from services.engine.adapters.ctp.session import CtpSession, SessionConfig  # noqa: PLC0415

    c = config.engine.ctp
    assert c is not None  # the config requires [engine.ctp] with adapter = "ctp"
    base = SessionConfig.of(c, load_credentials(config.suite.credentials_file))
    # The session's thread needs the GIL to send an order and to pass a return on, while the
    # engine's loop holds it through a burst of ticks: a thread that waits for it gets it after
    # the switch interval (5 ms by default), so it is shortened to 0.2 ms (docs/ctp-trading.md).
    sys.setswitchinterval(SWITCH_INTERVAL_S)

    def factory(specs: Mapping[str, Spec], phases: Mapping[str, bytes]) -> CtpAdapter:
        session = CtpSession(replace(base, instruments=sorted(specs)), log=log,
                             api_factory=api_factory)  # fmt: skip
        adapter = CtpAdapter(session.requests, session.outbox,
                             {i: s.exchange for i, s in specs.items()}, log=log,
                             cancel_while_disconnected=c.cancel_while_disconnected,
                             wake=session.wake.set)  # fmt: skip
        adapter.session = session
        session.start()
        return adapter

    return factory


def pump(engine: Engine, adapter: CtpAdapter, now_ns: int) -> int:
    """Give the engine what the session handed over; returns how many items there were."""
    items = adapter.drain(now_ns)
    for item in items:
        if isinstance(item, BrokerState):
            reconcile_account(engine, adapter, item, now_ns)
        elif isinstance(item, m.ExternalOrder | m.ExternalTrade):
            engine.external(msgspec.structs.replace(item, ticks=engine.ticks, time_ns=now_ns))
        else:
            engine.adapter_event(item, now_ns)
    return len(items)


def ledger_positions(engine: Engine) -> dict[tuple[str, Side], Lots]:
    """The account's positions in the ledger: every agent's lines, per instrument and side."""
    out: dict[tuple[str, Side], Lots] = {}
    for account in engine.ledger.accounts.values():
        for instrument, line in account.lines.items():
            p = line.position
            sides = (("long", p.long_today, p.long_yesterday),
                     ("short", p.short_today, p.short_yesterday))  # fmt: skip
            for side, today, yesterday in sides:
                if today or yesterday:
                    before = out.get((instrument, side), Lots(0, 0))  # type: ignore[arg-type]
                    out[instrument, side] = Lots(before.today + today,  # type: ignore[index]
                                                 before.yesterday + yesterday)  # fmt: skip
    return out


def _broker_trade(row: Any) -> BrokerTrade:
    return BrokerTrade(row.ExchangeID, row.TradeID, row.OrderSysID, row.InstrumentID,
                       "buy" if row.Direction == D_BUY else "sell",
                       OFFSET_OF.get(row.OffsetFlag, "close"),  # type: ignore[arg-type]
                       row.Price, row.Volume)  # fmt: skip


def _row_of(rows: list[dict[str, object]], *names: str) -> dict[str, object] | None:
    """The first row whose InstrumentID is one of ``names`` (an instrument's own row first: a
    broker gives commission rates per product too)."""
    for name in names:
        for row in rows:
            if row.get("InstrumentID") == name:
                return row
    return None


def apply_broker_facts(engine: Engine, state: BrokerState, now_ns: int) -> list[str]:
    """The broker's instrument facts and rates for the day, over the configured product table:
    each instrument whose facts differ gets an ``InstrumentSet`` (journaled, so a recovery takes
    the same), and a tick size or multiplier that changed since the table was written is logged
    as a warning, as is an instrument that does not trade or expires today. An instrument the
    broker did not answer for keeps the table's figures (said in the log). Returns the
    instruments set."""
    rows = state.rows
    changed = []
    for instrument, spec in sorted(engine.specs.items()):
        facts = _row_of(rows.get("instrument", []), instrument)
        product = str(facts["ProductID"]) if facts is not None else ""
        margin_row = _row_of(rows.get("margin", []), instrument, product)
        commission_row = _row_of(rows.get("commission", []), instrument, product)
        if facts is None or margin_row is None or commission_row is None:
            answers = (("instrument", facts), ("margin rate", margin_row),
                       ("commission rate", commission_row))  # fmt: skip
            missing = [name for name, row in answers if row is None]
            engine.log.warning(
                "ctp_broker_facts_missing", instrument=instrument, missing=missing,
                hint="the configured product table's figures stay in force",
            )  # fmt: skip
            continue
        try:
            broker = ledger_rates(rates_from_rows(margin_row, commission_row))
        except ValueError as exc:
            engine.log.error(
                "ctp_broker_rates_unreadable", instrument=instrument, error=str(exc),
                hint="the configured product table's figures stay in force",
            )  # fmt: skip
            continue
        if not facts.get("IsTrading", 1):
            engine.log.warning(
                "ctp_instrument_not_trading", instrument=instrument,
                hint="the broker says it does not trade: orders will be refused",
            )  # fmt: skip
        if facts.get("ExpireDate") and facts["ExpireDate"] == state.trading_day:
            engine.log.warning(
                "ctp_instrument_expires_today", instrument=instrument,
                hint="its last trading day: roll the agents to the next contract",
            )  # fmt: skip
        multiplier = int(facts["VolumeMultiple"])  # type: ignore[call-overload]
        tick = float(facts["PriceTick"])  # type: ignore[arg-type]
        if (multiplier, tick) != (spec.multiplier, spec.price_tick):
            engine.log.warning(
                "ctp_instrument_differs", instrument=instrument,
                configured={"multiplier": spec.multiplier, "price_tick": spec.price_tick},
                broker={"multiplier": multiplier, "price_tick": tick},
                hint="the broker's figures are used today; update the product table",
            )  # fmt: skip
        msg = m.InstrumentSet(engine.ticks, now_ns, instrument, multiplier, tick, **broker)
        if _differs(spec, msg):
            engine.set_instrument(msg)
            changed.append(instrument)
            engine.log.info("ctp_broker_rates", instrument=instrument, **broker)
    return changed


def _differs(spec: Spec, msg: m.InstrumentSet) -> bool:
    r = spec.rates
    long_rate = r.margin_rate if r.long_margin_rate < 0 else r.long_margin_rate
    short_rate = r.margin_rate if r.short_margin_rate < 0 else r.short_margin_rate
    mine = (spec.multiplier, spec.price_tick, long_rate, short_rate, r.long_margin_per_lot,
            r.short_margin_per_lot, r.open_rate, r.open_per_lot, r.close_rate, r.close_per_lot,
            r.close_today_rate, r.close_today_per_lot)  # fmt: skip
    theirs = (msg.multiplier, msg.price_tick, msg.long_margin_rate, msg.short_margin_rate,
              msg.long_margin_per_lot, msg.short_margin_per_lot, msg.open_rate,
              msg.open_per_lot, msg.close_rate, msg.close_per_lot, msg.close_today_rate,
              msg.close_today_per_lot)  # fmt: skip
    return mine != theirs


def reconcile_account(engine: Engine, adapter: CtpAdapter, state: BrokerState,
                      now_ns: int) -> str:  # fmt: skip
    """Compare the ledger (with the day's trades of other terminals of the account) with the
    broker's positions; book the engine's own trades the journal lacks (each a ``Trade``, logged
    as repaired from the broker's list); halt the account with a report for anything else.
    Trading starts either way (a halted account still cancels). Returns the verdict."""
    rows = state.trades  # the day's trades, read from their query rows once
    trades = [_broker_trade(row) for row in rows]
    order_of = adapter.identity.order_of_trade
    ledger = ledger_positions(engine)
    for trade in trades:  # another terminal's trades are the broker's, not the engine's: added
        if order_of(trade.exchange, trade.order_sys_id) is None:
            side, today, yesterday = effect(trade)
            before = ledger.get((trade.instrument, side), Lots(0, 0))
            ledger[trade.instrument, side] = Lots(before.today + today,
                                                  before.yesterday + yesterday)  # fmt: skip
    apply_broker_facts(engine, state, now_ns)
    exchanges = adapter.exchanges
    verdict = reconcile(ledger, positions_from_rows(state.rows.get("position", [])), trades,
                        adapter.trade_ids, order_of,
                        lambda i: exchanges.get(i, ""))  # fmt: skip
    by_id = {f"{r.ExchangeID}:{r.TradeID.strip()}": r for r in rows}
    for order_id, trade in verdict.repairs:
        trade_id = f"{trade.exchange}:{trade.trade_id.strip()}"
        row = by_id[trade_id]
        adapter.trade_ids.add(trade_id)
        engine.log.warning("ctp_trade_repaired", order_id=order_id, trade_id=trade_id,
                           price=trade.price, volume=trade.volume,
                           text="a trade of the engine's order the journal lacked, booked from "
                                "the broker's trade list")  # fmt: skip
        at = china_time_ns(row.TradeDate, row.TradeTime)
        engine.adapter_event(Traded(order_id, trade_id, trade.price, trade.volume, now_ns, at),
                             now_ns)  # fmt: skip
    if verdict.action == "halt":
        report = "; ".join(verdict.report)
        engine.log.error(
            "ctp_reconciliation_failed", differences=verdict.report,
            hint="the account is halted and no order is sent; compare with the broker's "
                 "statement, then `hft command resume` once they agree",
        )  # fmt: skip
        engine.now = max(engine.now, now_ns)
        engine.command(m.Halt(0, 0, "account", "", f"ctp reconciliation: {report}",
                              f"reconcile-{uuid.uuid4().hex[:8]}"))  # fmt: skip
    else:
        engine.log.info("ctp_reconciled", verdict=verdict.action, repaired=len(verdict.repairs))
    adapter.reconciled(verdict.action != "halt", now_ns)
    return verdict.action
