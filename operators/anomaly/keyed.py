"""`KeyedDetector`: the pure operator behind a ``[[detect]]`` stage (any keys, any metrics).

A detect stage watches the ``metrics`` (bool or numeric fields) of one stream per ``key`` and
emits anomaly rows (``anomaly_rows.ANOMALY_COLUMNS``) and, for ``rates``, drift alerts
(``drift.ALERT_COLUMNS``). Three detectors, chosen by ``DetectorConfig.detector``:

- ``"ensemble"``: per event, per (key, metric) series, the default ensemble of ``default.py``
  (the detector ``eddy eval nab`` scores: same factory, same threshold semantics). **Score**: the
  calibrated score in [0, 1) of ``ensemble.py``: ``>= 0.99`` when some member's surprise beats the
  largest of the series' recent memory by 5 % (likelihood-weighted) or the value breaks the
  series' all-time range by more than 5 % of it. A row when ``score >= threshold``;
  ``detectors`` = the members whose own score reached it; the expected range is the first
  member's that has one.
- ``"rates"``: per key, bucketed count-aware tests (``rates.py``): a bool metric as a rate
  (binomial), a numeric one as a mean; **score** = ``Phi`` of the bucket's test statistic past
  the metric's alert band, in standard errors (0.99 = 2.33 past the band's edge).
- ``"river:MODULE.CLASS"``: any River anomaly detector per (key, metric) (``river_member.py``),
  behind the ensemble's novelty calibration and refractory stage, so its **score** means what
  the ensemble's does. One Python call per event: slow (River is per event).

Per-event rows (ensemble, river) are thinned per (key, metric) in event time: after a row at
``t`` the series has no row before ``t + cooldown_ms`` (``anomaly_rows.keep_per_cooldown``); the
rates detector reports an episode of alerting buckets at its start and once per cooldown.

Keys are arbitrary hashable values (strings) interned to dense ints in order of first
appearance: state is numpy arrays indexed by key id (one dict lookup per event, no per-key
Python objects except River's models). Everything is score-then-learn and deterministic; outputs
do not depend on how the input is cut into batches, and :meth:`KeyedDetector.snapshot` /
:meth:`KeyedDetector.restore` continue with identical outputs. No clock is read: the caller
passes ``now_ms`` (the wall clock) for ``detected_at``.
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any

import numpy as np

from eddy.operators.anomaly.anomaly_rows import (
    NO_TIME,
    anomaly_rows,
    empty_anomalies,
    keep_per_cooldown,
)
from eddy.operators.anomaly.default import DEFAULT_CALIBRATION, DEFAULT_REFRACTORY, default_ensemble
from eddy.operators.anomaly.ensemble import Ensemble
from eddy.operators.anomaly.rates import RatesScorer
from eddy.operators.anomaly.rates_params import parse_rates_params
from eddy.operators.anomaly.river_member import RiverMember, check_river
from eddy.operators.drift import empty_alerts

__all__ = ["DetectOutput", "DetectorConfig", "KeyedDetector"]

_SNAPSHOT_VERSION = 1


@dataclass(frozen=True)
class DetectorConfig:
    """One detect stage's settings, validated on construction.

    ``metrics``: names, the column order of ``values``; ``bool_metrics``: True where a metric is
    a bool field (values 0/1, NaN missing); ``detector``: ``"ensemble"``, ``"rates"`` or
    ``"river:MODULE.CLASS"``; ``params``: the sorted items of the spec's params table (rates:
    ``rates_params.RATES_PARAMS``; river: the class's constructor arguments; ensemble: none);
    ``threshold``: score at/above which a row is emitted; ``cooldown_ms``: see the module
    docstring; ``seed``: for randomised detectors (River's seeds)."""

    metrics: tuple[str, ...]
    bool_metrics: tuple[bool, ...]
    detector: str = "ensemble"
    params: tuple[tuple[str, Any], ...] = ()
    threshold: float = 0.99
    cooldown_ms: int = 30_000
    seed: int = 0

    def __post_init__(self) -> None:
        m = self.metrics
        if (
            not isinstance(m, tuple)
            or not m
            or not all(isinstance(x, str) and x for x in m)
            or len(set(m)) != len(m)
        ):
            raise ValueError(f"metrics: expected a non-empty tuple of distinct names, got {m!r}")
        b = self.bool_metrics
        if (
            not isinstance(b, tuple)
            or len(b) != len(m)
            or not all(isinstance(x, bool | np.bool_) for x in b)
        ):
            raise ValueError(f"bool_metrics: expected {len(m)} bools (one per metric), got {b!r}")
        p = self.params
        if not isinstance(p, tuple) or not all(
            isinstance(x, tuple) and len(x) == 2 and isinstance(x[0], str) for x in p
        ):
            raise ValueError(f"params: expected (name, value) pairs, got {p!r}")
        if len({k for k, _ in p}) != len(p):
            raise ValueError(f"params: a name is given twice in {p!r}")
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, int | float) or not 0.0 < t < 1.0:
            raise ValueError(f"threshold: expected a number in (0, 1), got {t!r}")
        c = self.cooldown_ms
        if isinstance(c, bool) or not isinstance(c, int) or c < 0:
            raise ValueError(f"cooldown_ms: expected an int >= 0 (milliseconds), got {c!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed: expected an int, got {self.seed!r}")
        d = self.detector
        if d == "ensemble":
            if p:
                raise ValueError(
                    f"params.{p[0][0]}: unknown parameter of the ensemble detector; known: (none)"
                )
        elif d == "rates":
            parse_rates_params(m, b, dict(p))
        elif isinstance(d, str) and d.startswith("river:"):
            check_river(d, dict(p), self.seed)
        else:
            raise ValueError(
                f"detector: expected ensemble, rates or river:MODULE.CLASS "
                f"(e.g. river:anomaly.HalfSpaceTrees), got {d!r}"
            )


