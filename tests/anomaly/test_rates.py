"""The ``rates`` detector: generic count-aware bucket tests (``operators/anomaly/rates.py``)."""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eddy.operators.anomaly.keyed import DetectorConfig, DetectOutput, KeyedDetector
from eddy.operators.anomaly.rates_params import parse_band, parse_rates_params
from tests.anomaly.health_reference import HEALTH_METRICS, HealthScorer, detect_rows

METRICS = ("filled", "revenue", "latency_ms", "error")
BOOLS = (True, False, False, True)
ALERT = {
    "filled": "drop 50%",
    "revenue": "drop 50%",
    "latency_ms": "rise 100%",
    "error": "rise 0.1",
}
# today's health metric of each generic metric (the equivalence test)
HEALTH_NAME = dict(zip(HEALTH_METRICS, METRICS, strict=True))


def _config(cooldown_ms: int = 30_000, **params: object) -> DetectorConfig:
    p = {"alert": ALERT, **params}
    return DetectorConfig(METRICS, BOOLS, "rates", tuple(sorted(p.items())), 0.99, cooldown_ms)


def _outcomes(
    seconds: int,
    per_s: int,
    seed: int,
    keys: int = 3,
    incidents: tuple[tuple[Any, ...], ...] = (),  # (key, from s, to s, kind[, severity])
    jitter_ms: int = 0,
) -> tuple[np.ndarray, ...]:
    """Ad-serving outcomes of ``keys`` partners: (key ids, ts, values (n, 4)) in arrival order.

    Revenue is 0 unless filled (so "positive revenue" = fills with revenue); ``jitter_ms``
    makes arrival order differ from event time (late events)."""
    rng = np.random.default_rng(seed)
    n = seconds * per_s * keys
    ts = np.sort(rng.integers(0, seconds * 1000, n))
    k = rng.integers(0, keys, n)
    fill_p, err_p = np.full(n, 0.6), np.full(n, 0.02)
    price, lat = np.full(n, 1.5), np.full(n, 120.0)
    for key, a, b, kind, *severity in incidents:
        hit = (k == key) & (ts >= a * 1000) & (ts < b * 1000)
        if kind == "outage":
            fill_p[hit] *= severity[0] if severity else 0.02
        elif kind == "latency":
            lat[hit] *= severity[0] if severity else 6.0
        elif kind == "price":
            price[hit] *= severity[0] if severity else 0.25
        elif kind == "errors":
            err_p[hit] = severity[0] if severity else 0.45
        elif kind == "slow_drift":
            lat[hit] *= 1.4
    err = rng.random(n) < err_p
    filled = ~err & (rng.random(n) < fill_p)
    revenue = np.where(filled, price * np.exp(0.3 * rng.standard_normal(n)), 0.0)
    latency = lat * np.exp(0.4 * rng.standard_normal(n))
    values = np.column_stack([filled, revenue, latency, err]).astype(np.float64)
    if jitter_ms:
        ts = ts + rng.integers(-jitter_ms, jitter_ms + 1, n)
    return k.astype(np.int64), ts.astype(np.int64), values


def _names(k: np.ndarray) -> np.ndarray:
    return np.array([f"p{i}" for i in k.tolist()], dtype=object)


def _run(
    det: KeyedDetector, k: np.ndarray, ts: np.ndarray, v: np.ndarray, cuts: list[int]
) -> DetectOutput:
    """Feed the rows cut at ``cuts``, then flush; all outputs concatenated."""
    names = _names(k)
    bounds = [0, *cuts, len(k)]
    outs = [det.update(names[a:b], ts[a:b], v[a:b], now_ms=7) for a, b in pairwise(bounds)]
    outs.append(det.flush(now_ms=7))
    return _concat(outs)


def _concat(outs: list[DetectOutput]) -> DetectOutput:
    return DetectOutput(
        {c: np.concatenate([o.anomalies[c] for o in outs]) for c in outs[0].anomalies},
        {c: np.concatenate([o.drift_alerts[c] for o in outs]) for c in outs[0].drift_alerts},
    )


def _alerts(out: DetectOutput) -> list[tuple[str, int, str]]:
    a = out.anomalies
    return list(zip(a["key"].tolist(), a["event_time"].tolist(), a["metric"].tolist(), strict=True))


def _same(a: DetectOutput, b: DetectOutput) -> None:
    for part in ("anomalies", "drift_alerts"):
        x, y = getattr(a, part), getattr(b, part)
        assert x.keys() == y.keys()
        for c in x:
            if x[c].dtype == object:
                assert x[c].tolist() == y[c].tolist(), c
            else:
                np.testing.assert_array_equal(x[c], y[c], err_msg=c)


