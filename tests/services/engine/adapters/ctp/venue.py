"""A CTP front and exchange that outlive the engine's process, for the SIGKILL test: it stands in
for openctp-ctp's ``TraderApi`` (the session's requests, real structs) and answers from a thread
of its own, as CTP's does, with openctp-ctp's own return structs. Everything it returns on the
private flow is first written to ``ROOT/flow.jsonl``, the recorded sequence of callbacks; a new
session (after a crash) resumes the flow by replaying that sequence whole, and the start-up
queries are answered from it. ``ROOT/inserts.jsonl`` keeps each order insert it took.

The exchange fills an order whose ref is even at once and in full at its limit price; one whose
ref is odd rests until cancelled. A cancel of a filled order is refused (CTP error 26). Each login
is written to ``ROOT/logins.jsonl`` (user and password: a test's venue). A ``carried`` record in
the flow is a position held since an earlier day (not a return: never delivered)."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openctp_ctp import tdapi

from tests.services.engine.adapters.ctp.front import rsp_info, struct

FRONT_ID = 1


class Venue:
    """One connection to the venue (the session makes one per connect)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.flow = root / "flow.jsonl"
        self.inserts = root / "inserts.jsonl"
        self.spi: Any = None
        self._work: queue.SimpleQueue[Callable[[], object] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="venue", daemon=True)
        self._lock = threading.Lock()
        counter = root / "session"
        self.session_id = int(counter.read_text()) + 1 if counter.exists() else 9001
        counter.write_text(str(self.session_id))

    # -- the TraderApi the session calls -----------------------------------------------------

    def RegisterSpi(self, spi: Any) -> None:
        self.spi = spi

    def RegisterFront(self, front: str) -> None:
        pass

    def SubscribePrivateTopic(self, how: int) -> None:
        assert how == tdapi.THOST_TERT_RESUME

    def SubscribePublicTopic(self, how: int) -> None:
        pass

    def Init(self) -> None:
        self._thread.start()
        self._call("OnFrontConnected")

    def Release(self) -> None:
        self.spi = None
        self._work.put(None)

    def ReqAuthenticate(self, fields: Any, request_id: int) -> int:
        self._call("OnRspAuthenticate", None, rsp_info(), request_id, True)
        return 0

    def ReqUserLogin(self, fields: Any, request_id: int) -> int:
        with (self.root / "logins.jsonl").open("a") as out:  # a test's venue: who logged in
            out.write(json.dumps({"user": fields.UserID, "password": fields.Password}) + "\n")
        login = struct("CThostFtdcRspUserLoginField", FrontID=FRONT_ID, SessionID=self.session_id,
                       MaxOrderRef="1", TradingDay="20210104")  # fmt: skip
        self._call("OnRspUserLogin", login, rsp_info(), request_id, True)
        for record in self._records():  # THOST_TERT_RESUME: the private flow again
            self._deliver(record)
        return 0

    def ReqSettlementInfoConfirm(self, fields: Any, request_id: int) -> int:
        self._call("OnRspSettlementInfoConfirm", None, rsp_info(), request_id, True)
        return 0

    def __getattr__(self, method: str) -> Callable[[Any, int], int]:
        if not method.startswith("ReqQry"):
            raise AttributeError(method)
        callback = "OnRsp" + method[3:]

        def query(fields: Any, request_id: int) -> int:
            rows = self._rows(method)
            if not rows:
                self._call(callback, None, None, request_id, True)
            for i, (name, values) in enumerate(rows):
                self._call(callback, struct(name, **values), None, request_id, i == len(rows) - 1)
            return 0

        return query

    def ReqOrderInsert(self, fields: Any, request_id: int) -> int:
        ref = int(fields.OrderRef)
        with self._lock:
            n = sum(1 for _ in self._lines(self.inserts)) + 1
            order = {
                "FrontID": FRONT_ID, "SessionID": self.session_id,
                "OrderRef": f"{ref:>12}", "ExchangeID": fields.ExchangeID,
                "OrderSysID": f"{n:>12}", "OrderSubmitStatus": tdapi.THOST_FTDC_OSS_Accepted,
                "OrderStatus": tdapi.THOST_FTDC_OST_NoTradeQueueing, "VolumeTraded": 0,
                "StatusMsg": "queueing", "InsertDate": "20210104", "InsertTime": "09:30:00",
                "InstrumentID": fields.InstrumentID, "Direction": fields.Direction,
                "CombOffsetFlag": fields.CombOffsetFlag, "LimitPrice": fields.LimitPrice,
                "VolumeTotalOriginal": fields.VolumeTotalOriginal,
            }  # fmt: skip
            records = [("order", dict(order))]
            if ref % 2 == 0:
                records.append(("trade", {
                    "ExchangeID": fields.ExchangeID, "TradeID": f"{n:>12}",
                    "OrderSysID": f"{n:>12}", "OrderRef": f"{ref:>12}",
                    "Price": fields.LimitPrice, "Volume": fields.VolumeTotalOriginal,
                    "TradeDate": "20210104", "TradeTime": "09:30:00",
                    "InstrumentID": fields.InstrumentID, "Direction": fields.Direction,
                    "OffsetFlag": fields.CombOffsetFlag,
                }))  # fmt: skip
                records.append(("order", {**order, "VolumeTraded": order["VolumeTotalOriginal"],
                                          "OrderStatus": tdapi.THOST_FTDC_OST_AllTraded,
                                          "StatusMsg": "filled"}))  # fmt: skip
            with self.inserts.open("a") as out:
                out.write(json.dumps({"session": self.session_id, "ref": ref}) + "\n")
            self._record(records)
        for record in records:
            self._deliver(record)
        return 0

    def ReqOrderAction(self, fields: Any, request_id: int) -> int:
        with self._lock:
            orders = self._orders()
            key = (fields.FrontID, fields.SessionID, fields.OrderRef.strip())
            sys_id = fields.OrderSysID.strip()

            def named(o: dict[str, Any]) -> bool:
                by_ref = (o["FrontID"], o["SessionID"], o["OrderRef"].strip()) == key
                return by_ref or (bool(sys_id) and o["OrderSysID"].strip() == sys_id)

            found = next((o for o in orders.values() if named(o)), None)
            if found is None or found["OrderStatus"] != tdapi.THOST_FTDC_OST_NoTradeQueueing:
                action = struct(
                    "CThostFtdcOrderActionField", FrontID=fields.FrontID,
                    SessionID=fields.SessionID, OrderRef=fields.OrderRef,
                    ExchangeID=fields.ExchangeID, OrderSysID=fields.OrderSysID,
                )  # fmt: skip
                self._call("OnErrRtnOrderAction", action,
                           rsp_info(26, "CTP:报单已全成交或已撤销，不能再撤"))  # fmt: skip
                return 0
            record = ("order", {**found, "OrderStatus": tdapi.THOST_FTDC_OST_Canceled,
                                "StatusMsg": "cancelled"})  # fmt: skip
            self._record([record])
        self._deliver(record)
        return 0

    # -- the venue's books -----------------------------------------------------------------------

    @staticmethod
    def _lines(path: Path) -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    def _records(self) -> list[tuple[str, dict[str, Any]]]:
        out = []
        for line in self._lines(self.flow):
            for kind, values in json.loads(line):
                out.append((kind, values))
        return out

    def _record(self, records: list[tuple[str, dict[str, Any]]]) -> None:
        """One line, one write: a crash keeps all of an insert's returns or none."""
        with self.flow.open("a") as out:
            out.write(json.dumps(records) + "\n")

    def _orders(self) -> dict[str, dict[str, Any]]:
        return {v["OrderSysID"]: v for kind, v in self._records() if kind == "order"}

    def _rows(self, method: str) -> list[tuple[str, dict[str, Any]]]:
        records = self._records()
        if method == "ReqQryOrder":
            return [("CThostFtdcOrderField", v) for v in self._orders().values()]
        if method == "ReqQryTrade":
            return [("CThostFtdcTradeField", v) for kind, v in records if kind == "trade"]
        if method == "ReqQryInvestorPosition":
            net: dict[tuple[str, str], int] = {}
            held: dict[tuple[str, str], int] = {}  # carried from an earlier day
            for kind, v in records:
                if kind == "carried":
                    key = (v["InstrumentID"], v["PosiDirection"])
                    held[key] = held.get(key, 0) + v["Position"]
                if kind != "trade":
                    continue
                buy = v["Direction"] == tdapi.THOST_FTDC_D_Buy
                opens = v["OffsetFlag"] == tdapi.THOST_FTDC_OF_Open
                side = ("2" if buy else "3") if opens else ("3" if buy else "2")
                key = (v["InstrumentID"], side)
                net[key] = net.get(key, 0) + (v["Volume"] if opens else -v["Volume"])
            return [("CThostFtdcInvestorPositionField",
                     {"InstrumentID": i, "PosiDirection": side,
                      "Position": net.get((i, side), 0) + held.get((i, side), 0),
                      "TodayPosition": net.get((i, side), 0),
                      "YdPosition": held.get((i, side), 0)})
                    for i, side in sorted(set(net) | set(held))
                    if net.get((i, side), 0) + held.get((i, side), 0)]  # fmt: skip
        return []

    # -- CTP's thread ----------------------------------------------------------------------------

    def _deliver(self, record: tuple[str, dict[str, Any]]) -> None:
        kind, values = record
        if kind == "order":
            self._call("OnRtnOrder", struct("CThostFtdcOrderField", **values))
        elif kind == "trade":
            self._call("OnRtnTrade", struct("CThostFtdcTradeField", **values))

    def _call(self, callback: str, *args: Any) -> None:
        self._work.put(lambda: getattr(self.spi, callback)(*args) if self.spi else None)

    def _run(self) -> None:
        while (work := self._work.get()) is not None:
            work()
