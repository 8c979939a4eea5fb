"""Per-event trailing features (numba kernel).

Exact definition, for a row ``i`` with key ``k``, event time ``t`` and the watermark ``W_i``
in force just before it (see :mod:`operators.windows.watermark`), and a trailing window of
``D`` ms:

``S_i(D)`` = the rows ``j`` such that

* ``key_j == k``;
* ``j`` arrived **no later than** ``i`` (``j <= i`` in input order; ``i`` itself included if it
  is in state), so a feature never waits for, or changes because of, rows that arrive later -
  even rows with the same or a smaller event time;
* ``j`` is in state: on-time rows always are; late rows only under ``late_policy="include"``
  (a late row under ``"drop"`` still gets features, computed from the others, without itself);
* ``max(t - D, W_i - H) < ts_j <= t`` with ``H = max(trailing_ms)``: the window is the
  half-open interval ``(t - D, t]`` at millisecond granularity, ties with ``t`` are in; the
  second bound only bites for late rows (for on-time rows ``t >= W_i``), and says that state
  older than ``W_i - H`` has been expired.

Per metric, NaN values are missing and ignored (SQL ``NULL`` semantics): ``count`` counts the
non-missing values, ``sum`` is 0 and mean/std/min/max/p95 are NaN when ``count == 0``; ``std``
is the population standard deviation, ``rate = count / (D / 1000)`` events per second, ``p95``
the exact type-7 quantile (:mod:`operators.windows.quantile`).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .quantile import P95, quantile_sorted

__all__ = ["AGG_CODES", "insert_rows", "trailing_features"]

AGG_CODES = {"count": 0, "sum": 1, "mean": 2, "std": 3, "min": 4, "max": 5, "rate": 6, "p95": 7}


@njit(cache=True)
def _insert(k, t, adm, row, s_ts, s_adm, s_val, beg, n):  # pragma: no cover - numba
    b = beg[k]
    pos = b + n[k]
    while pos > b and s_ts[pos - 1] > t:
        s_ts[pos] = s_ts[pos - 1]
        s_adm[pos] = s_adm[pos - 1]
        s_val[pos, :] = s_val[pos - 1, :]
        pos -= 1
    s_ts[pos] = t
    s_adm[pos] = adm
    s_val[pos, :] = row
    n[k] += 1


@njit(cache=True)
def trailing_features(
    kidx, ts, vals, wmb, acc, adm_row, s_ts, s_adm, s_val, beg, n,
    wsorted, worig, horizon, agg_pos, n_aggs, want_q, out,
):  # fmt: skip  # pragma: no cover - numba
    """Insert accepted rows into the store and write each row's features into ``out``."""
    n_rows = len(ts)
    n_m = vals.shape[1]
    n_w = len(wsorted)
    maxn = 1
    for k in range(len(n)):
        maxn = max(maxn, n[k])
    tmp = np.empty((n_m, maxn + n_rows), dtype=np.float64)
    scratch = np.empty(maxn + n_rows, dtype=np.float64)
    cnt = np.zeros(n_m, dtype=np.int64)
    s0 = np.zeros(n_m)
    s1 = np.zeros(n_m)
    s2 = np.zeros(n_m)
    mn = np.zeros(n_m)
    mx = np.zeros(n_m)
    sh = np.zeros(n_m)
    stride_m = n_w * n_aggs
    for i in range(n_rows):
        k = kidx[i]
        t = ts[i]
        if acc[i]:
            _insert(k, t, adm_row[i], vals[i], s_ts, s_adm, s_val, beg, n)
        b = beg[k]
        lo = b
        hi = b + n[k]
        while lo < hi:  # first index with ts > t
            mid = (lo + hi) >> 1
            if s_ts[mid] <= t:
                lo = mid + 1
            else:
                hi = mid
        floor = wmb[i] - horizon
        for m in range(n_m):
            cnt[m] = 0
            s0[m] = 0.0
            s1[m] = 0.0
            s2[m] = 0.0
            mn[m] = np.inf
            mx[m] = -np.inf
        j = lo - 1
        w = 0
        lb = max(t - wsorted[0], floor)
        while True:
            if j < b or s_ts[j] <= lb:
                # window w is complete: write it
                dur_s = wsorted[w] / 1000.0
                for m in range(n_m):
                    base = m * stride_m + worig[w] * n_aggs
                    c = cnt[m]
                    if c > 0:
                        mean = s0[m] / c
                        ms = s1[m] / c
                        var = s2[m] / c - ms * ms
                        std = np.sqrt(var) if var > 0.0 else 0.0
                        vmin = mn[m]
                        vmax = mx[m]
                    else:
                        mean = np.nan
                        std = np.nan
                        vmin = np.nan
                        vmax = np.nan
                    if agg_pos[0] >= 0:
                        out[i, base + agg_pos[0]] = c
                    if agg_pos[1] >= 0:
                        out[i, base + agg_pos[1]] = s0[m]
                    if agg_pos[2] >= 0:
                        out[i, base + agg_pos[2]] = mean
                    if agg_pos[3] >= 0:
                        out[i, base + agg_pos[3]] = std
                    if agg_pos[4] >= 0:
                        out[i, base + agg_pos[4]] = vmin
                    if agg_pos[5] >= 0:
                        out[i, base + agg_pos[5]] = vmax
                    if agg_pos[6] >= 0:
                        out[i, base + agg_pos[6]] = c / dur_s
                    if want_q:
                        for q in range(c):
                            scratch[q] = tmp[m, q]
                        sv = scratch[:c]
                        sv.sort()
                        out[i, base + agg_pos[7]] = quantile_sorted(sv, c, P95)
                w += 1
                if w == n_w:
                    break
                lb = max(t - wsorted[w], floor)
                continue
            for m in range(n_m):
                x = s_val[j, m]
                if x == x:
                    c = cnt[m]
                    if c == 0:
                        sh[m] = x
                    d = x - sh[m]
                    if want_q:
                        tmp[m, c] = x
                    cnt[m] = c + 1
                    s0[m] += x
                    s1[m] += d
                    s2[m] += d * d
                    mn[m] = min(mn[m], x)
                    mx[m] = max(mx[m], x)
            j -= 1


@njit(cache=True)
def insert_rows(kidx, ts, vals, acc, adm_row, s_ts, s_adm, s_val, beg, n):  # pragma: no cover
    """Insert the accepted rows only (no trailing windows configured)."""
    for i in range(len(ts)):
        if acc[i]:
            _insert(kidx[i], ts[i], adm_row[i], vals[i], s_ts, s_adm, s_val, beg, n)
