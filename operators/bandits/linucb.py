"""Disjoint LinUCB (Li et al., 2010) with an exploration floor.

Score of arm ``a`` for context ``x``: ``x . theta_a + alpha * sqrt(x^T A_a^{-1} x)`` with
``A_a = l2 I + sum x x^T`` and ``theta_a = A_a^{-1} b_a`` over the rows learned for that arm.
The policy puts ``1 - floor`` on the best arm (split evenly between exact ties, which happen
before any learning) and ``floor / n_arms`` on every arm, so propensities are exact.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from operators.bandits.base import LinearArms, Policy, argmax_probabilities

__all__ = ["LinUCB"]


class LinUCB(Policy):
    """``LinUCB(n_arms, n_features, seed=0, alpha=1.0, l2=1.0, floor=0.02)``."""

    name: ClassVar[str] = "linucb"
    ALGO_VERSION: ClassVar[int] = 1
    PARAMS: ClassVar[dict[str, Any]] = {"alpha": 1.0, "l2": 1.0, "floor": 0.02}

    def __init__(self, n_arms: int, n_features: int, seed: int = 0, **params: Any) -> None:
        super().__init__(n_arms, n_features, seed, **params)
        self._arms = LinearArms.create(self.n_arms, self.n_features, float(self.params["l2"]))

    def _validate_params(self) -> None:
        alpha, l2 = self.params["alpha"], self.params["l2"]
        if not float(alpha) >= 0.0:
            raise ValueError(f"alpha: expected a number >= 0, got {alpha!r}")
        if not float(l2) > 0.0:
            raise ValueError(f"l2: expected a number > 0, got {l2!r}")

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Upper confidence bounds, (n, n_arms)."""
        M, V = self._arms.moments(X)
        return M + float(self.params["alpha"]) * np.sqrt(V)

    def _policy_probabilities(self, X: np.ndarray) -> np.ndarray:
        return argmax_probabilities(self.scores(X))

    def _learn(self, X: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        self._arms.update(X, arms, rewards)

    def _state(self) -> dict[str, Any]:
        return {"arms": self._arms.to_dict()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._arms = LinearArms.from_dict(state["arms"])
