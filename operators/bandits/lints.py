"""Linear Thompson sampling (Agrawal & Goyal, 2013) with an exploration floor and honest
propensities.

Model: per arm a ridge posterior ``theta_a ~ N(A_a^{-1} b_a, v^2 A_a^{-1})``. For one context
``x`` only ``x . theta_a`` matters, and that is exactly ``N(m_a, s_a^2)`` with
``m_a = x . theta_hat_a`` and ``s_a = v sqrt(x^T A_a^{-1} x)``, independent across arms. So a
decision samples one normal score per (row, arm) — the same distribution as sampling a full
``theta_a`` per row — and takes the argmax. With probability ``floor`` the arm is instead drawn
uniformly (the exploration floor).

Propensity. The Thompson part's probability of arm ``a`` is the probability that ``a`` wins
among independent normals::

    P_ts(a | x) = E_{u ~ N(0,1)} [ prod_{b != a} Phi((m_a + s_a u - m_b) / s_b) ]

a one-dimensional integral. It is computed (numba) with Gauss-Legendre quadrature,
``n_quad`` nodes per segment, on segments split where the integrand can change quickly (each
competitor's crossing point), only over the range where the product is neither ~0 nor ~1 (the
upper tail is added exactly). It is not a Monte Carlo estimate, so it has no sampling noise and
never returns 0 for an arm that was just chosen. Its error is the quadrature error: measured
(``tests/bandits/test_lints.py``, and against 400k-sample Monte Carlo) rows sum to 1 within
1e-8 when the arms' score spreads are similar, and within ~1e-3 (n_quad=8) / ~1e-4
(n_quad=16) when spreads differ by factors of e^3 or more. The logged propensity is
``floor / n_arms + (1 - floor) * P_ts`` clipped to ``[floor / n_arms, 1]``; the bias this
leaves in IPS/SNIPS is of the order of the relative propensity error (≪ 1 % in practice).
``probabilities(X)`` evaluates the integral for every arm and renormalises each row to sum to 1.
Cost: about ``segments * n_quad * (n_arms - 1)`` erfc calls per decision — LinTS is the
slowest policy here (see ``benchmarks/bandits.py``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numba import njit

from operators.bandits.base import LinearArms, Policy

__all__ = ["LinTS", "win_probability"]


_LIM = 8.5  # |u| beyond this holds < 1e-16 of the normal mass
_FIXED_BREAKS = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])


@njit(cache=True)
def _h(M, S, i, a, u):
    """prod_{b != a} Phi((M[i,a] + S[i,a] u - M[i,b]) / S[i,b]), increasing in u."""
    t = M[i, a] + S[i, a] * u
    prod = 1.0
    for b in range(M.shape[1]):
        if b == a:
            continue
        z = (t - M[i, b]) / S[i, b]
        if z < -9.0:
            return 0.0
        if z < 9.0:
            prod *= 0.5 * math.erfc(-z * 0.7071067811865476)
    return prod


@njit(cache=True)
def _win_prob_rows(M, S, arms, gl_x, gl_w, fixed):
    """P(arms[i] wins) = int phi(u) h(u) du.

    h(u) < 1e-12 below ``lo = max_b (M_b - M_a - 7 S_b) / S_a`` (some factor is ~0) and
    h(u) > 1 - 1e-11 above ``hi = max_b (M_b - M_a + 7 S_b) / S_a`` (every factor is ~1), so
    the integral is ``int_lo^hi phi h + (1 - Phi(hi))``; the middle part is done by
    Gauss-Legendre on segments split at each competitor's crossing point
    ``(M_b - M_a) / S_a`` (where h can step) and at a few fixed points."""
    n, k = M.shape
    out = np.empty(n)
    bp = np.empty(k + 1 + fixed.shape[0])
    for i in range(n):
        a = arms[i]
        ma = M[i, a]
        sa = S[i, a]
        lo = -_LIM
        hi = -_LIM
        for b in range(k):
            if b != a:
                lo = max(lo, (M[i, b] - ma - 7.0 * S[i, b]) / sa)
                hi = max(hi, (M[i, b] - ma + 7.0 * S[i, b]) / sa)
        if k == 1:
            out[i] = 1.0
            continue
        hi = min(hi, _LIM)
        acc = 0.5 * math.erfc(hi * 0.7071067811865476)
        if lo >= hi:
            out[i] = acc
            continue
        nb = 0
        bp[nb] = lo
        nb += 1
        bp[nb] = hi
        nb += 1
        for j in range(fixed.shape[0]):
            if lo < fixed[j] < hi:
                bp[nb] = fixed[j]
                nb += 1
        for b in range(k):
            if b != a:
                c = (M[i, b] - ma) / sa
                if lo < c < hi:
                    bp[nb] = c
                    nb += 1
        br = np.sort(bp[:nb])
        for s in range(nb - 1):
            x0 = br[s]
            x1 = br[s + 1]
            if x1 <= x0 or _h(M, S, i, a, x1) == 0.0:
                continue  # h is increasing: zero on the whole segment
            half = 0.5 * (x1 - x0)
            mid = 0.5 * (x1 + x0)
            seg = 0.0
            for j in range(gl_x.shape[0]):
                u = mid + half * gl_x[j]
                seg += gl_w[j] * math.exp(-0.5 * u * u) * _h(M, S, i, a, u)
            acc += seg * half * 0.3989422804014327
        out[i] = acc
    return out


_GL_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def win_probability(M: np.ndarray, S: np.ndarray, arms: np.ndarray, n_quad: int = 8) -> np.ndarray:
    """P(arm ``arms[i]`` has the largest of independent ``N(M[i], S[i]^2)`` scores), (n,).

    ``n_quad`` Gauss-Legendre nodes per segment (see ``_win_prob_rows``)."""
    if n_quad not in _GL_CACHE:
        _GL_CACHE[n_quad] = np.polynomial.legendre.leggauss(n_quad)
    gl_x, gl_w = _GL_CACHE[n_quad]
    S = np.maximum(S, 1e-12)
    return np.asarray(
        _win_prob_rows(
            np.ascontiguousarray(M, dtype=np.float64),
            np.ascontiguousarray(S, dtype=np.float64),
            np.ascontiguousarray(arms, dtype=np.int64),
            gl_x,
            gl_w,
            _FIXED_BREAKS,
        )
    )


class LinTS(Policy):
    """``LinTS(n_arms, n_features, seed=0, v=0.5, l2=1.0, floor=0.02, n_quad=8)``."""

    name: ClassVar[str] = "lints"
    ALGO_VERSION: ClassVar[int] = 1
    PARAMS: ClassVar[dict[str, Any]] = {"v": 0.5, "l2": 1.0, "floor": 0.02, "n_quad": 8}

    def __init__(self, n_arms: int, n_features: int, seed: int = 0, **params: Any) -> None:
        super().__init__(n_arms, n_features, seed, **params)
        self._arms = LinearArms.create(self.n_arms, self.n_features, float(self.params["l2"]))

    def _validate_params(self) -> None:
        v, l2, q = self.params["v"], self.params["l2"], self.params["n_quad"]
        if not float(v) > 0.0:
            raise ValueError(f"v: expected a number > 0, got {v!r}")
        if not float(l2) > 0.0:
            raise ValueError(f"l2: expected a number > 0, got {l2!r}")
        if not isinstance(q, int) or not 4 <= q <= 128:
            raise ValueError(f"n_quad: expected an int in [4, 128], got {q!r}")

    def _moments(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        M, V = self._arms.moments(X)
        return M, float(self.params["v"]) * np.sqrt(V)

    def _policy_probabilities(self, X: np.ndarray) -> np.ndarray:
        M, S = self._moments(X)
        n, k = M.shape
        P = np.empty((n, k))
        q = int(self.params["n_quad"])
        for a in range(k):
            P[:, a] = win_probability(M, S, np.full(n, a), q)
        return P / P.sum(axis=1, keepdims=True)

    def choose(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Floor-mixed Thompson draw. Random stream per call, in this order: ``u`` (n,)
        uniforms (explore if ``u < floor``), uniform arms (n,), standard normals (n, k)."""
        X = self._clean(X)
        n, k, f = X.shape[0], self.n_arms, self.floor
        explore = self._rng.random(size=n) < f
        uniform_arms = self._rng.integers(0, k, size=n)
        z = self._rng.standard_normal(size=(n, k))
        M, S = self._moments(X)
        arms = np.where(explore, uniform_arms, np.argmax(M + S * z, axis=1)).astype(np.int64)
        p_ts = win_probability(M, S, arms, int(self.params["n_quad"]))
        props = np.clip(f / k + (1.0 - f) * p_ts, f / k, 1.0)
        return arms, props

    def _learn(self, X: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        self._arms.update(X, arms, rewards)

    def _state(self) -> dict[str, Any]:
        return {"arms": self._arms.to_dict()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._arms = LinearArms.from_dict(state["arms"])
