"""Disjoint LinUCB (Li et al., 2010) with an exploration floor.

Score of arm ``a`` for context ``x``: ``x . theta_a + alpha * sqrt(x^T A_a^{-1} x)`` with
``A_a = l2 I + sum x x^T`` and ``theta_a = A_a^{-1} b_a`` over the rows learned for that arm.
The policy puts ``1 - floor`` on the best arm (split evenly between exact ties, which happen
before any learning) and ``floor / n_arms`` on every arm, so propensities are exact. With an
``eligible`` mask the best arm and its ties are taken among the row's eligible arms and the floor
is ``floor / n_eligible`` on those (see ``operators.bandits.base``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from eddy.operators.bandits.base import LinearPolicy, argmax_probabilities

__all__ = ["LinUCB"]


class LinUCB(LinearPolicy):
    """``LinUCB(n_arms, n_features, seed=0, alpha=1.0, l2=1.0, floor=0.02)``."""

    name: ClassVar[str] = "linucb"
    ALGO_VERSION: ClassVar[int] = 1
    PARAMS: ClassVar[dict[str, Any]] = {"alpha": 1.0, "l2": 1.0, "floor": 0.02}

    def _validate_params(self) -> None:
        alpha = self.params["alpha"]
        if not float(alpha) >= 0.0:
            raise ValueError(f"alpha: expected a number >= 0, got {alpha!r}")
        super()._validate_params()

    def scores(self, X: np.ndarray) -> np.ndarray:
        """Upper confidence bounds, (n, n_arms)."""
        M, V = self._arms.moments(X)
        return M + float(self.params["alpha"]) * np.sqrt(V)

    def _policy_probabilities(self, X: np.ndarray, eligible: np.ndarray | None) -> np.ndarray:
        return argmax_probabilities(self.scores(X), eligible)
