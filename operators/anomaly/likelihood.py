"""Likelihood stage: turns a raw surprise stream into a calibrated, finely resolved score.

Per slot (Numenta-style anomaly likelihood, made streaming and O(1)): the raw surprise is
compressed (``u = log1p(raw)``), averaged over a short horizon (EWMA, ``short`` events), and
compared with the long-run distribution of that short average (running mean/variance over about
``long`` events, learned *after* scoring). The Gaussian tail probability ``Q`` of the short
average is mapped to the score

    score = 1 - sqrt(Q)                       while Q >= 1e-12
    score = 1 - 1e-6 * 12 / (-log10 Q)        beyond (continuous, strictly increasing)

so ``score >= 0.99`` means ``Q <= 1e-4`` and scores never saturate at 1.0 (no ties among strong
anomalies: NAB's threshold sweep needs distinct values). ``-log10 Q`` is computed in log space
(asymptotic series for large z), so it is finite for any z. During the first ``warmup`` events of
a slot the score is 0.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["Likelihood", "tail_score"]

_LN10 = math.log(10.0)
_SQRT2 = math.sqrt(2.0)
_LN_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(cache=True)
def _neglog10_tail(z):  # pragma: no cover
    """-log10 of the standard normal upper tail probability Q(z)."""
    if z < 30.0:
        q = 0.5 * math.erfc(z / _SQRT2)
        return -math.log10(max(q, 1e-300))
    z2 = z * z
    ln_q = -0.5 * z2 - math.log(z) - _LN_SQRT_2PI + math.log(1.0 - 1.0 / z2 + 3.0 / (z2 * z2))
    return -ln_q / _LN10


@njit(cache=True)
def tail_score(z):  # pragma: no cover
    """Map a z value to a score in [0, 1): ``1 - sqrt(Q(z))``, with a log tail past Q = 1e-12."""
    s = _neglog10_tail(z)
    if s <= 12.0:
        return 1.0 - 10.0 ** (-s / 2.0)
    return 1.0 - 1e-6 * 12.0 / s


@njit(cache=True)
def _kernel(slots, raw, a_short, long_n, warmup, min_sd, cnt, sh, mu, m2, out):  # pragma: no cover
    for i in range(slots.shape[0]):
        s = slots[i]
        r = raw[i]
        if math.isnan(r):
            out[i] = 0.0
            continue
        u = math.log1p(max(r, 0.0))
        n = cnt[s]
        if n == 0:
            sh[s] = u
        else:
            sh[s] += a_short * (u - sh[s])
        v = sh[s]
        if n >= warmup:
            sd = math.sqrt(max(m2[s], 0.0))
            sd = max(sd, min_sd, 0.05 * abs(mu[s]))
            out[i] = tail_score((v - mu[s]) / sd)
        else:
            out[i] = 0.0
        # learn the long-run mean/variance of the short average (exact while n < long_n)
        n1 = n + 1
        a = 1.0 / min(n1, long_n)
        d = v - mu[s]
        mu[s] += a * d
        m2[s] = (1.0 - a) * (m2[s] + a * d * d)
        cnt[s] = n1


class Likelihood:
    """Per-slot calibration of one raw surprise stream (see module docstring)."""

    def __init__(
        self, short: int = 3, long: int = 2000, warmup: int = 64, min_sd: float = 0.02
    ) -> None:
        if short < 1:
            raise ValueError(f"Likelihood.short: expected an int >= 1, got {short!r}")
        if long < 10:
            raise ValueError(f"Likelihood.long: expected an int >= 10, got {long!r}")
        if warmup < 1:
            raise ValueError(f"Likelihood.warmup: expected an int >= 1, got {warmup!r}")
        if not min_sd > 0:
            raise ValueError(f"Likelihood.min_sd: expected a float > 0, got {min_sd!r}")
        self.short = short
        self.long = long
        self.warmup = warmup
        self.min_sd = min_sd
        self._capacity = 0
        self._cnt = np.zeros(0, dtype=np.int64)
        self._sh = np.zeros(0)
        self._mu = np.zeros(0)
        self._m2 = np.zeros(0)

    def ensure_slots(self, n_slots: int) -> None:
        if n_slots <= self._capacity:
            return
        extra = max(n_slots, 2 * self._capacity, 4) - self._capacity
        self._cnt = np.concatenate([self._cnt, np.zeros(extra, dtype=np.int64)])
        self._sh = np.concatenate([self._sh, np.zeros(extra)])
        self._mu = np.concatenate([self._mu, np.zeros(extra)])
        self._m2 = np.concatenate([self._m2, np.zeros(extra)])
        self._capacity += extra

    def score_learn(self, slots: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Calibrated scores in [0, 1) for a batch of raw surprises (NaN raw -> 0, not learned)."""
        if slots.size:
            self.ensure_slots(int(slots.max()) + 1)
        out = np.empty(slots.shape[0])
        a_short = 2.0 / (self.short + 1.0)
        _kernel(
            slots, raw, a_short, self.long, self.warmup, self.min_sd,
            self._cnt, self._sh, self._mu, self._m2, out,
        )  # fmt: skip
        return out
