"""`KeyedDetector`: a detect stage's operator (config checks, ensemble and River detectors,
cooldown, batch-cut invariance, snapshot/restore); the rates detector is in ``test_rates.py``."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eddy.operators.anomaly.anomaly_rows import ANOMALY_COLUMNS
from eddy.operators.anomaly.default import default_detector
from eddy.operators.anomaly.keyed import DetectorConfig, DetectOutput, KeyedDetector
from eddy.operators.drift import ALERT_COLUMNS

HST = "river:anomaly.HalfSpaceTrees"
PLAYBACK = DetectorConfig(("startup_ms", "rebuffered"), (False, True))


def _playback(
    seed: int, steps: int = 1500, n_keys: int = 4, outage: tuple[int, int] = (1000, 1030)
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per CDN one playback per second: startup time (seasonal, noisy) and a rebuffer flag;
    during ``outage`` (steps) cdn-2's startup times are 4x."""
    rng = np.random.default_rng(seed)
    n = n_keys * steps
    keys = np.array([f"cdn-{i}" for i in range(n_keys)], dtype=object)[np.arange(n) % n_keys]
    step = np.arange(n) // n_keys
    ts = (1_700_000_000_000 + step * 1000 + np.arange(n) % n_keys).astype(np.int64)
    startup = 800 + 50 * np.sin(2 * np.pi * step / 200) + rng.normal(0, 20, n)
    rebuffered = (rng.random(n) < 0.05).astype(np.float64)
    hit = (keys == "cdn-2") & (step >= outage[0]) & (step < outage[1])
    startup[hit] *= 4
    return keys, ts, np.column_stack([startup, rebuffered])


def _run(
    det: KeyedDetector, keys: np.ndarray, ts: np.ndarray, v: np.ndarray, cuts: list[int]
) -> DetectOutput:
    bounds = [0, *cuts, len(keys)]
    outs = [det.update(keys[a:b], ts[a:b], v[a:b], now_ms=5) for a, b in pairwise(bounds)]
    outs.append(det.flush(now_ms=5))
    return _concat(outs)


def _concat(outs: list[DetectOutput]) -> DetectOutput:
    return DetectOutput(
        {c: np.concatenate([o.anomalies[c] for o in outs]) for c in ANOMALY_COLUMNS},
        {c: np.concatenate([o.drift_alerts[c] for o in outs]) for c in ALERT_COLUMNS},
    )


def _same(a: DetectOutput, b: DetectOutput) -> None:
    for c in ANOMALY_COLUMNS:
        x, y = a.anomalies[c], b.anomalies[c]
        if x.dtype == object:
            assert x.tolist() == y.tolist(), c
        else:
            np.testing.assert_array_equal(x, y, err_msg=c)


# -- ensemble --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ensemble_flags_an_outage_on_that_key_only(seed: int) -> None:
    keys, ts, v = _playback(seed)
    a = _run(KeyedDetector(PLAYBACK), keys, ts, v, cuts=[777, 3000]).anomalies
    step = (a["event_time"] - ts[0]) // 1000
    during = (step >= 1000) & (step < 1100)  # the outage and 70 s after it
    assert list(zip(a["key"][during], a["metric"][during], step[during], strict=True)) == [
        ("cdn-2", "startup_ms", 1000)
    ]
    row = np.flatnonzero(during)[0]
    assert a["value"][row] > a["expected_high"][row] and a["score"][row] >= 0.99
    assert "range" in a["detectors"][row] and a["detected_at"][row] == 5
    assert set(a["threshold"].tolist()) == {0.99}


