"""K-lines on real data (docs/toolkit.md): the engine's bars of the real IF2101 day against bars
computed here from the raw CSV with pandas; a bar across the lunch break; the last bar of a
session closed at its end with no later tick; a night session across midnight; recovery of bar
closes; and the builder's rules for odd ticks."""

from __future__ import annotations

import datetime as dt
import gzip
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from contracts import messages as m
from contracts.calendar import load_calendar
from contracts.config import PaperConfig
from libshm import FLAG_SETTLEMENT, JournalReader, Tick, book_tick, decode_tick
from services.engine import Bar, Strategy
from services.engine.adapters.paper.broker import PaperBroker
from services.engine.bars import BarBuilder, TradingClock, parse_period
from services.engine.core import Engine
from services.engine.live import DAY_END_NS, end_of_day
from services.engine.port import NEVER
from services.engine.products import specs_for
from services.engine.risk import RiskLimits
from strategies.channel import Channel
from tests.helpers import MARKET, run_hft
from tests.services.engine.test_core import INSTANT, RATES, RISK, recover_and_run, state

DAY = 20210104
CHINA = dt.timezone(dt.timedelta(hours=8))
NS = 1_000_000_000
CALENDAR = load_calendar()


def china_ns(day: str, hhmmss: str) -> int:
    """Nanoseconds since the epoch of a China time, written independently of the code's
    arithmetic (through datetime)."""
    when = dt.datetime.strptime(f"{day} {hhmmss}", "%Y%m%d %H:%M:%S").replace(tzinfo=CHINA)
    return int(when.timestamp()) * NS


class Collects(Strategy):
    """Subscribes to ``params["periods"]`` of its instruments and keeps each bar with the
    engine's time it arrived at."""

    def on_start(self) -> None:
        self.got: list[tuple[Bar, int]] = []
        for instrument in self.instruments:
            for period in self.params["periods"]:
                self.subscribe_bars(instrument, period)

    def on_bar(self, bar: Bar) -> None:
        self.got.append((bar, self.now))


def engine_for(instrument: str, agents: list[tuple[str, Any, dict[str, Any]]],
               journal: list[m.EngineMessage] | None = None,
               paper: PaperConfig = INSTANT) -> Engine:  # fmt: skip
    specs, phases = specs_for([instrument], CALENDAR, RATES)
    out = journal if journal is not None else []
    engine = Engine(specs=specs, gate_config=RISK, adapter=PaperBroker(specs, phases, paper),
                    phases=phases, journal=lambda d, _t: out.append(m.decode(d)),
                    calendar=CALENDAR)  # fmt: skip
    for name, cls, params in agents:
        engine.add_agent(name, cls, [instrument], 1_000_000.0, RiskLimits.from_config(RISK),
                         params)  # fmt: skip
    return engine


def collected(periods: list[str], ticks: list[tuple[int, Tick]], *, instrument: str = "IF2101",
              day: int = DAY, finish: bool = True) -> list[tuple[Bar, int]]:  # fmt: skip
    """The bars an agent subscribed to ``periods`` gets over ``ticks``; ``finish``: then the
    day's end as the live shell runs it for a finished recording (``live.end_of_day``)."""
    engine = engine_for(instrument, [("bars", Collects, {"periods": periods})])
    engine.open_day(day, ticks[0][1].local_time_ns)
    for seq, tick in ticks:
        engine.on_tick(tick, seq)
    if finish:
        last = max(t.local_time_ns for _, t in ticks if not t.flags & FLAG_SETTLEMENT)
        end_of_day(engine, last, NEVER, NS)
    return engine.agents["bars"].strategy.got  # type: ignore[union-attr,no-any-return]


