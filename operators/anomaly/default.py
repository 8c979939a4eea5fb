"""The default detector configuration (one configuration for every series) and the
single-series form used by NAB: ``default_detector().score_learn(ts_ms, values)``."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from operators.anomaly.base import SlotDetector
from operators.anomaly.ensemble import Ensemble
from operators.anomaly.median_mad import MedianMad

__all__ = ["SeriesDetector", "build_default_members", "default_detector", "default_likelihood"]


def build_default_members(seed: int = 0) -> list[SlotDetector]:
    """Fresh member detectors of the default ensemble."""
    return [MedianMad(window=128), MedianMad(window=128, diff=True)]


def default_likelihood() -> dict[str, Any]:
    return {"short": 3, "long": 2000, "warmup": 64}


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
    return SeriesDetector(Ensemble(build_default_members(seed), likelihood=default_likelihood()))
