"""The ``rates`` detector's params: bucket settings and the per-metric alert band language.

An alert band says how far a bucket may move from the key's baseline before it is worth an
alert; the statistical test (``rates.py``) then asks whether the bucket is past that edge by more
than its counts explain. Written per metric in ``params.alert``::

    alert = { filled = "drop 50%", latency_ms = "rise 100%", error = "rise 0.1" }

- ``"drop N%"`` / ``"rise N%"`` / ``"change N%"``: relative to the baseline (a bool metric's
  rate times ``1 -/+ N/100``; a numeric metric's mean log of its positive values plus
  ``log(1 -/+ N/100)``, i.e. a multiplicative band for log-normal-ish values: prices, latencies);
- ``"drop X"`` / ``"rise X"`` / ``"change X"``: absolute (a rate moves by ``X``, e.g. an error
  rate "rise 0.1" = ten more points; a numeric metric's plain mean moves by ``X`` of its units);
- ``change`` watches both ways.

Defaults for a metric left out: bool ``"change 0.1"``, numeric ``"change 50%"``. Every error
names the param (``params.alert.latency_ms: ...``), what was expected and what came.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from eddy.schemas.durations import parse_duration

__all__ = ["RATES_PARAMS", "Band", "RatesParams", "parse_band", "parse_rates_params"]

#: the params the rates detector knows (anything else is an error listing these)
RATES_PARAMS = (
    "alert",
    "bucket",
    "close_lag",
    "drift",
    "half_life",
    "min_events",
    "min_positive",
    "relearn",
    "spans",
    "warmup",
)
_BAND = re.compile(r"^\s*(drop|rise|change)\s+(\d+(?:\.\d*)?|\.\d+)\s*(%?)\s*$")
_MAX_SPAN = 64  # buckets of history kept per key for the evidence spans


@dataclass(frozen=True)
class Band:
    """One metric's alert band: ``direction`` (drop, rise, change), ``amount`` (a fraction of
    the baseline when ``relative``, else in the metric's units) and the text it came from."""

    direction: str
    amount: float
    relative: bool
    text: str

    @property
    def down(self) -> bool:
        return self.direction in ("drop", "change")

    @property
    def up(self) -> bool:
        return self.direction in ("rise", "change")


@dataclass(frozen=True)
class RatesParams:
    """Parsed params of the rates detector (``rates.py`` explains each mechanism).

    ``bucket_ms``: tumbling event-time bucket; ``close_lag_ms``: how long past its end a bucket
    waits for stragglers; ``warmup``: buckets of a key before its first score; ``min_events``:
    values of a metric a bucket (or evidence span) needs for an opinion; ``min_positive``:
    positive values a relative numeric test needs; ``half_life``: of the baseline, in buckets;
    ``relearn``: alerting buckets in a row after which the new level is accepted; ``spans``:
    evidence spans in buckets; ``drift``: watch each metric's bucket values for a slow drift;
    ``bands``: one :class:`Band` per metric, in metric order."""

    bands: tuple[Band, ...]
    bucket_ms: int = 1_000
    close_lag_ms: int = 0
    warmup: int = 10
    min_events: int = 10
    min_positive: int = 5
    half_life: float = 60.0
    relearn: int = 30
    spans: tuple[int, ...] = (1, 2, 4, 8)
    drift: bool = True


def parse_band(metric: str, text: Any, is_bool: bool) -> Band:
    """Parse one metric's alert band (``"drop 50%"``); ``ValueError`` names the metric."""
    where = f"params.alert.{metric}"
    m = _BAND.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(
            f'{where}: expected "drop N%", "rise N%", "change N%" (relative) or "drop X", '
            f'"rise X", "change X" (absolute), got {text!r}'
        )
    direction, number, pct = m.group(1), float(m.group(2)), m.group(3) == "%"
    if pct:
        amount = number / 100.0
        if direction != "rise" and not amount < 1.0:
            raise ValueError(f"{where}: a {direction} must be below 100%, got {text!r}")
    else:
        amount = number
        if is_bool and not amount < 1.0:
            raise ValueError(
                f"{where}: expected a rate change below 1 for a bool metric (or N%), got {text!r}"
            )
    return Band(direction, amount, pct, text.strip())


def _int(name: str, v: Any, low: int) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or v < low:
        raise ValueError(f"params.{name}: expected an int >= {low}, got {v!r}")
    return v


def _duration(name: str, v: Any, positive: bool) -> int:
    try:
        if not isinstance(v, str):
            raise ValueError
        ms = parse_duration(v)
    except ValueError:
        ms = -1
    if ms < 0 or (positive and ms == 0):
        raise ValueError(f'params.{name}: expected a duration like "1s", got {v!r}')
    return ms


def _table(name: str, v: Any) -> dict[str, Any]:
    """A TOML table as the spec loader hands it over: a dict or sorted (key, value) pairs."""
    if isinstance(v, Mapping):
        items = list(v.items())
    elif isinstance(v, tuple | list) and all(
        isinstance(p, tuple | list) and len(p) == 2 and isinstance(p[0], str) for p in v
    ):
        items = [(p[0], p[1]) for p in v]
    else:
        raise ValueError(f"params.{name}: expected a table like {{ x = 1 }}, got {v!r}")
    return dict(items)


def parse_rates_params(
    metrics: tuple[str, ...], bool_metrics: tuple[bool, ...], params: Mapping[str, Any]
) -> RatesParams:
    """Check and parse the rates detector's params (unknown names are errors)."""
    for name in params:
        if name not in RATES_PARAMS:
            raise ValueError(
                f"params.{name}: unknown parameter of the rates detector; known: "
                f"{', '.join(RATES_PARAMS)}"
            )
    alert = _table("alert", params.get("alert", {}))
    for name in alert:
        if name not in metrics:
            raise ValueError(
                f"params.alert.{name}: expected one of the metrics ({', '.join(metrics)}), "
                f"got {name!r}"
            )
    bands = tuple(
        parse_band(m, alert.get(m, "change 0.1" if b else "change 50%"), b)
        for m, b in zip(metrics, bool_metrics, strict=True)
    )
    kw: dict[str, Any] = {}
    if "bucket" in params:
        kw["bucket_ms"] = _duration("bucket", params["bucket"], positive=True)
    if "close_lag" in params:
        kw["close_lag_ms"] = _duration("close_lag", params["close_lag"], positive=False)
    for name, low in (("warmup", 1), ("min_events", 1), ("min_positive", 1), ("relearn", 1)):
        if name in params:
            kw[name] = _int(name, params[name], low)
    if "half_life" in params:
        h = params["half_life"]
        if not isinstance(h, int | float) or isinstance(h, bool) or not 0 < h < float("inf"):
            raise ValueError(f"params.half_life: expected a number of buckets > 0, got {h!r}")
        kw["half_life"] = float(h)
    if "spans" in params:
        s = params["spans"]
        ok = (
            isinstance(s, tuple | list)
            and len(s) > 0
            and all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in s)
            and all(a < b for a, b in pairwise(s))
            and s[-1] <= _MAX_SPAN
        )
        if not ok:
            raise ValueError(
                f"params.spans: expected increasing bucket counts in 1..{_MAX_SPAN} like "
                f"[1, 2, 4, 8], got {s!r}"
            )
        kw["spans"] = tuple(s)
    if "drift" in params:
        if not isinstance(params["drift"], bool):
            raise ValueError(f"params.drift: expected true or false, got {params['drift']!r}")
        kw["drift"] = params["drift"]
    return RatesParams(bands=bands, **kw)
