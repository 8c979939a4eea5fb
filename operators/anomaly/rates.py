"""`RatesScorer`: count-aware tests of any bool or numeric metric per key, on event-time buckets.

The generic form of ``health.py``'s ``HealthScorer`` (same tests, same mechanisms, any metrics).
A detector on per-event values cannot tell 3 bad events from 3,000; this one aggregates each
key's events into **tumbling event-time buckets** (param ``bucket``, default 1 s) and tests every
closed bucket against the key's own baseline with the noise model of the metric:

- a **bool** metric (values 0/1) is a rate: binomial test, the signed root deviance of the
  bucket's ``k`` of ``n`` against the null rate (so 3 of 10 and 300 of 1,000 weigh differently);
- a **numeric** metric with a relative band (``"drop 50%"``) is tested on the mean log of the
  bucket's *positive* values against the baseline's log mean and log variance (prices and
  latencies are multiplicative, roughly log-normal; non-positive values are not counted, e.g. a
  sale of 0 when nothing was sold); with an absolute band (``"rise 5"``) on the plain mean
  against the baseline mean and variance.

The null is not the baseline but the **edge of the metric's alert band** (``rates_params.py``):
an alert needs a material change (what an operator pages for) that is also significant for the
bucket's counts. **What a score means**: ``score = Phi(r)`` for the test statistic ``r`` of the
bucket past the band's edge, in standard errors: 0.5 at the edge, 0.99 at 2.33 standard errors
past it (``change`` bands: the larger of the two one-sided statistics). NaN = no opinion (key
still warming up, too few values, no baseline), never an alert.

Evidence spans (param ``spans``, default 1, 2, 4, 8 buckets): every bucket is also tested summed
with the key's previous buckets, the strongest span counts, so a busy key alerts on one bucket
and a quiet one on a few; but the current bucket itself must be past the band's edge (older
buckets alone do not alert). The baseline is an exponentially weighted sum of past buckets
(``half_life`` buckets), learned per metric only from buckets that did not alert, so an incident
does not teach itself as normal; after ``relearn`` alerting buckets in a row the new level is a
lasting change and the baseline restarts from the last few buckets. No bucket of a key is scored
before ``warmup`` buckets. Score-then-learn.

Rows: alerting buckets of a (key, metric) form an *episode* while they are at most one bucket
apart; an episode is reported at its first bucket and, while it lasts, at most once per cooldown
(a new episode at once). ``event_time`` of a row is the bucket's end; ``value`` the bucket's rate
or mean (relative numeric: the plain mean of its positive values); ``expected_low/high`` the band.
With ``drift`` (default on) each metric's bucket values are also watched by a slow Page-Hinkley
drift test (stream ``feature.METRIC``; alerting buckets left out as incidents, not a new regime).

Event time closes buckets: after each batch, every bucket whose end is at least ``close_lag``
before the latest event time seen is closed. An event whose bucket was already past that
watermark *when it arrived* (the latest event time before it, minus ``close_lag``) joins its key's
first bucket the watermark has not passed. Buckets are accumulated event by event in arrival
order, so outputs do not depend on how the input is cut into batches (bit for bit). State is
numpy arrays (one row per key) plus the open buckets as arrays; picklable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from eddy.operators.anomaly.anomaly_rows import NO_TIME, anomaly_rows, empty_anomalies
from eddy.operators.anomaly.rates_kernels import BOOL, LOG, MEAN, WIDTH, accumulate, close_buckets
from eddy.operators.anomaly.rates_params import RatesParams
from eddy.operators.drift import ALERT_COLUMNS, DriftConfig, DriftMonitor, empty_alerts

__all__ = ["FEATURE_DRIFT", "TEST_NAMES", "RatesScorer"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
Columns = dict[str, np.ndarray]

#: the name of each test (a row's ``detectors``), by kind: bool, relative numeric, absolute
TEST_NAMES = ("binomial", "lognormal_mean", "normal_mean")
#: the drift watch on bucket values (as ``adserving.py``'s): one value per key-bucket, 30 of
#: warm-up; a bucket adds at most clip - slack = 2 to the evidence, so an alert needs >= 20
#: buckets of shift beyond 3 sd that the tests did not flag; min_std: rates are noisy at +-1 %
FEATURE_DRIFT = DriftConfig(
    block=1, warmup=30, half_life=30.0, threshold=40.0, slack=1.0, clip=3.0, min_std=0.01
)
_NO_BUCKET = -(2**62)


def _unique_pairs(k: I64, b: I64) -> tuple[I64, I64, I64]:
    """Distinct (key, bucket) pairs sorted by bucket then key, and each input's pair index."""
    order = np.lexsort((k, b))
    ks, bs = k[order], b[order]
    new = np.ones(len(order), dtype=bool)
    new[1:] = (ks[1:] != ks[:-1]) | (bs[1:] != bs[:-1])
    inv = np.empty(len(order), dtype=np.int64)
    inv[order] = np.cumsum(new) - 1
    return ks[new], bs[new], inv


