"""Session windows per key: bursts of on-time rows separated by gaps of at least ``gap`` ms.

Definition: sort a key's on-time rows by event time; consecutive rows less than ``gap`` apart
are in the same session; a session is ``[first, last + gap)`` and is emitted when the
watermark reaches ``last + gap`` (after that no on-time row can join it) or at flush.
``rate = count / ((last + gap - first) / 1000)``. Late rows never enter session windows, under
either policy: a late row could bridge two sessions one of which was already emitted, and
emitted rows are never retracted. (They are still counted and reported as late.)

State: per key and gap, the end of the last emitted session. The key's events from there on are
kept in the event store until their session closes, so a session's memory is proportional to
its own length (a key that never pauses for ``gap`` keeps growing - a known limit).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from .quantile import stats_exact
from .watermark import NO_WATERMARK

__all__ = ["SessionWindows"]


@njit(cache=True)
def _sessions(s_ts, s_adm, s_val, beg, n, gaps, spec0, done, wm_new, want_q, fill, oi, of):
    # pragma: no cover - numba
    n_m = s_val.shape[0]
    maxn = 1
    for k in range(len(n)):
        maxn = max(maxn, n[k])
    scratch = np.empty(maxn, dtype=np.float64)
    st = np.empty(7, dtype=np.float64)
    rows = 0
    for k in range(len(beg)):
        b = beg[k]
        e = b + n[k]
        for g in range(len(gaps)):
            gap = gaps[g]
            j = b
            while j < e and (s_ts[j] < done[k, g] or s_adm[j] != NO_WATERMARK):
                j += 1
            while j < e:
                first = s_ts[j]
                last = first
                r = j + 1
                while r < e:
                    if s_adm[r] != NO_WATERMARK:
                        r += 1
                        continue
                    if s_ts[r] - last >= gap:
                        break
                    last = s_ts[r]
                    r += 1
                end = last + gap
                if end > wm_new:
                    break
                for m in range(n_m):
                    if fill:
                        c = 0
                        for u in range(j, r):
                            x = s_val[m, u]
                            if s_adm[u] == NO_WATERMARK and x == x:
                                scratch[c] = x
                                c += 1
                        stats_exact(scratch, c, want_q, st)
                        oi[rows, 0] = k
                        oi[rows, 1] = m
                        oi[rows, 2] = spec0 + g
                        oi[rows, 3] = first
                        oi[rows, 4] = end
                        oi[rows, 5] = c
                        for u in range(1, 6):
                            of[rows, u - 1] = st[u]
                        of[rows, 5] = c / ((end - first) / 1000.0)
                        of[rows, 6] = st[6]
                    rows += 1
                if fill:
                    done[k, g] = end
                j = r
                while j < e and s_adm[j] != NO_WATERMARK:
                    j += 1
    return rows


class SessionWindows:
    """Bookkeeping for session windows; the events themselves live in the shared store."""

    def __init__(self, gaps: tuple[int, ...], spec0: int, want_q: bool) -> None:
        self.gaps = np.asarray(gaps, dtype=np.int64)
        self.spec0 = spec0
        self.want_q = want_q
        self._done = np.zeros((0, len(gaps)), dtype=np.int64)

    def add_keys(self, count: int) -> None:
        z = np.full((count, len(self.gaps)), NO_WATERMARK, dtype=np.int64)
        self._done = np.concatenate([self._done, z])

    def close(self, store: Any, wm_new: int) -> tuple[np.ndarray, np.ndarray]:
        st = store
        a = (st.ts, st.adm, st.val, st.beg, st.n, self.gaps, self.spec0, self._done)
        rows = _sessions(
            *a, np.int64(wm_new), self.want_q, False, np.zeros((0, 6), np.int64), np.zeros((0, 7))
        )
        oi = np.empty((rows, 6), dtype=np.int64)
        of = np.empty((rows, 7), dtype=np.float64)
        _sessions(*a, np.int64(wm_new), self.want_q, True, oi, of)
        return oi, of

    def keep_from(self) -> np.ndarray | None:
        """Per key, the event time from which the store must keep events for open sessions."""
        if len(self.gaps) == 0:
            return None
        return self._done.min(axis=1)

    def memory_bytes(self) -> int:
        return int(self._done.nbytes)

    def snapshot(self) -> dict[str, np.ndarray]:
        return {"done": self._done.copy()}

    def restore(self, snap: dict[str, np.ndarray]) -> None:
        done = snap["done"]  # (keys, gaps); reshape(-1, 0) fails when there are no gaps
        self._done = np.array(done, dtype=np.int64).reshape(len(done), len(self.gaps))
