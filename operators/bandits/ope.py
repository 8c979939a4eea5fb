"""Off-policy evaluation: the value of a target policy estimated from logged bandit data.

Logged data: contexts ``X`` (n, d), logged ``arms`` (n,), logging ``propensities`` (n,) (the
probability of the logged arm under the logging policy) and ``rewards`` (n,). The target policy
is given as ``target`` (n, k): its probability of every arm for every logged context, or
``None`` for the logging policy itself (on-policy: every estimator is the mean reward).

Estimators (``w = target[i, arm_i] / propensity_i``):

- ``ips``: ``mean(w r)`` — unbiased when the propensities are right and positive where the
  target puts mass; CI from the normal approximation of the mean.
- ``snips``: ``sum(w r) / sum(w)`` — self-normalised, slightly biased, lower variance; CI by the
  delta method (influence ``w (r - V) / mean(w)``).
- ``dr``: doubly robust with a per-arm ridge-regression reward model ``q(x, a)``, cross-fitted
  (``n_folds`` folds, each row predicted by a model that did not see it):
  ``mean(sum_a target[i, a] q(x_i, a) + w (r - q(x_i, arm_i)))``; CI normal.
- ``dm``: the direct method ``mean(sum_a target q)`` (reported for reference, no CI claims:
  its error is model bias, which a CI cannot see).

``ci="bootstrap"`` replaces the normal intervals by percentile intervals over ``n_boot``
resamples of rows (the cross-fitted reward model is kept fixed).

:func:`replay_probabilities` turns a policy into ``target``: the log is replayed in order, in
micro-batches; each batch's probabilities come from the policy's state *before* that batch,
and (``learn=True``) the policy then learns the batch's logged (context, arm, reward) rows. That
evaluates "a fresh policy trained online on this log" — the usual replay protocol; it uses the
rewards of the logged arms only, so it is what that policy would have done had it been fed the
same feedback, not a simulation of its own feedback loop. With ``learn=False`` the policy is
evaluated as fixed (e.g. one restored from a snapshot).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from eddy.operators.bandits.base import Policy

__all__ = [
    "Estimate",
    "effective_sample_size",
    "estimate",
    "replay_probabilities",
    "ridge_cross_fit",
]


@dataclass(frozen=True)
class Estimate:
    name: str
    value: float
    ci_low: float
    ci_high: float
    std_err: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _z(alpha: float) -> float:
    """Two-sided normal quantile z_{1 - alpha/2}, by bisection on erfc (no scipy)."""
    lo, hi = 0.0, 10.0
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        if math.erfc(mid / math.sqrt(2.0)) > alpha:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def ridge_cross_fit(
    X: np.ndarray,
    arms: np.ndarray,
    rewards: np.ndarray,
    n_arms: int,
    n_folds: int = 2,
    l2: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Cross-fitted per-arm ridge predictions ``q`` (n, n_arms): row i is predicted by models
    fitted on the other folds only."""
    n, d = X.shape
    folds = np.random.default_rng(seed).permutation(n) % n_folds
    q = np.zeros((n, n_arms))
    eye = np.eye(d) * l2
    for f in range(n_folds):
        train = folds != f
        test = ~train
        Xt, at, rt = X[train], arms[train], rewards[train]
        for a in range(n_arms):
            m = at == a
            Xa = Xt[m]
            theta = np.linalg.solve(eye + Xa.T @ Xa, Xa.T @ rt[m])
            q[test, a] = X[test] @ theta
    return q


