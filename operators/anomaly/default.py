"""The default detector configuration (one configuration for every series) and the
single-series form used by NAB: ``default_detector().score_learn(ts_ms, values)``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from eddy.operators.anomaly.base import SlotDetector
from eddy.operators.anomaly.ensemble import Ensemble
from eddy.operators.anomaly.knn import ContextKnn
from eddy.operators.anomaly.median_mad import MedianMad
from eddy.operators.anomaly.seasonal import SeasonalNaive
from eddy.operators.anomaly.spatial import RangeNovelty

__all__ = [
    "DEFAULT_CALIBRATION",
    "DEFAULT_REFRACTORY",
    "SeriesDetector",
    "build_default_members",
    "default_detector",
    "default_ensemble",
]

DEFAULT_CALIBRATION: dict[str, Any] = {"decay": 0.9999, "warmup": 100}
DEFAULT_REFRACTORY = 20  # events: a burst alerts once unless a later event is stronger


def build_default_members(seed: int = 0) -> list[SlotDetector]:
    """Fresh member detectors of the default ensemble (deterministic; ``seed`` is reserved for
    randomised members)."""
    del seed
    return [
        MedianMad(window=256),
        MedianMad(window=256, diff=True),
        SeasonalNaive(window=256),
        ContextKnn(dim=4, history=500, k=1),
        RangeNovelty(tol=0.05),
        MedianMad(window=512, smooth=32),
    ]


def default_ensemble(seed: int = 0, calibration: str = "hybrid") -> Ensemble:
    params = DEFAULT_CALIBRATION if calibration != "likelihood" else {}
    return Ensemble(build_default_members(seed), calibration, params, refractory=DEFAULT_REFRACTORY)


class SeriesDetector:
    """One series (slot 0) through an ensemble; batches are consecutive pieces of the series."""

    def __init__(self, ensemble: Ensemble, threshold: float = 0.99) -> None:
        self.ensemble = ensemble
        self.threshold = threshold

    def score_learn(self, ts_ms: Any, values: Any) -> NDArray[np.float64]:
        v = np.asarray(values, dtype=np.float64)
        slots = np.zeros(v.shape[0], dtype=np.int64)
        return self.ensemble.score_learn(slots, ts_ms, v, self.threshold).scores


def default_detector(seed: int = 0) -> SeriesDetector:
    return SeriesDetector(default_ensemble(seed))
