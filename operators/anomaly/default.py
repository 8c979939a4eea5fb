"""The default detector: one configuration for every series, and its single-series form used
by NAB (``default_detector().score_learn(ts_ms, values)``). ``detect = "ensemble"`` in a spec
runs exactly this ensemble per key and metric (:class:`~operators.anomaly.keyed.KeyedDetector`).

What the data sets online, per series: the spread of every member (robust, from its window), the
seasonal period (from the timestamps' cadence), the all-time range, the largest recent surprise
(the novelty calibration) and the long-run distribution of surprises (the likelihood weight).
The remaining constants, and why each has its value (none was chosen for a benchmark score):

- ``MedianMad(window=256)`` on values and on differences: about a day of 5-minute samples or ten
  days of hourly ones, so a daily cycle's extremes sit inside the window while a level change
  is absorbed within days; a sorted window costs O(window) per event, inside the cost budget.
- ``SeasonalNaive(window=256)``: the same spread window over the seasonal residuals; the period
  itself is inferred.
- ``ContextKnn(dim=4, history=500, k=1)``: the shape of the last four values against the nearest
  of the last 500 shapes; 500 x 4 distance terms per event is about a microsecond, and ``k=1``
  asks the question the member exists for: has this shape been seen at all.
- ``RangeNovelty(tol=0.05)``: a value only 5 % past the old extreme (the next step of a rounded
  or quantised series) is not a break.
- ``MedianMad(window=512, smooth=32)``: a 32-event moving mean has a sixth of one value's noise
  (1/sqrt(32)), so a sustained shift of one noise unit stands out like a spike of five; the
  smoothed series is autocorrelated, hence twice the window for the same number of effectively
  independent values.
- Novelty calibration ``decay=0.9999`` (half-life 6,931 events: 24 days of 5-minute data): long
  enough that a daily or weekly recurring surprise is remembered and not re-alerted every
  time, short enough that a behaviour gone for weeks alerts again. ``warmup=100``: a spread
  estimated from fewer values varies by more than the 5 % margin a record must clear.
- ``DEFAULT_REFRACTORY = 20`` events: one alert per excursion, unless a later event is stronger.
- The threshold 0.99 is the calibration's fixed point (a surprise 5 % beyond the largest
  remembered one); ``python -m eddy.benchmarks.nab_loco`` reports its false alarms per 1,000
  events on anomaly-free series.
"""

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
    return Ensemble(
        build_default_members(seed),
        calibration,
        DEFAULT_CALIBRATION,
        refractory=DEFAULT_REFRACTORY,
    )


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