INCIDENTS = (
    (1, 60, 66, "outage"),
    (2, 90, 100, "latency"),
    (0, 120, 126, "price"),
    (3, 150, 154, "errors"),
    (1, 200, 240, "outage"),  # long: cooldown and relearning
    (4, 210, 213, "latency"),
    (2, 250, 252, "errors"),
)


def _borderline(seed: int, n: int = 30) -> tuple[tuple[Any, ...], ...]:
    """``n`` incidents of random kind, key, length and a severity near the alert band's edge
    (some alert, some do not: the tests must agree on both)."""
    rng = np.random.default_rng(1_000 + seed)
    lows = {
        "outage": (0.2, 0.6),
        "latency": (1.6, 3.0),
        "price": (0.3, 0.65),
        "errors": (0.06, 0.2),
    }
    out = []
    for _ in range(n):
        kind = str(rng.choice(list(lows)))
        start = int(rng.integers(20, 270))
        out.append((int(rng.integers(0, 5)), start, start + int(rng.integers(1, 12)), kind,
                    float(rng.uniform(*lows[kind]))))  # fmt: skip
    return tuple(out)


@pytest.mark.parametrize("cooldown_ms", [0, 30_000])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_flags_exactly_what_health_scorer_and_detect_flag(seed: int, cooldown_ms: int) -> None:
    """The generic detector with the old bands equals the old HealthScorer and episode rule
    (episodes and cooldown) on the same outcome stream, alert for alert: clear incidents and
    borderline ones (a few events per second, severities near the band's edge)."""
    per_s = (6, 20, 45)[seed]
    incidents = INCIDENTS + _borderline(seed)
    k, ts, v = _outcomes(280, per_s, seed, keys=5, incidents=incidents)
    cuts = sorted(np.random.default_rng(seed).choice(len(k), 40, replace=False).tolist())
    generic = _alerts(_run(KeyedDetector(_config(cooldown_ms)), k, ts, v, cuts))

    scorer, names = HealthScorer(), {i: f"p{i}" for i in range(5)}
    last_hit: dict[tuple[int, int], int] = {}
    last_alert: dict[tuple[int, int], int] = {}
    rows: list[tuple[str, int, str]] = []
    bounds = [0, *cuts, len(k)]
    for a, b in pairwise(bounds):
        cols = (k[a:b], ts[a:b], v[a:b, 0] > 0, v[a:b, 1], v[a:b, 2], v[a:b, 3] > 0)
        rows += detect_rows(scorer.update(*cols), names, cooldown_ms, last_hit, last_alert)
    rows += detect_rows(scorer.flush(), names, cooldown_ms, last_hit, last_alert)
    today = [(key, t, HEALTH_NAME[m]) for key, t, m in rows]
    assert len(today) >= len(INCIDENTS)
    assert sorted(generic) == sorted(today)


def test_outage_on_one_key_is_flagged_on_that_key_only() -> None:
    k, ts, v = _outcomes(150, 40, seed=4, keys=4, incidents=((2, 100, 106, "outage"),))
    out = _run(KeyedDetector(_config()), k, ts, v, cuts=[1000, 5000, 17000])
    a = out.anomalies
    assert _alerts(out) == [("p2", 101_000, "filled")]  # the bucket [100 s, 101 s) ends it
    assert a["value"][0] < a["expected_low"][0] and a["expected_high"][0] == 1.0
    assert a["score"][0] >= 0.99 and a["threshold"][0] == 0.99
    assert a["detectors"][0] == ["binomial"] and a["detected_at"][0] == 7


def test_each_kind_of_incident_on_its_metric_with_its_test() -> None:
    incidents = ((0, 100, 106, "latency"), (1, 100, 106, "price"), (2, 100, 106, "errors"))
    k, ts, v = _outcomes(150, 40, seed=5, keys=3, incidents=incidents)
    a = _run(KeyedDetector(_config()), k, ts, v, cuts=[]).anomalies
    got = sorted(
        zip(a["key"], a["metric"], a["event_time"], map(tuple, a["detectors"]), strict=True)
    )
    assert got == [
        ("p0", "latency_ms", 101_000, ("lognormal_mean",)),
        ("p1", "revenue", 101_000, ("lognormal_mean",)),
        ("p2", "error", 101_000, ("binomial",)),
    ]
    lat, rev = a["metric"] == "latency_ms", a["metric"] == "revenue"
    assert a["value"][lat][0] > a["expected_high"][lat][0]
    assert a["value"][rev][0] < a["expected_low"][rev][0]  # plain mean of positive revenues


def test_clean_stream_has_no_rows() -> None:
    k, ts, v = _outcomes(400, 30, seed=6, keys=6, jitter_ms=200)
    out = _run(KeyedDetector(_config()), k, ts, v, cuts=[333, 20_000, 50_000])
    assert len(out.anomalies["key"]) == 0
    assert len(out.drift_alerts["alert_id"]) == 0


