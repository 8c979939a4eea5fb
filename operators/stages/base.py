"""What every stage shares: reading keys and metrics out of a batch, and the row ids they
write. A stage is a class over ``(state, batch) -> outputs`` with picklable state; the engine
(``operators.engine``) calls the stages of a stream in a fixed order."""

from __future__ import annotations

from typing import Any

import numpy as np

from eddy.schemas.batch import EventBatch, constant_column

__all__ = ["ALL_KEYS", "key_column", "metric_matrix", "stage_alerts"]

#: the key of every event of a stage declared without ``key``
ALL_KEYS = "*"


def key_column(batch: EventBatch, key: str | None) -> np.ndarray:
    """The stage key of every row as strings (an int key as its decimal digits, a bool as
    ``true``/``false``, an absent value as ``""``)."""
    n = len(batch)
    if key is None:
        return constant_column(ALL_KEYS, n)
    col = batch.columns[key]
    if col.dtype == object:
        values = col.tolist()
        if None in values:  # a C loop; absent keys are rare
            return np.array(["" if v is None else v for v in values], dtype=object)
        return col
    if col.dtype == np.bool_:
        return np.where(col, "true", "false").astype(object)
    out = np.empty(n, dtype=object)
    finite = np.isfinite(col)
    out[:] = ""
    out[finite] = col[finite].astype(np.int64).astype(str)
    return out


def metric_matrix(batch: EventBatch, metrics: tuple[str, ...]) -> np.ndarray:
    """``(n, len(metrics))`` float64: numbers as they are, bools as 0/1, absent as NaN."""
    out = np.empty((len(batch), len(metrics)))
    for j, m in enumerate(metrics):
        out[:, j] = batch.columns[m]
    return out


def stage_alerts(stage: str, alerts: dict[str, Any]) -> dict[str, Any]:
    """Drift alert rows of ``stage``: its name in a column and in front of every id (two
    stages may watch streams of the same name)."""
    n = len(alerts.get("alert_id", ()))
    if n == 0:
        return {}
    ids = np.array([f"{stage}:{a}" for a in alerts["alert_id"].tolist()], dtype=object)
    return {**alerts, "alert_id": ids, "stage": constant_column(stage, n)}
