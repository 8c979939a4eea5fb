"""Protocol properties every detector must have: no look-ahead, picklable state, NaN skipping."""

from __future__ import annotations

import numpy as np
import pytest

from eddy.operators.anomaly import default_detector
from eddy.operators.anomaly.knn import ContextKnn
from eddy.operators.anomaly.median_mad import MedianMad
from eddy.operators.anomaly.registry import DETECTORS


def _series(n: int = 1500, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    ts = (1_400_000_000_000 + t * 300_000).astype(np.int64)
    v = 10 + 3 * np.sin(2 * np.pi * t / 288) + rng.normal(0, 0.5, n)
    v[900] += 12
    v[1200:1260] -= 6
    return ts, v


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_truncation_leaves_earlier_scores_unchanged(name: str) -> None:
    ts, v = _series()
    full = DETECTORS[name]().score_learn(ts, v)
    for k in (1, 7, 400, 901, 1213):
        part = DETECTORS[name]().score_learn(ts[: k + 1], v[: k + 1])
        np.testing.assert_array_equal(part, full[: k + 1])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_batches_equal_one_pass(name: str) -> None:
    ts, v = _series()
    full = DETECTORS[name]().score_learn(ts, v)
    det = DETECTORS[name]()
    pieces = [
        det.score_learn(ts[a:b], v[a:b]) for a, b in ((0, 1), (1, 333), (333, 334), (334, 1500))
    ]
    np.testing.assert_array_equal(np.concatenate(pieces), full)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_scores_in_unit_interval_and_finely_resolved(name: str) -> None:
    ts, v = _series()
    s = DETECTORS[name]().score_learn(ts, v)
    assert np.all((s >= 0) & (s <= 1))
    top = np.sort(s)[-50:]
    assert np.unique(top).size == top.size


def test_default_detector_flags_the_spike() -> None:
    ts, v = _series()
    s = default_detector().score_learn(ts, v)
    assert s[900] > 0.99
    assert s[900] == s[300:].max() or s[900] >= np.quantile(s[300:], 0.999)


def test_change_after_a_flat_history_is_flagged_once() -> None:
    v = np.r_[np.full(500, 3.0), np.full(20, 3.5)]
    s = default_detector().score_learn(np.arange(520) * 60_000, v)
    assert s[500] >= 0.99
    assert np.all(s[:500] == 0.0) and np.all(s[501:] < 0.99)


def test_a_flat_start_does_not_silence_the_detector() -> None:
    # A zero-inflated series that starts idle: the first blips are infinitely many robust
    # spreads away from a constant window. Were such a surprise the largest on record, the
    # novelty calibration would score every later event near zero for thousands of events.
    rng = np.random.default_rng(2)
    n = 5000
    v = np.where(rng.random(n) < 0.04, rng.lognormal(0, 0.5, n), 0.0)
    v[:300] = 0.0
    v[3500:3560] = rng.lognormal(0.5, 0.5, 60)  # busy for five hours, blips a little larger
    ts = (1_400_000_000_000 + np.arange(n) * 300_000).astype(np.int64)
    s = default_detector().score_learn(ts, v)
    assert s[3500:3560].max() > 0.5  # far from a significant alarm, but not silenced
    assert (s[750:3500] >= 0.99).mean() < 0.004


def test_median_members_have_no_opinion_while_their_window_is_constant() -> None:
    v = np.r_[np.zeros(50), 1.0, np.zeros(10), 1.0]
    for det in (MedianMad(window=32), ContextKnn(dim=4, history=100, k=1)):
        raw = det.score_learn(np.zeros(len(v), np.int64), np.arange(len(v)), v).raw
        assert np.all(np.isnan(raw[:51])), det.name  # a constant history: no spread yet
        assert np.isfinite(raw[61]) and raw[61] < 1e3, det.name


@pytest.mark.parametrize("kind", ["normal", "random_walk", "daily_counts"])
def test_default_threshold_rarely_fires_on_anomaly_free_data(kind: str) -> None:
    rng = np.random.default_rng(7)
    n = 10_000
    t = np.arange(n)
    ts = (1_400_000_000_000 + t * 300_000).astype(np.int64)
    v = {
        "normal": rng.normal(0, 1, n),
        "random_walk": rng.normal(0, 1, n).cumsum(),
        "daily_counts": rng.poisson(5 + 4 * np.sin(2 * np.pi * t / 288)).astype(float),
    }[kind]
    s = default_detector().score_learn(ts, v)
    assert (s[750:] >= 0.99).mean() < 0.004  # < 0.4 % of events after warm-up
