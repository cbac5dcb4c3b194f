"""Each streaming indicator against a batch computation of its definition written here with numpy
and pandas, on the bundled real recordings (the IF2101 day's 27,953 ticks and its minute bars;
cu1909's five levels of depth): the same values to 1e-9, NaN in the same places."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from libshm import FLAG_SETTLEMENT, JournalReader, Tick, decode_tick
from services.engine.indicators import (
    ATR,
    EMA,
    MACD,
    OFI,
    RSI,
    SMA,
    TWAP,
    VWAP,
    Amihud,
    Bollinger,
    Donchian,
    KyleLambda,
    RealisedVol,
    RollSpread,
    StdDev,
    book_imbalance,
    microprice,
    mid,
    spread,
)
from tests.helpers import import_market

MULTIPLIER = 300  # IF
NS = 1_000_000_000


def same(streamed: Any, batch: Any) -> None:
    """The streamed values are the batch ones to 1e-9 (relative, or absolute near 0), NaN where
    they are NaN, and not all NaN."""
    got, want = np.asarray(streamed, dtype=float), np.asarray(batch, dtype=float)
    assert got.shape == want.shape
    assert np.isfinite(want).sum() > 10
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9, equal_nan=True)


@pytest.fixture(scope="module")
def rows(ticks: list[tuple[int, Tick]]) -> list[Tick]:
    """The real day's market ticks (its settlement record left out)."""
    return [t for _, t in ticks if not t.flags & FLAG_SETTLEMENT]


@pytest.fixture(scope="module")
def day(rows: list[Tick]) -> pd.DataFrame:
    """The same ticks as columns."""
    fields = ("exchange_time_ns", "last", "bid_price1", "ask_price1", "bid_volume1",
              "ask_volume1", "volume", "turnover")  # fmt: skip
    return pd.DataFrame({f: [getattr(t, f) for t in rows] for f in fields})


@pytest.fixture(scope="module")
def bars(day: pd.DataFrame) -> pd.DataFrame:
    """Minute bars of the day, by exchange-time minute, with pandas."""
    minute = day["exchange_time_ns"] // (60 * NS)
    g = day.groupby(minute, sort=True)
    volume = g["volume"].last()
    turnover = g["turnover"].last()
    return pd.DataFrame({
        "high": g["last"].max(), "low": g["last"].min(), "close": g["last"].last(),
        "turnover": turnover.diff().fillna(turnover), "volume": volume,
    }).reset_index(drop=True)  # fmt: skip


def stream(indicator: Any, values: Any, attribute: str = "value") -> list[float]:
    out = []
    for x in values:
        if isinstance(x, tuple) and not isinstance(x, Tick):
            indicator.update(*x)
        else:
            indicator.update(x)
        out.append(getattr(indicator, attribute))
    return out


def wilder(values: np.ndarray, n: int) -> np.ndarray:
    """Wilder's smoothing: NaN for the first n − 1, the mean of the first n, then an EMA of
    alpha 1/n (pandas' recursive ewm seeded with that mean)."""
    out = np.full(len(values), np.nan)
    seeded = pd.Series(np.concatenate([[values[:n].mean()], values[n:]]))
    out[n - 1 :] = seeded.ewm(alpha=1 / n, adjust=False).mean().to_numpy()
    return out


# -- price indicators ----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 20, 600])
def test_sma(day: pd.DataFrame, n: int) -> None:
    same(stream(SMA(n), day["last"]), day["last"].rolling(n).mean())


@pytest.mark.parametrize("n", [1, 12, 500])
def test_ema(day: pd.DataFrame, n: int) -> None:
    same(stream(EMA(n), day["last"]), day["last"].ewm(span=n, adjust=False).mean())


@pytest.mark.parametrize(("n", "ddof"), [(20, 1), (20, 0), (300, 1), (2, 0)])
def test_standard_deviation(day: pd.DataFrame, n: int, ddof: int) -> None:
    x = day["last"].to_numpy()
    want = np.full(len(x), np.nan)
    want[n - 1 :] = sliding_window_view(x, n).std(axis=1, ddof=ddof)  # two-pass, per window
    got = stream(StdDev(n, ddof), x)
    same(got, want)
    flat = want[n - 1 :] == 0  # windows of one repeated price are exactly 0, as the batch's
    assert all(v == 0.0 for v in np.asarray(got)[n - 1 :][flat])
    assert flat.any() or n > 2


