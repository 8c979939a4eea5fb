"""Tumbling and sliding (hopping) windows, computed exactly when the watermark passes them.

A spec ``(size, slide)`` (tumbling: ``slide == size``) defines windows ``[s, s + size)`` for every
``s`` that is a multiple of ``slide`` (aligned to the epoch, also for negative times). A row
belongs to every window that contains its event time and that was still open when it
arrived: on-time rows enter all of them; late rows under ``late_policy="include"`` enter
those with ``end > W_i`` (the watermark just before the row). A window is emitted once, when
the watermark reaches its end (``W >= end``; no on-time row can enter it after that), or at
:meth:`flush`. Only windows holding at least one row of the key are emitted, with one row per
metric (``count`` may be 0 for a metric that is missing in all of them). Windows are computed
from the per-key event store at closing time, so each row costs one pass per window it is in.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .quantile import stats_exact

__all__ = ["close_fixed_windows"]


@njit(cache=True, inline="always")
def _lower_bound(a, lo, hi, x):  # pragma: no cover - numba
    while lo < hi:
        mid = (lo + hi) >> 1
        if a[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(cache=True)
def _scan(s_ts, s_adm, s_val, beg, n, sizes, slides, wm_old, wm_new, want_q, fill, oi, of):
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
        for q in range(len(sizes)):
            sz = sizes[q]
            sl = slides[q]
            s_min = ((wm_old - sz) // sl) * sl + sl
            s_max = ((wm_new - sz) // sl) * sl
            if s_min > s_max:  # no window of this spec closes (most watermark steps)
                continue
            s_cur = s_min
            last_end = s_max + sz
            # rows before the earliest closing window's start cannot be in a closing window,
            # nor rows at or after the last closing window's end
            for j in range(_lower_bound(s_ts, b, e, s_min), e):
                tj = s_ts[j]
                if tj >= last_end:
                    break
                lo_s = max(((tj - sz) // sl) * sl + sl, s_cur)
                hi_s = min((tj // sl) * sl, s_max)
                s = lo_s
                while s <= hi_s:
                    end = s + sz
                    a = _lower_bound(s_ts, b, e, s)
                    z = _lower_bound(s_ts, a, e, end)
                    any_row = False
                    for r in range(a, z):
                        if s_adm[r] < end:
                            any_row = True
                            break
                    if any_row:
                        for m in range(n_m):
                            if fill:
                                c = 0
                                for r in range(a, z):
                                    x = s_val[m, r]
                                    if s_adm[r] < end and x == x:
                                        scratch[c] = x
                                        c += 1
                                stats_exact(scratch, c, want_q, st)
                                oi[rows, 0] = k
                                oi[rows, 1] = m
                                oi[rows, 2] = q
                                oi[rows, 3] = s
                                oi[rows, 4] = end
                                oi[rows, 5] = c
                                for u in range(1, 6):
                                    of[rows, u - 1] = st[u]
                                of[rows, 5] = c / (sz / 1000.0)
                                of[rows, 6] = st[6]
                            rows += 1
                    s += sl
                if hi_s >= lo_s:
                    s_cur = hi_s + sl
    return rows


def _any_closes(sizes: np.ndarray, slides: np.ndarray, wm_old: int, wm_new: int) -> bool:
    """Whether some window of some spec ends in ``(wm_old, wm_new]``."""
    for sz, sl in zip(sizes.tolist(), slides.tolist(), strict=True):
        if ((wm_old - sz) // sl) * sl + sl <= ((wm_new - sz) // sl) * sl:
            return True
    return False


def close_fixed_windows(
    store: object,
    sizes: np.ndarray,
    slides: np.ndarray,
    wm_old: int,
    wm_new: int,
    want_q: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Windows with ``wm_old < end <= wm_new``: int columns (key, metric, spec, start, end,
    count) and float columns (sum, mean, std, min, max, rate, p95)."""
    st = store
    if not _any_closes(sizes, slides, wm_old, wm_new):
        return np.zeros((0, 6), dtype=np.int64), np.zeros((0, 7), dtype=np.float64)
    args = (st.ts, st.adm, st.val, st.beg, st.n, sizes, slides, np.int64(wm_old), np.int64(wm_new))  # type: ignore[attr-defined]
    oi0 = np.zeros((0, 6), dtype=np.int64)
    of0 = np.zeros((0, 7), dtype=np.float64)
    rows = _scan(*args, want_q, False, oi0, of0)
    oi = np.empty((rows, 6), dtype=np.int64)
    of = np.empty((rows, 7), dtype=np.float64)
    _scan(*args, want_q, True, oi, of)
    return oi, of
