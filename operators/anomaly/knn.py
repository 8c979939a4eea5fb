"""Contextual nearest-neighbour surprise over a bounded history.

Each event's *context* is the vector of the last ``dim`` values, standardised by a slow running
mean/mean-absolute-deviation of the slot (so level changes stay visible). The raw surprise is the
RMS distance from the current context to its ``k`` nearest contexts among the last ``history``
contexts (brute force in numba: ``history * dim`` flops per event). The context is then learned
(ring buffer). While the slot's deviation is still zero (a flat history) the scale is unknown and
the detector has no opinion (raw NaN), as in :mod:`~operators.anomaly.median_mad`. Expected
range: none (NaN).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from eddy.operators.anomaly.base import F64, I64, SlotDetector, SlotOutput, StateSpec

__all__ = ["ContextKnn"]


@njit(cache=True)
def _kernel(slots, x, k, alpha, last, lpos, cnt, hist, hn, hp, mu, mad, raw):  # pragma: no cover
    dim = last.shape[1]
    hmax = hist.shape[1]
    buf = np.empty(dim)
    best = np.empty(k)
    for i in range(slots.shape[0]):
        s = slots[i]
        v = x[i]
        raw[i] = np.nan
        if math.isnan(v):
            continue
        n = cnt[s]
        last[s, lpos[s]] = v
        lpos[s] = (lpos[s] + 1) % dim
        if n + 1 >= dim:
            sc = max(mad[s], 1e-9 * (1.0 + abs(mu[s])))
            for j in range(dim):
                buf[j] = (last[s, (lpos[s] + j) % dim] - mu[s]) / sc
            m = hn[s]
            if m >= k and mad[s] > 1e-9 * (1.0 + abs(mu[s])):
                for q in range(k):
                    best[q] = 1e300
                for h in range(m):
                    d = 0.0
                    for j in range(dim):
                        t = hist[s, h, j] - buf[j]
                        d += t * t
                    if d < best[k - 1]:
                        q = k - 1
                        while q > 0 and best[q - 1] > d:
                            best[q] = best[q - 1]
                            q -= 1
                        best[q] = d
                acc = 0.0
                for q in range(k):
                    acc += math.sqrt(best[q])
                raw[i] = acc / k / math.sqrt(dim)
            for j in range(dim):
                hist[s, hp[s], j] = buf[j]
            hp[s] = (hp[s] + 1) % hmax
            hn[s] = min(m + 1, hmax)
        # learn the slot's scale (exact mean for the first 1/alpha events)
        a = max(alpha, 1.0 / (n + 1))
        d = v - mu[s]
        mu[s] += a * d
        if n > 0:
            mad[s] += a * (abs(d) - mad[s])
        cnt[s] = n + 1


class ContextKnn(SlotDetector):
    """kNN distance of the recent-values context to the bounded history of contexts."""

    def __init__(self, dim: int = 4, history: int = 500, k: int = 1, alpha: float = 0.01) -> None:
        if dim < 1:
            raise ValueError(f"ContextKnn.dim: expected an int >= 1, got {dim!r}")
        if history < 8:
            raise ValueError(f"ContextKnn.history: expected an int >= 8, got {history!r}")
        if not 1 <= k <= history:
            raise ValueError(f"ContextKnn.k: expected an int in [1, history], got {k!r}")
        if not 0 < alpha <= 1:
            raise ValueError(f"ContextKnn.alpha: expected a float in (0, 1], got {alpha!r}")
        super().__init__()
        self.dim = dim
        self.history = history
        self.k = k
        self.alpha = alpha
        self.name = "knn"

    def state_spec(self) -> StateSpec:
        return {
            "last": ((self.dim,), np.float64, 0.0),
            "lpos": ((), np.int64, 0),
            "cnt": ((), np.int64, 0),
            "hist": ((self.history, self.dim), np.float64, 0.0),
            "hn": ((), np.int64, 0),
            "hp": ((), np.int64, 0),
            "mu": ((), np.float64, 0.0),
            "mad": ((), np.float64, 0.0),
        }

    def _run(self, slots: I64, ts: I64, x: F64) -> SlotOutput:
        n = slots.shape[0]
        raw = np.empty(n)
        st = self._state
        _kernel(
            slots, x, self.k, self.alpha, st["last"], st["lpos"], st["cnt"], st["hist"],
            st["hn"], st["hp"], st["mu"], st["mad"], raw,
        )  # fmt: skip
        nan = np.full(n, np.nan)
        return SlotOutput(raw, nan, nan.copy())
