"""Event-time watermark over several input partitions, computed a batch at a time.

Definition (the same one the tests' SQL oracle implements):

* ``P[p]`` is the largest event time seen so far on input partition ``p``.
* After each row, ``W = max(W, min_p P[p] - allowed_lateness)`` over the partitions seen so
  far. ``W`` is therefore monotone: a partition that appears late cannot pull it back.
* Before any row, ``W = NO_WATERMARK`` (a very negative number, not ``INT64_MIN``, so that
  ``W - window`` cannot overflow).
* A row is *late* when its event time is strictly smaller than ``W`` as it was just before
  that row (the row itself does not count).
* With ``idle_after_ms``, a partition that has delivered nothing for that long (wall clock,
  given with each batch) leaves the minimum until it delivers again: an idle partition cannot
  hold the watermark back forever (its events, when it wakes up, may be late: reported, not
  lost). Without a wall clock (``now_ms`` None) no partition is ever idle.
"""

from __future__ import annotations

import numpy as np

__all__ = ["NO_TIME", "NO_WATERMARK", "Watermark"]

NO_WATERMARK = -(2**62)
NO_TIME = -(2**62)  # "no row before": far below any event time, far from int64's edge


class Watermark:
    """Per-partition maxima and the global monotone watermark."""

    def __init__(self, allowed_lateness_ms: int, idle_after_ms: int | None = None) -> None:
        self.allowed_lateness_ms = allowed_lateness_ms
        self.idle_after_ms = idle_after_ms
        self._pmax: dict[int, int] = {}
        self._heard: dict[int, int] = {}  # partition -> wall clock (ms) of its latest batch
        self._wm = NO_WATERMARK

    @property
    def value(self) -> int:
        return self._wm

    def advance(self, ts: np.ndarray, partition: int, now_ms: int | None = None) -> np.ndarray:
        """Consume one batch of ``partition``; return the watermark before each row."""
        if len(ts) == 0:
            return np.empty(0, dtype=np.int64)
        run = np.maximum.accumulate(ts)
        prior = np.empty(len(ts), dtype=np.int64)
        prior[0] = NO_TIME
        prior[1:] = run[:-1]
        return self.advance_rows(prior, int(run[-1]), partition, now_ms)

    def advance_rows(
        self, prior: np.ndarray, top: int, partition: int, now_ms: int | None = None
    ) -> np.ndarray:
        """Consume one batch of ``partition`` of which the caller holds some rows (a shard's
        share of it): ``prior`` is, per held row, the largest event time of the batch's rows
        before it (:data:`NO_TIME` for none), ``top`` the batch's largest. Returns the
        watermark before each held row, as :meth:`advance` on the whole batch would; the
        state after is the same too. ``now_ms``: the wall clock, for idle partitions."""
        if now_ms is not None:
            self._heard[partition] = now_ms
        others = [v for p, v in self._pmax.items() if p != partition and self._awake(p, now_ms)]
        other_min = min(others) if others else None
        prev = self._pmax.get(partition)
        run = prior if prev is None else np.maximum(prior, prev)
        cand = np.asarray(run, dtype=np.int64) - self.allowed_lateness_ms
        end = top if prev is None else max(prev, top)
        cand_end = end - self.allowed_lateness_ms
        if other_min is not None:
            cand = np.minimum(cand, other_min - self.allowed_lateness_ms)
            cand_end = min(cand_end, other_min - self.allowed_lateness_ms)
        # cand is non-decreasing over the batch, so max(cand, W) is the running W
        before = np.maximum(cand, self._wm)
        self._wm = max(self._wm, cand_end)
        self._pmax[partition] = end
        return before

    def _awake(self, partition: int, now_ms: int | None) -> bool:
        if self.idle_after_ms is None or now_ms is None or partition not in self._heard:
            return True
        return now_ms - self._heard[partition] < self.idle_after_ms

    def raise_to(self, watermark: int) -> None:
        """Follow a watermark computed elsewhere (a pipeline's clock over the whole stream,
        when this operator sees only a shard of it)."""
        self._wm = max(self._wm, int(watermark))

    def close(self) -> None:
        """End of bounded input: the watermark jumps to +infinity (as far as windows care)."""
        self._wm = 2**62

    def snapshot(self) -> dict[str, object]:
        return {"pmax": dict(self._pmax), "wm": self._wm, "heard": dict(self._heard)}

    def restore(self, snap: dict[str, object]) -> None:
        pmax = snap["pmax"]
        assert isinstance(pmax, dict)
        self._pmax = {int(k): int(v) for k, v in pmax.items()}
        wm = snap["wm"]
        assert isinstance(wm, int)
        self._wm = wm
        heard = snap.get("heard", {})
        assert isinstance(heard, dict)
        self._heard = {int(k): int(v) for k, v in heard.items()}