def test_default_bands_watch_both_ways() -> None:
    """Without ``alert``: bool "change 0.1", numeric "change 50%" (rises and drops)."""
    cfg = DetectorConfig(METRICS, BOOLS, "rates")
    incidents = ((0, 100, 106, "outage"), (1, 100, 106, "latency"))
    k, ts, v = _outcomes(150, 40, seed=7, keys=3, incidents=incidents)
    # a fill rate far above normal is a change too
    up = (k == 2) & (ts >= 120_000) & (ts < 126_000)
    v[up, 0], v[up, 3] = 1.0, 0.0
    v[up, 1] = 1.5
    got = sorted(_alerts(_run(KeyedDetector(cfg), k, ts, v, cuts=[])))
    assert ("p0", 101_000, "filled") in got and ("p1", 101_000, "latency_ms") in got
    assert ("p2", 121_000, "filled") in got
    assert {key for key, _, _ in got} == {"p0", "p1", "p2"}


def test_absolute_band_on_a_numeric_mean() -> None:
    rng = np.random.default_rng(8)
    n = 200 * 20
    ts = np.sort(rng.integers(0, 200_000, n)).astype(np.int64)
    temp = 50 + 2 * rng.standard_normal(n)
    temp[(ts >= 80_000) & (ts < 85_000)] += 2  # inside the band: no alert
    temp[(ts >= 150_000) & (ts < 155_000)] += 10
    cfg = DetectorConfig(("temp",), (False,), "rates", (("alert", {"temp": "rise 5"}),))
    out = KeyedDetector(cfg).update(np.full(n, "oven", dtype=object), ts, temp, 0)
    a = out.anomalies
    assert a["event_time"].tolist() == [151_000] and a["detectors"][0] == ["normal_mean"]
    assert a["value"][0] > a["expected_high"][0] and a["expected_low"][0] == -np.inf


def test_episode_reported_at_start_then_once_per_cooldown() -> None:
    """A 60 s outage with a 20 s cooldown: rows at its start, 20 s and 40 s later; a new
    outage right after it (two buckets apart) is a new episode, reported at once."""
    incidents = ((0, 100, 160, "outage"), (0, 162, 165, "outage"))
    k, ts, v = _outcomes(200, 50, seed=9, keys=1, incidents=incidents)
    det = KeyedDetector(_config(cooldown_ms=20_000, relearn=100))
    got = _alerts(_run(det, k, ts, v, cuts=[]))
    assert [t for _, t, _ in got] == [101_000, 121_000, 141_000, 163_000]


def test_relearn_accepts_a_lasting_change() -> None:
    """After ``relearn`` alerting buckets in a row the new level is the baseline."""
    k, ts, v = _outcomes(200, 50, seed=10, keys=1, incidents=((0, 100, 200, "outage"),))
    got = _alerts(_run(KeyedDetector(_config(cooldown_ms=5_000, relearn=8)), k, ts, v, cuts=[]))
    assert got[0][1] == 101_000 and all(t <= 110_000 for _, t, _ in got)


def test_late_event_joins_its_keys_next_open_bucket() -> None:
    """An event whose bucket the watermark had passed when it arrived counts in the next one."""
    cfg = DetectorConfig(
        ("ok",),
        (True,),
        "rates",
        (("alert", {"ok": "drop 50%"}), ("drift", False), ("min_events", 1), ("warmup", 1)),
    )
    base = (np.arange(10) * 90, np.ones(10))  # bucket [0, 1 s): all ok
    late = (np.full(90, 500), np.ones(90))  # ok, for bucket 0 ...
    bad = (1_000 + np.arange(10) * 90, np.zeros(10))  # bucket [1 s, 2 s): none ok

    def run(*parts: tuple[np.ndarray, np.ndarray]) -> list[tuple[str, int, str]]:
        ts = np.concatenate([p[0] for p in parts]).astype(np.int64)
        ok = np.concatenate([p[1] for p in parts])
        det = KeyedDetector(cfg)
        out = _concat([det.update(np.full(len(ts), "a", dtype=object), ts, ok, 0), det.flush(0)])
        return _alerts(out)

    # ... on time: bucket 1 is 0 of 10 ok, an alert
    assert run(base, late, bad) == [("a", 2_000, "ok")]
    # ... after the 1 s event closed bucket 0: it joins bucket 1 (90 of 100 ok), no alert
    assert run(base, (bad[0][:1], bad[1][:1]), late, (bad[0][1:], bad[1][1:])) == []


