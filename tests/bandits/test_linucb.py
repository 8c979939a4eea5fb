from __future__ import annotations

import pickle

import numpy as np
import pytest

from eddy.operators.bandits import LinUCB, Policy
from tests.bandits.reference import RefLinUCB


def _stream(seed: int, n: int, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 0] = 1.0
    W = rng.normal(size=(k, d))
    return X, W


def test_linucb_matches_reference_choices_and_updates() -> None:
    k, d = 4, 5
    X, W = _stream(0, 600, k, d)
    noise = np.random.default_rng(1)
    pol = LinUCB(k, d, seed=7, alpha=0.8, l2=2.0, floor=0.05)
    ref = RefLinUCB(k, d, seed=7, alpha=0.8, l2=2.0, floor=0.05)
    for start in range(0, 600, 50):
        xb = X[start : start + 50]
        P = pol.probabilities(xb)
        np.testing.assert_allclose(P, ref.probabilities(xb), atol=1e-12)
        arms, props = pol.choose(xb)
        ref_arms, ref_props = ref.choose(xb)
        np.testing.assert_array_equal(arms, ref_arms)
        np.testing.assert_allclose(props, ref_props, atol=1e-12)
        r = np.einsum("nd,nd->n", xb, W[arms]) + noise.normal(size=len(xb))
        pol.learn(xb, arms, r)
        ref.learn(xb, np.asarray(ref_arms), r)
        for a in range(k):
            np.testing.assert_allclose(pol._arms.A[a], ref.A[a], rtol=1e-12)
            np.testing.assert_allclose(
                pol._arms.theta[a], np.linalg.inv(ref.A[a]) @ ref.b[a], rtol=1e-8, atol=1e-10
            )


def test_probabilities_sum_to_one_and_respect_floor() -> None:
    k, d = 6, 4
    X, _ = _stream(2, 300, k, d)
    pol = LinUCB(k, d, seed=0, floor=0.1)
    pol.learn(X[:200], np.arange(200) % k, X[:200, 1])
    P = pol.probabilities(X)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert (0.1 / k - 1e-15 <= P).all()
    arms, props = pol.choose(X)
    np.testing.assert_allclose(props, P[np.arange(len(X)), arms])


def test_ties_before_learning_split_evenly() -> None:
    pol = LinUCB(4, 3, seed=0, floor=0.0)
    P = pol.probabilities(np.ones((5, 3)))
    np.testing.assert_allclose(P, 0.25)


def test_snapshot_restore_midstream_gives_identical_decisions() -> None:
    k, d = 5, 6
    X, W = _stream(3, 2000, k, d)
    pol = LinUCB(k, d, seed=11)
    for start in range(0, 1000, 100):
        xb = X[start : start + 100]
        arms, _ = pol.choose(xb)
        pol.learn(xb, arms, np.einsum("nd,nd->n", xb, W[arms]))
    clone = Policy.restore(pickle.loads(pickle.dumps(pol.snapshot())))
    assert isinstance(clone, LinUCB) and clone.version == pol.version
    for start in range(1000, 2000, 100):
        xb = X[start : start + 100]
        a1, p1 = pol.choose(xb)
        a2, p2 = clone.choose(xb)
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(p1, p2)
        r = np.einsum("nd,nd->n", xb, W[a1])
        pol.learn(xb, a1, r)
        clone.learn(xb, a2, r)


def test_same_seed_same_decisions_and_learns_the_best_arm() -> None:
    k, d = 3, 4
    X, W = _stream(4, 6000, k, d)
    runs = []
    for _ in range(2):
        pol = LinUCB(k, d, seed=5, alpha=0.5)
        chosen = []
        for start in range(0, 6000, 200):
            xb = X[start : start + 200]
            arms, _ = pol.choose(xb)
            pol.learn(xb, arms, np.einsum("nd,nd->n", xb, W[arms]))
            chosen.append(arms)
        runs.append(np.concatenate(chosen))
    np.testing.assert_array_equal(runs[0], runs[1])
    best = np.argmax(X @ W.T, axis=1)
    assert (runs[0][-1000:] == best[-1000:]).mean() > 0.9


def test_bad_params_and_inputs_raise_named_errors() -> None:
    with pytest.raises(ValueError, match="alpha"):
        LinUCB(2, 2, alpha=-1)
    with pytest.raises(ValueError, match="unknown params"):
        LinUCB(2, 2, beta=1)
    with pytest.raises(ValueError, match="floor"):
        LinUCB(2, 2, floor=2)
    pol = LinUCB(2, 2)
    with pytest.raises(ValueError, match="X"):
        pol.choose(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="arms"):
        pol.learn(np.zeros((1, 2)), [2], [1.0])
    with pytest.raises(ValueError, match="finite"):
        pol.learn(np.zeros((1, 2)), [0], [np.nan])
    # a non-finite context still gets a decision
    arms, props = pol.choose(np.array([[np.nan, 1.0]]))
    assert arms.shape == (1,) and props[0] > 0


def test_numerically_stable_over_many_updates() -> None:
    k, d = 2, 8
    rng = np.random.default_rng(0)
    pol = LinUCB(k, d, seed=0)
    w = rng.normal(size=d)
    for _ in range(100):
        X = rng.normal(size=(10_000, d)) * 100.0
        arms = rng.integers(0, k, size=len(X))
        pol.learn(X, arms, X @ w)
    np.testing.assert_allclose(pol._arms.theta[0], w, rtol=1e-6)
    eye = pol._arms.A_inv[0] @ pol._arms.A[0]
    np.testing.assert_allclose(eye, np.eye(d), atol=1e-8)
