"""`DetectStage`: a ``[[detect]]`` declaration: anomaly detection per key and metric.

The detector itself (``ensemble``, ``rates`` or ``river:MODULE.CLASS``) is
:class:`~eddy.operators.anomaly.keyed.KeyedDetector`; this stage reads the key and the metrics
out of the batch and names its rows: ``anomaly_id`` is ``<stage>:<key>:<metric>:<event time>``
(deterministic, so a replay writes nothing twice), and every row carries the stage and stream.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eddy.operators.anomaly.keyed import DetectorConfig, KeyedDetector
from eddy.operators.stages.base import key_column, metric_matrix, stage_alerts
from eddy.schemas.batch import EventBatch, constant_column
from eddy.schemas.spec import DetectSpec, StreamSpec

__all__ = ["DetectStage", "detector_config"]


def detector_config(spec: DetectSpec, stream: StreamSpec, seed: int = 0) -> DetectorConfig:
    """The detector's configuration from the declaration (raises ``ValueError`` naming a bad
    param)."""
    return DetectorConfig(
        metrics=spec.metrics,
        bool_metrics=tuple(stream.field(m).type == "bool" for m in spec.metrics),
        detector=spec.detector,
        params=spec.params,
        threshold=spec.threshold,
        cooldown_ms=spec.cooldown_ms,
        seed=seed,
    )


class DetectStage:
    """See the module docstring."""

    def __init__(self, spec: DetectSpec, stream: StreamSpec, seed: int = 0) -> None:
        self.spec = spec
        self._config = detector_config(spec, stream, seed)
        self._detector = KeyedDetector(self._config)

    def update(
        self, batch: EventBatch, now_ms: int, seen_ms: tuple[np.ndarray, int] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Score then learn the batch's rows; ``(anomalies, drift_alerts)`` rows. ``seen_ms``
        as :meth:`KeyedDetector.update` takes it."""
        if not len(batch) and seen_ms is None:
            return {}, {}
        keys = key_column(batch, self.spec.key)
        values = metric_matrix(batch, self.spec.metrics)
        out = self._detector.update(keys, batch.ts, values, now_ms, seen_ms)
        return self._rows(out.anomalies), self._drift(out.drift_alerts)

    def flush(self, now_ms: int) -> tuple[dict[str, Any], dict[str, Any]]:
        out = self._detector.flush(now_ms)
        return self._rows(out.anomalies), self._drift(out.drift_alerts)

    def snapshot(self) -> bytes:
        return self._detector.snapshot()

    def restore(self, snap: bytes) -> None:
        self._detector = KeyedDetector.restore(self._config, snap)

    def _rows(self, a: dict[str, Any]) -> dict[str, Any]:
        n = len(a.get("key", ()))
        if n == 0:
            return {}
        ids = [
            f"{self.spec.name}:{k}:{m}:{t}"
            for k, m, t in zip(
                a["key"].tolist(), a["metric"].tolist(), a["event_time"].tolist(), strict=True
            )
        ]
        return {
            "anomaly_id": np.array(ids, dtype=object),
            "detect": constant_column(self.spec.name, n),
            "stream": constant_column(self.spec.stream, n),
            **a,
        }

    def _drift(self, d: dict[str, Any]) -> dict[str, Any]:
        n = len(d.get("alert_id", ()))
        if n == 0:
            return {}
        return stage_alerts(self.spec.name, d)
