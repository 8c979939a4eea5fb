"""Range novelty: a value outside everything seen so far (plus a tolerance) is surprising.

Per slot the all-time ``[min, max]`` is kept; a value beyond ``max + tol * range`` (or below
``min - tol * range``) gets raw surprise ``RANGE_Q * (1 + log1p(excess / range)) / (1 + b)``,
everything else 0 (so is everything during the first ``warmup`` events, while the range is being
learned). ``b`` counts the slot's recent range breaks, decayed by ``decay`` per event (half-life
about 70 events): a break is strong evidence when it follows a quiet stretch, but a series that
trends or climbs in a burst breaks its range event after event, and those breaks belong to one
excursion, not to many. The raw value is already on the ensemble's novelty scale (a first range
break ranks above any ordinary record surprise), so this member is not re-calibrated
(``prescored``). This is the "spatial anomaly" rule of Numenta's NAB detector, made graded so
that ties do not occur.

``tol`` (5 % of the range) keeps a value that only grazes the old extreme, such as the next step
of a quantised or rounded series, from counting as a break.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from eddy.operators.anomaly.base import F64, I64, SlotDetector, SlotOutput, StateSpec

__all__ = ["RANGE_Q", "RangeNovelty"]

RANGE_Q = 50.0


@njit(cache=True)
def _kernel(slots, x, tol, warmup, decay, lo_s, hi_s, cnt, brk, raw, lo, hi):  # pragma: no cover
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
        e = 0.0
        if cnt[s] >= warmup:
            e = max(v - (b + tol * r), (a - tol * r) - v)
            if e > 0:  # a flat history (r = 0) makes any change a break
                strength = 1.0 + math.log1p(e / max(r, 1e-9 * (1.0 + abs(a))))
                raw[i] = RANGE_Q * strength / (1.0 + brk[s])
        brk[s] = brk[s] * decay + (1.0 if e > 0 else 0.0)
        if cnt[s] == 0 or v < a:
            lo_s[s] = v
        if cnt[s] == 0 or v > b:
            hi_s[s] = v
        cnt[s] += 1


class RangeNovelty(SlotDetector):
    """Breaks of the all-time value range by more than ``tol`` of the range."""

    prescored = True

    def __init__(self, tol: float = 0.05, warmup: int = 100, decay: float = 0.99) -> None:
        if not tol >= 0:
            raise ValueError(f"RangeNovelty.tol: expected a float >= 0, got {tol!r}")
        if warmup < 1:
            raise ValueError(f"RangeNovelty.warmup: expected an int >= 1, got {warmup!r}")
        if not 0 < decay <= 1:
            raise ValueError(f"RangeNovelty.decay: expected a float in (0, 1], got {decay!r}")
        super().__init__()
        self.tol = tol
        self.warmup = warmup
        self.decay = decay
        self.name = "range"

    def state_spec(self) -> StateSpec:
        return {
            "lo": ((), np.float64, 0.0),
            "hi": ((), np.float64, 0.0),
            "cnt": ((), np.int64, 0),
            "brk": ((), np.float64, 0.0),
        }

    def _run(self, slots: I64, ts: I64, x: F64) -> SlotOutput:
        n = slots.shape[0]
        raw, lo, hi = np.empty(n), np.empty(n), np.empty(n)
        st = self._state
        _kernel(
            slots, x, self.tol, self.warmup, self.decay,
            st["lo"], st["hi"], st["cnt"], st["brk"], raw, lo, hi,
        )  # fmt: skip
        return SlotOutput(raw, lo, hi)
