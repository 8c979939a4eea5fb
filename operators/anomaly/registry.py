"""Named single-series detector factories (``eddy eval nab --detector NAME``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operators.anomaly.default import SeriesDetector, default_detector, default_ensemble
from operators.anomaly.ensemble import Ensemble
from operators.anomaly.hst import HalfSpaceTreesDetector

__all__ = ["DETECTORS"]

DETECTORS: dict[str, Callable[[], Any]] = {
    "eddy": default_detector,
    "eddy_likelihood": lambda: SeriesDetector(default_ensemble(calibration="likelihood")),
    "hst": lambda: SeriesDetector(
        Ensemble([HalfSpaceTreesDetector()], "likelihood", {"short": 1, "warmup": 64})
    ),
}
