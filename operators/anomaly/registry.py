"""Named single-series detector factories (``eddy eval nab --detector NAME``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from operators.anomaly.default import default_detector

__all__ = ["DETECTORS"]

DETECTORS: dict[str, Callable[[], Any]] = {
    "eddy": default_detector,
}