def test_ensemble_is_the_detector_nab_scores() -> None:
    """One key, one metric, no cooldown: rows exactly where ``default_detector`` (what
    ``eddy eval nab`` scores) reaches the threshold, with its scores."""
    keys, ts, v = _playback(3, steps=2000, n_keys=1)
    v[1500:1510, 0] *= 4
    scores = default_detector().score_learn(ts, v[:, 0])
    cfg = DetectorConfig(("startup_ms",), (False,), cooldown_ms=0)
    a = _run(KeyedDetector(cfg), keys, ts, v[:, :1], cuts=[100, 1501]).anomalies
    flagged = np.flatnonzero(scores >= 0.99)
    assert len(flagged) >= 2 and 1500 in flagged.tolist()
    np.testing.assert_array_equal(a["event_time"], ts[flagged])
    np.testing.assert_array_equal(a["score"], scores[flagged])
    np.testing.assert_array_equal(a["value"], v[flagged, 0])


def test_missing_values_are_skipped() -> None:
    keys, ts, v = _playback(0)
    v[(keys == "cdn-2") & ((ts - ts[0]) // 1000 == 1000), 0] = np.nan  # the outage's onset
    v[::3, 1] = np.nan
    a = _run(KeyedDetector(PLAYBACK), keys, ts, v, cuts=[]).anomalies
    assert np.isfinite(a["value"]).all()
    onset = ts[0] + 1000 * 1000
    near = np.abs(a["event_time"] - onset) <= 10
    assert not (near & (a["key"] == "cdn-2")).any()


def test_cooldown_keeps_one_row_per_cooldown_per_key_and_metric() -> None:
    rng = np.random.default_rng(0)
    n = 1000
    ts = np.arange(n, dtype=np.int64) * 1000
    x = 10 + rng.normal(0, 1, n)
    for i, s in enumerate([400, 500, 600, 700, 800]):
        x[s] += 10 * 2**i  # ever larger spikes: each is a new record
    keys = np.full(n, "k", dtype=object)

    def rows(cooldown_ms: int) -> list[int]:
        det = KeyedDetector(DetectorConfig(("x",), (False,), cooldown_ms=cooldown_ms))
        return det.update(keys, ts, x, 0).anomalies["event_time"].tolist()

    every = rows(0)
    assert {400_000, 500_000, 600_000, 700_000, 800_000} <= set(every)
    kept: list[int] = []
    for t in every:  # at most one per cooldown; a suppressed row does not extend it
        if not kept or t >= kept[-1] + 250_000:
            kept.append(t)
    assert rows(250_000) == kept and len(kept) < len(every)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 4 * 1200 - 1), max_size=25, unique=True))
def test_ensemble_outputs_do_not_depend_on_batch_cuts(cuts: list[int]) -> None:
    keys, ts, v = _playback(4, steps=1200, outage=(900, 920))
    whole = _run(KeyedDetector(PLAYBACK), keys, ts, v, cuts=[])
    assert len(whole.anomalies["key"]) > 0
    _same(_run(KeyedDetector(PLAYBACK), keys, ts, v, sorted(cuts)), whole)


def test_river_outputs_do_not_depend_on_batch_cuts() -> None:
    keys, ts, v = _playback(8, steps=500, n_keys=3, outage=(400, 410))
    cfg = DetectorConfig(PLAYBACK.metrics, PLAYBACK.bool_metrics, HST, cooldown_ms=0)
    whole = _run(KeyedDetector(cfg), keys, ts, v, cuts=[])
    assert len(whole.anomalies["key"]) > 0
    rng = np.random.default_rng(0)
    for n_cuts in (1, 7, 60):
        cuts = sorted(rng.choice(np.arange(1, len(keys)), n_cuts, replace=False).tolist())
        _same(_run(KeyedDetector(cfg), keys, ts, v, cuts), whole)


