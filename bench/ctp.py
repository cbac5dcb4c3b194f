"""``hft bench ctp``: what the CTP adapter adds to an order's way, on the engine's own code with
openctp-ctp's real structs (no CTP front can be reached here, so a stand-in answers in place of
the ``TraderApi``, from a thread of its own as CTP's does, at once).

An agent on the real IF2101 day sends a one-lot limit far from the market on every 2nd tick and
cancels it on the next; each insert and each cancel is timed from the shell's hand-over
(``live.deliver``: the ref journaled, the order translated and queued) until its answer is
journaled by the engine (the session's thread sent the request struct, the stand-in answered
through the SPI, the session passed it on, ``ctp_link.pump`` gave it to the engine). Also the
hand-over alone, on the engine's thread. Wall time, so medians and the 99th percentile of
``--orders`` orders, each figure the median of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import queue
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from contracts.ctp_locale import has_locale
from contracts.errors import UserError

DATA = Path(__file__).resolve().parent.parent / "data" / "market"


class _Front:
    """Stands in for the ``TraderApi``: accepts every insert and every cancel at once, from
    its own thread."""

    def __init__(self) -> None:
        self.spi: Any = None
        self.work: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.n = 0
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while (job := self.work.get()) is not None:
            job()

    def RegisterSpi(self, spi: Any) -> None:
        self.spi = spi

    def RegisterFront(self, front: str) -> None:
        pass

    def SubscribePrivateTopic(self, how: int) -> None:
        pass

    def SubscribePublicTopic(self, how: int) -> None:
        pass

    def Init(self) -> None:
        self.work.put(self._connected)

    def _connected(self) -> None:
        self.spi.OnFrontConnected()

    def ReqUserLogin(self, fields: Any, request_id: int) -> int:
        from openctp_ctp import tdapi

        login = tdapi.CThostFtdcRspUserLoginField()
        login.FrontID, login.SessionID, login.MaxOrderRef = 1, 7001, "1"
        login.TradingDay = "20210104"
        self.work.put(lambda: self.spi.OnRspUserLogin(login, None, request_id, True))
        return 0

    def ReqSettlementInfoConfirm(self, fields: Any, request_id: int) -> int:
        self.work.put(lambda: self.spi.OnRspSettlementInfoConfirm(None, None, request_id, True))
        return 0

    def __getattr__(self, method: str) -> Any:
        if not method.startswith("ReqQry"):
            raise AttributeError(method)
        answer = "OnRsp" + method[3:]

        def query(fields: Any, request_id: int) -> int:  # no rows: a flat account
            self.work.put(lambda: getattr(self.spi, answer)(None, None, request_id, True))
            return 0

        return query

    def Release(self) -> None:
        self.work.put(None)

    def ReqOrderInsert(self, fields: Any, request_id: int) -> int:
        from openctp_ctp import tdapi

        self.n += 1
        ret = tdapi.CThostFtdcOrderField()
        ret.FrontID, ret.SessionID, ret.OrderRef = 1, 7001, fields.OrderRef
        ret.ExchangeID, ret.OrderSysID = fields.ExchangeID, f"{self.n:>12}"
        ret.OrderSubmitStatus, ret.OrderStatus = "3", "3"
        self.work.put(lambda: self.spi.OnRtnOrder(ret))
        return 0

    def ReqOrderAction(self, fields: Any, request_id: int) -> int:
        from openctp_ctp import tdapi

        ret = tdapi.CThostFtdcOrderField()
        ret.FrontID, ret.SessionID = 1, 7001
        ret.ExchangeID, ret.OrderSysID = fields.ExchangeID, fields.OrderSysID
        ret.OrderSubmitStatus, ret.OrderStatus = "3", "5"
        self.work.put(lambda: self.spi.OnRtnOrder(ret))
        return 0


def _one_run(orders: int, tmp: Path) -> tuple[list[int], list[int]]:  # noqa: PLR0915
    """(hand-over ns, hand-over to journaled answer ns) of each insert and cancel."""
    from contracts import messages as m
    from contracts.calendar import load_calendar
    from contracts.config import ProductRates, RiskConfig
    from contracts.logs import get_logger
    from libshm import FLAG_SETTLEMENT, JournalReader, decode_tick
    from services.engine.adapters.ctp.adapter import CtpAdapter
    from services.engine.adapters.ctp.session import CtpSession, SessionConfig
    from services.engine.core import Engine
    from services.engine.ctp_link import SWITCH_INTERVAL_S, pump
    from services.engine.live import deliver
    from services.engine.products import specs_for
    from services.engine.risk import RiskLimits
    from services.engine.strategy import Strategy
    from services.md_recorder.importer import import_files

    sys.setswitchinterval(SWITCH_INTERVAL_S)  # as the live service sets it with CTP
    import_files([DATA / "IF2101_20210104.csv.gz"], "ctp-csv", tmp, load_calendar())
    reader = JournalReader(tmp / "20210104")
    ticks = [(f.seq, decode_tick(f.payload)) for f in iter(reader.read, None)]
    ticks = [(s, t) for s, t in ticks if not t.flags & FLAG_SETTLEMENT]

    class Churn(Strategy):
        def on_tick(self, tick: Any) -> None:
            if self.open_orders("IF2101"):
                self.cancel_all()
            else:
                self.buy("IF2101", round(tick.bid_price1 - 100, 1), 1)

    risk = RiskConfig(max_daily_loss=1e12, cancel_limit=10**9, max_cancel_ratio=1e9,
                      duplicate_window_ms=0, max_orders_per_second=10**6)  # fmt: skip
    specs, phases = specs_for(["IF2101"], load_calendar(), {"IF": ProductRates(margin_rate=0.1)})
    session = CtpSession(SessionConfig(["tcp://127.0.0.1:1"], "9999", "1", "pw", "app", "",
                                       tmp / "flow", ["IF2101"], query_gap_s=0.0,
                                       orders_per_s=1e9),
                         log=get_logger(), api_factory=lambda _p: _Front())  # fmt: skip
    adapter = CtpAdapter(session.requests, session.outbox, {"IF2101": "CFFEX"},
                         log=get_logger(), wake=session.wake.set)  # fmt: skip
    journal: list[bytes] = []
    engine = Engine(specs=specs, gate_config=risk, adapter=adapter, phases=phases,
                    journal=lambda data, _t: journal.append(bytes(data)))  # fmt: skip
    engine.add_agent("bench", Churn, ["IF2101"], 1e9, RiskLimits.from_config(risk), {})
    engine.open_day(20210104, ticks[0][1].local_time_ns, ticks[0][0])
    session.start()  # log in, query, reconcile (a flat account): then trading
    while adapter.status != "trading":
        pump(engine, adapter, engine.now)
    handover, answered = [], []
    try:
        for seq, tick in ticks[: orders + 1]:
            engine.on_tick(tick, seq)
            if not engine.outbox:
                continue
            before = len(journal)
            t0 = time.perf_counter_ns()
            deliver(engine)
            t1 = time.perf_counter_ns()
            answer = m.OrderAccepted | m.OrderCancelled
            while len(journal) == before or not isinstance(m.decode(journal[-1]), answer):
                if adapter.waiting():  # what the live loop asks between ticks
                    pump(engine, adapter, engine.now)
                else:  # the live loop's spin yields the GIL with CTP, as here (sleep(0))
                    time.sleep(0)
            t2 = time.perf_counter_ns()
            handover.append(t1 - t0)
            answered.append(t2 - t0)
    finally:
        session.stop()
    return handover, answered


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hft bench ctp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--orders", type=int, default=2000, help="orders and cancels a run")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    if not has_locale():
        raise UserError("hft bench ctp: openctp-ctp needs the zh_CN.GB18030 locale "
                        "(hft doctor says how to add it)")  # fmt: skip
    rows: dict[str, list[float]] = {"hand-over (engine's thread)": [], "to the answer, median": [],
                                    "to the answer, 99th percentile": []}  # fmt: skip
    for _ in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            handover, answered = _one_run(args.orders, Path(tmp))
        answered.sort()
        rows["hand-over (engine's thread)"].append(statistics.median(handover) / 1000)
        rows["to the answer, median"].append(statistics.median(answered) / 1000)
        rows["to the answer, 99th percentile"].append(answered[int(len(answered) * 0.99)] / 1000)
    print(f"hft bench ctp: {args.orders} inserts and cancels a run, {args.runs} runs (medians)")
    for name, values in rows.items():
        print(f"  {name:32} {statistics.median(values):8.1f} µs")
    return 0
