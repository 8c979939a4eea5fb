"""Anomaly rows as a detect stage emits them, and the event-time rule that thins them out.

Every keyed detector (``keyed.py``) reports anomalies as the same columns (``ANOMALY_COLUMNS``,
the ``anomalies`` table without its id, which the stage derives): one row per flagged
(key, metric) event or bucket. Rows are built only for what is flagged (a Python object per
*row*, never per event), so the column building here may loop.

:func:`keep_per_cooldown` is the per-event detectors' cooldown: per (key, metric) slot, a row at
event time ``t`` suppresses the slot's later rows before ``t + cooldown_ms`` (so at most one row
per cooldown; a suppressed row does not extend the cooldown). The rates scorer has its own
episode rule (``rates.py``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["ANOMALY_COLUMNS", "NO_TIME", "anomaly_rows", "empty_anomalies", "keep_per_cooldown"]

ANOMALY_COLUMNS = (
    "key",
    "metric",
    "value",
    "score",
    "threshold",
    "expected_low",
    "expected_high",
    "detectors",
    "event_time",
    "detected_at",
)
#: "never": the initial last-row time of a slot
NO_TIME = np.iinfo(np.int64).min


def empty_anomalies() -> dict[str, np.ndarray]:
    """No anomaly rows (every column present, typed)."""
    e = np.empty(0)
    return anomaly_rows(
        np.empty(0, object), np.empty(0, object), e, e, e, e, [], np.empty(0, np.int64), 0, 0.0
    )


def anomaly_rows(
    keys: NDArray[np.object_],
    metrics: NDArray[np.object_],
    value: NDArray[np.float64],
    score: NDArray[np.float64],
    expected_low: NDArray[np.float64],
    expected_high: NDArray[np.float64],
    detectors: Sequence[list[str]],
    event_time: NDArray[np.int64],
    detected_at: int,
    threshold: float,
) -> dict[str, np.ndarray]:
    """The columns of ``len(keys)`` rows; ``detectors`` holds one list of names per row."""
    n = len(keys)
    det = np.empty(n, dtype=object)
    for i, names in enumerate(detectors):
        det[i] = list(names)
    return {
        "key": np.asarray(keys, dtype=object),
        "metric": np.asarray(metrics, dtype=object),
        "value": np.asarray(value, dtype=np.float64),
        "score": np.asarray(score, dtype=np.float64),
        "threshold": np.full(n, threshold, dtype=np.float64),
        "expected_low": np.asarray(expected_low, dtype=np.float64),
        "expected_high": np.asarray(expected_high, dtype=np.float64),
        "detectors": det,
        "event_time": np.asarray(event_time, dtype=np.int64),
        "detected_at": np.full(n, detected_at, dtype=np.int64),
    }


@njit(cache=True)
def _cooldown(slots, ts, cooldown, last, keep):  # pragma: no cover
    for i in range(slots.shape[0]):
        s = slots[i]
        t = ts[i]
        if last[s] != NO_TIME and cooldown > 0 and t < last[s] + cooldown:
            keep[i] = False
            continue
        keep[i] = True
        last[s] = t


def keep_per_cooldown(
    slots: NDArray[np.int64], ts_ms: NDArray[np.int64], cooldown_ms: int, last: NDArray[np.int64]
) -> NDArray[np.bool_]:
    """Which of the candidate rows (in order) to keep; ``last[slot]`` (event time of the slot's
    last kept row, ``NO_TIME`` if none) is updated in place."""
    keep = np.zeros(slots.shape[0], dtype=np.bool_)
    _cooldown(slots, ts_ms, np.int64(cooldown_ms), last, keep)
    return keep
