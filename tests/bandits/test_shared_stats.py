"""Linear policies on several shards: each adds what the others learned (``own_stats`` /
``set_peer_stats``) and then knows what one policy that learned everything knows."""

from __future__ import annotations

import numpy as np
import pytest

from eddy.operators.bandits.base import POLICIES, LinearPolicy, Policy

K, D = 3, 4
LINEAR = sorted(n for n, c in POLICIES.items() if issubclass(c, LinearPolicy))


def _rows(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, D))
    arms = rng.integers(0, K, size=n)
    return X, arms, rng.normal(size=n)


def _linear(name: str, seed: int = 0) -> LinearPolicy:
    pol = POLICIES[name](K, D, seed=seed)
    assert isinstance(pol, LinearPolicy)
    return pol


def test_every_policy_is_linear() -> None:
    assert sorted(POLICIES) == LINEAR  # decide stages rely on it to share across shards


@pytest.mark.parametrize("name", LINEAR)
def test_shards_that_share_know_what_one_policy_knows(name: str) -> None:
    whole = _linear(name)
    shards = [_linear(name, seed=s) for s in range(3)]
    for step in range(4):  # each shard learns its own rows; the shares replace older ones
        X, arms, r = _rows(step, 90)
        whole.learn(X, arms, r)
        for s, pol in enumerate(shards):
            pol.learn(X[s::3], arms[s::3], r[s::3])
        posts = [pol.own_stats() for pol in shards]
        for s, pol in enumerate(shards):
            for peer, stats in enumerate(posts):
                if peer != s:
                    pol.set_peer_stats(peer, stats)
        X_new = _rows(100 + step, 20)[0]
        for pol in shards:
            np.testing.assert_allclose(pol._arms.A, whole._arms.A, rtol=1e-12)
            np.testing.assert_allclose(pol._arms.b, whole._arms.b, rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(pol._arms.counts, whole._arms.counts)
            if name != "lints":  # LinTS samples its scores: its sums are checked above
                P, P_whole = pol.probabilities(X_new), whole.probabilities(X_new)
                np.testing.assert_allclose(P, P_whole, atol=1e-9)
    assert sum(p.n_learned for p in shards) == whole.n_learned  # each counts its own


@pytest.mark.parametrize("name", LINEAR)
def test_own_stats_leave_out_the_prior_and_the_peers(name: str) -> None:
    pol = _linear(name)
    X, arms, r = _rows(1, 60)
    pol.learn(X, arms, r)
    mine = pol.own_stats()
    pol.set_peer_stats(5, {k: v * 3 for k, v in mine.items()})
    again = pol.own_stats()
    for key in ("A", "b"):
        np.testing.assert_allclose(again[key], mine[key], rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(again["counts"], mine["counts"])
    expected = np.zeros((K, D, D))
    for a in range(K):
        expected[a] = X[arms == a].T @ X[arms == a]
    np.testing.assert_allclose(mine["A"], expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", LINEAR)
def test_a_restored_policy_keeps_what_its_peers_sent(name: str) -> None:
    pol = _linear(name, seed=4)
    X, arms, r = _rows(2, 50)
    pol.learn(X, arms, r)
    pol.set_peer_stats(1, {k: v * 2 for k, v in pol.own_stats().items()})
    back = Policy.restore(pol.snapshot())
    assert isinstance(back, LinearPolicy)
    later = {k: v * 5 for k, v in pol.own_stats().items()}
    for p in (pol, back):
        p.set_peer_stats(1, later)  # replaces the peer's first share in both
    X_new = _rows(3, 30)[0]
    np.testing.assert_array_equal(back.choose(X_new)[0], pol.choose(X_new)[0])
    np.testing.assert_allclose(back._arms.A, pol._arms.A)
