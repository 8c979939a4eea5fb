"""Epsilon-greedy over per-arm ridge regressions.

With probability ``1 - epsilon`` the arm with the highest estimate ``x . theta_a`` (exact ties
split evenly), otherwise a uniformly random arm: ``epsilon`` is the exploration floor, so every
arm keeps a propensity of at least ``epsilon / n_arms`` and the logged propensity is exact.
With an ``eligible`` mask both the greedy arm and the uniform draw are over the row's eligible
arms (``epsilon / n_eligible`` each; see ``operators.bandits.base``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from eddy.operators.bandits.base import LinearPolicy, argmax_probabilities

__all__ = ["EpsilonGreedy"]


class EpsilonGreedy(LinearPolicy):
    """``EpsilonGreedy(n_arms, n_features, seed=0, epsilon=0.05, l2=1.0)``."""

    name: ClassVar[str] = "epsilon_greedy"
    ALGO_VERSION: ClassVar[int] = 1
    PARAMS: ClassVar[dict[str, Any]] = {"epsilon": 0.05, "l2": 1.0}

    def _validate_params(self) -> None:
        eps = self.params["epsilon"]
        if not 0.0 <= float(eps) <= 1.0:
            raise ValueError(f"epsilon: expected a number in [0, 1], got {eps!r}")
        super()._validate_params()

    @property
    def floor(self) -> float:
        return float(self.params["epsilon"])

    def _policy_probabilities(self, X: np.ndarray, eligible: np.ndarray | None) -> np.ndarray:
        return argmax_probabilities(self._arms.means(X), eligible)
