"""Seasonal-naive residuals: ``x[i] - x[i - P]`` scored by a robust z-score.

The period ``P`` (events per season of ``days`` days: 1 = daily, 7 = weekly) is inferred per
slot from its first timestamps: when the cadence is regular and divides the season into
``8..max_period`` steps, ``P = season / cadence``. The lag is by time, not by count: the value
compared with is the one stored at the same phase exactly one season earlier (within half a
step), so gaps in the data do not shift the seasonal comparison;
otherwise the slot has no seasonality and this member stays silent (raw NaN). The residuals go
through a :class:`~operators.anomaly.median_mad.MedianMad` (window ``window``), so the surprise
is ``|residual - median| / scale`` of recent residuals. Expected range: ``x[i - P] + residual
range``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from eddy.operators.anomaly.base import F64, I64, SlotDetector, SlotOutput, StateSpec
from eddy.operators.anomaly.median_mad import MedianMad

__all__ = ["SeasonalNaive"]

DAY_MS = 86_400_000
_PROBE = 8


@njit(cache=True)
def _residuals(
    slots,
    ts,
    x,
    season_ms,
    max_period,
    ring,
    ring_ts,
    cnt,
    period,
    dt,
    t0,
    tprev,
    irregular,
    res,
    base,
):  # pragma: no cover
    for i in range(slots.shape[0]):
        s = slots[i]
        v = x[i]
        t = ts[i]
        res[i] = np.nan
        base[i] = np.nan
        if math.isnan(v):
            continue
        n = cnt[s]
        if n < _PROBE:  # learn the cadence from the first events
            if n == 0:
                t0[s] = t
            elif n >= 2:
                span = tprev[s] - t0[s]
                if abs((t - tprev[s]) * (n - 1) - span) > 0.01 * max(span, 1):
                    irregular[s] = 1
            tprev[s] = t
            ring[s, n] = v
            ring_ts[s, n] = t
            cnt[s] = n + 1
            if n + 1 == _PROBE and irregular[s] == 0 and t > t0[s]:
                step = (t - t0[s]) / (_PROBE - 1)
                p = round(season_ms / step)
                if _PROBE <= p <= max_period and abs(p * step - season_ms) <= 0.001 * season_ms:
                    period[s] = p
                    dt[s] = step
            continue
        p = period[s]
        if p == 0:
            continue
        # phase by time, so gaps in the data do not shift the seasonal lag
        ph = round((t - t0[s]) / dt[s]) % p
        if abs((t - ring_ts[s, ph]) - season_ms) <= 0.5 * dt[s]:
            res[i] = v - ring[s, ph]
            base[i] = ring[s, ph]
        ring[s, ph] = v
        ring_ts[s, ph] = t
        cnt[s] = n + 1


class SeasonalNaive(SlotDetector):
    """Seasonal-naive residual, robust z-scored (silent when there is no regular cadence)."""

    def __init__(
        self, window: int = 512, max_period: int = 2048, k: float = 4.0, days: int = 1
    ) -> None:
        if max_period < 8:
            raise ValueError(f"SeasonalNaive.max_period: expected an int >= 8, got {max_period!r}")
        if days < 1:
            raise ValueError(f"SeasonalNaive.days: expected an int >= 1, got {days!r}")
        super().__init__()
        self.window = window
        self.max_period = max_period
        self.k = k
        self.days = days
        self.name = "seasonal" if days == 1 else f"seasonal_{days}d"
        self._inner = MedianMad(window=window, k=k)

    def state_spec(self) -> StateSpec:
        return {
            "ring": ((self.max_period,), np.float64, 0.0),
            "ring_ts": ((self.max_period,), np.int64, np.iinfo(np.int64).min // 2),
            "cnt": ((), np.int64, 0),
            "period": ((), np.int64, 0),
            "dt": ((), np.float64, 0.0),
            "t0": ((), np.int64, 0),
            "tprev": ((), np.int64, 0),
            "irregular": ((), np.int64, 0),
        }

    def _run(self, slots: I64, ts: I64, x: F64) -> SlotOutput:
        n = slots.shape[0]
        res, base = np.empty(n), np.empty(n)
        st = self._state
        _residuals(
            slots, ts, x, self.days * DAY_MS, self.max_period, st["ring"], st["ring_ts"],
            st["cnt"], st["period"], st["dt"], st["t0"], st["tprev"], st["irregular"], res, base,
        )  # fmt: skip
        inner = self._inner.score_learn(slots, ts, res)
        return SlotOutput(inner.raw, base + inner.lower, base + inner.upper)
