"""Epsilon-greedy over per-arm ridge regressions.

With probability ``1 - epsilon`` the arm with the highest estimate ``x . theta_a`` (exact ties
split evenly), otherwise a uniformly random arm: ``epsilon`` is the exploration floor, so every
arm keeps a propensity of at least ``epsilon / n_arms`` and the logged propensity is exact.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from operators.bandits.base import LinearArms, Policy, argmax_probabilities

__all__ = ["EpsilonGreedy"]


class EpsilonGreedy(Policy):
    """``EpsilonGreedy(n_arms, n_features, seed=0, epsilon=0.05, l2=1.0)``."""

    name: ClassVar[str] = "epsilon_greedy"
    ALGO_VERSION: ClassVar[int] = 1
    PARAMS: ClassVar[dict[str, Any]] = {"epsilon": 0.05, "l2": 1.0}

    def __init__(self, n_arms: int, n_features: int, seed: int = 0, **params: Any) -> None:
        super().__init__(n_arms, n_features, seed, **params)
        self._arms = LinearArms.create(self.n_arms, self.n_features, float(self.params["l2"]))

    def _validate_params(self) -> None:
        eps, l2 = self.params["epsilon"], self.params["l2"]
        if not 0.0 <= float(eps) <= 1.0:
            raise ValueError(f"epsilon: expected a number in [0, 1], got {eps!r}")
        if not float(l2) > 0.0:
            raise ValueError(f"l2: expected a number > 0, got {l2!r}")

    @property
    def floor(self) -> float:
        return float(self.params["epsilon"])

    def _policy_probabilities(self, X: np.ndarray) -> np.ndarray:
        return argmax_probabilities(self._arms.means(X))

    def _learn(self, X: np.ndarray, arms: np.ndarray, rewards: np.ndarray) -> None:
        self._arms.update(X, arms, rewards)

    def _state(self) -> dict[str, Any]:
        return {"arms": self._arms.to_dict()}

    def _set_state(self, state: dict[str, Any]) -> None:
        self._arms = LinearArms.from_dict(state["arms"])
