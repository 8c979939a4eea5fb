"""Protocol properties every detector must have: no look-ahead, picklable state, NaN skipping."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eddy.operators.anomaly import BankConfig, DetectorBank, default_detector
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


def test_bank_keys_are_independent_and_nan_skipped() -> None:
    ts, v = _series()
    n = v.shape[0]
    vals = np.stack([v, -v], axis=1)
    solo = DetectorBank(BankConfig(n_metrics=2)).score_learn(np.zeros(n, np.int64), ts, vals)
    # interleave key 0 with a noisy key 5; key 0 must score exactly the same
    rng = np.random.default_rng(1)
    keys = np.repeat(np.array([[0, 5]]), n, axis=0).ravel()
    tss = np.repeat(ts, 2)
    both = np.empty((2 * n, 2))
    both[0::2] = vals
    both[1::2] = rng.normal(size=(n, 2))
    both[1::2][100] = np.nan
    bank = DetectorBank(BankConfig(n_metrics=2, threshold=0.99), seed=0)
    out = bank.score_learn(keys, tss, both)
    np.testing.assert_array_equal(out.scores[0::2], solo.scores)
    assert out.scores[201, 0] == 0.0 and out.scores.shape == (2 * n, 2)
    assert out.is_anomaly.dtype == np.bool_ and out.votes.dtype == np.uint32
    np.testing.assert_array_equal(out.is_anomaly, out.scores >= 0.99)
    assert np.all(out.votes[~out.is_anomaly] == 0)
    assert out.is_anomaly[2 * 900, 0]
    lo, hi = out.lower[2 * 800, 0], out.upper[2 * 800, 0]
    assert lo < vals[800, 0] < hi
    assert len(bank.detector_names) >= 1


def test_bank_snapshot_restore_continues_identically() -> None:
    ts, v = _series()
    keys = np.arange(v.shape[0]) % 3
    bank = DetectorBank(BankConfig(n_metrics=1))
    bank.score_learn(keys[:700], ts[:700], v[:700, None])
    snap = bank.snapshot()
    a = bank.score_learn(keys[700:], ts[700:], v[700:, None])
    b = DetectorBank.restore(snap).score_learn(keys[700:], ts[700:], v[700:, None])
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(a.votes, b.votes)
    assert pickle.loads(pickle.dumps(bank)) is not None


def test_bank_skips_non_finite_values() -> None:
    ts, v = _series()
    clean = DetectorBank(BankConfig()).score_learn(np.zeros(1500, np.int64), ts, v[:, None])
    bad = v.copy()
    bad[[500, 501, 502]] = [np.inf, -np.inf, np.nan]
    out = DetectorBank(BankConfig()).score_learn(np.zeros(1500, np.int64), ts, bad[:, None])
    assert np.all(out.scores[500:503] == 0.0) and np.all(np.isfinite(out.scores))
    np.testing.assert_array_equal(out.scores[:500], clean.scores[:500])


def test_bank_accepts_empty_and_single_row_batches() -> None:
    bank = DetectorBank(BankConfig(n_metrics=5))
    out = bank.score_learn(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 5)))
    assert out.scores.shape == (0, 5) and out.votes.shape == (0, 5)
    out = bank.score_learn([3], [1000], [[1.0, 2.0, 3.0, 4.0, 5.0]])
    assert out.scores.shape == (1, 5) and np.all(out.scores == 0.0)


def test_bank_rejects_bad_shapes() -> None:
    bank = DetectorBank(BankConfig(n_metrics=2))
    with pytest.raises(ValueError, match="values"):
        bank.score_learn(np.zeros(3, np.int64), np.zeros(3, np.int64), np.zeros((3, 3)))
    with pytest.raises(ValueError, match="n_metrics"):
        BankConfig(n_metrics=0)


@settings(max_examples=15, deadline=None)
@given(
    cuts=st.lists(st.integers(min_value=0, max_value=900), max_size=6),
    seed=st.integers(min_value=0, max_value=2**16),
)
def test_bank_batching_never_changes_outputs(cuts: list[int], seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 900
    keys = rng.integers(0, 4, n).astype(np.int64)
    ts = np.arange(n, dtype=np.int64) * 1000
    vals = rng.normal(size=(n, 2)).cumsum(axis=0)
    vals[rng.random((n, 2)) < 0.01] = np.nan
    one = DetectorBank(BankConfig(n_metrics=2)).score_learn(keys, ts, vals)
    bank = DetectorBank(BankConfig(n_metrics=2))
    bounds = sorted({0, n, *cuts})
    parts = [bank.score_learn(keys[a:b], ts[a:b], vals[a:b]) for a, b in itertools.pairwise(bounds)]
    np.testing.assert_array_equal(np.concatenate([p.scores for p in parts]), one.scores)
    np.testing.assert_array_equal(np.concatenate([p.votes for p in parts]), one.votes)
    np.testing.assert_array_equal(np.concatenate([p.lower for p in parts]), one.lower)


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
    bank = DetectorBank(BankConfig(threshold=0.99))
    out = bank.score_learn(np.zeros(n, np.int64), ts, v[:, None])
    assert out.is_anomaly[750:].mean() < 0.004  # < 0.4 % of events after warm-up
