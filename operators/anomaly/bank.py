"""`DetectorBank`: the pipeline-facing, multi-key, multi-metric front of the detectors.

Slot id = ``key_id * n_metrics + metric``: each (key, metric) pair is an independent series.
Rows must be in time order per key; the bank is score-then-learn; non-finite values are skipped
(score 0, not learned). ``snapshot()`` returns bytes; ``DetectorBank.restore(bytes)`` continues
with identical outputs.

What a score means (default ``calibration="hybrid"``): ``score >= 0.99`` iff for some member
``q * (1 + 2 L) / 3 >= 1.05``, where ``q`` is its surprise over the largest surprise it has seen on
this series in recent memory (half-life ~6,900 events) and ``L`` the likelihood score of that
surprise (Gaussian tail of its long-run distribution); or the value breaks the series' all-time
range by more than 5 % of it. A burst alerts once (refractory stage). NAB's threshold sweep lands
at 0.9905 on the NAB dev subset, so 0.99 is the default threshold.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from eddy.operators.anomaly.default import default_ensemble
from eddy.operators.anomaly.ensemble import CALIBRATIONS

__all__ = ["BankConfig", "BankOutput", "DetectorBank"]


@dataclass(frozen=True)
class BankConfig:
    """Bank settings.

    ``n_metrics``: values per row (each one an independent series per key); ``threshold``: score
    at/above which an event is an anomaly; ``detector``: the member set (only ``"default"``);
    ``calibration``: ``"hybrid"`` (default), ``"novelty"`` or ``"likelihood"`` (``ensemble.py``).
    """

    n_metrics: int = 1
    threshold: float = 0.99
    detector: str = "default"
    calibration: str = "hybrid"

    def __post_init__(self) -> None:
        if not isinstance(self.n_metrics, int) or self.n_metrics < 1:
            raise ValueError(f"BankConfig.n_metrics: expected an int >= 1, got {self.n_metrics!r}")
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(
                f"BankConfig.threshold: expected a float in (0, 1], got {self.threshold!r}"
            )
        if self.detector != "default":
            raise ValueError(f"BankConfig.detector: expected 'default', got {self.detector!r}")
        if self.calibration not in CALIBRATIONS:
            raise ValueError(
                f"BankConfig.calibration: expected one of {CALIBRATIONS}, got {self.calibration!r}"
            )


@dataclass(frozen=True)
class BankOutput:
    scores: NDArray[np.float64]
    lower: NDArray[np.float64]
    upper: NDArray[np.float64]
    votes: NDArray[np.uint32]
    is_anomaly: NDArray[np.bool_]


class DetectorBank:
    """Score-then-learn anomaly detection for ``n_metrics`` metrics of many int keys."""

    def __init__(self, config: BankConfig | None = None, seed: int = 0) -> None:
        self.config = config or BankConfig()
        self.seed = seed
        self._ens = default_ensemble(seed, self.config.calibration)

    @property
    def detector_names(self) -> list[str]:
        return self._ens.names

    def score_learn(self, key_ids: Any, ts_ms: Any, values: Any) -> BankOutput:
        m = self.config.n_metrics
        keys = np.asarray(key_ids, dtype=np.int64)
        ts = np.asarray(ts_ms, dtype=np.int64)
        vals = np.asarray(values, dtype=np.float64)
        if vals.ndim == 1 and m == 1:
            vals = vals[:, None]
        n = keys.shape[0]
        if keys.ndim != 1 or ts.shape != (n,) or vals.shape != (n, m):
            raise ValueError(
                f"score_learn: expected key_ids (n,), ts_ms (n,), values (n, {m}); got "
                f"{keys.shape}, {ts.shape}, {vals.shape}"
            )
        if n and keys.min() < 0:
            raise ValueError(f"score_learn: key ids must be >= 0, got {int(keys.min())}")
        slots = (keys[:, None] * m + np.arange(m, dtype=np.int64)[None, :]).ravel()
        out = self._ens.score_learn(
            slots, np.repeat(ts, m), vals.ravel(), threshold=self.config.threshold
        )
        shape = (n, m)
        scores = out.scores.reshape(shape)
        return BankOutput(
            scores=scores,
            lower=out.lower.reshape(shape),
            upper=out.upper.reshape(shape),
            votes=out.votes.reshape(shape),
            is_anomaly=scores >= self.config.threshold,
        )

    def snapshot(self) -> bytes:
        return pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL)

    @staticmethod
    def restore(snap: bytes) -> DetectorBank:
        bank = pickle.loads(snap)
        if not isinstance(bank, DetectorBank):
            raise TypeError(f"DetectorBank.restore: expected a bank snapshot, got {type(bank)}")
        return bank
