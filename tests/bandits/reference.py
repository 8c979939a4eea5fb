"""Slow, obviously-correct reference policies: plain-Python per-round loops with np.linalg.inv.

They consume the policy's random stream the same way (one uniform per row, inverse CDF), so the
same seed gives the same arms as the vectorised policies.
"""

from __future__ import annotations

import numpy as np

__all__ = ["RefEpsilonGreedy", "RefLinTS", "RefLinUCB", "sample_like_policy"]


def sample_like_policy(rng: np.random.Generator, P: list[list[float]]) -> list[int]:
    us = rng.random(len(P))
    out = []
    for p, u in zip(P, us, strict=True):
        acc = 0.0
        arm = len(p) - 1
        for a, pa in enumerate(p):
            acc += pa
            if u < acc:
                arm = a
                break
        out.append(arm)
    return out


class RefLinUCB:
    def __init__(self, k: int, d: int, seed: int, alpha: float, l2: float, floor: float) -> None:
        self.k, self.alpha, self.floor = k, alpha, floor
        self.A = [l2 * np.eye(d) for _ in range(k)]
        self.b = [np.zeros(d) for _ in range(k)]
        self.rng = np.random.default_rng(seed)

    def probabilities(self, X: np.ndarray) -> list[list[float]]:
        inv = [np.linalg.inv(A) for A in self.A]
        rows = []
        for x in X:
            ucb = []
            for a in range(self.k):
                theta = inv[a] @ self.b[a]
                ucb.append(float(x @ theta + self.alpha * np.sqrt(x @ inv[a] @ x)))
            best = max(ucb)
            top = [a for a in range(self.k) if ucb[a] >= best - 1e-9 * max(1.0, abs(best))]
            rows.append(
                [
                    (1 - self.floor) * (a in top) / len(top) + self.floor / self.k
                    for a in range(self.k)
                ]
            )
        return rows

    def choose(self, X: np.ndarray) -> tuple[list[int], list[float]]:
        P = self.probabilities(X)
        arms = sample_like_policy(self.rng, P)
        return arms, [P[i][a] for i, a in enumerate(arms)]

    def learn(self, X: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        for x, a, r in zip(X, arms, rewards, strict=True):
            self.A[a] += np.outer(x, x)
            self.b[a] += r * x


class RefEpsilonGreedy:
    def __init__(self, k: int, d: int, seed: int, epsilon: float, l2: float) -> None:
        self.k, self.epsilon = k, epsilon
        self.A = [l2 * np.eye(d) for _ in range(k)]
        self.b = [np.zeros(d) for _ in range(k)]
        self.rng = np.random.default_rng(seed)

    def probabilities(self, X: np.ndarray) -> list[list[float]]:
        thetas = [np.linalg.inv(A) @ b for A, b in zip(self.A, self.b, strict=True)]
        rows = []
        for x in X:
            est = [float(x @ t) for t in thetas]
            best = max(est)
            top = [a for a in range(self.k) if est[a] >= best - 1e-9 * max(1.0, abs(best))]
            rows.append(
                [
                    (1 - self.epsilon) * (a in top) / len(top) + self.epsilon / self.k
                    for a in range(self.k)
                ]
            )
        return rows

    def choose(self, X: np.ndarray) -> tuple[list[int], list[float]]:
        P = self.probabilities(X)
        arms = sample_like_policy(self.rng, P)
        return arms, [P[i][a] for i, a in enumerate(arms)]

    def learn(self, X: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        for x, a, r in zip(X, arms, rewards, strict=True):
            self.A[a] += np.outer(x, x)
            self.b[a] += r * x


class RefLinTS:
    """Consumes the random stream like ``LinTS.choose``: u (n,), uniform arms (n,), z (n, k)."""

    def __init__(self, k: int, d: int, seed: int, v: float, l2: float, floor: float) -> None:
        self.k, self.v, self.floor = k, v, floor
        self.A = [l2 * np.eye(d) for _ in range(k)]
        self.b = [np.zeros(d) for _ in range(k)]
        self.rng = np.random.default_rng(seed)

    def moments(self, x: np.ndarray) -> tuple[list[float], list[float]]:
        inv = [np.linalg.inv(A) for A in self.A]
        m = [float(x @ inv[a] @ self.b[a]) for a in range(self.k)]
        s = [self.v * float(np.sqrt(x @ inv[a] @ x)) for a in range(self.k)]
        return m, s

    def choose(self, X: np.ndarray) -> list[int]:
        n = len(X)
        u = self.rng.random(size=n)
        ua = self.rng.integers(0, self.k, size=n)
        z = self.rng.standard_normal(size=(n, self.k))
        arms = []
        for i, x in enumerate(X):
            if u[i] < self.floor:
                arms.append(int(ua[i]))
                continue
            m, s = self.moments(x)
            scores = [m[a] + s[a] * z[i, a] for a in range(self.k)]
            arms.append(int(np.argmax(scores)))
        return arms

    def mc_probabilities(self, x: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
        """Monte Carlo with full theta draws ~ N(A^-1 b, v^2 A^-1), floor mixed in."""
        rng = np.random.default_rng(seed)
        scores = np.empty((n_samples, self.k))
        for a in range(self.k):
            inv = np.linalg.inv(self.A[a])
            theta = rng.multivariate_normal(inv @ self.b[a], self.v**2 * inv, size=n_samples)
            scores[:, a] = theta @ x
        wins = np.bincount(np.argmax(scores, axis=1), minlength=self.k) / n_samples
        return (1 - self.floor) * wins + self.floor / self.k

    def learn(self, X: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        for x, a, r in zip(X, arms, rewards, strict=True):
            self.A[a] += np.outer(x, x)
            self.b[a] += r * x
