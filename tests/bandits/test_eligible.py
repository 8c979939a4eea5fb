"""Per-event eligible arms: only eligible arms are chosen, propensities are over them, and
``eligible=None`` (or an all-True mask) changes nothing."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from eddy.operators.bandits import POLICIES, EpsilonGreedy, LinTS, LinUCB, Policy
from eddy.operators.bandits.base import LinearPolicy
from eddy.operators.bandits.lints import win_probability

K, D = 5, 4
POLICY_CASES = [
    (LinUCB, {"alpha": 0.8, "floor": 0.05}, 0.05),
    (LinTS, {"v": 0.7, "floor": 0.1}, 0.1),
    (EpsilonGreedy, {"epsilon": 0.1}, 0.1),
]
IDS = ["linucb", "lints", "epsilon_greedy"]


def _trained(cls: type[Policy], params: dict, seed: int = 0) -> tuple[Policy, np.ndarray]:
    """A policy that has learned from skewed logs (arm spreads differ), and fresh contexts."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(700, D))
    X[:, 0] = 1.0
    W = rng.normal(size=(K, D))
    pol = cls(K, D, seed=seed + 1, **params)
    arms = np.minimum(rng.geometric(0.4, size=500) - 1, K - 1)
    pol.learn(X[:500], arms, np.einsum("nd,nd->n", X[:500], W[arms]) + rng.normal(size=500))
    return pol, X[500:]


def _mask(n: int, seed: int) -> np.ndarray:
    """Random mask with every kind of row: several arms, exactly one arm, none, all."""
    rng = np.random.default_rng(seed)
    E = rng.random((n, K)) < 0.5
    E[0::7] = False
    E[0::7, 3] = True  # single eligible arm
    E[1::11] = False  # no eligible arm -> treated as all eligible
    E[2::13] = True
    return E


def _effective(E: np.ndarray) -> np.ndarray:
    return E | ~E.any(axis=1, keepdims=True)


@pytest.mark.parametrize(("cls", "params", "floor"), POLICY_CASES, ids=IDS)
def test_only_eligible_arms_are_chosen(cls: type[Policy], params: dict, floor: float) -> None:
    pol, X = _trained(cls, params)
    E = _mask(len(X), 1)
    Eeff = _effective(E)
    for _ in range(20):
        arms, _ = pol.choose(X, E)
        assert Eeff[np.arange(len(X)), arms].all()
    # rows with several eligible arms do see more than one of them over repeated draws
    x = np.repeat(X[:1], 5000, axis=0)
    e = np.zeros((5000, K), dtype=bool)
    e[:, [0, 2, 4]] = True
    arms, _ = pol.choose(x, e)
    assert set(np.unique(arms)) == {0, 2, 4}


@pytest.mark.parametrize(("cls", "params", "floor"), POLICY_CASES, ids=IDS)
def test_probabilities_are_restricted_and_floored(
    cls: type[Policy], params: dict, floor: float
) -> None:
    pol, X = _trained(cls, params)
    E = _mask(len(X), 2)
    Eeff = _effective(E)
    P = pol.probabilities(X, E)
    assert P.shape == (len(X), K)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)
    assert (P[~Eeff] == 0.0).all()
    n_eligible = Eeff.sum(axis=1, keepdims=True)
    lower = np.broadcast_to(floor / n_eligible, P.shape)[Eeff]
    assert (P[Eeff] >= lower - 1e-15).all()


@pytest.mark.parametrize(("cls", "params", "floor"), POLICY_CASES, ids=IDS)
def test_propensities_equal_probabilities_of_the_chosen_arm(
    cls: type[Policy], params: dict, floor: float
) -> None:
    pol, X = _trained(cls, params)
    E = _mask(len(X), 3)
    P = pol.probabilities(X, E)
    arms, props = pol.choose(X, E)
    # LinTS logs the (unrenormalised) quadrature value: rows sum to 1 within ~1e-8
    atol = 1e-6 if cls is LinTS else 1e-12
    np.testing.assert_allclose(props, P[np.arange(len(X)), arms], atol=atol)