@pytest.mark.parametrize("n", [5, 14])
def test_atr(bars: pd.DataFrame, n: int) -> None:
    high, low, close = (bars[c].to_numpy() for c in ("high", "low", "close"))
    previous = np.concatenate([[np.nan], close[:-1]])
    tr = np.nanmax(np.vstack([high - low, np.abs(high - previous), np.abs(low - previous)]),
                   axis=0)  # fmt: skip
    assert tr[0] == high[0] - low[0]
    same(stream(ATR(n), zip(high, low, close, strict=True)), wilder(tr, n))


@pytest.mark.parametrize("n", [6, 14])
def test_rsi_on_ticks_and_on_bars(day: pd.DataFrame, bars: pd.DataFrame, n: int) -> None:
    for x in (day["last"].to_numpy(), bars["close"].to_numpy()):
        change = np.diff(x)
        gain = wilder(np.where(change > 0, change, 0.0), n)
        loss = wilder(np.where(change < 0, -change, 0.0), n)
        with np.errstate(invalid="ignore", divide="ignore"):
            rsi = np.where(gain + loss > 0, 100 * gain / (gain + loss), 50.0)
        rsi[np.isnan(gain)] = np.nan
        same(stream(RSI(n), x), np.concatenate([[np.nan], rsi]))


def test_macd(bars: pd.DataFrame, day: pd.DataFrame) -> None:
    for x in (bars["close"], day["last"]):
        line = x.ewm(span=12, adjust=False).mean() - x.ewm(span=26, adjust=False).mean()
        signal = line.ewm(span=9, adjust=False).mean()
        for attribute, want in (("macd", line), ("signal", signal), ("histogram", line - signal)):
            same(stream(MACD(12, 26, 9), x, attribute), want)


def test_bollinger(day: pd.DataFrame) -> None:
    x = day["last"]
    middle, width = x.rolling(20).mean(), 2.5 * x.rolling(20).std(ddof=0)
    for attribute, want in (("middle", middle), ("upper", middle + width),
                            ("lower", middle - width)):  # fmt: skip
        same(stream(Bollinger(20, 2.5), x, attribute), want)


@pytest.mark.parametrize("n", [1, 20])
def test_donchian(bars: pd.DataFrame, n: int) -> None:
    pairs = list(zip(bars["high"], bars["low"], strict=True))
    upper, lower = bars["high"].rolling(n).max(), bars["low"].rolling(n).min()
    same(stream(Donchian(n), pairs, "upper"), upper)
    same(stream(Donchian(n), pairs, "lower"), lower)
    same(stream(Donchian(n), pairs, "middle"), (upper + lower) / 2)


# -- the book ------------------------------------------------------------------------------------


def test_spread_mid_and_microprice(day: pd.DataFrame, rows: list[Tick]) -> None:
    ticks = rows
    bid, ask = day["bid_price1"], day["ask_price1"]
    bv, av = day["bid_volume1"].astype(float), day["ask_volume1"].astype(float)
    same([spread(t) for t in ticks], ask - bid)
    same([mid(t) for t in ticks], (ask + bid) / 2)
    same([microprice(t) for t in ticks], (bid * av + ask * bv) / (bv + av))


@pytest.fixture(scope="module")
def depth(tmp_path_factory: pytest.TempPathFactory) -> list[Tick]:
    """cu1909's 200 real ticks with five levels of depth."""
    out = import_market(tmp_path_factory.mktemp("cu"), "cu1909_20190916.csv.gz")
    reader = JournalReader(Path(out) / "20190916")
    try:
        return [decode_tick(f.payload) for f in iter(reader.read, None)]
    finally:
        reader.close()


@pytest.mark.parametrize("levels", [1, 2, 3, 5])
def test_book_imbalance_over_levels(depth: list[Tick], levels: int) -> None:
    bids = np.array([[getattr(t, f"bid_volume{i}") for i in range(1, levels + 1)]
                     for t in depth], dtype=float).sum(axis=1)  # fmt: skip
    asks = np.array([[getattr(t, f"ask_volume{i}") for i in range(1, levels + 1)]
                     for t in depth], dtype=float).sum(axis=1)  # fmt: skip
    same([book_imbalance(t, levels) for t in depth], (bids - asks) / (bids + asks))
    if levels > 1:  # the deeper levels change it: not level 1 under another name
        assert [book_imbalance(t, levels) for t in depth] != [book_imbalance(t) for t in depth]


