"""Event-time watermark over several input partitions, computed a batch at a time.

Definition (the same one the tests' SQL oracle implements):

* ``P[p]`` is the largest event time seen so far on input partition ``p``.
* After each row, ``W = max(W, min_p P[p] - allowed_lateness)`` over the partitions seen so
  far. ``W`` is therefore monotone: a partition that appears late cannot pull it back.
* Before any row, ``W = NO_WATERMARK`` (a very negative number, not ``INT64_MIN``, so that
  ``W - window`` cannot overflow).
* A row is *late* when its event time is strictly smaller than ``W`` as it was just before
  that row (the row itself does not count).
"""

from __future__ import annotations

import numpy as np

__all__ = ["NO_WATERMARK", "Watermark"]

NO_WATERMARK = -(2**62)


class Watermark:
    """Per-partition maxima and the global monotone watermark."""

    def __init__(self, allowed_lateness_ms: int) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self._pmax: dict[int, int] = {}
        self._wm = NO_WATERMARK

    @property
    def value(self) -> int:
        return self._wm

    def advance(self, ts: np.ndarray, partition: int) -> np.ndarray:
        """Consume one batch of ``partition``; return the watermark before each row."""
        n = len(ts)
        before = np.empty(n, dtype=np.int64)
        if n == 0:
            return before
        others = [v for p, v in self._pmax.items() if p != partition]
        other_min = min(others) if others else None
        run = np.maximum.accumulate(ts)
        prev = self._pmax.get(partition)
        if prev is not None:
            run = np.maximum(run, prev)
        cand = run - self.allowed_lateness_ms
        if other_min is not None:
            cand = np.minimum(cand, other_min - self.allowed_lateness_ms)
        after = np.maximum(cand, self._wm)  # cand is non-decreasing, so this is the running W
        before[0] = self._wm
        before[1:] = after[:-1]
        self._wm = int(after[-1])
        self._pmax[partition] = int(run[-1])
        return before

    def close(self) -> None:
        """End of bounded input: the watermark jumps to +infinity (as far as windows care)."""
        self._wm = 2**62

    def snapshot(self) -> dict[str, object]:
        return {"pmax": dict(self._pmax), "wm": self._wm}

    def restore(self, snap: dict[str, object]) -> None:
        pmax = snap["pmax"]
        assert isinstance(pmax, dict)
        self._pmax = {int(k): int(v) for k, v in pmax.items()}
        wm = snap["wm"]
        assert isinstance(wm, int)
        self._wm = wm
