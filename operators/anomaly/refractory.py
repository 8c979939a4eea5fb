"""Refractory stage: after a score, the next ``events`` scores of the slot must beat it.

Per slot the last ``events`` ensemble scores are kept (ring buffer). A score that does not exceed
all of them is multiplied by ``damp``: a burst of consecutive surprises alerts once, at its first
(or a strictly stronger) event, instead of on every event of the burst. Threshold-free, so it
works for a detect stage's fixed threshold and for NAB's threshold sweep alike.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["Refractory"]


@njit(cache=True)
def _kernel(slots, s, damp, ring, pos, out):  # pragma: no cover
    r = ring.shape[1]
    for i in range(slots.shape[0]):
        k = slots[i]
        v = s[i]
        m = -1.0
        for j in range(r):
            if ring[k, j] > m:
                m = ring[k, j]
        out[i] = v if v > m else v * damp
        ring[k, pos[k]] = v
        pos[k] = (pos[k] + 1) % r


class Refractory:
    """Damp scores that do not beat the slot's previous ``events`` scores."""

    def __init__(self, events: int = 20, damp: float = 0.5) -> None:
        if events < 1:
            raise ValueError(f"Refractory.events: expected an int >= 1, got {events!r}")
        if not 0.0 <= damp <= 1.0:
            raise ValueError(f"Refractory.damp: expected a float in [0, 1], got {damp!r}")
        self.events = events
        self.damp = damp
        self._ring = np.full((0, events), -1.0)
        self._pos = np.zeros(0, dtype=np.int64)

    def ensure_slots(self, n_slots: int) -> None:
        cap = self._pos.shape[0]
        if n_slots <= cap:
            return
        extra = max(n_slots, 2 * cap, 4) - cap
        self._ring = np.concatenate([self._ring, np.full((extra, self.events), -1.0)])
        self._pos = np.concatenate([self._pos, np.zeros(extra, dtype=np.int64)])

    def apply(self, slots: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Score-then-learn over a batch (skipped events should arrive with score 0)."""
        if slots.size:
            self.ensure_slots(int(slots.max()) + 1)
        out = np.empty(slots.shape[0])
        _kernel(slots, scores, self.damp, self._ring, self._pos, out)
        return out
