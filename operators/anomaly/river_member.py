"""Any River anomaly detector (``river:anomaly.HalfSpaceTrees`` ...) as an ensemble member.

River models learn one event at a time, so this member is **one Python call per event** (two
River calls: ``score_one`` then ``learn_one``, score-then-learn), tens of microseconds each
(HalfSpaceTrees: ~60 us): fine for a few keys, too slow for a firehose; the numba detectors of
the default ensemble are the fast path. One model per slot (key x metric), built on first use
with the stage's params and, if the class takes a ``seed``, ``seed + slot`` (the params' seed or
the stage's), so every slot is reproducible.

What the model sees:

- an unsupervised detector (``AnomalyDetector``: HalfSpaceTrees, OneClassSVM, LODA, LOF) gets
  ``{"x": u}`` with ``u = 0.5 + 0.5 tanh(z / 4)`` in (0, 1), ``z`` the value standardised by the
  slot's running mean and sd (exact over its first 1,000 values, then exponentially weighted).
  HalfSpaceTrees needs features in [0, 1]; ``hst.py`` min/max-scales them, but in one dimension
  a spike becomes the new maximum and lands next to the old one (in four seeded runs of a 30 sd
  spike on uniform noise its novelty ratio stayed at 0.95-1.02, below the 1.05 that alerts),
  while the squash keeps normal values in the middle and puts a spike alone at the edge (ratio
  1.5-1.55 in the same runs);
- a supervised one (``SupervisedAnomalyDetector``: GaussianScorer, StandardAbsoluteDeviation,
  PredictiveAnomalyDetection, which model the target's own distribution) gets ``x = {}`` and the
  raw value as ``y``.

The member's raw surprise is the model's score (clipped at 0); for HalfSpaceTrees, whose score is
``1 - normalised mass``, it is ``-log(mass)`` (its score saturates near 1 and hides how rare a
point is), and the first ``window_size`` values of a slot give no opinion (HST has no reference
mass before its first window is full). The ensemble calibrates it like any raw member (novelty
calibration and refractory, as the ``hst`` entry of ``registry.py``), so a score means what the
default ensemble's does: ``>= 0.99`` when the surprise beats the largest of recent memory by 5 %.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from numba import njit

from eddy.operators.anomaly.base import F64, I64, SlotDetector, SlotOutput, StateSpec

__all__ = ["RiverMember", "check_river", "river_class"]

_SPEC = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$")
_HORIZON = 1000  # values of the running standardisation
_SQUASH = 4.0  # z at which the squash reaches tanh(1)


def river_class(detector: str) -> type:
    """The River class a ``river:MODULE.CLASS`` detector names (``ValueError`` otherwise)."""
    spec = detector.removeprefix("river:")
    if not detector.startswith("river:") or not _SPEC.match(spec):
        raise ValueError(
            f"detector: expected river:MODULE.CLASS like river:anomaly.HalfSpaceTrees, "
            f"got {detector!r}"
        )
    mod, _, name = spec.rpartition(".")
    try:
        module = importlib.import_module(f"river.{mod}")
    except ImportError:
        module = None
    cls = getattr(module, name, None) if module is not None else None
    if not inspect.isclass(cls):
        raise ValueError(f"detector: river has no {spec}")
    from river.base.anomaly_detector import AnomalyDetector, SupervisedAnomalyDetector

    if not issubclass(cls, AnomalyDetector | SupervisedAnomalyDetector):
        raise ValueError(
            f"detector: river's {spec} is not an anomaly detector (expected a class like "
            f"anomaly.HalfSpaceTrees or anomaly.GaussianScorer)"
        )
    return cls


def check_river(detector: str, params: Mapping[str, Any], seed: int) -> None:
    """Build one model with ``params`` and run it on two values (``ValueError`` naming
    ``detector`` or ``params`` when that fails)."""
    river_class(detector)
    try:
        member = RiverMember(detector, params, seed)
        member.score_learn(np.zeros(2, np.int64), np.zeros(2, np.int64), np.array([0.0, 1.0]))
    except Exception as e:  # any error of the model's constructor or methods
        raise ValueError(
            f"params: river's {detector.removeprefix('river:')} does not run with "
            f"{dict(params)!r}: {type(e).__name__}: {e}"
        ) from None


@njit(cache=True)
def _squash(slots, x, horizon, squash, cnt, mu, m2, out):  # pragma: no cover
    """Per event (in order): the value standardised by its slot's running mean/sd before it,
    squashed into (0, 1); then the value is learned. NaN is skipped."""
    for i in range(slots.shape[0]):
        s, v = slots[i], x[i]
        if math.isnan(v):
            out[i] = np.nan
            continue
        sd = math.sqrt(m2[s]) if cnt[s] > 1 else 0.0
        z = (v - mu[s]) / sd if sd > 0 else 0.0
        out[i] = 0.5 + 0.5 * math.tanh(z / squash)
        n = cnt[s] + 1
        a = 1.0 / min(n, horizon)
        d = v - mu[s]
        mu[s] += a * d
        m2[s] = (1.0 - a) * (m2[s] + a * d * d)
        cnt[s] = n


class RiverMember(SlotDetector):
    """One River anomaly model per slot, as a raw-surprise member (see the module docstring)."""

    def __init__(self, detector: str, params: Mapping[str, Any], seed: int = 0) -> None:
        super().__init__()
        self.cls = river_class(detector)
        self.name = detector
        self.params = dict(params)
        signature = inspect.signature(self.cls).parameters
        self._seeded = "seed" in signature
        self.seed = int(self.params.pop("seed", seed)) if self._seeded else seed
        self._supervised = not _is_unsupervised(self.cls)
        self._mass = self.cls.__name__ == "HalfSpaceTrees"
        self._grace = 0
        if self._mass:
            self._grace = int(self.params.get("window_size", signature["window_size"].default))
        self._models: dict[int, Any] = {}

    def state_spec(self) -> StateSpec:
        return {
            "cnt": ((), np.int64, 0),  # values standardised
            "mu": ((), np.float64, 0.0),
            "m2": ((), np.float64, 0.0),
            "seen": ((), np.int64, 0),  # values the model learned
        }

    def _model(self, slot: int) -> Any:
        m = self._models.get(slot)
        if m is None:
            kw = dict(self.params)
            if self._seeded:
                kw["seed"] = self.seed + slot
            m = self._models[slot] = self.cls(**kw)
        return m

    def _run(self, slots: I64, ts: I64, x: F64) -> SlotOutput:
        st = self._state
        u = np.empty(len(x))
        _squash(slots, x, _HORIZON, _SQUASH, st["cnt"], st["mu"], st["m2"], u)
        raw = np.full(len(x), np.nan)
        seen = st["seen"]
        for i, (s, v, ui) in enumerate(zip(slots.tolist(), x.tolist(), u.tolist(), strict=True)):
            if math.isnan(v):
                continue
            m = self._model(s)
            if self._supervised:
                score = m.score_one({}, v)
                m.learn_one({}, v)
            else:
                feats = {"x": ui}
                score = m.score_one(feats)
                m.learn_one(feats)
            seen[s] += 1
            if seen[s] <= self._grace:
                continue
            score = float(score)
            if self._mass:
                score = -math.log(max(1.0 - score, 1e-12))
            raw[i] = max(score, 0.0) if math.isfinite(score) else np.nan
        nan = np.full(len(x), np.nan)
        return SlotOutput(raw, nan, nan.copy())


def _is_unsupervised(cls: type) -> bool:
    from river.base.anomaly_detector import AnomalyDetector

    return issubclass(cls, AnomalyDetector)
