"""Range novelty: a value outside everything seen so far (plus a tolerance) is surprising.

Per slot the all-time ``[min, max]`` is kept; a value beyond ``max + tol * range`` (or below
``min - tol * range``) gets raw surprise ``RANGE_Q * (1 + log1p(excess / range))``, everything
else 0 (so is everything during the first ``warmup`` events, while the range is being learned).
The raw value is already on the ensemble's novelty scale (a range break ranks above any ordinary
record surprise), so this member is not re-calibrated (``prescored``). This is the "spatial
anomaly" rule of Numenta's NAB detector, made graded so that ties do not occur.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from eddy.operators.anomaly.base import F64, I64, SlotDetector, SlotOutput, StateSpec

__all__ = ["RANGE_Q", "RangeNovelty"]

RANGE_Q = 50.0


@njit(cache=True)
def _kernel(slots, x, tol, warmup, lo_s, hi_s, cnt, raw, lo, hi):  # pragma: no cover
    for i in range(slots.shape[0]):
        s = slots[i]
        v = x[i]
        a, b = lo_s[s], hi_s[s]
        r = b - a
        if cnt[s] > 0:
            lo[i] = a - tol * r
            hi[i] = b + tol * r
        else:
            lo[i] = np.nan
            hi[i] = np.nan
        raw[i] = 0.0
        if math.isnan(v):
            continue
        if cnt[s] >= warmup:
            e = max(v - (b + tol * r), (a - tol * r) - v)
            if e > 0:  # a flat history (r = 0) makes any change a break
                raw[i] = RANGE_Q * (1.0 + math.log1p(e / max(r, 1e-9 * (1.0 + abs(a)))))
        if cnt[s] == 0 or v < a:
            lo_s[s] = v
        if cnt[s] == 0 or v > b:
            hi_s[s] = v
        cnt[s] += 1


class RangeNovelty(SlotDetector):
    """Breaks of the all-time value range by more than ``tol`` of the range."""

    prescored = True

    def __init__(self, tol: float = 0.05, warmup: int = 100) -> None:
        if not tol >= 0:
            raise ValueError(f"RangeNovelty.tol: expected a float >= 0, got {tol!r}")
        if warmup < 1:
            raise ValueError(f"RangeNovelty.warmup: expected an int >= 1, got {warmup!r}")
        super().__init__()
        self.tol = tol
        self.warmup = warmup
        self.name = "range"

    def state_spec(self) -> StateSpec:
        return {"lo": ((), np.float64, 0.0), "hi": ((), np.float64, 0.0), "cnt": ((), np.int64, 0)}

    def _run(self, slots: I64, ts: I64, x: F64) -> SlotOutput:
        n = slots.shape[0]
        raw, lo, hi = np.empty(n), np.empty(n), np.empty(n)
        st = self._state
        _kernel(slots, x, self.tol, self.warmup, st["lo"], st["hi"], st["cnt"], raw, lo, hi)
        return SlotOutput(raw, lo, hi)
