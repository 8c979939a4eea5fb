"""Event-time windows and per-event trailing features over micro-batches.

>>> from operators.windows import FeatureConfig, EventTimeFeatures, FeatureBatch

Semantics in one place (each module has the precise wording the tests' oracles implement):

* Watermark (:mod:`.watermark`): per input partition the largest event time seen; after every
  row ``W = max(W, min over seen partitions - allowed_lateness)`` (monotone). A row is late
  iff ``ts < W`` as it was just before the row.
* Late rows are never dropped silently: ``FeatureBatch.late`` flags them,
  ``row_watermark_ms`` says which watermark they missed, ``late_count`` counts them. Policy
  ``"drop"``: not added to state or windows; ``"include"``: added to trailing state and to the
  tumbling/sliding windows still open (``end > W``), never to session windows. Either way the
  row gets trailing features computed from the state.
* Trailing features (:mod:`.trailing`): for row ``i`` (key ``k``, time ``t``) and window ``D``,
  the rows of ``k`` that arrived no later than ``i`` (``i`` itself included when it is in
  state) with ``max(t - D, W_i - max(trailing)) < ts <= t``; millisecond granularity, ties
  with ``t`` are in. They never wait for, or change with, later arrivals.
* Tumbling/sliding (:mod:`.hopping`): epoch-aligned ``[s, s + size)``, emitted once when
  ``W >= end`` or at :meth:`EventTimeFeatures.flush`. Sessions (:mod:`.session`): on-time rows
  less than ``gap`` apart, ``[first, last + gap)``.
* Aggregates per metric ignore NaN (missing); ``std`` is the population std; ``rate`` is
  count per second of window length; ``p95`` is the exact linear-interpolation quantile
  (:mod:`.quantile`; no sketch, so no approximation error).
* Determinism: outputs depend only on the row sequence (and partitions), not on batch cuts
  (integers, flags and window sets exactly; floats to ~1e-13 relative, the rounding of the
  running sums); snapshot then restore and the same batches give bit-identical outputs.
* Memory (:mod:`.store`): keys x live events inside the retention horizon
  (``max`` of trailing/window sizes behind the watermark; open sessions longer), ~180 bytes
  per live event with 4 metrics plus slot slack; never proportional to the stream length.
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
