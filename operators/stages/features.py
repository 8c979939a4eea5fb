"""`FeaturesStage`: a ``[[features]]`` declaration run over its stream.

One declaration holds the key, the windows and the aggregations; the per-event loop is
implicit. The stage wraps :class:`~eddy.operators.windows.EventTimeFeatures` (numba kernels
over columnar state, exact and independent of batch cuts; definitions in
``operators/windows/__init__.py``) and adds what the pipeline needs around it:

* closed windows become ``window_aggregates`` rows naming the stage and the stream, with the
  window written as in the spec (``tumbling_1m``, not ``tumbling_60s``);
* with ``store = true`` every event's trailing features become a row of ``features_<name>``
  (``id``, ``key``, ``event_time`` and one column per ``<metric>_<aggregation>_<window>``);
* the latest features of every key are kept for lookups: a decision's context can read the
  current features of its own key, or of every arm (``lookup``).

>>> import numpy as np
>>> from eddy.schemas.batch import EventBatch
>>> from eddy.schemas.spec import FeaturesSpec, Window
>>> spec = FeaturesSpec("load", "jobs", "host", ("cpu",), trailing=(Window(60_000, "1m"),))
>>> stage = FeaturesStage(spec, allowed_lateness_ms=0, late_policy="drop")
>>> cols = {"host": np.array(["h1", "h1", "h2"], object), "cpu": np.array([1.0, 3.0, 5.0])}
>>> batch = EventBatch("jobs", np.array([0, 1000, 2000]), np.array(["a", "b", "c"], object), cols)
>>> out = stage.process(batch, 0)
>>> out.features[:, 1].tolist()   # cpu_mean_1m per event
[1.0, 2.0, 5.0]
>>> stage.lookup(np.array(["h1", "zz"], object))[:, 1].tolist()
[2.0, nan]
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from eddy.operators.stages.base import key_column, metric_matrix
from eddy.operators.windows import EventTimeFeatures, FeatureConfig
from eddy.schemas.batch import EventBatch, constant_column
from eddy.schemas.spec import FeaturesSpec

__all__ = ["FeaturesOutput", "FeaturesStage"]


@dataclass
class FeaturesOutput:
    """What one batch produced: per-event ``features`` (n, F) in ``FeaturesSpec.columns``
    order, and the rows for ``window_aggregates`` and ``features_<name>`` (empty dicts when
    there are none)."""

    features: np.ndarray
    windows: dict[str, Any]
    stored: dict[str, Any]


class FeaturesStage:
    """See the module docstring. State: the windows operator and the latest row per key."""

    def __init__(self, spec: FeaturesSpec, allowed_lateness_ms: int, late_policy: str) -> None:
        self.spec = spec
        self._op = EventTimeFeatures(
            FeatureConfig(
                metrics=spec.metrics,
                trailing_ms=tuple(w.ms for w in spec.trailing),
                aggregations=spec.aggregations,
                tumbling_ms=tuple(w.ms for w in spec.tumbling),
                sliding=tuple((s.ms, h.ms) for s, h in spec.sliding),
                session_gap_ms=tuple(w.ms for w in spec.session_gap),
                allowed_lateness_ms=allowed_lateness_ms,
                late_policy=late_policy,
            )
        )
        self._late_policy = late_policy
        self._columns = spec.columns
        # the operator names windows by duration_label(ms); the spec's labels replace them
        cfg = self._op.config
        own = [n for n, _, _ in cfg.window_specs] + cfg.session_names
        self._window_label = dict(zip(own, spec.window_names, strict=True))
        self._latest_index: dict[Any, int] = {}
        self._latest = np.empty((0, len(self._columns)))

    @property
    def columns(self) -> tuple[str, ...]:
        return self._columns

    def process(
        self,
        batch: EventBatch,
        partition: int | np.ndarray,
        watermarks: tuple[np.ndarray, int] | None = None,
    ) -> FeaturesOutput:
        """Consume a batch of the stage's stream (rows in arrival order); ``watermarks`` as
        :meth:`EventTimeFeatures.process` takes them (None: the stage's own clock)."""
        keys = key_column(batch, self.spec.key)
        values = metric_matrix(batch, self.spec.metrics)
        res = self._op.process(keys, batch.ts, values, partition, watermarks=watermarks)
        kept = ~res.late if self._late_policy == "drop" else np.ones(len(batch), bool)
        if len(self._columns):
            self._remember(keys[kept], res.features[kept])
        stored: dict[str, Any] = {}
        if self.spec.store and len(batch):
            stored = {"id": batch.ids, "key": keys, "event_time": batch.ts}
            for j, c in enumerate(self._columns):
                stored[c] = res.features[:, j]
        return FeaturesOutput(res.features, self._windows(res.windows), stored)

    def flush(self) -> dict[str, Any]:
        """End of bounded input: every open window, as ``window_aggregates`` rows."""
        return self._windows(self._op.flush().windows)

    def lookup(self, keys: np.ndarray) -> np.ndarray:
        """The latest features of each key (n, F); NaN for a key not seen yet."""
        idx = np.fromiter(
            map(self._latest_index.get, keys.tolist(), repeat(-1)), np.int64, len(keys)
        )
        out = np.full((len(keys), len(self._columns)), np.nan)
        found = idx >= 0
        out[found] = self._latest[idx[found]]
        return out

    def snapshot(self) -> bytes:
        state = (self._op.snapshot(), self._latest_index, self._latest)
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    def restore(self, snap: bytes) -> None:
        op, self._latest_index, self._latest = pickle.loads(snap)
        self._op = EventTimeFeatures.restore(self._op.config, op)

    # -- internals ------------------------------------------------------------------------
    def _remember(self, keys: np.ndarray, feats: np.ndarray) -> None:
        if not len(keys):
            return
        # the last row of each key in the batch (a dict keeps the last index per key, in C)
        last = dict(zip(keys.tolist(), range(len(keys)), strict=True))
        names = list(last)
        rows = np.fromiter(last.values(), np.int64, len(last))
        idx = np.fromiter(map(self._latest_index.get, names, repeat(-1)), np.int64, len(names))
        new = np.flatnonzero(idx < 0)
        if len(new):
            start = len(self._latest_index)
            for j, i in enumerate(new.tolist()):
                self._latest_index[names[i]] = start + j
            idx[new] = np.arange(start, start + len(new))
            grow = np.full((len(new), self._latest.shape[1]), np.nan)
            self._latest = np.concatenate([self._latest, grow])
        self._latest[idx] = feats[rows]

    def _windows(self, windows: dict[str, Any]) -> dict[str, Any]:
        if not windows or not len(windows.get("key", ())):
            return {}
        n = len(windows["key"])
        names = windows["window"]
        uniq, inv = np.unique(names.astype(str), return_inverse=True)
        labels = np.array([self._window_label.get(u, u) for u in uniq], dtype=object)
        out = {
            "features": constant_column(self.spec.name, n),
            "stream": constant_column(self.spec.stream, n),
            **windows,
        }
        out["window"] = labels[inv.reshape(-1)]
        return out
