"""Durations as a spec writes them: ``"250ms"``, ``"10s"``, ``"5m"``, ``"2h"``, ``"1d"``.

>>> parse_duration("90s")
90000
>>> duration_label(90_000)
'90s'
>>> parse_duration("99999999d")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ValueError: expected a duration of at most "36500d" (a century: ...), got '99999999d'
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["MAX_DURATION_MS", "duration_label", "iso_time", "parse_duration", "span_text"]

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
#: The longest duration: event times lie between 2000 and 2100, so a longer window, TTL or
#: lateness means nothing more, while event time plus it must stay far inside int64 ms.
MAX_DURATION_MS = 36_500 * _UNIT["d"]


def parse_duration(value: Any) -> int:
    """Milliseconds from ``"10s"``-style strings (units ms, s, m, h, d); an int is taken as ms.

    Raises ``ValueError`` saying what was expected and what came."""
    ms: float
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        ms = value
    elif isinstance(value, str) and (m := _DUR.match(value)):
        ms = float(m.group(1)) * _UNIT[m.group(2)]  # inf for hundreds of digits: refused below
    else:
        raise ValueError(
            f'expected a duration like "500ms", "10s", "5m" or "2h", got {_show(value)}'
        )
    if not ms <= MAX_DURATION_MS:
        raise ValueError(
            f'expected a duration of at most "36500d" (a century: '
            f"event times lie between 2000 and 2100), got {_show(value)}"
        )
    return int(ms)


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def duration_label(ms: int) -> str:
    """``10000 -> "10s"``, ``1500 -> "1500ms"`` (the default name of a window in columns)."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def iso_time(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC to the second."""
    return np.datetime_as_string(np.datetime64(ms, "ms"), unit="s") + "Z"


def span_text(ms: int) -> str:
    """A duration for people: ``3 days 4 h``, ``2 h 5 min``, ``42 s``."""
    days, rest = divmod(ms, 86_400_000)
    hours, rest = divmod(rest, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    if days:
        return f"{days:,} days {hours} h" if hours else f"{days:,} days"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {rest // 1000} s" if rest >= 1000 else f"{minutes} min"
    return f"{rest / 1000:g} s"
