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

Eligible arms (see ``operators.bandits.base``). With a mask, the Thompson draw is an argmax
over the row's eligible arms only, the floor's uniform draw is over them too, and the integral
runs over eligible competitors only (the kernel takes the mask and skips the others, which is
exact; pushing ineligible means to -inf would only be approximately so), giving
``P_ts(a | x, eligible)``; ineligible arms get exactly 0.
Cost: about ``segments * n_quad * (n_arms - 1)`` erfc calls per decision — LinTS is the
slowest policy here (see ``benchmarks/bandits.py``).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from numba import njit

from eddy.operators.bandits.base import LinearPolicy, check_eligible

__all__ = ["LinTS", "win_probability"]


_LIM = 8.5  # |u| beyond this holds < 1e-16 of the normal mass
_FIXED_BREAKS = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])


@njit(cache=True)
def _h(M, S, E, i, a, u):
    """prod_{b != a, E[i,b]} Phi((M[i,a] + S[i,a] u - M[i,b]) / S[i,b]), increasing in u."""
    t = M[i, a] + S[i, a] * u
    prod = 1.0
    for b in range(M.shape[1]):
        if b == a or not E[i, b]:
            continue
        z = (t - M[i, b]) / S[i, b]
        if z < -9.0:
            return 0.0
        if z < 9.0:
            prod *= 0.5 * math.erfc(-z * 0.7071067811865476)
    return prod


@njit(cache=True)
def _win_prob_rows(M, S, E, arms, gl_x, gl_w, fixed):
    """P(arms[i] wins among the arms b with E[i, b]) = int phi(u) h(u) du; 0 if ``arms[i]``
    itself is not eligible, 1 if it has no eligible competitor.

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
        if not E[i, a]:
            out[i] = 0.0
            continue
        ma = M[i, a]
        sa = S[i, a]
        lo = -_LIM
        hi = -_LIM
        n_comp = 0
        for b in range(k):
            if b != a and E[i, b]:
                lo = max(lo, (M[i, b] - ma - 7.0 * S[i, b]) / sa)
                hi = max(hi, (M[i, b] - ma + 7.0 * S[i, b]) / sa)
                n_comp += 1
        if n_comp == 0:
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
            if b != a and E[i, b]:
                c = (M[i, b] - ma) / sa
                if lo < c < hi:
                    bp[nb] = c
                    nb += 1
        br = np.sort(bp[:nb])
        for s in range(nb - 1):
            x0 = br[s]
            x1 = br[s + 1]
            if x1 <= x0 or _h(M, S, E, i, a, x1) == 0.0:
                continue  # h is increasing: zero on the whole segment
            half = 0.5 * (x1 - x0)
            mid = 0.5 * (x1 + x0)
            seg = 0.0
            for j in range(gl_x.shape[0]):
                u = mid + half * gl_x[j]
                seg += gl_w[j] * math.exp(-0.5 * u * u) * _h(M, S, E, i, a, u)
            acc += seg * half * 0.3989422804014327
        out[i] = acc
    return out


_GL_CACHE: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def win_probability(
    M: np.ndarray,
    S: np.ndarray,
    arms: np.ndarray,
    n_quad: int = 8,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """P(arm ``arms[i]`` has the largest of independent ``N(M[i], S[i]^2)`` scores), (n,).

    ``eligible`` (bool, shape of ``M``): only the arms with ``eligible[i, b]`` compete in row
    ``i`` (0 for an ineligible ``arms[i]``); ``None`` means all of them. ``n_quad``
    Gauss-Legendre nodes per segment (see ``_win_prob_rows``)."""
    if n_quad not in _GL_CACHE:
        _GL_CACHE[n_quad] = np.polynomial.legendre.leggauss(n_quad)
    gl_x, gl_w = _GL_CACHE[n_quad]
    S = np.maximum(S, 1e-12)
    # an all-True mask runs the very same arithmetic as no mask: one kernel, bit-identical
    E = np.ones(S.shape, dtype=np.bool_) if eligible is None else eligible
    if E.dtype != np.bool_ or E.shape != S.shape:
        raise ValueError(f"eligible: expected bool {S.shape}, got {E.dtype} {E.shape}")
    return np.asarray(
        _win_prob_rows(
            np.ascontiguousarray(M, dtype=np.float64),
            np.ascontiguousarray(S, dtype=np.float64),
            np.ascontiguousarray(E),
            np.ascontiguousarray(arms, dtype=np.int64),
            gl_x,
            gl_w,
            _FIXED_BREAKS,
        )
    )


class LinTS(LinearPolicy):
    """``LinTS(n_arms, n_features, seed=0, v=0.5, l2=1.0, floor=0.02, n_quad=8)``."""

    name: ClassVar[str] = "lints"
    ALGO_VERSION: ClassVar[int] = 1
    PARAMS: ClassVar[dict[str, Any]] = {"v": 0.5, "l2": 1.0, "floor": 0.02, "n_quad": 8}

    def _validate_params(self) -> None:
        v, q = self.params["v"], self.params["n_quad"]
        if not float(v) > 0.0:
            raise ValueError(f"v: expected a number > 0, got {v!r}")
        if not isinstance(q, int) or not 4 <= q <= 128:
            raise ValueError(f"n_quad: expected an int in [4, 128], got {q!r}")
        super()._validate_params()

    def _moments(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        M, V = self._arms.moments(X)
        return M, float(self.params["v"]) * np.sqrt(V)

    def _policy_probabilities(self, X: np.ndarray, eligible: np.ndarray | None) -> np.ndarray:
        M, S = self._moments(X)
        n, k = M.shape
        P = np.empty((n, k))
        q = int(self.params["n_quad"])
        for a in range(k):  # the kernel gives 0 where arm a is not eligible
            P[:, a] = win_probability(M, S, np.full(n, a), q, eligible)
        return P / P.sum(axis=1, keepdims=True)

    def choose(self, X: Any, eligible: Any = None) -> tuple[np.ndarray, np.ndarray]:
        """Floor-mixed Thompson draw among the eligible arms. Random stream per call, in this
        order, whatever the mask: ``u`` (n,) uniforms (explore if ``u < floor``), uniform arms
        (n,) (with a mask: the index of the arm among the row's eligible ones,
        ``integers(0, n_eligible)``), standard normals (n, k) (drawn for every arm; ineligible
        ones are then ignored). ``eligible`` as in ``Policy.probabilities``."""
        X = self._clean(X)
        n, k, f = X.shape[0], self.n_arms, self.floor
        E = check_eligible(eligible, n, k)
        explore = self._rng.random(size=n) < f
        if E is None:
            uniform_arms = self._rng.integers(0, k, size=n)
            floor_share: float | np.ndarray = f / k
        else:
            n_eligible = E.sum(axis=1)
            j = self._rng.integers(0, n_eligible)  # j-th eligible arm of the row
            uniform_arms = np.argmax(np.cumsum(E, axis=1) > j[:, None], axis=1)
            floor_share = f / n_eligible
        z = self._rng.standard_normal(size=(n, k))
        M, S = self._moments(X)
        T = M + S * z
        if E is not None:
            T = np.where(E, T, -np.inf)
        arms = np.where(explore, uniform_arms, np.argmax(T, axis=1)).astype(np.int64)
        p_ts = win_probability(M, S, arms, int(self.params["n_quad"]), E)
        props = np.clip(floor_share + (1.0 - f) * p_ts, floor_share, 1.0)
        return arms, props