# -- the independent batch computation ---------------------------------------------------------


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    """The real day's rows as the CSV has them, with China time in ns, its settlement records
    (after 15:00:30, carrying the settlement price) left out."""
    frame = pd.read_csv(MARKET / "IF2101_20210104.csv.gz")
    stamp = pd.to_datetime(frame["ActionDay"].astype(str) + " " + frame["UpdateTime"],
                           format="%Y%m%d %H:%M:%S").dt.tz_localize(CHINA)  # fmt: skip
    millis = frame["UpdateMillisec"].astype("int64")
    frame["t"] = stamp.dt.as_unit("ns").astype("int64") + millis * 1_000_000
    return frame[frame["SettlementPrice"] == 0].reset_index(drop=True)


def batch_bars(frame: pd.DataFrame, minutes: int) -> pd.DataFrame:
    """Bars of ``minutes`` of trading time from 09:30 and from 13:00 (IF's two sections): the
    09:29 auction row in the first bar, a row stamped in the second after 11:30 or 15:00 in the
    bar before it; volume and turnover as differences of the cumulative fields (0 before)."""
    t = frame["t"].to_numpy()
    day = "20210104"
    morning, noon = china_ns(day, "09:30:00"), china_ns(day, "11:30:00")
    afternoon, close = china_ns(day, "13:00:00"), china_ns(day, "15:00:00")
    trading = np.where(t < noon + NS, np.clip(t, morning, noon - 1) - morning,
                       120 * 60 * NS + np.clip(t, afternoon, close - 1) - afternoon)  # fmt: skip
    frame = frame.assign(bar=trading // (minutes * 60 * NS))
    groups = frame.groupby("bar", sort=True)
    out = pd.DataFrame({
        "open": groups["LastPrice"].first(), "high": groups["LastPrice"].max(),
        "low": groups["LastPrice"].min(), "close": groups["LastPrice"].last(),
        "cum_volume": groups["Volume"].last(), "cum_turnover": groups["Turnover"].last(),
        "open_interest": groups["OpenInterest"].last(), "ticks": groups.size(),
    })  # fmt: skip
    out["volume"] = out["cum_volume"].diff().fillna(out["cum_volume"]).astype("int64")
    out["turnover"] = out["cum_turnover"].diff().fillna(out["cum_turnover"])
    return out.reset_index()


def as_frame(got: list[tuple[Bar, int]], period: str) -> pd.DataFrame:
    return pd.DataFrame([
        {"start": b.start_ns, "end": b.end_ns, "open": b.open, "high": b.high, "low": b.low,
         "close": b.close, "volume": b.volume, "turnover": b.turnover,
         "open_interest": b.open_interest, "ticks": b.ticks, "at": at, "day": b.trading_day}
        for b, at in got if b.period == period
    ])  # fmt: skip


# -- the real day ------------------------------------------------------------------------------


def test_minute_bars_of_the_real_day_are_the_batch_bars_of_its_csv(
    ticks: list[tuple[int, Tick]], raw: pd.DataFrame
) -> None:
    got = as_frame(collected(["1m"], ticks), "1m")
    want = batch_bars(raw, 1)
    assert len(got) == len(want) == 240  # 09:30-11:30 and 13:00-15:00: no bar in the break
    for column in ("open", "high", "low", "close", "volume", "turnover", "open_interest",
                   "ticks"):  # fmt: skip
        assert got[column].tolist() == want[column].tolist(), column
    # each bar's volume is the difference of the cumulative volume, the auction's in the first
    assert got["volume"].sum() == raw["Volume"].iloc[-1] == 84_288
    assert got["volume"].iloc[0] == raw.loc[raw["t"] < china_ns("20210104", "09:31:00"),
                                            "Volume"].iloc[-1]  # fmt: skip
    assert got["open"].iloc[0] == raw["LastPrice"].iloc[0]  # the 09:29 auction price
    starts = [dt.datetime.fromtimestamp(s / NS, CHINA).strftime("%H:%M") for s in got["start"]]
    assert starts[:2] == ["09:30", "09:31"] and starts[119:121] == ["11:29", "13:00"]
    assert starts[-1] == "14:59" and (got["end"] - got["start"] == 60 * NS).all()
    assert set(got["day"]) == {DAY}


def test_each_bar_is_delivered_at_its_due_time_and_the_lunch_and_the_close_need_no_tick(
    ticks: list[tuple[int, Tick]],
) -> None:
    got = as_frame(collected(["1m", "1d"], ticks), "1m")
    section_ends = {china_ns("20210104", "11:30:00"), china_ns("20210104", "15:00:00")}
    # the recording's local time is its exchange time: the due time is the bar's end, plus the
    # closing snapshot's second where a section ends, plus 200 ms of slack
    want = [end + (NS if end in section_ends else 0) + 200_000_000 for end in got["end"]]
    assert got["at"].tolist() == want
    # and with no tick after them: the morning's last tick (11:29:59.9), then the engine woken
    # at its due times as the live loop's idle path does while its clock runs on to 11:30:05
    morning = [(s, t) for s, t in ticks if t.exchange_time_ns < china_ns("20210104", "11:31:00")]
    engine = engine_for("IF2101", [("bars", Collects, {"periods": ["1m", "1h", "1d"]})])
    engine.open_day(DAY, morning[0][1].local_time_ns)
    for seq, tick in morning:
        engine.on_tick(tick, seq)
    noon = china_ns("20210104", "11:30:00")
    while (due := engine.due_ns) <= noon + 5 * NS:
        engine.wake(due)
    last = engine.agents["bars"].strategy.got  # type: ignore[union-attr]
    closed = [(b.period, b.end_ns, at) for b, at in last if b.end_ns >= noon]
    assert closed == [("1m", noon, noon + NS + 200_000_000), ("1h", noon, noon + NS + 200_000_000)]
    assert [b.period for b, _ in last].count("1d") == 0  # the day is not over at noon


def test_bars_across_the_lunch_break(ticks: list[tuple[int, Tick]], raw: pd.DataFrame) -> None:
    got = collected(["45m", "30m", "1h", "1d"], ticks)

    def hhmm(ns: int) -> str:
        return dt.datetime.fromtimestamp(ns / NS, CHINA).strftime("%H:%M")

    spans = {p: [(hhmm(b.start_ns), hhmm(b.end_ns)) for b, _ in got if b.period == p]
             for p in ("45m", "30m", "1h", "1d")}  # fmt: skip
    assert spans["45m"] == [
        ("09:30", "10:15"),
        ("10:15", "11:00"),
        ("11:00", "13:15"),
        ("13:15", "14:00"),
        ("14:00", "14:45"),
        ("14:45", "15:00"),
    ]
    assert spans["1h"] == [("09:30", "10:30"), ("10:30", "11:30"), ("13:00", "14:00"),
                           ("14:00", "15:00")]  # fmt: skip
    assert len(spans["30m"]) == 8 and spans["1d"] == [("09:30", "15:00")]
    # the bar across lunch: delivered at 13:15 (not at 11:30), its volume what traded in it
    across = next((b, at) for b, at in got if b.period == "45m" and hhmm(b.start_ns) == "11:00")
    assert across[1] == china_ns("20210104", "13:15:00") + 200_000_000
    t = raw["t"]
    before = raw.loc[t < china_ns("20210104", "11:00:00"), "Volume"].iloc[-1]
    upto = raw.loc[t < china_ns("20210104", "13:15:00"), "Volume"].iloc[-1]
    assert across[0].volume == upto - before
    assert across[0].ticks == ((t >= china_ns("20210104", "11:00:00"))
                               & (t < china_ns("20210104", "13:15:00"))).sum()  # fmt: skip
    assert pd.DataFrame(batch_bars(raw, 45))["volume"].tolist() == [
        b.volume for b, _ in got if b.period == "45m"]  # fmt: skip


def test_the_roll_closes_the_bars_of_a_recording_cut_short(
    ticks: list[tuple[int, Tick]],
) -> None:
    engine = engine_for("IF2101", [("bars", Collects, {"periods": ["1m", "1d"]})])
    part = ticks[:3000]  # the recording stops mid-morning: no due time is reached
    engine.open_day(DAY, part[0][1].local_time_ns)
    for seq, tick in part:
        engine.on_tick(tick, seq)
    got = engine.agents["bars"].strategy.got  # type: ignore[union-attr]
    before = len(got)
    engine.roll_day(part[-1][1].local_time_ns, 20210105, {"IF2101": 5000.0})
    late = got[before:]
    assert [b.period for b, _ in late] == ["1m", "1d"]
    assert late[1][0].volume == part[-1][1].volume and late[1][0].ticks == len(part)


# -- a night session across midnight -------------------------------------------------------------


def night_rows(tmp_path: Path) -> Path:
    """A CTP CSV of SHFE cu1909 for trading day 2019-09-17 (a Tuesday), built to the documented
    facts of real feeds (data/market/README.md) from the 200 real rows of
    ``cu1909_20190916.csv.gz``: their prices, volumes and depth unchanged, their times moved to
    the night session held on Monday evening, 23:30:33 to 00:29, across midnight (TradingDay the
    next trading day, ActionDay the calendar day, as SHFE sends them), and then the same rows
    at their own times in the day session, 14:01 to 15:00, their cumulative volume and turnover
    carried on from the night's."""
    with gzip.open(MARKET / "cu1909_20190916.csv.gz", "rt", encoding="ascii") as f:
        header, *rows = f.read().splitlines()
    columns = header.split(",")
    at = {name: columns.index(name) for name in ("TradingDay", "ActionDay", "UpdateTime",
                                                 "Volume", "Turnover")}  # fmt: skip
    first_volume = int(rows[0].split(",")[at["Volume"]])
    first_turnover = float(rows[0].split(",")[at["Turnover"]])
    out = [header]
    night_volume = night_turnover = 0.0
    for session in ("night", "day"):
        for row in rows:
            cells = row.split(",")
            when = dt.datetime.strptime("20190916 " + cells[at["UpdateTime"]], "%Y%m%d %H:%M:%S")
            if session == "night":
                when += dt.timedelta(hours=9, minutes=29)
            else:
                when += dt.timedelta(days=1)
            volume = int(cells[at["Volume"]]) - first_volume + 10
            turnover = float(cells[at["Turnover"]]) - first_turnover + 2_000_000.0
            if session == "day":
                volume += int(night_volume)
                turnover += night_turnover
            cells[at["TradingDay"]] = "20190917"
            cells[at["ActionDay"]] = when.strftime("%Y%m%d")
            cells[at["UpdateTime"]] = when.strftime("%H:%M:%S")
            cells[at["Volume"]] = str(volume)
            cells[at["Turnover"]] = repr(turnover)
            out.append(",".join(cells))
        night_volume, night_turnover = volume, turnover
    path = tmp_path / "cu1909_20190917.csv"
    path.write_text("\n".join(out) + "\n", encoding="ascii")
    return path


def test_night_bars_across_midnight_belong_to_the_next_trading_day(tmp_path: Path) -> None:
    done = run_hft("import", "-f", "ctp-csv", str(night_rows(tmp_path)), "-o",
                   str(tmp_path / "rec"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    reader = JournalReader(tmp_path / "rec" / "20190917")
    ticks = [(f.seq, decode_tick(f.payload)) for f in iter(reader.read, None)]
    reader.close()
    assert len(ticks) == 400
    got = collected(["1h", "1d"], ticks, instrument="cu1909", day=20190917)
    hours = [(b.start_ns, b.end_ns, b.volume, b.ticks, b.trading_day, at) for b, at in got
             if b.period == "1h"]  # fmt: skip
    night = [h for h in hours if h[0] < china_ns("20190917", "09:00:00")]
    # 23:00-00:00 on Monday and 00:00-01:00 on Tuesday, both of trading day 20190917
    assert [(h[0], h[1]) for h in night] == [
        (china_ns("20190916", "23:00:00"), china_ns("20190917", "00:00:00")),
        (china_ns("20190917", "00:00:00"), china_ns("20190917", "01:00:00")),
    ]
    assert {h[4] for h in hours} == {20190917}
    stamps = [t.exchange_time_ns for _, t in ticks]
    midnight = china_ns("20190917", "00:00:00")
    assert night[0][3] == sum(s < midnight for s in stamps)
    assert night[0][3] + night[1][3] == 200
    # the night's last bar closes at the session's end (01:00) with no tick, before the day's
    assert night[1][5] == china_ns("20190917", "01:00:01") + 200_000_000
    volumes = [t.volume for _, t in ticks]
    cut = sum(s < midnight for s in stamps)
    assert night[0][2] == volumes[cut - 1] and night[1][2] == volumes[199] - volumes[cut - 1]
    # the day session's hours count trading time from 09:00 across its breaks (09:00-10:00,
    # 10:00-11:15, 11:15-14:15, 14:15-15:00): its rows (14:01 to 15:00) are in the last two
    day = [(h[0], h[1]) for h in hours if h[0] >= china_ns("20190917", "09:00:00")]
    assert day == [
        (china_ns("20190917", "11:15:00"), china_ns("20190917", "14:15:00")),
        (china_ns("20190917", "14:15:00"), china_ns("20190917", "15:00:00")),
    ]
    assert sum(h[2] for h in hours) == volumes[-1]
    daily = [b for b, _ in got if b.period == "1d"]
    assert len(daily) == 1 and daily[0].ticks == 400 and daily[0].volume == volumes[-1]
    assert daily[0].start_ns == china_ns("20190916", "21:00:00")
    assert daily[0].end_ns == china_ns("20190917", "15:00:00")


# -- recovery ----------------------------------------------------------------------------------


def test_recovery_from_any_point_closes_the_same_bars_and_sends_nothing_twice(
    ticks: list[tuple[int, Tick]],
) -> None:
    latency = PaperConfig(entry_latency_us=1000, cancel_latency_us=1000, ack_latency_us=500)
    agents = [("channel", Channel, {"period": "1m", "lookback": 3, "size": 1})]
    day = ticks[:9000]
    full: list[m.EngineMessage] = []
    engine = engine_for("IF2101", agents, full, latency)
    engine.open_day(DAY, day[0][1].local_time_ns)
    for seq, tick in day:
        engine.on_tick(tick, seq)
    sent = [x for x in full if isinstance(x, m.OrderRequested)]
    wakes = {x.time_ns for x in full if isinstance(x, m.Wake)}
    # the channel traded from bars closed by the engine's wake-ups (at xx:xx:00.2, no tick then)
    assert len(sent) > 5 and {x.time_ns for x in sent} <= wakes
    for seed in range(6):
        cut = random.Random(seed).randrange(1, len(full))
        journal = full[:cut]
        again = engine_for("IF2101", agents, journal, latency)
        recover_and_run(again, journal, day)
        assert journal == full
        assert state(again) == state(engine)


# -- subscriptions -----------------------------------------------------------------------------


@pytest.mark.parametrize(("period", "label", "seconds"), [
    ("30s", "30s", 30), ("60s", "1m", 60), ("1m", "1m", 60), ("90m", "90m", 5400),
    ("120m", "2h", 7200), ("1h", "1h", 3600), ("1d", "1d", 0), ("86400s", "24h", 86400),
])  # fmt: skip
def test_periods(period: str, label: str, seconds: int) -> None:
    assert parse_period(period) == (label, seconds)


@pytest.mark.parametrize("period", ["", "1", "0m", "1.5m", "1w", "2d", "25h", "m1", " 1m", 60])
def test_a_period_that_is_not_one_stops_the_agent_with_one_line(period: object) -> None:
    class Bad(Strategy):
        def on_start(self) -> None:
            self.subscribe_bars("IF2101", period)  # type: ignore[arg-type]

    journal: list[m.EngineMessage] = []
    engine = engine_for("IF2101", [("bad", Bad, {})], journal)
    engine.open_day(DAY, 0)
    stopped = [x for x in journal if isinstance(x, m.AgentStopped)]
    assert len(stopped) == 1 and f"ValueError: bar period {period!r}" in stopped[0].error
    assert "1m" in stopped[0].error or "1d" in stopped[0].error


def test_bars_of_an_instrument_the_engine_does_not_trade_are_refused() -> None:
    class Other(Strategy):
        def on_start(self) -> None:
            self.subscribe_bars("rb2105", "1m")

    journal: list[m.EngineMessage] = []
    engine = engine_for("IF2101", [("other", Other, {})], journal)
    engine.open_day(DAY, 0)
    (stopped,) = [x for x in journal if isinstance(x, m.AgentStopped)]
    assert "rb2105 is not traded by this engine; its instruments: IF2101" in stopped.error


def test_an_engine_without_subscriptions_journals_no_wake_for_bars(
    ticks: list[tuple[int, Tick]],
) -> None:
    journal: list[m.EngineMessage] = []
    engine = engine_for("IF2101", [("none", Strategy, {})], journal)
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    for seq, tick in ticks[:2000]:
        engine.on_tick(tick, seq)
    assert engine.due_ns == NEVER and not any(isinstance(x, m.Wake) for x in journal)


# -- the builder's rules for odd ticks ---------------------------------------------------------


def _tick(at: str, volume: int, price: float = 5000.0, *, local: int = 0, flags: int = 0,
          day: str = "20210104") -> Tick:  # fmt: skip
    t = china_ns(day, at[:8]) + int(at[9:] or 0) * 1_000_000 if "." in at else china_ns(day, at)
    tick = book_tick("IF2101", "CFFEX", 20210104, t, last=price, bid=price - 0.2,
                     ask=price + 0.2, upper=6000.0, lower=4000.0)  # fmt: skip
    return tick._replace(volume=volume, turnover=volume * price * 300.0, open_interest=100.0,
                         local_time_ns=t + local, flags=flags)  # fmt: skip


def builder(period: str = "1m") -> BarBuilder:
    product = CALENDAR.product("IF2101")
    assert product is not None
    label, seconds = parse_period(period)
    clock = TradingClock(CALENDAR.day_sections(product, 20210104), seconds * NS)
    return BarBuilder("IF2101", label, clock, 20210104)


def test_a_late_or_out_of_order_tick_joins_the_open_bar_and_a_bar_never_reopens() -> None:
    b = builder()
    assert b.on_tick(_tick("09:30:10", 10, 5000.0)) is None
    assert b.on_tick(_tick("09:30:20", 20, 5001.0)) is None
    assert b.on_tick(_tick("09:30:05", 25, 4999.0)) is None  # out of order: the open bar
    closed = b.close_due(china_ns("20210104", "09:31:00") + 200_000_000)
    assert closed is not None and (closed.low, closed.volume, closed.ticks) == (4999.0, 25, 3)
    # late: stamped 09:30:59 after its bar closed by the clock: the next bar, not a second 09:30
    assert b.on_tick(_tick("09:30:59", 30, 5002.0)) is None
    assert b.on_tick(_tick("09:32:01", 40, 5003.0)) is not None
    later = b.history[-1]
    assert later.start_ns == china_ns("20210104", "09:31:00") and later.volume == 5
    assert [x.start_ns for x in b.history] == sorted({x.start_ns for x in b.history})


def test_a_cumulative_volume_that_goes_back_adds_nothing_and_latency_moves_the_due_time() -> None:
    b = builder()
    b.on_tick(_tick("09:30:10", 100, local=300_000_000))
    b.on_tick(_tick("09:30:20", 90, local=300_000_000))  # a bad tick's volume
    b.on_tick(_tick("09:30:30", 120, local=300_000_000))
    assert b.due_ns == china_ns("20210104", "09:31:00") + 300_000_000 + 200_000_000
    bar = b.close_due(b.due_ns)
    assert bar is not None and bar.volume == 120
    b.on_tick(_tick("11:29:59.900", 150, local=50_000_000))
    # a section's end: the closing snapshot's second first, then the latency and the slack
    assert b.due_ns == china_ns("20210104", "11:30:01") + 50_000_000 + 200_000_000
    b.on_tick(_tick("11:30:00.400", 160, local=50_000_000))  # the closing snapshot
    bar = b.close_due(b.due_ns)
    assert bar is not None and (bar.ticks, bar.volume) == (2, 40)


def test_the_auction_joins_the_first_bar_and_a_tick_after_the_close_the_last() -> None:
    clock = builder().clock
    first = clock.key_of(china_ns("20210104", "09:29:00"))
    assert first == 0 == clock.key_of(china_ns("20210104", "09:30:00"))
    assert clock.key_of(china_ns("20210104", "11:30:00") + 999_999_999) == 119
    assert clock.key_of(china_ns("20210104", "11:30:01")) == 120  # a stray tick in the break
    assert clock.key_of(china_ns("20210104", "15:00:00") + 400_000_000) == 239
    assert clock.key_of(china_ns("20210104", "16:00:00")) == 239 == clock.total - 1
    assert clock.span(119) == (china_ns("20210104", "11:29:00"), china_ns("20210104", "11:30:00"),
                               True)  # fmt: skip


def test_a_settlement_record_joins_no_bar(ticks: list[tuple[int, Tick]]) -> None:
    settlements = [(s, t) for s, t in ticks if t.flags & FLAG_SETTLEMENT]
    assert settlements  # the real day carries its settlement price after the close
    got = collected(["1d"], ticks)
    assert got[0][0].ticks == len(ticks) - len(settlements)
    assert DAY_END_NS == NS


class Late(Collects):
    """Subscribes on its ``params["at"]``-th tick, not in ``on_start``; a second agent on the
    same subscription shares the builder."""

    def on_start(self) -> None:
        self.got = []
        self.seen = 0

    def on_tick(self, tick: Tick) -> None:
        self.seen += 1
        if self.seen == self.params["at"]:
            for period in self.params["periods"]:
                self.subscribe_bars(tick.instrument, period)


def test_a_subscription_in_the_middle_of_the_day_counts_volume_from_there(
    ticks: list[tuple[int, Tick]],
) -> None:
    agents: list[tuple[str, Any, dict[str, Any]]] = [
        ("late", Late, {"at": 5000, "periods": ["1d", "1m"]}),
              ("early", Collects, {"periods": ["1m"]})]  # fmt: skip
    engine = engine_for("IF2101", agents)
    engine.open_day(DAY, ticks[0][1].local_time_ns)
    for seq, tick in ticks:
        engine.on_tick(tick, seq)
    end_of_day(engine, ticks[-3][1].local_time_ns, NEVER, NS)
    late = engine.agents["late"].strategy.got  # type: ignore[union-attr]
    early = engine.agents["early"].strategy.got  # type: ignore[union-attr]
    market = [t for _, t in ticks if not t.flags & FLAG_SETTLEMENT]
    (daily,) = [b for b, _ in late if b.period == "1d"]
    # from the 5,000th tick on: its volume is what traded after the 4,999th (the subscription
    # is made inside the 5,000th tick's on_tick, after the bars took that tick)
    assert daily.volume == market[-1].volume - market[4999].volume
    assert daily.ticks == len(market) - 5000
    # the minute bars existed already (the early agent's): the late agent shares them, whole,
    # from the first that closes after it subscribed
    minutes = [b for b, _ in late if b.period == "1m"]
    assert len(minutes) > 150 and minutes == [b for b, _ in early][-len(minutes) :]