@pytest.mark.parametrize(("cls", "params", "floor"), POLICY_CASES, ids=IDS)
def test_a_single_eligible_arm_has_propensity_one(
    cls: type[Policy], params: dict, floor: float
) -> None:
    pol, X = _trained(cls, params)
    E = np.zeros((len(X), K), dtype=bool)
    E[np.arange(len(X)), np.arange(len(X)) % K] = True
    arms, props = pol.choose(X, E)
    np.testing.assert_array_equal(arms, np.arange(len(X)) % K)
    np.testing.assert_allclose(props, 1.0, rtol=0, atol=1e-15)
    np.testing.assert_allclose(pol.probabilities(X, E), E.astype(float), rtol=0, atol=1e-15)


@pytest.mark.parametrize(("cls", "params", "floor"), POLICY_CASES, ids=IDS)
def test_rows_without_eligible_arms_count_as_all_eligible(
    cls: type[Policy], params: dict, floor: float
) -> None:
    pol, X = _trained(cls, params)
    E = np.zeros((len(X), K), dtype=bool)
    E[::2, 1] = True
    P = pol.probabilities(X, E)
    np.testing.assert_array_equal(P[1::2], pol.probabilities(X[1::2]))
    arms, props = pol.choose(X, E)
    assert (arms[::2] == 1).all() and np.isfinite(props).all() and (props > 0).all()


@pytest.mark.parametrize(("cls", "params", "floor"), POLICY_CASES, ids=IDS)
def test_none_and_all_true_are_bit_identical(cls: type[Policy], params: dict, floor: float) -> None:
    pol, X = _trained(cls, params)
    twin = Policy.restore(pickle.loads(pickle.dumps(pol.snapshot())))
    ones = np.ones((len(X), K), dtype=bool)
    for s in range(0, len(X), 50):
        xb, eb = X[s : s + 50], ones[s : s + 50]
        np.testing.assert_array_equal(pol.probabilities(xb), twin.probabilities(xb, eb))
        a1, p1 = pol.choose(xb)
        a2, p2 = twin.choose(xb, eb)
        np.testing.assert_array_equal(a1, a2)
        np.testing.assert_array_equal(p1, p2)
        pol.learn(xb, a1, xb[:, 1])
        twin.learn(xb, a2, xb[:, 1])
    assert pol.snapshot()["rng"] == twin.snapshot()["rng"]


def test_none_keeps_the_pre_eligibility_stream() -> None:
    """The stream a policy consumes with eligible=None is the one documented before the
    feature: one uniform per row (LinUCB, EpsilonGreedy; inverse CDF over P)."""
    pol, X = _trained(LinUCB, {"floor": 0.05})
    P = pol.probabilities(X)
    rng = np.random.default_rng(pol.seed)
    rng.bit_generator.state = pol.snapshot()["rng"]
    u = rng.random(len(X))
    expected = (np.cumsum(P, axis=1)[:, :-1] <= u[:, None]).sum(axis=1)
    arms, _ = pol.choose(X)
    np.testing.assert_array_equal(arms, expected)


def test_linucb_is_greedy_among_eligible_arms() -> None:
    pol, X = _trained(LinUCB, {"alpha": 0.8, "floor": 0.05})
    assert isinstance(pol, LinUCB)
    E = _effective(_mask(len(X), 4))
    best = np.argmax(np.where(E, pol.scores(X), -np.inf), axis=1)
    n_eligible = E.sum(axis=1)
    expected = np.where(E, 0.05 / n_eligible[:, None], 0.0)
    expected[np.arange(len(X)), best] += 0.95
    np.testing.assert_allclose(pol.probabilities(X, E), expected, atol=1e-12)


def test_ties_split_among_eligible_arms_only() -> None:
    pol = LinUCB(K, D, floor=0.2)  # before learning every arm ties
    E = np.array([[True, False, True, False, False], [False, True, True, True, True]])
    P = pol.probabilities(np.ones((2, D)), E)
    np.testing.assert_allclose(P, E / E.sum(axis=1, keepdims=True), atol=1e-15)


