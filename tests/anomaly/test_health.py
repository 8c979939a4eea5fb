"""`HealthScorer`: count-aware partner-health tests on tumbling event-time buckets."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from eddy.operators.anomaly.health import HEALTH_METRICS, HealthConfig, HealthOutput, HealthScorer

ERR = HEALTH_METRICS.index("error_rate")
FILL = HEALTH_METRICS.index("fill_rate")
LAT = HEALTH_METRICS.index("mean_latency_ms")
ECPM = HEALTH_METRICS.index("ecpm")


def _stream(
    seconds: int,
    per_s: int,
    seed: int = 0,
    keys: int = 2,
    bad: tuple[int, int, int, str] | None = None,  # (key, from_s, to_s, kind)
) -> tuple[np.ndarray, ...]:
    """Outcomes of ``keys`` partners, ``per_s`` each per second, optionally one incident."""
    rng = np.random.default_rng(seed)
    n = seconds * per_s * keys
    ts = np.sort(rng.integers(0, seconds * 1000, n))
    k = rng.integers(0, keys, n)
    fill_p = np.full(n, 0.6)
    err_p = np.full(n, 0.02)
    price = np.full(n, 1.5)
    lat = np.full(n, 120.0)
    if bad is not None:
        key, a, b, kind = bad
        hit = (k == key) & (ts >= a * 1000) & (ts < b * 1000)
        if kind == "error":
            err_p[hit] = 0.45
        elif kind == "outage":
            fill_p[hit] *= 0.02
        elif kind == "latency":
            lat[hit] *= 6
        else:
            price[hit] *= 0.25
    err = rng.random(n) < err_p
    filled = ~err & (rng.random(n) < fill_p)
    revenue = np.where(filled, price * np.exp(0.3 * rng.standard_normal(n)), 0.0)
    latency = lat * np.exp(0.4 * rng.standard_normal(n))
    return k.astype(np.int64), ts.astype(np.int64), filled, revenue, latency, err


def _run(scorer: HealthScorer, cols: tuple[np.ndarray, ...], cuts: int = 10) -> HealthOutput:
    outs = [
        scorer.update(*(c[idx] for c in cols))
        for idx in np.array_split(np.arange(len(cols[0])), cuts)
    ]
    outs.append(scorer.flush())
    return HealthOutput(
        *(
            np.concatenate([getattr(o, f) for o in outs])
            for f in ("keys", "ts_ms", "values", "scores", "lower", "upper", "is_anomaly")
        )
    )


@pytest.mark.parametrize(
    ("kind", "metric"),
    [("error", ERR), ("outage", FILL), ("latency", LAT), ("price", ECPM)],
)
def test_each_incident_kind_alerts_on_its_metric_during_the_incident_only(kind, metric) -> None:
    out = _run(HealthScorer(), _stream(90, 100, bad=(1, 50, 56, kind)))
    hit = out.is_anomaly[:, metric]
    times = out.ts_ms[hit]
    assert hit.any() and set(out.keys[hit].tolist()) == {1}
    assert times.min() <= 52_000 and times.max() <= 57_000
    assert not out.is_anomaly[out.keys == 0].any()


def test_quiet_series_never_alerts() -> None:
    out = _run(HealthScorer(), _stream(300, 50, seed=3, keys=4))
    assert len(out) == 300 * 4
    assert not out.is_anomaly.any()


def test_scores_are_count_aware() -> None:
    """The same error rate (30 %) is an anomaly in 1,000 requests but not in 10."""
    sc = HealthScorer(HealthConfig(min_requests=5))
    cols = _stream(20, 1000, keys=2)
    sc.update(*cols)
    ts_big = np.full(1000, 20_500)
    ts_small = np.full(10, 20_500)
    err_big, err_small = np.arange(1000) < 300, np.arange(10) < 3
    keys = np.r_[np.zeros(1000, np.int64), np.ones(10, np.int64)]
    out = sc.update(
        keys,
        np.r_[ts_big, ts_small],
        np.zeros(1010, bool),
        np.zeros(1010),
        np.full(1010, 120.0),
        np.r_[err_big, err_small],
    )
    out = sc.flush()
    by_key = {int(k): out.scores[i, ERR] for i, k in enumerate(out.keys)}
    assert by_key[0] > 0.999 and by_key[1] < 0.99
    assert out.is_anomaly[out.keys == 0, ERR].all()
    assert not out.is_anomaly[out.keys == 1, ERR].any()


def test_warm_up_means_no_opinion() -> None:
    out = _run(HealthScorer(HealthConfig(warmup_buckets=10)), _stream(30, 100, keys=1))
    early = out.ts_ms <= 10_000
    assert np.isnan(out.scores[early]).all()
    assert np.isfinite(out.scores[~early]).any()


def test_batching_never_changes_outputs() -> None:
    cols = _stream(60, 80, seed=5, bad=(0, 30, 36, "error"))
    a = _run(HealthScorer(), cols, cuts=1)
    b = _run(HealthScorer(), cols, cuts=97)
    assert np.array_equal(a.keys, b.keys) and np.array_equal(a.ts_ms, b.ts_ms)
    assert np.array_equal(a.scores, b.scores, equal_nan=True)
    assert np.array_equal(a.is_anomaly, b.is_anomaly)


def test_snapshot_continues_identically() -> None:
    cols = _stream(60, 80, seed=6, bad=(1, 40, 46, "latency"))
    half = len(cols[0]) // 2
    straight = HealthScorer()
    whole = _run(straight, cols, cuts=2)
    sc = HealthScorer()
    first = sc.update(*(c[:half] for c in cols))
    resumed = pickle.loads(pickle.dumps(sc))
    second = resumed.update(*(c[half:] for c in cols))
    last = resumed.flush()
    got = np.concatenate([first.scores, second.scores, last.scores])
    assert np.array_equal(got, whole.scores, equal_nan=True)


def test_late_event_joins_the_next_open_bucket_and_is_counted() -> None:
    sc = HealthScorer(HealthConfig(min_requests=1, warmup_buckets=1))
    keys, lat = np.zeros(3, np.int64), np.full(3, 100.0)
    first = sc.update(
        keys, np.array([100, 1_500, 2_100]), np.ones(3, bool), np.ones(3), lat, ~np.ones(3, bool)
    )
    assert first.ts_ms.tolist() == [1_000, 2_000]  # buckets [0, 1 s) and [1 s, 2 s) closed
    # an unfilled outcome for 0.5 s arrives late: it is counted in the open bucket [2 s, 3 s)
    sc.update(keys[:1], np.array([500]), np.zeros(1, bool), np.zeros(1), lat[:1], np.zeros(1, bool))
    out = sc.flush()
    assert out.ts_ms.tolist() == [3_000]
    assert out.values[0, FILL] == 0.5


def test_lasting_change_is_relearned() -> None:
    """An error rate that stays at 45 % is an incident first, then the new normal."""
    cfg = HealthConfig(relearn_buckets=20)
    out = _run(HealthScorer(cfg), _stream(200, 100, keys=1, bad=(0, 60, 200, "error")))
    hit = out.is_anomaly[:, ERR]
    assert hit[(out.ts_ms > 61_000) & (out.ts_ms < 75_000)].all()
    assert not hit[out.ts_ms > 150_000].any()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("bucket_ms", 0),
        ("half_life_buckets", 0.0),
        ("fill_drop", 1.0),
        ("latency_rise", 1.0),
        ("error_rise", 0.0),
        ("threshold", 1.0),
        ("close_lag_ms", -1),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value) -> None:
    with pytest.raises(ValueError, match=f"HealthConfig.{field}"):
        HealthConfig(**{field: value})