@pytest.mark.parametrize("n", [1, 50])
def test_order_flow_imbalance(
    day: pd.DataFrame, rows: list[Tick], depth: list[Tick], n: int
) -> None:
    frames = [(rows, day)]
    frames.append((depth, pd.DataFrame({f: [getattr(t, f) for t in depth] for f in (
        "bid_price1", "ask_price1", "bid_volume1", "ask_volume1")})))  # fmt: skip
    for ticks, f in frames:
        pb, pa = f["bid_price1"].to_numpy(), f["ask_price1"].to_numpy()
        qb, qa = f["bid_volume1"].to_numpy(float), f["ask_volume1"].to_numpy(float)
        pb0, pa0, qb0, qa0 = (np.roll(a, 1) for a in (pb, pa, qb, qa))
        e = (np.where(pb >= pb0, qb, 0) - np.where(pb <= pb0, qb0, 0)
             - np.where(pa <= pa0, qa, 0) + np.where(pa >= pa0, qa0, 0))  # fmt: skip
        e[0] = np.nan  # the first tick is the reference only
        want = pd.Series(e).rolling(n).sum()
        want.iloc[0] = np.nan
        same(stream(OFI(n), ticks), want)


# -- trading -------------------------------------------------------------------------------------


def _traded(f: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    volume = np.maximum.accumulate(f["volume"].to_numpy())
    turnover = np.maximum.accumulate(f["turnover"].to_numpy())
    dv = np.diff(volume, prepend=np.nan)
    return dv, np.diff(turnover, prepend=np.nan)


@pytest.mark.parametrize("seconds", [5, 60, 900])
def test_vwap_over_a_time_window(day: pd.DataFrame, rows: list[Tick], seconds: int) -> None:
    dv, dturn = _traded(day)
    index = pd.to_datetime(day["exchange_time_ns"])
    volume = pd.Series(dv, index=index).rolling(f"{seconds}s").sum()  # (t − w, t]
    money = pd.Series(dturn, index=index).rolling(f"{seconds}s").sum()
    want = np.where(volume > 0, money / (volume * MULTIPLIER), np.nan)
    same(stream(VWAP(seconds * NS, MULTIPLIER), rows), want)


@pytest.mark.parametrize("seconds", [1, 30, 600])
def test_twap_over_a_time_window(day: pd.DataFrame, seconds: int) -> None:
    t = (day["exchange_time_ns"] - day["exchange_time_ns"].iloc[0]).to_numpy(float) / NS
    price = ((day["bid_price1"] + day["ask_price1"]) / 2).to_numpy()
    area = np.concatenate([[0.0], np.cumsum(price[:-1] * np.diff(t))])  # ∫ from the start
    begin = np.maximum(t - seconds, 0.0)
    covered = t - begin
    with np.errstate(invalid="ignore", divide="ignore"):
        want = np.where(covered > 0, (area - np.interp(begin, t, area)) / covered, price)
    pairs = list(zip(day["exchange_time_ns"], price, strict=True))
    same(stream(TWAP(seconds * NS), pairs), want)


@pytest.mark.parametrize("n", [10, 240])
def test_realised_volatility(day: pd.DataFrame, n: int) -> None:
    r = np.log(day["last"]).diff()
    same(stream(RealisedVol(n), day["last"]), np.sqrt((r * r).rolling(n).sum()))


@pytest.mark.parametrize("n", [100, 1000])
def test_kyle_lambda(day: pd.DataFrame, rows: list[Tick], n: int) -> None:
    dv, dturn = _traded(day)
    middle = ((day["bid_price1"] + day["ask_price1"]) / 2).to_numpy()
    before = np.concatenate([[np.nan], middle[:-1]])
    with np.errstate(invalid="ignore", divide="ignore"):
        price = np.where(dv > 0, dturn / (dv * MULTIPLIER), np.nan)
    # the tick test: the last trade price different from this one, from the runs of equal prices
    trades = pd.Series(price).dropna()
    run = (trades != trades.shift()).cumsum()
    run_price = trades.groupby(run).first()
    by_trade = pd.Series(run.map(run_price.shift()).to_numpy(), index=trades.index)
    reference = by_trade.reindex(range(len(price))).to_numpy()
    sign = np.where(price > before, 1.0, np.where(price < before, -1.0, np.sign(
        price - reference)))  # fmt: skip
    q = np.where(dv > 0, np.nan_to_num(sign) * dv, 0.0)[1:]
    dp = (middle - before)[1:]
    cov = pd.Series(q).rolling(n).cov(pd.Series(dp))
    var = pd.Series(q).rolling(n).var()
    want = np.concatenate([[np.nan], np.where(var > 0, cov / var, np.nan)])
    assert (np.sign(price[1:][dv[1:] > 0] - before[1:][dv[1:] > 0]) == 0).any()  # ties occur
    same(stream(KyleLambda(n, MULTIPLIER), rows), want)


@pytest.mark.parametrize("n", [5, 30])
def test_amihud(bars: pd.DataFrame, n: int) -> None:
    r = bars["close"].pct_change().abs()
    observed = bars["turnover"] > 0
    want = (r[observed] / bars["turnover"][observed]).rolling(n).mean()
    got = pd.Series(stream(Amihud(n), zip(bars["close"], bars["turnover"], strict=True)))
    assert observed.iloc[1:].all()  # every minute of the real day traded
    same(got, want.reindex(got.index))


@pytest.mark.parametrize("n", [20, 500])
def test_roll_spread(day: pd.DataFrame, n: int) -> None:
    change = day["last"].diff()
    cov = change.rolling(n).cov(change.shift())
    want = np.where(cov < 0, 2 * np.sqrt(-cov.clip(upper=0)), np.where(cov.isna(), np.nan, 0.0))
    got = np.asarray(stream(RollSpread(n), day["last"]))
    # the square root magnifies rounding near a covariance of 0 (1e-18 becomes 2e-9): compare
    # the covariance the spread is made of, and the spread where the covariance is clear of 0
    same(-np.square(got) / 4, np.where(cov < 0, cov, np.where(cov.isna(), np.nan, 0.0)))
    clear = (cov.abs() > 1e-12).to_numpy()
    same(got[clear], want[clear])
    assert 0 < np.nanmedian(got) < 1.0
    assert (got == 0.0).any() or n > 20  # a window whose changes do not revert: no estimate


# -- bad input -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "message"), [
    (lambda: SMA(0), "window must be a whole number of at least 1"),
    (EMA, "EMA: give a span n of at least 1 or an alpha"),
    (lambda: EMA(alpha=1.5), "alpha must be in (0, 1]"),
    (lambda: StdDev(1, ddof=1), "ddof must be 0 or 1 and below n"),
    (lambda: MACD(26, 12), "fast (26) must be shorter than slow (12)"),
    (lambda: VWAP(0, 300), "window_ns must be a positive whole number of ns"),
    (lambda: VWAP(NS, 0), "multiplier must be positive"),
    (lambda: KyleLambda(1, 300), "window must be a whole number of at least 2"),
])  # fmt: skip
def test_bad_parameters_are_one_clear_error(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make()


def test_a_parameter_of_the_wrong_type_is_refused(day: pd.DataFrame, rows: list[Tick]) -> None:
    # compiled (mypyc) the annotation refuses it with a TypeError; from the sources, the check
    with pytest.raises((TypeError, ValueError)):
        SMA(2.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="levels must be 1 to 5"):
        book_imbalance(rows[0], 6)


def test_an_empty_book_side_gives_nan_not_a_number_made_up(
    day: pd.DataFrame, rows: list[Tick]
) -> None:
    tick: Tick = rows[100]
    empty = tick._replace(bid_price1=math.nan, bid_volume1=0, ask_volume1=0)
    assert math.isnan(mid(empty)) and math.isnan(spread(empty)) and math.isnan(microprice(empty))
    assert math.isnan(book_imbalance(empty))
    ofi = OFI(1)
    ofi.update(tick)
    assert ofi.update(empty) == 0.0 and ofi.update(tick) == ofi.last


def test_rsi_of_a_price_that_never_moved_is_50_and_of_one_that_only_rose_100() -> None:
    assert stream(RSI(3), [5.0] * 5)[-2:] == [50.0, 50.0]
    assert stream(RSI(3), [5.0, 6.0, 7.0, 7.0, 8.0])[-2:] == [100.0, 100.0]
    assert stream(RSI(3), [5.0, 4.0, 3.0, 2.0])[-1] == 0.0
