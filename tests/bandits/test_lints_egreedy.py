from __future__ import annotations

import pickle

import numpy as np
import pytest

from eddy.operators.bandits.base import Policy
from eddy.operators.bandits.epsilon_greedy import EpsilonGreedy
from eddy.operators.bandits.lints import LinTS, win_probability
from tests.bandits.reference import RefEpsilonGreedy, RefLinTS


def _data(seed: int, n: int, k: int, d: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:, 0] = 1.0
    return X, rng.normal(size=(k, d))


def test_epsilon_greedy_matches_reference() -> None:
    k, d = 4, 5
    X, W = _data(0, 500, k, d)
    pol = EpsilonGreedy(k, d, seed=3, epsilon=0.1, l2=0.5)
    ref = RefEpsilonGreedy(k, d, seed=3, epsilon=0.1, l2=0.5)
    for s in range(0, 500, 50):
        xb = X[s : s + 50]
        np.testing.assert_allclose(pol.probabilities(xb), ref.probabilities(xb), atol=1e-12)
        arms, props = pol.choose(xb)
        ref_arms, ref_props = ref.choose(xb)
        np.testing.assert_array_equal(arms, ref_arms)
        np.testing.assert_allclose(props, ref_props, atol=1e-12)
        r = np.einsum("nd,nd->n", xb, W[arms])
        pol.learn(xb, arms, r)
        ref.learn(xb, arms, r)
    assert pol.probabilities(X).min() >= 0.1 / k - 1e-15


def test_lints_matches_reference_choices_and_updates() -> None:
    k, d = 4, 5
    X, W = _data(1, 400, k, d)
    pol = LinTS(k, d, seed=9, v=0.7, l2=1.5, floor=0.1)
    ref = RefLinTS(k, d, seed=9, v=0.7, l2=1.5, floor=0.1)
    noise = np.random.default_rng(2)
    for s in range(0, 400, 40):
        xb = X[s : s + 40]
        arms, _ = pol.choose(xb)
        np.testing.assert_array_equal(arms, ref.choose(xb))
        r = np.einsum("nd,nd->n", xb, W[arms]) + noise.normal(size=len(xb))
        pol.learn(xb, arms, r)
        ref.learn(xb, arms, r)
    M, S = pol._moments(X[:20])
    for i in range(20):
        m, sd = ref.moments(X[i])
        np.testing.assert_allclose(M[i], m, rtol=1e-9, atol=1e-12)
        # variances are computed in float32 (LinearArms.moments): ~1e-7 relative
        np.testing.assert_allclose(S[i], sd, rtol=1e-6)


def test_lints_propensities_match_monte_carlo_of_full_theta_draws() -> None:
    k, d = 5, 4
    X, W = _data(3, 300, k, d)
    pol = LinTS(k, d, seed=0, v=1.0, floor=0.05)
    ref = RefLinTS(k, d, seed=0, v=1.0, l2=1.0, floor=0.05)
    # skewed logging: arm spreads differ a lot (arm 0 seen often, arm 4 rarely)
    arms = np.minimum(np.random.default_rng(0).geometric(0.5, size=300) - 1, k - 1)
    r = np.einsum("nd,nd->n", X, W[arms]) * 0.2
    pol.learn(X, arms, r)
    ref.learn(X, arms, r)
    P = pol.probabilities(X[:4])
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    for i in range(4):
        mc = ref.mc_probabilities(X[i], 200_000, seed=i)
        np.testing.assert_allclose(P[i], mc, atol=0.005)  # MC sd <= 0.0012
    chosen, props = pol.choose(X[:4])
    np.testing.assert_allclose(props, P[np.arange(4), chosen], atol=1e-6)


def test_quadrature_accuracy_in_hard_cases() -> None:
    rng = np.random.default_rng(5)
    n, k = 30, 8
    M = rng.normal(size=(n, k)) * 0.3
    S = np.exp(rng.normal(size=(n, k)) * 1.5) * 0.3  # spreads differ by e^3 and more
    for q, tol in ((8, 2e-3), (16, 3e-4)):
        P = np.stack([win_probability(M, S, np.full(n, a), q) for a in range(k)], axis=1)
        assert np.abs(P.sum(axis=1) - 1.0).max() < tol
    # exact cases: two arms with equal spread -> Phi((m_a - m_b) / (sqrt 2 s))
    M2 = np.array([[0.0, 1.0]])
    S2 = np.array([[1.0, 1.0]])
    p = win_probability(M2, S2, np.array([1]), 8)[0]
    from math import erfc, sqrt

    np.testing.assert_allclose(p, 0.5 * erfc(-1.0 / (sqrt(2) * sqrt(2))), rtol=1e-9)


def test_lints_empirical_choice_frequencies_match_propensities() -> None:
    k, d = 3, 3
    X, W = _data(4, 200, k, d)
    pol = LinTS(k, d, seed=1, floor=0.2)
    pol.learn(X, np.arange(200) % k, np.einsum("nd,nd->n", X, W[np.arange(200) % k]))
    x = np.repeat(X[:1], 40_000, axis=0)
    arms, props = pol.choose(x)
    freq = np.bincount(arms, minlength=k) / len(arms)
    np.testing.assert_allclose(freq, pol.probabilities(X[:1])[0], atol=0.01)
    np.testing.assert_allclose(props, pol.probabilities(X[:1])[0][arms], atol=1e-6)


@pytest.mark.parametrize("cls", [LinTS, EpsilonGreedy])
def test_snapshot_restore_midstream_identical(cls: type[Policy]) -> None:
    k, d = 4, 6
    X, W = _data(6, 1200, k, d)
    pol = cls(k, d, seed=2)
    for s in range(0, 600, 100):
        xb = X[s : s + 100]
        arms, _ = pol.choose(xb)
        pol.learn(xb, arms, np.einsum("nd,nd->n", xb, W[arms]))
    clone = Policy.restore(pickle.loads(pickle.dumps(pol.snapshot())))
    assert type(clone) is cls and clone.version == pol.version
    for s in range(600, 1200, 100):
        xb = X[s : s + 100]
        a1, p1 = pol.choose(xb)
        a2, p2 = clone.choose(xb)
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(p1, p2)
        r = np.einsum("nd,nd->n", xb, W[a1])
        pol.learn(xb, a1, r)
        clone.learn(xb, a2, r)


def test_restore_rejects_a_foreign_snapshot() -> None:
    snap = LinTS(2, 2).snapshot()
    with pytest.raises(ValueError, match="snapshot"):
        EpsilonGreedy.restore(snap)
    with pytest.raises(ValueError, match="epsilon"):
        EpsilonGreedy(2, 2, epsilon=1.5)
    with pytest.raises(ValueError, match="n_quad"):
        LinTS(2, 2, n_quad=2)
