"""md_recorder's Prometheus metrics (``md_recorder.metrics``; docs/OPERATIONS.md, "Metrics"):
the figures of its status file, and the events waiting from CTP's thread."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import NamedTuple

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from contracts.metrics import labelled
from contracts.status import RecorderStatus

__all__ = ["RecorderFigures", "families"]


class RecorderFigures(NamedTuple):
    status: RecorderStatus
    queued: int  # events from the source not handled yet (CTP's callbacks; 0 for the others)


def families(figures: RecorderFigures) -> Iterator[Metric]:
    s = figures.status
    yield GaugeMetricFamily("hft_md_recorder_trading_day", "Trading day being recorded (YYYYMMDD)",
                            value=s.trading_day)  # fmt: skip
    yield CounterMetricFamily("hft_md_recorder_ticks_kept",
                              "Ticks written to the journal since the service started",
                              value=s.kept)  # fmt: skip
    yield labelled(CounterMetricFamily("hft_md_recorder_ticks_dropped",
                                       "Ticks dropped by the filters since the service started",
                                       labels=["reason"]),
                   (([reason], n) for reason, n in s.drops.items()))  # fmt: skip
    yield GaugeMetricFamily("hft_md_recorder_ticks_per_second", "Ticks kept per second, over the "
                            "last second", value=s.ticks_per_s)  # fmt: skip
    lag = s.lag_ms_median / 1e3 if s.lag_ms_median >= 0 else math.nan
    yield GaugeMetricFamily("hft_md_recorder_lag_seconds", "Exchange time to receipt, median over "
                            "instruments (NaN: unknown, as in a replay)", value=lag)  # fmt: skip
    yield GaugeMetricFamily("hft_md_recorder_instruments", "Instruments that sent a tick today",
                            value=s.instruments)  # fmt: skip
    yield GaugeMetricFamily("hft_md_recorder_last_tick_timestamp_seconds",
                            "Exchange time of the newest tick (Unix time)",
                            value=s.last_tick_ns / 1e9)  # fmt: skip
    yield GaugeMetricFamily("hft_md_recorder_archive_failing", "1 while the ring cannot be "
                            "archived into the recording (a full disk): ticks stop when it is "
                            "full", value=1 if s.archive_error else 0)  # fmt: skip
    yield GaugeMetricFamily("hft_md_recorder_source_queue", "Events from the source waiting to "
                            "be handled (CTP's callbacks)", value=figures.queued)  # fmt: skip
