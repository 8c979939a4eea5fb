"""The default ensemble: several raw detectors, one likelihood stage each, max-combined.

For every event and slot: each member detector produces a raw surprise, its own
:class:`~operators.anomaly.likelihood.Likelihood` turns it into a calibrated score, and the
ensemble score is the maximum over members. ``votes`` is a bitmask of the members whose own
score reached the threshold; the expected range is the first member's that has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from operators.anomaly.base import SlotDetector, as_batch
from operators.anomaly.likelihood import Likelihood

__all__ = ["Ensemble", "EnsembleOutput"]


@dataclass(frozen=True)
class EnsembleOutput:
    scores: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    votes: NDArray[np.uint32]


class Ensemble:
    """Max-combination of calibrated member scores (at most 32 members: votes are uint32)."""

    def __init__(
        self,
        members: Sequence[SlotDetector],
        likelihood: dict[str, Any] | None = None,
    ) -> None:
        if not 1 <= len(members) <= 32:
            raise ValueError(f"Ensemble.members: expected 1..32 detectors, got {len(members)}")
        self.members = list(members)
        self.likelihood = dict(likelihood or {})
        self._calib = [Likelihood(**self.likelihood) for _ in self.members]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def score_learn(self, slots: Any, ts_ms: Any, values: Any, threshold: float) -> EnsembleOutput:
        s, t, v = as_batch(slots, ts_ms, values)
        n = s.shape[0]
        scores = np.zeros(n)
        lower = np.full(n, np.nan)
        upper = np.full(n, np.nan)
        votes = np.zeros(n, dtype=np.uint32)
        nan = np.isnan(v)
        for d, (det, cal) in enumerate(zip(self.members, self._calib, strict=True)):
            out = det.score_learn(s, t, v)
            raw = np.where(nan, np.nan, out.raw)
            sc = cal.score_learn(s, raw)
            np.maximum(scores, sc, out=scores)
            votes |= (sc >= threshold).astype(np.uint32) << np.uint32(d)
            fill = np.isnan(lower) & ~np.isnan(out.lower)
            lower[fill] = out.lower[fill]
            upper[fill] = out.upper[fill]
        return EnsembleOutput(scores, lower, upper, votes)
