"""River's HalfSpaceTrees as a slot detector (a baseline: one Python call per event).

Per slot a River pipeline ``MinMaxScaler | HalfSpaceTrees`` sees the features ``{x, dx}``
(value and first difference); ``score_one`` then ``learn_one`` (score-then-learn). HST scores are
in [0, 1] but coarse (many ties); in the ensemble they are calibrated like any raw surprise.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from eddy.operators.anomaly.base import F64, I64, SlotDetector, SlotOutput, StateSpec

__all__ = ["HalfSpaceTreesDetector"]


class HalfSpaceTreesDetector(SlotDetector):
    """River ``HalfSpaceTrees`` per slot (``n_trees``, ``height``, ``window_size``, ``seed``)."""

    def __init__(
        self, n_trees: int = 10, height: int = 8, window_size: int = 250, seed: int = 0
    ) -> None:
        if n_trees < 1 or height < 1 or window_size < 1:
            raise ValueError(
                "HalfSpaceTreesDetector: n_trees, height and window_size must be >= 1; got "
                f"{n_trees!r}, {height!r}, {window_size!r}"
            )
        super().__init__()
        self.n_trees = n_trees
        self.height = height
        self.window_size = window_size
        self.seed = seed
        self.name = "hst"
        self._models: dict[int, Any] = {}
        self._prev: dict[int, float] = {}

    def state_spec(self) -> StateSpec:
        return {}

    def _model(self, slot: int) -> Any:
        m = self._models.get(slot)
        if m is None:
            from river import anomaly, preprocessing

            m = preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(
                n_trees=self.n_trees,
                height=self.height,
                window_size=self.window_size,
                seed=self.seed + slot,
            )
            self._models[slot] = m
        return m

    def _run(self, slots: I64, ts: I64, x: F64) -> SlotOutput:
        n = slots.shape[0]
        raw = np.full(n, np.nan)
        for i, (s, v) in enumerate(zip(slots.tolist(), x.tolist(), strict=True)):
            if math.isnan(v):
                continue
            prev = self._prev.get(s, v)
            feats = {"x": v, "dx": v - prev}
            m = self._model(s)
            raw[i] = m.score_one(feats)
            m.learn_one(feats)
            self._prev[s] = v
        nan = np.full(n, np.nan)
        return SlotOutput(raw, nan, nan.copy())
