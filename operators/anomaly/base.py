"""The detector protocol shared by every anomaly detector in eddy.

A detector scores a stream of values for many independent *slots* (one slot per key and metric).
Every call is **score-then-learn**: the output for event ``i`` is computed from the slot's state
before event ``i`` is learned, so it depends only on events ``0..i`` of that slot. State lives in
numpy arrays whose first axis is the slot id (columnar, picklable, cheap to copy); a numba kernel
walks a micro-batch in order, so there is never one Python call per event.

A NaN value is skipped: no learning, the expected range is reported unchanged; so is +-inf
(``score_learn`` passes it to the kernels as NaN: one infinite value must not poison a window,
a range or a running mean for good). A raw output of NaN means "no opinion" (skipped input, or
the detector is still warming up); downstream stages neither score nor learn it.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["SlotDetector", "SlotOutput", "StateSpec", "as_batch"]

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]

# name -> (trailing shape, dtype, fill value) of one state array; the first axis is the slot.
StateSpec = dict[str, tuple[tuple[int, ...], Any, float]]


@dataclass(frozen=True)
class SlotOutput:
    """Per-event output of one detector: ``raw`` in [0, 1] (a calibrated score for final
    detectors, an uncalibrated surprise in [0, inf) for raw-score detectors) and the expected
    range ``[lower, upper]`` a normal value would fall into (NaN when there is no opinion)."""

    raw: F64
    lower: F64
    upper: F64


def as_batch(slots: Any, ts_ms: Any, values: Any) -> tuple[I64, I64, F64]:
    """Validate and convert one micro-batch to contiguous int64/int64/float64 arrays."""
    s = np.ascontiguousarray(slots, dtype=np.int64)
    t = np.ascontiguousarray(ts_ms, dtype=np.int64)
    v = np.ascontiguousarray(values, dtype=np.float64)
    if s.ndim != 1 or t.shape != s.shape or v.shape != s.shape:
        raise ValueError(
            f"slots, ts_ms and values must be 1-d of equal length; got shapes "
            f"{s.shape}, {t.shape}, {v.shape}"
        )
    if s.size and s.min() < 0:
        raise ValueError(f"slot ids must be >= 0; got min {int(s.min())}")
    return s, t, v


class SlotDetector(ABC):
    """Base class: per-slot numpy state that grows on demand, plus a batch kernel.

    Subclasses define ``name``, ``state_spec()`` and ``_run(slots, ts, x) -> SlotOutput``; the
    base class handles growth, snapshot/restore and the public ``score_learn``.
    """

    name: str = "detector"

    def __init__(self) -> None:
        self._capacity = 0
        self._state: dict[str, np.ndarray] = {}

    @abstractmethod
    def state_spec(self) -> StateSpec:
        """Shapes, dtypes and initial fill of the per-slot state arrays."""

    @abstractmethod
    def _run(self, slots: I64, ts: I64, x: F64) -> SlotOutput:
        """Score-then-learn every event of the batch in order (slots already allocated)."""

    def ensure_slots(self, n_slots: int) -> None:
        """Make room for slot ids ``0..n_slots-1`` (doubling, new slots start fresh)."""
        if n_slots <= self._capacity:
            return
        new_cap = max(n_slots, 2 * self._capacity, 4)
        for name, (shape, dtype, fill) in self.state_spec().items():
            fresh = np.full((new_cap - self._capacity, *shape), fill, dtype=dtype)
            old = self._state.get(name)
            self._state[name] = fresh if old is None else np.concatenate([old, fresh])
        self._capacity = new_cap

    def score_learn(self, slots: Any, ts_ms: Any, values: Any) -> SlotOutput:
        """Score every event (against the state before it), then learn it; order preserved
        (+-inf is skipped like NaN)."""
        s, t, v = as_batch(slots, ts_ms, values)
        inf = np.isinf(v)
        if inf.any():  # skipped like NaN; a copy, the caller's array is left alone
            v = np.where(inf, np.nan, v)
        self.ensure_slots(int(s.max()) + 1 if s.size else 1)
        return self._run(s, t, v)

    def snapshot(self) -> SlotDetector:
        """An independent copy (numpy arrays copied); restoring is just using it."""
        return copy.deepcopy(self)