def estimate(
    X: np.ndarray,
    arms: np.ndarray,
    propensities: np.ndarray,
    rewards: np.ndarray,
    target: np.ndarray | None,
    *,
    n_arms: int | None = None,
    alpha: float = 0.05,
    ci: str = "normal",
    n_boot: int = 1000,
    n_folds: int = 2,
    l2: float = 1.0,
    seed: int = 0,
) -> dict[str, Estimate]:
    """IPS, SNIPS, DR (and DM) estimates of the target's value, with (1 - alpha) CIs."""
    X = np.asarray(X, dtype=np.float64)
    arms = np.asarray(arms, dtype=np.int64)
    mu = np.asarray(propensities, dtype=np.float64)
    r = np.asarray(rewards, dtype=np.float64)
    n = len(r)
    if n < 2:
        raise ValueError(f"rows: expected at least 2 logged rows, got {n}")
    if X.shape[0] != n or arms.shape != (n,) or mu.shape != (n,):
        raise ValueError(
            f"X, arms, propensities: expected {n} rows, got {X.shape}, {arms.shape}, {mu.shape}"
        )
    if not (mu > 0).all() or not (mu <= 1 + 1e-9).all():
        raise ValueError("propensities: expected values in (0, 1]")
    if ci not in ("normal", "bootstrap"):
        raise ValueError(f"ci: expected 'normal' or 'bootstrap', got {ci!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha: expected a number in (0, 1), got {alpha!r}")
    k = int(n_arms if n_arms is not None else (target.shape[1] if target is not None else 0))
    k = max(k, int(arms.max()) + 1)
    if target is None:  # on-policy: weights are 1 and every estimator is the mean reward
        w = np.ones(n)
        q = ridge_cross_fit(X, arms, r, k, n_folds, l2, seed)
        dm_terms = q[np.arange(n), arms]
        dr_terms = r.copy()
    else:
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (n, k):
            raise ValueError(f"target: expected shape ({n}, {k}), got {target.shape}")
        w = target[np.arange(n), arms] / mu
        q = ridge_cross_fit(X, arms, r, k, n_folds, l2, seed)
        dm_terms = (target * q).sum(axis=1)
        dr_terms = dm_terms + w * (r - q[np.arange(n), arms])
    z = _z(alpha)

    def normal(name: str, terms: np.ndarray) -> Estimate:
        v = float(terms.mean())
        se = float(terms.std(ddof=1) / math.sqrt(n))
        return Estimate(name, v, v - z * se, v + z * se, se, n)

    ips = normal("ips", w * r)
    sw = w.sum()
    v_sn = float((w * r).sum() / sw) if sw > 0 else float("nan")
    infl = w * (r - v_sn) / max(w.mean(), 1e-300)
    se_sn = float(infl.std(ddof=1) / math.sqrt(n))
    snips = Estimate("snips", v_sn, v_sn - z * se_sn, v_sn + z * se_sn, se_sn, n)
    dr = normal("dr", dr_terms)
    dm = normal("dm", dm_terms)
    out = {"ips": ips, "snips": snips, "dr": dr, "dm": dm}
    if ci == "bootstrap":
        rng = np.random.default_rng(seed)
        boots: dict[str, list[float]] = {name: [] for name in out}
        for _ in range(n_boot):
            idx = rng.integers(0, n, size=n)
            wi, ri = w[idx], r[idx]
            boots["ips"].append(float((wi * ri).mean()))
            boots["snips"].append(float((wi * ri).sum() / max(wi.sum(), 1e-300)))
            boots["dr"].append(float(dr_terms[idx].mean()))
            boots["dm"].append(float(dm_terms[idx].mean()))
        for name, est in out.items():
            b = np.asarray(boots[name])
            lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2])
            out[name] = Estimate(name, est.value, float(lo), float(hi), float(b.std(ddof=1)), n)
    return out


def effective_sample_size(target: np.ndarray | None, arms: np.ndarray, mu: np.ndarray) -> float:
    """Kish effective sample size of the importance weights, ``(sum w)^2 / sum w^2``."""
    if target is None:
        return float(len(arms))
    w = target[np.arange(len(arms)), arms] / mu
    return float(w.sum() ** 2 / max((w**2).sum(), 1e-300))


def replay_probabilities(
    policy: Policy,
    X: np.ndarray,
    arms: np.ndarray,
    rewards: np.ndarray,
    *,
    batch_size: int = 512,
    learn: bool = True,
) -> np.ndarray:
    """Target probabilities (n, k) of ``policy`` over the log, replayed in micro-batches (see
    the module docstring). The policy object is updated in place when ``learn``."""
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    if batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    out = np.empty((n, policy.n_arms))
    for s in range(0, n, batch_size):
        e = min(s + batch_size, n)
        out[s:e] = policy.probabilities(X[s:e])
        if learn:
            policy.learn(X[s:e], arms[s:e], rewards[s:e])
    return out
