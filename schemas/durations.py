"""Durations as a spec writes them: ``"250ms"``, ``"10s"``, ``"5m"``, ``"2h"``, ``"1d"``.

>>> parse_duration("90s")
90000
>>> duration_label(90_000)
'90s'
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["duration_label", "parse_duration"]

_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_UNIT = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(value: Any) -> int:
    """Milliseconds from ``"10s"``-style strings (units ms, s, m, h, d); an int is taken as ms.

    Raises ``ValueError`` saying what was expected and what came."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and (m := _DUR.match(value)):
        return int(float(m.group(1)) * _UNIT[m.group(2)])
    raise ValueError(f'expected a duration like "500ms", "10s", "5m" or "2h", got {value!r}')


def duration_label(ms: int) -> str:
    """``10000 -> "10s"``, ``1500 -> "1500ms"`` (the default name of a window in columns)."""
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
