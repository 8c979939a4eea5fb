"""Robust z-score against a sliding-window median and interquartile scale.

Each slot keeps its last ``window`` values in a ring buffer plus the same values in sorted order
(insert/delete by binary search and shift: O(window) per event, no allocation), so the median
and quartiles are O(1) reads. The raw surprise is ``|x - median| / scale`` with
``scale = max(IQR / 1.349, (max - min) / window)`` (the range term keeps discrete or
zero-inflated series from dividing by zero). While the window is constant the spread is unknown
and the detector has no opinion (raw NaN): a z-score against a zero spread is arbitrarily large,
and as the largest surprise on record it would silence the novelty calibration for thousands of
events once the series comes alive (the first departure from a flat history is the range
member's to score). With ``smooth > 1`` the detector sees an EWMA
(span ``smooth``) of the values: bursts and slow level changes. With ``diff=True`` it looks at
first differences ``x[i] - x[i-1]`` instead of values (level shifts and spikes in the increments).

Expected range: ``median +- k * scale`` on the value scale (for ``diff``: previous value + that).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from eddy.operators.anomaly.base import F64, I64, SlotDetector, SlotOutput, StateSpec

__all__ = ["MedianMad"]


@njit(cache=True)
def _kernel(
    slots, x, diff, a_sm, k, ring, srt, cnt, pos, prev, ew, raw, lo, hi
):  # pragma: no cover
    w = ring.shape[1]
    for i in range(slots.shape[0]):
        s = slots[i]
        xi = x[i]
        if a_sm < 1.0 and not math.isnan(xi):
            if math.isnan(ew[s]):
                ew[s] = xi
            else:
                ew[s] += a_sm * (xi - ew[s])
            xi = ew[s]
        if diff:
            v = xi - prev[s]
            base = prev[s]
        else:
            v = xi
            base = 0.0
        n = cnt[s]
        if n >= 4:
            med = 0.5 * (srt[s, (n - 1) // 2] + srt[s, n // 2])
            iqr = srt[s, (3 * (n - 1)) // 4] - srt[s, (n - 1) // 4]
            rng = srt[s, n - 1] - srt[s, 0]
            scale = max(iqr / 1.349, rng / w, 1e-9 * (1.0 + abs(med)))
            lo[i] = base + med - k * scale
            hi[i] = base + med + k * scale
        else:
            med = 0.0
            scale = 0.0
            lo[i] = np.nan
            hi[i] = np.nan
        if math.isnan(xi):
            raw[i] = np.nan
            continue
        if diff and math.isnan(prev[s]):
            raw[i] = np.nan
            prev[s] = xi
            continue
        if n >= 4 and scale > 1e-9 * (1.0 + abs(med)):
            raw[i] = abs(v - med) / scale
        else:
            raw[i] = np.nan
        if diff:
            prev[s] = xi
        # learn: remove the oldest value when full, then insert v in sorted order
        if n == w:
            old = ring[s, pos[s]]
            j = 0
            while j < n - 1 and srt[s, j] != old:
                j += 1
            while j < n - 1:
                srt[s, j] = srt[s, j + 1]
                j += 1
            n -= 1
        j = n
        while j > 0 and srt[s, j - 1] > v:
            srt[s, j] = srt[s, j - 1]
            j -= 1
        srt[s, j] = v
        cnt[s] = n + 1
        ring[s, pos[s]] = v
        pos[s] = (pos[s] + 1) % w


class MedianMad(SlotDetector):
    """Sliding-window median / IQR robust z-score (on values, or on differences)."""

    def __init__(
        self, window: int = 128, k: float = 4.0, diff: bool = False, smooth: int = 1
    ) -> None:
        if window < 8:
            raise ValueError(f"MedianMad.window: expected an int >= 8, got {window!r}")
        if not k > 0:
            raise ValueError(f"MedianMad.k: expected a float > 0, got {k!r}")
        if smooth < 1:
            raise ValueError(f"MedianMad.smooth: expected an int >= 1, got {smooth!r}")
        super().__init__()
        self.window = window
        self.k = k
        self.diff = diff
        self.smooth = smooth
        self.name = ("median_diff" if diff else "median") + (f"_ew{smooth}" if smooth > 1 else "")

    def state_spec(self) -> StateSpec:
        return {
            "ring": ((self.window,), np.float64, 0.0),
            "srt": ((self.window,), np.float64, 0.0),
            "cnt": ((), np.int64, 0),
            "pos": ((), np.int64, 0),
            "prev": ((), np.float64, np.nan),
            "ew": ((), np.float64, np.nan),
        }

    def _run(self, slots: I64, ts: I64, x: F64) -> SlotOutput:
        n = slots.shape[0]
        raw, lo, hi = np.empty(n), np.empty(n), np.empty(n)
        st = self._state
        _kernel(
            slots, x, self.diff, 2.0 / (self.smooth + 1.0), self.k, st["ring"], st["srt"],
            st["cnt"], st["pos"], st["prev"], st["ew"], raw, lo, hi,
        )  # fmt: skip
        return SlotOutput(raw, lo, hi)