@pytest.mark.parametrize("detector", ["ensemble", HST])
def test_snapshot_restore_continues_identically(detector: str) -> None:
    steps = 1200 if detector == "ensemble" else 500
    keys, ts, v = _playback(5, steps=steps, n_keys=3, outage=(steps - 100, steps - 90))
    cfg = DetectorConfig(("startup_ms", "rebuffered"), (False, True), detector, cooldown_ms=0)
    straight = _run(KeyedDetector(cfg), keys, ts, v, cuts=[1000, 2000])
    det = KeyedDetector(cfg)
    parts = [det.update(keys[:1000], ts[:1000], v[:1000], 5)]
    det = KeyedDetector.restore(cfg, det.snapshot())
    parts.append(det.update(keys[1000:2000], ts[1000:2000], v[1000:2000], 5))
    det = KeyedDetector.restore(cfg, det.snapshot())
    parts += [det.update(keys[2000:], ts[2000:], v[2000:], 5), det.flush(5)]
    assert len(straight.anomalies["key"]) > 0
    _same(_concat(parts), straight)


def test_restore_checks_the_layout_and_takes_new_settings() -> None:
    keys, ts, v = _playback(6)
    det = KeyedDetector(PLAYBACK)
    det.update(keys[:2000], ts[:2000], v[:2000], 0)
    snap = det.snapshot()
    with pytest.raises(ValueError, match="restore: the snapshot is of"):
        KeyedDetector.restore(DetectorConfig(("startup_ms",), (False,)), snap)
    strict = DetectorConfig(PLAYBACK.metrics, PLAYBACK.bool_metrics, threshold=0.999)
    a = KeyedDetector.restore(strict, snap).update(keys[2000:], ts[2000:], v[2000:], 0).anomalies
    b = KeyedDetector.restore(PLAYBACK, snap).update(keys[2000:], ts[2000:], v[2000:], 0).anomalies
    assert b["score"].min() < 0.999 <= b["score"].max()
    assert a["event_time"].tolist() == b["event_time"][b["score"] >= 0.999].tolist()
    assert (a["threshold"] == 0.999).all()


def test_any_string_keys_and_empty_batches() -> None:
    keys, ts, v = _playback(0)
    names = {f"cdn-{i}": s for i, s in enumerate(["α/β", "", "edge 7 ☁", "x" * 300])}
    renamed = np.array([names[k] for k in keys.tolist()], dtype=object)
    det = KeyedDetector(PLAYBACK)
    empty = det.update(np.empty(0, object), np.empty(0, np.int64), np.empty((0, 2)), 0)
    assert all(len(c) == 0 for c in empty.anomalies.values())
    assert empty.anomalies.keys() == set(ANOMALY_COLUMNS)
    assert empty.drift_alerts.keys() == set(ALERT_COLUMNS)
    a = _run(det, renamed, ts, v, cuts=[50]).anomalies
    assert "edge 7 ☁" in a["key"].tolist()
    assert set(a["key"].tolist()) <= set(names.values())


def test_bad_input_is_rejected() -> None:
    det = KeyedDetector(PLAYBACK)
    with pytest.raises(ValueError, match="rebuffered is a bool metric"):
        det.update(np.array(["a"], object), np.array([1]), np.array([[1.0, 0.5]]), 0)
    with pytest.raises(ValueError, match=r"values \(n, 2\)"):
        det.update(np.array(["a"], object), np.array([1]), np.array([1.0]), 0)


# -- River -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_river_half_space_trees_flags_an_obvious_spike(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 4000
    keys = np.array(["a", "b"], dtype=object)[np.arange(n) % 2]
    ts = np.arange(n, dtype=np.int64) * 500
    x = 10 + rng.uniform(-1, 1, n)
    x[2601] = 30  # key b
    cfg = DetectorConfig(("x",), (False,), HST, (("n_trees", 10), ("seed", 1)))
    a = _run(KeyedDetector(cfg), keys, ts, x[:, None], cuts=[1234]).anomalies
    top = int(np.argmax(a["score"]))
    assert (a["key"][top], a["event_time"][top], a["value"][top]) == ("b", 2601 * 500, 30.0)
    assert a["score"][top] >= 0.99 and a["detectors"][top] == [HST]
    near = np.abs(a["event_time"] - 2601 * 500) <= 50 * 500
    assert a["event_time"][near].tolist() == [2601 * 500]


