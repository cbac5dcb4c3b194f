"""Exchange time: China's time zone and how the suite prints a time in it. (Cores take their
clock as a plain ``Callable[[], int]`` where they need one: the engine's callback timer, the
replay's pacing, the recorder's stamps.)"""

from __future__ import annotations

import datetime as dt
from typing import Final

CHINA: Final = dt.timezone(dt.timedelta(hours=8), "CST")
"""Exchange time: China has kept UTC+8 without daylight saving since 1991."""


def china_iso(ns: int) -> str:
    """``ns`` since the epoch as ISO 8601 in China time, to the millisecond."""
    seconds, rest = divmod(ns, 1_000_000_000)  # exact: a float of ns rounds at the microsecond
    moment = dt.datetime.fromtimestamp(seconds, CHINA).replace(microsecond=rest // 1000)
    return moment.isoformat(timespec="milliseconds")