def test_epsilon_greedy_spreads_epsilon_over_eligible_arms() -> None:
    pol, X = _trained(EpsilonGreedy, {"epsilon": 0.3})
    E = _effective(_mask(len(X), 5))
    means = X @ pol._arms.theta.T  # type: ignore[attr-defined]
    best = np.argmax(np.where(E, means, -np.inf), axis=1)
    expected = np.where(E, 0.3 / E.sum(axis=1, keepdims=True), 0.0)
    expected[np.arange(len(X)), best] += 0.7
    np.testing.assert_allclose(pol.probabilities(X, E), expected, atol=1e-12)


def test_win_probability_mask_equals_dropping_the_ineligible_columns() -> None:
    rng = np.random.default_rng(6)
    n, k = 40, 6
    M = rng.normal(size=(n, k)) * 0.5
    S = np.exp(rng.normal(size=(n, k))) * 0.3
    E = np.zeros((n, k), dtype=bool)
    E[:, [0, 2, 3, 5]] = True
    cols = np.flatnonzero(E[0])
    for j, a in enumerate(cols):
        masked = win_probability(M, S, np.full(n, a), 8, E)
        dropped = win_probability(M[:, cols], S[:, cols], np.full(n, j), 8)
        np.testing.assert_allclose(masked, dropped, rtol=1e-13, atol=1e-15)
    assert (win_probability(M, S, np.full(n, 1), 8, E) == 0.0).all()  # ineligible arm
    only = np.zeros((n, k), dtype=bool)
    only[:, 4] = True
    assert (win_probability(M, S, np.full(n, 4), 8, only) == 1.0).all()


def test_lints_choice_frequencies_match_propensities_among_eligible() -> None:
    """Monte Carlo over many seeded draws on one context: empirical frequencies of the chosen
    arms match the propensities, which are computed over the eligible arms only."""
    pol, X = _trained(LinTS, {"v": 3.0, "floor": 0.3})
    n = 60_000
    x = np.repeat(X[:1], n, axis=0)
    e = np.zeros((n, K), dtype=bool)
    e[:, [1, 2, 4]] = True  # leaves out arm 3, the most likely one over all arms
    assert np.argmax(pol.probabilities(X[:1])[0]) == 3
    P = pol.probabilities(X[:1], e[:1])[0]
    assert (P[[0, 3]] == 0.0).all() and P[[1, 2, 4]].min() > 0.2  # all three really compete
    arms, props = pol.choose(x, e)
    freq = np.bincount(arms, minlength=K) / n
    np.testing.assert_allclose(freq, P, atol=0.006)  # binomial sd <= 0.002
    np.testing.assert_allclose(props, P[arms], atol=1e-6)
    # the Thompson part alone, against a direct Monte Carlo of the restricted argmax
    M, S = pol._moments(X[:1])  # type: ignore[attr-defined]
    z = np.random.default_rng(7).standard_normal(size=(200_000, K))
    T = np.where(e[:1], M + S * z, -np.inf)
    mc = np.bincount(np.argmax(T, axis=1), minlength=K) / len(z)
    p_ts = (P - 0.3 / 3 * e[0]) / 0.7
    np.testing.assert_allclose(p_ts, mc, atol=0.004)  # MC sd <= 0.0012


def test_bad_eligible_masks_raise() -> None:
    pol = LinUCB(3, 2)
    with pytest.raises(ValueError, match="eligible"):
        pol.choose(np.zeros((2, 2)), np.ones((2, 4), dtype=bool))
    with pytest.raises(ValueError, match="eligible"):
        pol.probabilities(np.zeros((2, 2)), np.ones((2, 3)))  # floats are not guessed at
    with pytest.raises(ValueError, match="eligible"):
        LinTS(3, 2).choose(np.zeros((2, 2)), np.ones((3, 3), dtype=bool))


def test_linear_policies_share_one_base_and_keep_the_snapshot_format() -> None:
    assert "policy" not in POLICIES and LinearPolicy not in POLICIES.values()
    for cls in (LinUCB, LinTS, EpsilonGreedy):
        assert issubclass(cls, LinearPolicy)
        state = cls(2, 3).snapshot()["state"]
        assert list(state) == ["arms", "peers"]  # peers: what other shards learned
        assert sorted(state["arms"]) == ["A", "A_inv", "L_inv", "b", "counts", "theta"]
    with pytest.raises(ValueError, match="l2"):
        LinTS(2, 2, l2=0)
