"""The ensemble: several raw detectors, one calibration stage each, max-combined.

For every event and slot each member produces a raw surprise; a per-member calibration stage
turns it into a score in [0, 1]:

- ``"novelty"``: :class:`~operators.anomaly.novelty.Novelty` ratio ``q`` (surprise over
  the largest recent surprise), mapped by :func:`~operators.anomaly.novelty.q_to_score`;
- ``"hybrid"`` (the default ensemble's): the novelty ratio weighted by the likelihood score
  ``L`` of the same surprise (:class:`~operators.anomaly.likelihood.Likelihood`, the Gaussian
  tail probability of the surprise against its long-run distribution), ``q * (1 + 2 L) / 3``: a
  record counts fully only when it is also improbable under the long-run distribution of
  surprises (down to a third when it is not).

Non-finite values (NaN, +-inf) are skipped: score 0, nothing learned.
Members flagged ``prescored`` (e.g. the range break) already emit ``q`` and skip calibration.
The ensemble score is the maximum over members, then (``refractory > 0``) damped by a
:class:`~operators.anomaly.refractory.Refractory` stage when it does not beat the slot's previous
``refractory`` scores. ``votes`` is a bitmask of the members whose own score reached the
threshold, reported on flagged events only (0 elsewhere); the expected range is the first
member's that has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from eddy.operators.anomaly.base import SlotDetector, as_batch
from eddy.operators.anomaly.likelihood import Likelihood
from eddy.operators.anomaly.novelty import Novelty, q_to_score
from eddy.operators.anomaly.refractory import Refractory

__all__ = ["CALIBRATIONS", "HYBRID_LIKELIHOOD", "Ensemble", "EnsembleOutput"]

CALIBRATIONS = ("hybrid", "novelty")
# The likelihood weight judges each surprise on its own (short=1: the novelty ratio already
# looks at single events) against about the last 2,000 surprises (a week of 5-minute data:
# long enough for a stable mean and spread, short enough to follow a change of noise level).
HYBRID_LIKELIHOOD: dict[str, Any] = {"short": 1, "long": 2000, "warmup": 64}


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
        calibration: str = "novelty",
        calibration_params: dict[str, Any] | None = None,
        refractory: int = 0,
    ) -> None:
        if not 1 <= len(members) <= 32:
            raise ValueError(f"Ensemble.members: expected 1..32 detectors, got {len(members)}")
        if calibration not in CALIBRATIONS:
            raise ValueError(
                f"Ensemble.calibration: expected one of {CALIBRATIONS}, got {calibration!r}"
            )
        self.members = list(members)
        self.calibration = calibration
        self.calibration_params = dict(calibration_params or {})
        if refractory < 0:
            raise ValueError(f"Ensemble.refractory: expected an int >= 0, got {refractory!r}")
        self.refractory = refractory
        self._refractory = Refractory(refractory) if refractory else None
        self._calib = [Novelty(**self.calibration_params) for _ in self.members]
        self._lik = (
            [Likelihood(**HYBRID_LIKELIHOOD) for _ in self.members]
            if calibration == "hybrid"
            else []
        )

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def score_learn(self, slots: Any, ts_ms: Any, values: Any, threshold: float) -> EnsembleOutput:
        s, t, v = as_batch(slots, ts_ms, values)
        v = np.where(np.isfinite(v), v, np.nan)  # +-inf is bad input: skipped like NaN
        n = s.shape[0]
        scores = np.zeros(n)
        lower = np.full(n, np.nan)
        upper = np.full(n, np.nan)
        votes = np.zeros(n, dtype=np.uint32)
        nan = np.isnan(v)
        for d, (det, cal) in enumerate(zip(self.members, self._calib, strict=True)):
            out = det.score_learn(s, t, v)
            raw = np.where(nan, np.nan, out.raw)
            if getattr(det, "prescored", False):
                sc = q_to_score(np.nan_to_num(raw, nan=0.0))
            elif self.calibration == "novelty":
                sc = q_to_score(cal.score_learn(s, raw))
            else:  # hybrid
                q = cal.score_learn(s, raw) * (1.0 + 2.0 * self._lik[d].score_learn(s, raw)) / 3.0
                sc = q_to_score(q)
            np.maximum(scores, sc, out=scores)
            votes |= (sc >= threshold).astype(np.uint32) << np.uint32(d)
            fill = np.isnan(lower) & ~np.isnan(out.lower)
            lower[fill] = out.lower[fill]
            upper[fill] = out.upper[fill]
        if self._refractory is not None:
            scores = np.where(np.isnan(v), 0.0, scores)
            scores = self._refractory.apply(s, scores)
        votes[scores < threshold] = 0  # votes are reported for flagged events only
        return EnsembleOutput(scores, lower, upper, votes)
