"""Event-time windows and per-event trailing features over micro-batches.

>>> from operators.windows import FeatureConfig, EventTimeFeatures, FeatureBatch

See :mod:`operators.windows.features` for the operator and the sibling modules for the exact
definitions (watermark, trailing windows, tumbling/sliding, sessions, quantile).
"""

from .config import AGGREGATIONS, FeatureConfig, duration_label
from .features import WINDOW_COLUMNS, EventTimeFeatures, FeatureBatch
from .watermark import NO_WATERMARK

__all__ = [
    "AGGREGATIONS",
    "NO_WATERMARK",
    "WINDOW_COLUMNS",
    "EventTimeFeatures",
    "FeatureBatch",
    "FeatureConfig",
    "duration_label",
]