class RatesScorer:
    """Per-key bucket tests of the metrics (see the module docstring).

    Keys are dense ints interned by the caller; ``names`` (an object array, key id -> key)
    labels the output rows. ``threshold`` and ``cooldown_ms`` are the detect stage's.
    """

    _STATE = (
        "_base", "_seen", "_streak", "_ring", "_ring_id", "_last_hit", "_last_row",
        "_open_k", "_open_b", "_open_x", "_max_ts", "_floor_b",
    )  # fmt: skip

    def __init__(
        self,
        metrics: Sequence[str],
        bool_metrics: Sequence[bool],
        params: RatesParams,
        threshold: float,
        cooldown_ms: int,
    ) -> None:
        self.metrics = tuple(metrics)
        self.params = p = params
        self.threshold = float(threshold)
        self.cooldown_ms = int(cooldown_ms)
        bands = p.bands
        kinds = [
            BOOL if is_bool else (LOG if band.relative else MEAN)
            for is_bool, band in zip(bool_metrics, bands, strict=True)
        ]
        self._kinds = np.array(kinds, dtype=np.int64)
        self._rels = np.array([b.relative for b in bands], dtype=np.bool_)
        self._downs = np.array([b.down for b in bands], dtype=np.bool_)
        self._ups = np.array([b.up for b in bands], dtype=np.bool_)
        self._amounts = np.array([b.amount for b in bands], dtype=np.float64)
        self._widths = np.array([WIDTH[k] for k in self._kinds], dtype=np.int64)
        self._c0s = np.concatenate([[0], np.cumsum(self._widths)[:-1]]).astype(np.int64)
        self._spans = np.array(p.spans, dtype=np.int64)
        self._decay = 0.5 ** (1.0 / p.half_life)
        self._detectors = [[TEST_NAMES[k]] for k in self._kinds.tolist()]
        m, c, r = len(self.metrics), int(self._widths.sum()), int(self._spans.max())
        self._base = np.zeros((0, c))
        self._seen = np.zeros(0, np.int64)
        self._streak = np.zeros((0, m), np.int64)
        self._ring = np.zeros((0, r, c))
        self._ring_id = np.zeros((0, r), np.int64)
        self._last_hit = np.zeros((0, m), np.int64)
        self._last_row = np.zeros((0, m), np.int64)
        self._open_k = np.zeros(0, np.int64)  # open buckets, sorted by bucket then key
        self._open_b = np.zeros(0, np.int64)
        self._open_x = np.zeros((0, c))
        self._max_ts = int(NO_TIME)
        self._floor_b = int(NO_TIME)  # after a flush no event joins a bucket before this one
        self._drift = DriftMonitor(FEATURE_DRIFT) if p.drift else None

    # -- public -----------------------------------------------------------------------------
    def update(
        self,
        keys: I64,
        ts_ms: I64,
        values: F64,
        names: NDArray[np.object_],
        now_ms: int,
        seen_ms: tuple[I64, int] | None = None,
    ) -> tuple[Columns, Columns]:
        """Add a batch (rows in arrival order); return (anomaly rows, drift alerts) of the
        buckets it closes. ``seen_ms`` (the latest event time of the stream up to each row,
        and after the batch) replaces the scorer's own: a shard holding some keys of a stream
        closes buckets by the whole stream's time, as an unsharded run does."""
        if seen_ms is not None:
            self._max_ts = max(self._max_ts, int(seen_ms[1]))
        if len(keys):
            self._grow(int(keys.max()) + 1)
            bms, lag = self.params.bucket_ms, self.params.close_lag_ms
            # the watermark each event met: the latest event time up to it, minus the lag
            if seen_ms is None:
                seen = np.maximum(np.maximum.accumulate(ts_ms), self._max_ts)
                self._max_ts = int(seen[-1])
            else:
                seen = seen_ms[0]
            first_open = (seen - lag) // bms
            bucket = np.maximum(np.maximum(ts_ms // bms, first_open), self._floor_b)
            self._add(keys, bucket, self._stats(values))
        if not len(self._open_b):
            return empty_anomalies(), empty_alerts()
        last = (self._max_ts - self.params.close_lag_ms) // self.params.bucket_ms - 1
        return self._close(int(np.searchsorted(self._open_b, last, side="right")), names, now_ms)

    def flush(self, names: NDArray[np.object_], now_ms: int) -> tuple[Columns, Columns]:
        """End of bounded input: close every open bucket (later events join later buckets)."""
        if not len(self._open_b):
            return empty_anomalies(), empty_alerts()
        self._floor_b = max(self._floor_b, int(self._open_b[-1]) + 1)
        return self._close(len(self._open_b), names, now_ms)

    def state(self) -> dict[str, Any]:
        """Everything learned (numpy arrays and ints; the drift watch as its snapshot)."""
        out = {name: getattr(self, name) for name in self._STATE}
        out["_drift"] = self._drift.snapshot() if self._drift is not None else None
        return out

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state` (taken with the same metrics and params)."""
        for name in self._STATE:
            setattr(self, name, state[name])
        drift = state["_drift"]
        self._drift = DriftMonitor.restore(drift) if drift is not None else None

    # -- internals --------------------------------------------------------------------------
    def _grow(self, n_keys: int) -> None:
        cap = len(self._seen)
        if n_keys <= cap:
            return
        extra = max(n_keys, 2 * cap, 8) - cap
        m, (r, c) = len(self.metrics), self._ring.shape[1:]

        def more(a: np.ndarray, fill: float, shape: tuple[int, ...]) -> np.ndarray:
            return np.concatenate([a, np.full((extra, *shape), fill, dtype=a.dtype)])

        self._base = more(self._base, 0.0, (c,))
        self._seen = more(self._seen, 0, ())
        self._streak = more(self._streak, 0, (m,))
        self._ring = more(self._ring, 0.0, (r, c))
        self._ring_id = more(self._ring_id, _NO_BUCKET, (r,))
        self._last_hit = more(self._last_hit, NO_TIME, (m,))
        self._last_row = more(self._last_row, NO_TIME, (m,))

    def _stats(self, values: F64) -> F64:
        """Per event, the bucket statistics it contributes (columns per metric, see WIDTH)."""
        out = np.zeros((values.shape[0], int(self._widths.sum())))
        for j, (kind, c0) in enumerate(zip(self._kinds.tolist(), self._c0s.tolist(), strict=True)):
            v = values[:, j]
            ok = np.isfinite(v)
            out[:, c0] = ok
            if kind == BOOL:
                out[:, c0 + 1] = np.where(ok, v, 0.0)
            elif kind == LOG:
                pos = ok & (v > 0)
                lv = np.where(pos, np.log(np.where(pos, v, 1.0)), 0.0)
                out[:, c0 + 1] = pos
                out[:, c0 + 2] = lv
                out[:, c0 + 3] = lv * lv
                out[:, c0 + 4] = np.where(pos, v, 0.0)
            else:
                w = np.where(ok, v, 0.0)
                out[:, c0 + 1] = w
                out[:, c0 + 2] = w * w
        return out

    def _add(self, keys: I64, buckets: I64, stats: F64) -> None:
        n_open = len(self._open_k)
        k, b, inv = _unique_pairs(
            np.concatenate([self._open_k, keys]), np.concatenate([self._open_b, buckets])
        )
        acc = np.zeros((len(k), stats.shape[1]))
        acc[inv[:n_open]] = self._open_x
        accumulate(inv[n_open:], stats, acc)
        self._open_k, self._open_b, self._open_x = k, b, acc

    def _close(
        self, n_due: int, names: NDArray[np.object_], now_ms: int
    ) -> tuple[Columns, Columns]:
        if n_due == 0:
            return empty_anomalies(), empty_alerts()
        p = self.params
        ks, bs, x = self._open_k[:n_due], self._open_b[:n_due], self._open_x[:n_due]
        self._open_k, self._open_b = self._open_k[n_due:], self._open_b[n_due:]
        self._open_x = self._open_x[n_due:]
        shape = (n_due, len(self.metrics))
        value, score = np.empty(shape), np.empty(shape)
        lower, upper = np.empty(shape), np.empty(shape)
        hit, emit = np.zeros(shape, np.bool_), np.zeros(shape, np.bool_)
        close_buckets(
            ks, bs, x, self._kinds, self._rels, self._downs, self._ups, self._amounts,
            self._c0s, self._widths, self._spans, float(p.min_events), float(p.min_positive),
            p.warmup, p.relearn, self._decay, self.threshold, p.bucket_ms, self.cooldown_ms,
            self._base, self._seen, self._streak, self._ring, self._ring_id, self._last_hit,
            self._last_row, value, score, lower, upper, hit, emit,
        )  # fmt: skip
        t_end = (bs + 1) * p.bucket_ms
        rows, cols = np.nonzero(emit)
        anomalies = anomaly_rows(
            names[ks[rows]],
            np.asarray(self.metrics, dtype=object)[cols],
            value[rows, cols],
            score[rows, cols],
            lower[rows, cols],
            upper[rows, cols],
            [self._detectors[j] for j in cols.tolist()],
            t_end[rows],
            now_ms,
            self.threshold,
        )
        return anomalies, self._watch(names[ks], t_end, np.where(hit, np.nan, value), now_ms)

    def _watch(self, keys: NDArray[np.object_], t_end: I64, values: F64, now_ms: int) -> Columns:
        """Drift alerts on each metric's bucket values, ordered by event time then metric."""
        if self._drift is None:
            return empty_alerts()
        parts = [
            self._drift.update(f"feature.{m}", keys, t_end, values[:, j], now_ms)
            for j, m in enumerate(self.metrics)
        ]
        parts = [a for a in parts if len(a["alert_id"])]
        if not parts:
            return empty_alerts()
        metric = np.concatenate([np.full(len(a["alert_id"]), j) for j, a in enumerate(parts)])
        out = {c: np.concatenate([a[c] for a in parts]) for c in ALERT_COLUMNS}
        order = np.lexsort((metric, out["event_time"]))
        return {c: v[order] for c, v in out.items()}
