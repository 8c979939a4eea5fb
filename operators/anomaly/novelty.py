"""Novelty (record) calibration: how a surprise compares with the largest in recent memory.

Per slot and member: ``q = raw / M``, where ``M`` is the largest raw surprise seen so far, decayed
geometrically (``M <- max(raw, M * decay)`` after scoring, half-life ``ln 2 / -ln(decay)`` events).
``q > 1`` means "more surprising than anything in recent memory"; the first surprise after a
perfectly quiet history (``M = 0``) gets ``q = FIRST_Q * (1 + log1p(raw))``. This is what makes
a detector fire once at the onset of a new behaviour rather than on every repeat of it (NAB
rewards the first detection in a window and charges every false positive). Before ``warmup``
events q = 0.

The ensemble maps the largest q over members to the final score with :func:`q_to_score`:
``0.99 * (q / Q_AT_99) ** 2`` up to ``Q_AT_99``, ``1 - 0.01 * Q_AT_99 / q`` above; continuous and
strictly increasing, so ``score >= 0.99`` iff ``q >= Q_AT_99``, and scores written with 9 decimals
stay distinct up to q ~ 1e6 (no ties near 1).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["FIRST_Q", "Q_AT_99", "Novelty", "q_to_score"]

Q_AT_99 = 1.05
FIRST_Q = 1000.0


@njit(cache=True)
def _kernel(slots, raw, decay, warmup, cnt, mx, q):  # pragma: no cover
    for i in range(slots.shape[0]):
        s = slots[i]
        r = raw[i]
        q[i] = 0.0
        if math.isnan(r):
            continue
        if cnt[s] >= warmup:
            if mx[s] > 0:
                q[i] = r / mx[s]
            elif r > 0 and cnt[s] > 0:  # first surprise after a perfectly quiet history
                q[i] = FIRST_Q * (1.0 + math.log1p(r))
        mx[s] = max(r, mx[s] * decay)
        cnt[s] += 1


def q_to_score(q: np.ndarray) -> np.ndarray:
    """Final score in [0, 1) from a novelty ratio (see module docstring)."""
    q = np.nan_to_num(np.asarray(q, dtype=np.float64), nan=0.0, posinf=1e300)
    q = np.maximum(q, 0.0)
    low = 0.99 * (np.minimum(q, Q_AT_99) / Q_AT_99) ** 2
    with np.errstate(divide="ignore"):
        high = 1.0 - 0.01 * Q_AT_99 / np.maximum(q, Q_AT_99)
    return np.where(q <= Q_AT_99, low, high)


class Novelty:
    """Per-slot record calibration of one raw surprise stream."""

    def __init__(self, decay: float = 0.9999, warmup: int = 100) -> None:
        if not 0 < decay <= 1:
            raise ValueError(f"Novelty.decay: expected a float in (0, 1], got {decay!r}")
        if warmup < 0:
            raise ValueError(f"Novelty.warmup: expected an int >= 0, got {warmup!r}")
        self.decay = decay
        self.warmup = warmup
        self._cnt = np.zeros(0, dtype=np.int64)
        self._mx = np.zeros(0)

    def ensure_slots(self, n_slots: int) -> None:
        cap = self._cnt.shape[0]
        if n_slots <= cap:
            return
        extra = max(n_slots, 2 * cap, 4) - cap
        self._cnt = np.concatenate([self._cnt, np.zeros(extra, dtype=np.int64)])
        self._mx = np.concatenate([self._mx, np.zeros(extra)])

    def score_learn(self, slots: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Novelty ratios q >= 0 for a batch (NaN raw -> 0, not learned)."""
        if slots.size:
            self.ensure_slots(int(slots.max()) + 1)
        q = np.empty(slots.shape[0])
        _kernel(slots, raw, self.decay, self.warmup, self._cnt, self._mx, q)
        return q
