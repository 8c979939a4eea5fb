"""A test oracle: the hard-wired partner-health scorer the generic ``rates`` detector replaced.

``HealthScorer`` (fill rate, eCPM, latency, error rate per partner on one-second buckets) and
``detect_rows`` (its episode and cooldown rule) are kept here unchanged, so that
``test_rates.py`` can show the generic detector, configured with the same bands, flags exactly
what they flagged.

`HealthScorer`: count-aware monitoring of per-key service health (fill, eCPM, latency, errors).

Generic detectors on trailing means see a smoothed ramp and cannot tell 3 events from 3,000.
This scorer instead aggregates outcomes into **tumbling event-time buckets** (default 1 s) per
key and tests each closed bucket against the key's own baseline with the right noise model:

- ``fill_rate`` and ``error_rate`` are proportions: a binomial test (signed root deviance of the
  bucket's k of n against the null proportion, so 3 of 10 and 300 of 1,000 weigh differently);
- ``ecpm`` (revenue per 1,000 filled impressions) and ``mean_latency_ms`` are tested on the mean
  log value of the bucket's fills / outcomes against the baseline's log mean and log variance
  (revenues and latencies are multiplicative, roughly log-normal).

Tests are one-sided (the direction that hurts: fill and eCPM down, latency and errors up) and
their null is the edge of a **tolerance band** around the baseline, not the baseline itself:
fill rate above ``(1 - fill_drop) x`` baseline, eCPM above ``(1 - ecpm_drop) x``, latency below
``latency_rise x``, error rate below baseline ``+ error_rise``. So an alert needs a material change
(what an operator pages for) that is also significant for the bucket's counts; routine shifts, e.g.
a bandit moving traffic between contexts, stay inside the band. ``score = Phi(r)`` for the
signed test statistic ``r`` (finely resolved; 0.5 at the band's edge, 0.99 at 2.33 standard
errors past it).

The baseline is an exponentially weighted sum of past buckets (half-life ``half_life_buckets``),
learned per metric only from buckets that did not alert, so an incident does not teach itself as
normal; after ``relearn_buckets`` consecutive alerting buckets the new level is accepted (a lasting
change, not an incident). No bucket is scored before its key has ``warmup_buckets`` buckets.

A bucket closes when an event ``close_lag_ms`` past its end has been seen (any key); an event for
a bucket its key has already closed joins that key's next open bucket (never dropped).
Score-then-learn, deterministic, independent of how the input is cut into batches; state is
numpy arrays plus a small dict of open buckets (picklable).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "HEALTH_DETECTORS",
    "HEALTH_METRICS",
    "HealthConfig",
    "HealthOutput",
    "HealthScorer",
    "detect_rows",
]

#: the metrics scored per key, in column order of :class:`HealthOutput`
HEALTH_METRICS = ("fill_rate", "ecpm", "mean_latency_ms", "error_rate")
#: the test behind each metric (the anomaly record's ``detectors``)
HEALTH_DETECTORS = ("binomial", "lognormal_mean", "lognormal_mean", "binomial")

# bucket statistics (columns); each metric learns only its own columns
_N, _FILLS, _K, _LREV, _LREV2, _REV, _NLAT, _LLAT, _LLAT2, _LAT, _NERR, _ERRS = range(12)
_N_STATS = 12
_GROUPS = ((_N, _FILLS), (_K, _LREV, _LREV2, _REV), (_NLAT, _LLAT, _LLAT2, _LAT), (_NERR, _ERRS))
#: evidence spans (in buckets) scored at every bucket: a busy key alerts on one bucket, a
#: quiet one (a partner the bandit routes little traffic to) on the sum of its last few
SPANS = (1, 2, 4, 8)

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class HealthConfig:
    """Settings of :class:`HealthScorer` (see the module docstring for their meaning)."""

    bucket_ms: int = 1_000
    close_lag_ms: int = 0
    half_life_buckets: float = 60.0
    warmup_buckets: int = 10
    relearn_buckets: int = 30
    min_requests: int = 10
    min_fills: int = 5
    fill_drop: float = 0.5
    ecpm_drop: float = 0.5
    latency_rise: float = 2.0
    error_rise: float = 0.1
    threshold: float = 0.99

    def __post_init__(self) -> None:
        for name in ("bucket_ms", "warmup_buckets", "relearn_buckets", "min_requests", "min_fills"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"HealthConfig.{name}: expected an int >= 1, got {v!r}")
        if not isinstance(self.close_lag_ms, int) or self.close_lag_ms < 0:
            raise ValueError(
                f"HealthConfig.close_lag_ms: expected an int >= 0, got {self.close_lag_ms!r}"
            )
        if not self.half_life_buckets > 0:
            raise ValueError(
                f"HealthConfig.half_life_buckets: expected > 0, got {self.half_life_buckets!r}"
            )
        for name in ("fill_drop", "ecpm_drop"):
            v = getattr(self, name)
            if not 0.0 < v < 1.0:
                raise ValueError(f"HealthConfig.{name}: expected a fraction in (0, 1), got {v!r}")
        if not self.latency_rise > 1.0:
            raise ValueError(f"HealthConfig.latency_rise: expected > 1, got {self.latency_rise!r}")
        if not 0.0 < self.error_rise < 1.0:
            raise ValueError(f"HealthConfig.error_rise: expected (0, 1), got {self.error_rise!r}")
        if not 0.0 < self.threshold < 1.0:
            raise ValueError(f"HealthConfig.threshold: expected (0, 1), got {self.threshold!r}")


@dataclass(frozen=True)
class HealthOutput:
    """One row per closed (key, bucket); columns of the 2-d arrays follow ``HEALTH_METRICS``.

    ``ts_ms`` is the bucket's end (the event time by which its evidence was complete); ``scores``
    is NaN where there is no opinion (warming up, too few events); ``lower``/``upper`` bound the
    values that would not alert (``inf`` where unbounded)."""

    keys: NDArray[np.int64]
    ts_ms: NDArray[np.int64]
    values: F64
    scores: F64
    lower: F64
    upper: F64
    is_anomaly: NDArray[np.bool_]

    def __len__(self) -> int:
        return int(self.keys.shape[0])


def _phi(r: F64) -> F64:
    erf = np.vectorize(math.erf, otypes=[np.float64])
    return np.asarray(0.5 * (1.0 + erf(r / math.sqrt(2.0))), dtype=np.float64)


def _root_deviance(k: F64, n: F64, p0: F64) -> F64:
    """Signed root of the binomial deviance of ``k`` of ``n`` against ``p0``: > 0 when above."""
    p = np.clip(k / np.maximum(n, 1.0), 0.0, 1.0)
    q = np.clip(p0, 1e-9, 1.0 - 1e-9)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(p > 0, p * np.log(p / q), 0.0)
        b = np.where(p < 1, (1 - p) * np.log((1 - p) / (1 - q)), 0.0)
    dev = np.sqrt(np.maximum(2.0 * n * (a + b), 0.0))
    return np.asarray(np.sign(p - q) * dev, dtype=np.float64)


@dataclass
class HealthScorer:
    """Per-key health buckets scored against per-key baselines (see the module docstring)."""

    config: HealthConfig = field(default_factory=HealthConfig)
    _base: F64 = field(init=False, repr=False)
    _seen: NDArray[np.int64] = field(init=False, repr=False)
    _streak: NDArray[np.int64] = field(init=False, repr=False)
    _closed: NDArray[np.int64] = field(init=False, repr=False)
    _ring: F64 = field(init=False, repr=False)
    _ring_id: NDArray[np.int64] = field(init=False, repr=False)
    _open: dict[tuple[int, int], F64] = field(init=False, repr=False)
    _max_ts: int = field(init=False, default=np.iinfo(np.int64).min)

    def __post_init__(self) -> None:
        self._base = np.zeros((0, _N_STATS))
        self._seen = np.zeros(0, np.int64)
        self._streak = np.zeros((0, len(HEALTH_METRICS)), np.int64)
        self._closed = np.zeros(0, np.int64)
        self._ring = np.zeros((0, SPANS[-1], _N_STATS))
        self._ring_id = np.zeros((0, SPANS[-1]), np.int64)
        self._open = {}
        self._decay = 0.5 ** (1.0 / self.config.half_life_buckets)

    def _grow(self, n_keys: int) -> None:
        k = self._base.shape[0]
        if n_keys <= k:
            return
        extra = max(n_keys, 2 * k, 8) - k
        self._base = np.concatenate([self._base, np.zeros((extra, _N_STATS))])
        self._seen = np.concatenate([self._seen, np.zeros(extra, np.int64)])
        self._streak = np.concatenate(
            [self._streak, np.zeros((extra, len(HEALTH_METRICS)), np.int64)]
        )
        self._closed = np.concatenate([self._closed, np.full(extra, np.iinfo(np.int64).min)])
        self._ring = np.concatenate([self._ring, np.zeros((extra, SPANS[-1], _N_STATS))])
        self._ring_id = np.concatenate([self._ring_id, np.full((extra, SPANS[-1]), -(2**62))])

    def update(
        self,
        keys: NDArray[np.int64],
        ts_ms: NDArray[np.int64],
        filled: NDArray[np.bool_],
        revenue: F64,
        latency_ms: F64,
        error: NDArray[np.bool_],
    ) -> HealthOutput:
        """Add a batch of outcomes; return the scores of every bucket it closes."""
        keys = np.asarray(keys, dtype=np.int64)
        ts = np.asarray(ts_ms, dtype=np.int64)
        if len(keys):
            self._add(keys, ts, filled, revenue, latency_ms, error)
            self._max_ts = max(self._max_ts, int(ts.max()))
        return self._close(self._max_ts - self.config.close_lag_ms)

    def flush(self) -> HealthOutput:
        """End of input: close and score every open bucket."""
        return self._close(np.iinfo(np.int64).max)

    # -- internals ------------------------------------------------------------------------
    def _add(
        self,
        keys: NDArray[np.int64],
        ts: NDArray[np.int64],
        filled: NDArray[np.bool_],
        revenue: F64,
        latency_ms: F64,
        error: NDArray[np.bool_],
    ) -> None:
        self._grow(int(keys.max()) + 1)
        b = np.maximum(ts // self.config.bucket_ms, self._closed[keys] + 1)
        f = np.asarray(filled, dtype=bool)
        rev = np.asarray(revenue, dtype=np.float64)
        lat = np.asarray(latency_ms, dtype=np.float64)
        has_rev = f & np.isfinite(rev)
        lrev = np.where(has_rev, np.log(np.maximum(np.where(has_rev, rev, 1.0), 1e-9)), 0.0)
        has_lat = np.isfinite(lat) & (lat > 0)
        llat = np.where(has_lat, np.log(np.where(has_lat, lat, 1.0)), 0.0)
        stats = np.zeros((len(keys), _N_STATS))
        stats[:, _N] = 1.0
        stats[:, _FILLS] = f
        stats[:, _K] = has_rev
        stats[:, _LREV] = lrev
        stats[:, _LREV2] = lrev * lrev
        stats[:, _REV] = np.where(has_rev, rev, 0.0)
        stats[:, _NLAT] = has_lat
        stats[:, _LLAT] = llat
        stats[:, _LLAT2] = llat * llat
        stats[:, _LAT] = np.where(has_lat, lat, 0.0)
        stats[:, _NERR] = 1.0
        stats[:, _ERRS] = np.asarray(error, dtype=bool)
        b0 = int(b.min())
        span = int(b.max()) - b0 + 1
        ids, inv = np.unique(keys * span + (b - b0), return_inverse=True)
        inv = inv.reshape(-1)
        sums = np.stack(
            [np.bincount(inv, weights=stats[:, j], minlength=len(ids)) for j in range(_N_STATS)],
            axis=1,
        )
        for pair, s in zip(ids.tolist(), sums, strict=True):
            k, bucket = divmod(pair, span)
            acc = self._open.get((k, bucket + b0))
            self._open[(k, bucket + b0)] = s if acc is None else acc + s

    def _close(self, until_ms: int) -> HealthOutput:
        bms = self.config.bucket_ms
        due = sorted((b, k) for (k, b) in self._open if (b + 1) * bms <= until_ms)
        parts: list[HealthOutput] = []
        i = 0
        while i < len(due):
            b = due[i][0]
            j = i
            while j < len(due) and due[j][0] == b:
                j += 1
            ks = np.array([k for _, k in due[i:j]], dtype=np.int64)
            x = np.stack([self._open.pop((int(k), b)) for k in ks.tolist()])
            parts.append(self._score_learn(ks, b, x))
            self._closed[ks] = b
            i = j
        if not parts:
            m = len(HEALTH_METRICS)
            e = np.zeros((0, m))
            return HealthOutput(
                np.zeros(0, np.int64), np.zeros(0, np.int64), e, e, e, e, np.zeros((0, m), bool)
            )
        return HealthOutput(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def _score_learn(self, ks: NDArray[np.int64], bucket: int, x: F64) -> HealthOutput:
        c = self.config
        base = self._base[ks]
        # the last SPANS[-1] buckets per key (by bucket id), newest first, the current included
        self._ring[ks, 1:] = self._ring[ks, :-1]
        self._ring_id[ks, 1:] = self._ring_id[ks, :-1]
        self._ring[ks, 0], self._ring_id[ks, 0] = x, bucket
        ages = bucket - self._ring_id[ks]  # (m, R)
        r = np.full((len(ks), len(HEALTH_METRICS)), np.nan)
        values, lower, upper = np.full_like(r, np.nan), np.full_like(r, np.nan), np.zeros_like(r)
        for span in SPANS:
            agg = np.einsum("mr,mrs->ms", (ages < span).astype(np.float64), self._ring[ks])
            v, rs, lo, up = self._test(agg, base, c.min_requests, c.min_fills)
            better = np.isnan(r) & ~np.isnan(rs) | (rs > r)
            r = np.where(better, rs, r)
            values = np.where(better | (span == 1), v, values)
            lower, upper = (np.where(span == 1, lo, lower), np.where(span == 1, up, upper))
        # the current bucket itself must lean the bad way: older buckets alone do not alert
        _, r1, _, _ = self._test(x, base, 1, 1)
        r = np.where(r1 <= 0, np.minimum(r, r1), r)
        r[self._seen[ks] < c.warmup_buckets, :] = np.nan
        scores = _phi(np.nan_to_num(r, nan=-40.0))
        scores[np.isnan(r)] = np.nan
        hit = scores >= c.threshold
        # learn: per metric, unless it alerted (an incident is not the new normal); after
        # relearn_buckets alerting buckets in a row the level is a lasting change: the baseline
        # restarts from the last few buckets
        streak = np.where(hit, self._streak[ks] + 1, 0)
        relearn = streak >= c.relearn_buckets
        self._streak[ks] = np.where(relearn, 0, streak)
        recent = self._ring[ks].sum(axis=1)
        for mi, cols in enumerate(_GROUPS):
            cl = np.array(cols, dtype=np.int64)
            rows = ks[~hit[:, mi]]
            sub = self._base[rows][:, cl] * self._decay + x[~hit[:, mi]][:, cl]
            self._base[np.ix_(rows, cl)] = sub
            rows = ks[relearn[:, mi]]
            self._base[np.ix_(rows, cl)] = recent[relearn[:, mi]][:, cl]
        self._seen[ks] += 1
        ts = np.full(len(ks), (bucket + 1) * c.bucket_ms, dtype=np.int64)
        return HealthOutput(ks, ts, values, scores, lower, upper, hit)

    def _test(
        self, x: F64, base: F64, min_requests: int, min_fills: int
    ) -> tuple[F64, F64, F64, F64]:
        """Per row of bucket statistics ``x`` against baselines ``base``: values, signed test
        statistics (> 0: worse than the band's edge; NaN: too few events or no baseline), and
        the band ``[lower, upper]``, one column per metric."""
        c = self.config
        m = len(HEALTH_METRICS)
        values, r = np.full((len(x), m), np.nan), np.full((len(x), m), np.nan)
        lower, upper = np.zeros((len(x), m)), np.zeros((len(x), m))
        with np.errstate(divide="ignore", invalid="ignore"):
            n, bn = x[:, _N], base[:, _N]
            # fill rate: binomial, null = (1 - fill_drop) x baseline
            values[:, 0] = x[:, _FILLS] / n
            p_fill = (1.0 - c.fill_drop) * base[:, _FILLS] / bn
            r[:, 0] = -_root_deviance(x[:, _FILLS], n, p_fill)
            lower[:, 0], upper[:, 0] = p_fill, 1.0
            # eCPM: mean log revenue of the fills, null = log mean + log(1 - ecpm_drop)
            k, bk = x[:, _K], base[:, _K]
            values[:, 1] = 1000.0 * x[:, _REV] / k
            mu = base[:, _LREV] / bk
            var = np.maximum(base[:, _LREV2] / bk - mu * mu, 1e-4)
            r[:, 1] = (mu + math.log(1.0 - c.ecpm_drop) - x[:, _LREV] / k) / np.sqrt(var / k)
            lower[:, 1] = (1.0 - c.ecpm_drop) * 1000.0 * base[:, _REV] / bk
            upper[:, 1] = np.inf
            r[k < min_fills, 1] = np.nan
            # latency: mean log latency, null = log mean + log(latency_rise)
            nl, bnl = x[:, _NLAT], base[:, _NLAT]
            values[:, 2] = x[:, _LAT] / nl
            mu = base[:, _LLAT] / bnl
            var = np.maximum(base[:, _LLAT2] / bnl - mu * mu, 1e-4)
            r[:, 2] = (x[:, _LLAT] / nl - mu - math.log(c.latency_rise)) / np.sqrt(var / nl)
            upper[:, 2] = c.latency_rise * base[:, _LAT] / bnl
            r[nl < min_requests, 2] = np.nan
            # error rate: binomial, null = baseline + error_rise
            values[:, 3] = x[:, _ERRS] / x[:, _NERR]
            p_err = np.minimum(base[:, _ERRS] / base[:, _NERR] + c.error_rise, 1.0)
            r[:, 3] = _root_deviance(x[:, _ERRS], x[:, _NERR], p_err)
            upper[:, 3] = p_err
        r[n < min_requests, :] = np.nan
        r[~np.isfinite(r)] = np.nan  # an empty baseline has no opinion
        return values, r, lower, upper


_FIELDS = ("keys", "ts_ms", "values", "scores", "lower", "upper", "is_anomaly")


_EPISODE_GAP_MS = 1_000  # consecutive alerting buckets form one episode (one record)


def detect_rows(
    health: HealthOutput,
    names: dict[int, str],
    cooldown_ms: int,
    last_hit: dict[tuple[int, int], int],
    last_alert: dict[tuple[int, int], int],
) -> list[tuple[str, int, str]]:
    """``(key, event time, metric)`` of the closed buckets that alerted, thinned as the old
    engine did: alerting buckets of a (key, metric) form an episode while no more than
    ``_EPISODE_GAP_MS`` apart; an episode is recorded at its start and, while it lasts, at
    most once per cooldown. ``last_hit``/``last_alert`` carry the state across calls."""
    out = []
    for r, mi in np.argwhere(health.is_anomaly).tolist():
        k, t = int(health.keys[r]), int(health.ts_ms[r])
        previous = last_hit.get((k, mi))
        last_hit[(k, mi)] = t
        ongoing = previous is not None and t - previous <= _EPISODE_GAP_MS
        last = last_alert.get((k, mi))
        if ongoing and last is not None and t - last < cooldown_ms:
            continue
        last_alert[(k, mi)] = t
        out.append((names[k], t, HEALTH_METRICS[mi]))
    return out
