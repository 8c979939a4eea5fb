"""Named single-series detector factories (``eddy eval nab --detector NAME``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from eddy.operators.anomaly.default import (
    DEFAULT_CALIBRATION,
    DEFAULT_REFRACTORY,
    SeriesDetector,
    build_default_members,
    default_detector,
    default_ensemble,
)
from eddy.operators.anomaly.ensemble import Ensemble
from eddy.operators.anomaly.hst import HalfSpaceTreesDetector

__all__ = ["DETECTORS"]

DETECTORS: dict[str, Callable[[], Any]] = {
    "eddy": default_detector,
    "eddy_novelty": lambda: SeriesDetector(default_ensemble(calibration="novelty")),
    # River HalfSpaceTrees alone, calibrated and suppressed exactly like the default ensemble
    "hst": lambda: SeriesDetector(
        Ensemble(
            [HalfSpaceTreesDetector()],
            "novelty",
            DEFAULT_CALIBRATION,
            refractory=DEFAULT_REFRACTORY,
        )
    ),
    "eddy_hst": lambda: SeriesDetector(
        Ensemble(
            [*build_default_members(), HalfSpaceTreesDetector()],
            "hybrid",
            DEFAULT_CALIBRATION,
            refractory=DEFAULT_REFRACTORY,
        )
    ),
}