def test_slow_shift_inside_the_band_is_a_drift_alert() -> None:
    k, ts, v = _outcomes(400, 50, seed=11, keys=2, incidents=((1, 150, 400, "slow_drift"),))
    out = _run(KeyedDetector(_config()), k, ts, v, cuts=[4000])
    assert len(out.anomalies["key"]) == 0  # +40 % latency: inside "rise 100%"
    d = out.drift_alerts
    assert d["stream"].tolist() == ["feature.latency_ms"] and d["key"].tolist() == ["p1"]
    assert d["magnitude"][0] > 0 and 150_000 < d["event_time"][0] < 250_000
    off = _run(KeyedDetector(_config(drift=False)), k, ts, v, cuts=[4000])
    assert len(off.drift_alerts["alert_id"]) == 0


_CUT_DATA = _outcomes(150, 25, seed=12, keys=4, incidents=INCIDENTS[:4], jitter_ms=400)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, len(_CUT_DATA[0]) - 1), max_size=30, unique=True))
def test_outputs_do_not_depend_on_batch_cuts(cuts: list[int]) -> None:
    k, ts, v = _CUT_DATA
    whole = _run(KeyedDetector(_config(cooldown_ms=3_000)), k, ts, v, cuts=[])
    assert len(whole.anomalies["key"]) >= 4
    _same(_run(KeyedDetector(_config(cooldown_ms=3_000)), k, ts, v, sorted(cuts)), whole)


def test_snapshot_restore_continues_identically() -> None:
    k, ts, v = _outcomes(300, 30, seed=13, keys=3, incidents=INCIDENTS[:3], jitter_ms=300)
    v[::7, 2] = np.nan  # missing latencies are skipped
    cfg = _config(cooldown_ms=10_000)
    names = _names(k)
    straight = _run(KeyedDetector(cfg), k, ts, v, cuts=[9_000, 20_000])
    det = KeyedDetector(cfg)
    first = det.update(names[:9_000], ts[:9_000], v[:9_000], now_ms=7)
    det = KeyedDetector.restore(cfg, det.snapshot())
    rest = [
        det.update(names[a:b], ts[a:b], v[a:b], 7) for a, b in ((9_000, 20_000), (20_000, None))
    ]
    resumed = KeyedDetector.restore(cfg, det.snapshot())
    _same(_concat([first, *rest, resumed.flush(now_ms=7)]), straight)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"bucket": 5}, 'params.bucket: expected a duration like "1s", got 5'),
        ({"bucket": "0s"}, 'params.bucket: expected a duration like "1s", got \'0s\''),
        ({"close_lag": "soon"}, "params.close_lag: expected a duration"),
        ({"buckets": "1s"}, "params.buckets: unknown parameter of the rates detector; known: "
         "alert, bucket, close_lag, drift"),
        ({"alert": {"revenu": "drop 50%"}}, "params.alert.revenu: expected one of the metrics "
         "(filled, revenue, latency_ms, error), got 'revenu'"),
        ({"alert": {"revenue": "fall 50%"}}, 'params.alert.revenue: expected "drop N%"'),
        ({"alert": {"revenue": 50}}, "params.alert.revenue: expected"),
        ({"alert": {"revenue": "drop 100%"}}, "params.alert.revenue: a drop must be below 100%"),
        ({"alert": {"error": "rise 2"}}, "params.alert.error: expected a rate change below 1"),
        ({"alert": "drop 50%"}, "params.alert: expected a table"),
        ({"warmup": 0}, "params.warmup: expected an int >= 1, got 0"),
        ({"min_events": 2.5}, "params.min_events: expected an int >= 1, got 2.5"),
        ({"relearn": True}, "params.relearn: expected an int >= 1, got True"),
        ({"half_life": -1}, "params.half_life: expected a number of buckets > 0, got -1"),
        ({"spans": [4, 2]}, "params.spans: expected increasing bucket counts"),
        ({"spans": [1, 100]}, "params.spans: expected increasing bucket counts"),
        ({"drift": "yes"}, "params.drift: expected true or false, got 'yes'"),
    ],
)  # fmt: skip
def test_param_errors_name_the_param(params: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as e:
        DetectorConfig(METRICS, BOOLS, "rates", tuple(sorted(params.items())))
    assert str(e.value).startswith(message)


def test_params_as_the_spec_loader_freezes_them() -> None:
    """Tables arrive as sorted (key, value) pairs, lists as tuples."""
    alert = (("error", "rise 0.1"), ("latency_ms", "rise 100%"))
    p = parse_rates_params(METRICS, BOOLS, {"alert": alert, "spans": (1, 3), "bucket": "500ms"})
    assert p.bucket_ms == 500 and p.spans == (1, 3)
    assert [b.text for b in p.bands] == ["change 0.1", "change 50%", "rise 100%", "rise 0.1"]
    band = parse_band("x", " change 2.5% ", is_bool=False)
    assert (band.down, band.up, band.amount, band.relative) == (True, True, 0.025, True)