@dataclass
class DetectOutput:
    """What one call produced: anomaly rows (``anomaly_rows.ANOMALY_COLUMNS``: key, metric,
    value, score, threshold, expected_low, expected_high, detectors, event_time, detected_at)
    and drift alerts (``drift.ALERT_COLUMNS``); both may be empty (all columns, no rows)."""

    anomalies: dict[str, np.ndarray] = field(default_factory=empty_anomalies)
    drift_alerts: dict[str, np.ndarray] = field(default_factory=empty_alerts)


class KeyedDetector:
    """Anomaly detection over the metrics of many keys (see the module docstring)."""

    def __init__(self, config: DetectorConfig) -> None:
        self.config = c = config
        self._key_of: dict[Any, int] = {}
        self._names = np.empty(0, dtype=object)  # key id -> key
        self._metric_names = np.asarray(c.metrics, dtype=object)
        self._bool_cols = np.flatnonzero(c.bool_metrics)
        self._rates: RatesScorer | None = None
        self._ens: Ensemble | None = None
        self._last_row = np.zeros(0, np.int64)  # per slot: event time of its last row
        if c.detector == "rates":
            params = parse_rates_params(c.metrics, c.bool_metrics, dict(c.params))
            self._rates = RatesScorer(c.metrics, c.bool_metrics, params, c.threshold, c.cooldown_ms)
        elif c.detector == "ensemble":
            self._ens = default_ensemble(c.seed)
        else:  # river: calibrated and suppressed like the ensemble (registry.py's "hst")
            member = RiverMember(c.detector, dict(c.params), c.seed)
            self._ens = Ensemble(
                [member], "novelty", DEFAULT_CALIBRATION, refractory=DEFAULT_REFRACTORY
            )

    # -- public -----------------------------------------------------------------------------
    def update(
        self,
        keys: np.ndarray,
        ts_ms: np.ndarray,
        values: np.ndarray,
        now_ms: int,
        seen_ms: tuple[np.ndarray, int] | None = None,
    ) -> DetectOutput:
        """Score, then learn, a batch (rows in arrival order); ``now_ms`` stamps
        ``detected_at``. ``values`` is (n, len(metrics)); NaN = missing (skipped).
        ``seen_ms``: the stream's latest event time up to each row and after the batch, for a
        detector that holds only some of the stream's keys (the rates detector's buckets
        close by it)."""
        k, ts, v = self._check(keys, ts_ms, values)
        ids = self._intern(k)
        if self._rates is not None:
            rows, drift = self._rates.update(ids, ts, v, self._names, now_ms, seen_ms)
            return DetectOutput(rows, drift)
        return DetectOutput(self._score_events(ids, ts, v, now_ms), empty_alerts())

    def flush(self, now_ms: int) -> DetectOutput:
        """End of bounded input: close what is open (the rates detector's buckets)."""
        if self._rates is not None:
            rows, drift = self._rates.flush(self._names, now_ms)
            return DetectOutput(rows, drift)
        return DetectOutput()

    def snapshot(self) -> bytes:
        """Everything learned, as bytes (:meth:`restore` continues identically)."""
        state = {
            "version": _SNAPSHOT_VERSION,
            "layout": self._layout(self.config),
            "keys": list(self._key_of),
            "rates": self._rates.state() if self._rates is not None else None,
            "ensemble": self._ens,
            "last_row": self._last_row,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, config: DetectorConfig, snap: bytes) -> KeyedDetector:
        """A detector with ``config``'s settings and the snapshot's state. The snapshot must be
        of the same metrics, detector and params (``threshold``/``cooldown_ms`` may change)."""
        state = pickle.loads(snap)
        if not isinstance(state, dict) or state.get("version") != _SNAPSHOT_VERSION:
            raise ValueError("restore: not a KeyedDetector snapshot")
        if state["layout"] != cls._layout(config):
            raise ValueError(
                f"restore: the snapshot is of {state['layout']!r} (metrics, bool_metrics, "
                f"detector, params), the config of {cls._layout(config)!r}"
            )
        det = cls(config)
        keys = state["keys"]
        det._key_of = {key: i for i, key in enumerate(keys)}
        det._names = np.empty(max(len(keys), 8), dtype=object)
        for i, key in enumerate(keys):
            det._names[i] = key
        if det._rates is not None:
            det._rates.load_state(state["rates"])
        else:
            det._ens = state["ensemble"]
        det._last_row = state["last_row"]
        return det

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _layout(c: DetectorConfig) -> tuple[Any, ...]:
        return (c.metrics, c.bool_metrics, c.detector, c.params)

    def _check(
        self, keys: Any, ts_ms: Any, values: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        m = len(self.config.metrics)
        k = np.asarray(keys, dtype=object)
        ts = np.ascontiguousarray(ts_ms, dtype=np.int64)
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 1 and m == 1:
            v = v[:, None]
        n = k.shape[0] if k.ndim == 1 else -1
        if n < 0 or ts.shape != (n,) or v.shape != (n, m):
            raise ValueError(
                f"update: expected keys (n,), ts_ms (n,) and values (n, {m}); got "
                f"{k.shape}, {ts.shape}, {v.shape}"
            )
        if len(self._bool_cols):
            b = v[:, self._bool_cols]
            bad = ~((b == 0.0) | (b == 1.0) | np.isnan(b))
            if bad.any():
                r, j = np.argwhere(bad)[0]
                metric = self.config.metrics[self._bool_cols[j]]
                raise ValueError(
                    f"update: {metric} is a bool metric (expected 0, 1 or NaN), got {b[r, j]!r}"
                )
        return k, ts, np.ascontiguousarray(v)

    def _intern(self, keys: np.ndarray) -> np.ndarray:
        """Dense key ids (new keys get the next ids, in order of appearance)."""
        lst = keys.tolist()
        ids = np.fromiter(map(self._key_of.get, lst, repeat(-1)), np.int64, len(lst))
        new = np.flatnonzero(ids < 0)
        if len(new):
            for i in new.tolist():
                ids[i] = self._key_of.setdefault(lst[i], len(self._key_of))
            n = len(self._key_of)
            if n > len(self._names):
                grown = np.empty(max(n, 2 * len(self._names), 8), dtype=object)
                grown[: len(self._names)] = self._names
                self._names = grown
            for i in new.tolist():
                self._names[ids[i]] = lst[i]
        return ids

    def _score_events(
        self, ids: np.ndarray, ts: np.ndarray, v: np.ndarray, now_ms: int
    ) -> dict[str, np.ndarray]:
        """Ensemble or River: one score per (event, metric); rows where it reaches the
        threshold, thinned by the cooldown."""
        assert self._ens is not None
        c = self.config
        m = len(c.metrics)
        slots = (ids[:, None] * m + np.arange(m, dtype=np.int64)[None, :]).ravel()
        t = np.repeat(ts, m)
        x = v.ravel()
        out = self._ens.score_learn(slots, t, x, c.threshold)
        cand = np.flatnonzero((out.scores >= c.threshold) & np.isfinite(x))
        if not len(cand):
            return empty_anomalies()
        n_slots = int(slots.max()) + 1
        if n_slots > len(self._last_row):
            extra = max(n_slots, 2 * len(self._last_row)) - len(self._last_row)
            self._last_row = np.concatenate([self._last_row, np.full(extra, NO_TIME)])
        idx = cand[keep_per_cooldown(slots[cand], t[cand], c.cooldown_ms, self._last_row)]
        names = self._ens.names
        detectors = [
            [name for d, name in enumerate(names) if vote >> d & 1]
            for vote in out.votes[idx].tolist()
        ]
        return anomaly_rows(
            self._names[ids[idx // m]],
            self._metric_names[idx % m],
            x[idx],
            out.scores[idx],
            out.lower[idx],
            out.upper[idx],
            detectors,
            t[idx],
            now_ms,
            c.threshold,
        )
