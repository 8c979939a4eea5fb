"""Incremental, score-then-learn anomaly detectors (see ``base.py`` for the protocol)."""

from eddy.operators.anomaly.default import SeriesDetector, default_detector

__all__ = ["SeriesDetector", "default_detector"]