def test_river_params_reach_every_slots_model() -> None:
    cfg = DetectorConfig(("x",), (False,), HST, (("height", 3), ("n_trees", 2), ("seed", 9)))
    det = KeyedDetector(cfg)
    det.update(np.array(["a", "b"], object), np.array([0, 1]), np.array([1.0, 2.0]), 0)
    assert det._ens is not None
    member = det._ens.members[0]
    models = [member._model(slot) for slot in (0, 1)]  # type: ignore[attr-defined]
    assert [(m.n_trees, m.height, m.seed) for m in models] == [(2, 3, 9), (2, 3, 10)]


@pytest.mark.parametrize("cls", ["GaussianScorer", "StandardAbsoluteDeviation", "OneClassSVM"])
def test_other_river_detectors_run(cls: str) -> None:
    """Supervised ones (a model of the value itself) get the raw value, the others the
    squashed one; all are calibrated like the ensemble."""
    keys, ts, v = _playback(7, steps=300, n_keys=2, outage=(250, 260))
    cfg = DetectorConfig(("startup_ms",), (False,), f"river:anomaly.{cls}")
    a = _run(KeyedDetector(cfg), keys, ts, v[:, :1], cuts=[100]).anomalies
    assert ((a["score"] >= 0.99) & (a["score"] < 1.0)).all()


# -- config ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": ()}, "metrics: expected a non-empty tuple of distinct names, got ()"),
        ({"metrics": ("a", "a"), "bool_metrics": (False, False)}, "metrics: expected"),
        ({"metrics": ["a"]}, "metrics: expected a non-empty tuple"),
        ({"bool_metrics": (True, False)}, "bool_metrics: expected 1 bools (one per metric)"),
        ({"bool_metrics": (1,)}, "bool_metrics: expected 1 bools"),
        ({"detector": "isolation"}, "detector: expected ensemble, rates or river:MODULE.CLASS"),
        ({"detector": "river:anomaly.NoSuchThing"}, "detector: river has no anomaly.NoSuchThing"),
        ({"detector": "river:nosuchmodule.X"}, "detector: river has no nosuchmodule.X"),
        ({"detector": "river:HalfSpaceTrees"}, "detector: expected river:MODULE.CLASS like"),
        ({"detector": "river:anomaly.QuantileFilter"},
         "detector: river's anomaly.QuantileFilter is not an anomaly detector"),
        ({"detector": "river:linear_model.LinearRegression"},
         "detector: river's linear_model.LinearRegression is not an anomaly detector"),
        ({"detector": HST, "params": (("n_tres", 3),)},
         "params: river's anomaly.HalfSpaceTrees does not run with {'n_tres': 3}: TypeError"),
        ({"detector": HST, "params": (("seed", "x"),)}, "params: river's anomaly.HalfSpaceTrees"),
        ({"params": (("window", 5),)},
         "params.window: unknown parameter of the ensemble detector; known: (none)"),
        ({"params": {"window": 5}}, "params: expected (name, value) pairs"),
        ({"params": (("a", 1), ("a", 2)), "detector": "rates"}, "params: a name is given twice"),
        ({"threshold": 1.0}, "threshold: expected a number in (0, 1), got 1.0"),
        ({"threshold": "0.9"}, "threshold: expected a number in (0, 1), got '0.9'"),
        ({"cooldown_ms": "30s"}, "cooldown_ms: expected an int >= 0 (milliseconds), got '30s'"),
        ({"cooldown_ms": -1}, "cooldown_ms: expected an int >= 0"),
        ({"seed": 1.5}, "seed: expected an int, got 1.5"),
    ],
)  # fmt: skip
def test_config_errors_name_the_field(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"metrics": ("x",), "bool_metrics": (False,), **kwargs}
    with pytest.raises(ValueError) as e:
        DetectorConfig(**args)  # type: ignore[arg-type]
    assert str(e.value).startswith(message)
