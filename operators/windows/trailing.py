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

from .quantile import P95, select_two
from .store import BLOCK, blocks_from

__all__ = ["AGG_CODES", "insert_rows", "trailing_features"]

AGG_CODES = {"count": 0, "sum": 1, "mean": 2, "std": 3, "min": 4, "max": 5, "rate": 6, "p95": 7}


@njit(cache=True, inline="always")
def _prefix_from(k, p, end, s_val, pre, pb, ref, beg):  # pragma: no cover - numba
    """Recompute the running sums of key ``k`` at positions ``[p, end)``."""
    n_m = s_val.shape[0]
    for m in range(n_m):
        if p > beg[k]:
            c, s0, s1, s2 = pre[p - 1, m, 0], pre[p - 1, m, 1], pre[p - 1, m, 2], pre[p - 1, m, 3]
        else:
            c, s0, s1, s2 = pb[k, m, 0], pb[k, m, 1], pb[k, m, 2], pb[k, m, 3]
        r = ref[k, m]
        for j in range(p, end):
            x = s_val[m, j]
            if x == x:
                if r != r:  # first value ever seen for this key and metric
                    r = x
                    ref[k, m] = x
                d = x - r
                c += 1.0
                s0 += x
                s1 += d
                s2 += d * d
            pre[j, m, 0] = c
            pre[j, m, 1] = s0
            pre[j, m, 2] = s1
            pre[j, m, 3] = s2


@njit(cache=True)
def _rebase(k, s_val, pre, pb, ref, beg, n):  # pragma: no cover - numba
    """Restart key ``k``'s running sums at ``beg`` around the mean of its live values."""
    b = beg[k]
    e = b + n[k]
    for m in range(s_val.shape[0]):
        c = 0
        s = 0.0
        for j in range(b, e):
            x = s_val[m, j]
            if x == x:
                c += 1
                s += x
        if c > 0:
            ref[k, m] = s / c
        pb[k, m, :] = 0.0
    _prefix_from(k, b, e, s_val, pre, pb, ref, beg)


@njit(cache=True, inline="always")
def _insert(k, t, adm, row, s_ts, s_adm, s_val, pre, bmin, bmax, beg, n, pb, ref, since):
    # pragma: no cover - numba
    b = beg[k]
    end = b + n[k]
    pos = end
    while pos > b and s_ts[pos - 1] > t:
        pos -= 1
    n_m = s_val.shape[0]
    for j in range(end, pos, -1):
        s_ts[j] = s_ts[j - 1]
        s_adm[j] = s_adm[j - 1]
        for m in range(n_m):
            s_val[m, j] = s_val[m, j - 1]
    s_ts[pos] = t
    s_adm[pos] = adm
    for m in range(n_m):
        s_val[m, pos] = row[m]
    n[k] += 1
    end += 1
    since[k] += 1
    if since[k] >= max(64, 2 * n[k]):
        since[k] = 0
        _rebase(k, s_val, pre, pb, ref, beg, n)
    else:
        _prefix_from(k, pos, end, s_val, pre, pb, ref, beg)
    if pos == end - 1 and pos % BLOCK != 0:
        blk = pos // BLOCK
        for m in range(s_val.shape[0]):
            x = row[m]
            if x < bmin[m, blk]:
                bmin[m, blk] = x
            if x > bmax[m, blk]:
                bmax[m, blk] = x
    else:
        blocks_from(pos, end, s_val, bmin, bmax)


@njit(cache=True, inline="always")
def _scan_minmax(m, lo, hi, s_val, mn, mx):  # pragma: no cover - numba
    """Four independent accumulators (no loop-carried latency chain); NaN never wins."""
    m1 = mn
    m2 = mn
    m3 = mn
    x1 = mx
    x2 = mx
    x3 = mx
    j = lo
    while j + 4 <= hi:
        a = s_val[m, j]
        b = s_val[m, j + 1]
        c = s_val[m, j + 2]
        d = s_val[m, j + 3]
        mn = a if a < mn else mn
        m1 = b if b < m1 else m1
        m2 = c if c < m2 else m2
        m3 = d if d < m3 else m3
        mx = a if a > mx else mx
        x1 = b if b > x1 else x1
        x2 = c if c > x2 else x2
        x3 = d if d > x3 else x3
        j += 4
    while j < hi:
        a = s_val[m, j]
        mn = a if a < mn else mn
        mx = a if a > mx else mx
        j += 1
    m1 = m1 if m1 < m2 else m2
    m3 = m3 if m3 < mn else mn
    x1 = x1 if x1 > x2 else x2
    x3 = x3 if x3 > mx else mx
    return (m1 if m1 < m3 else m3), (x1 if x1 > x3 else x3)


@njit(cache=True, inline="always")
def _range_minmax(m, lo, hi, s_val, bmin, bmax, mn, mx):  # pragma: no cover - numba
    """min/max of ``s_val[m, lo:hi]`` (NaN skipped), folded into ``mn``/``mx``."""
    if hi - lo <= 2 * BLOCK:
        return _scan_minmax(m, lo, hi, s_val, mn, mx)
    a = (lo + BLOCK - 1) // BLOCK
    z = hi // BLOCK
    mn, mx = _scan_minmax(m, lo, a * BLOCK, s_val, mn, mx)
    for blk in range(a, z):
        v = bmin[m, blk]
        mn = v if v < mn else mn
        v = bmax[m, blk]
        mx = v if v > mx else mx
    return _scan_minmax(m, z * BLOCK, hi, s_val, mn, mx)


@njit(cache=True)
def _std_exact(m, lo, hi, s_val):  # pragma: no cover - numba
    """Two-pass population std of ``s_val[m, lo:hi]`` (NaN skipped)."""
    c = 0
    s = 0.0
    for j in range(lo, hi):
        x = s_val[m, j]
        if x == x:
            c += 1
            s += x
    mean = s / c
    ss = 0.0
    for j in range(lo, hi):
        x = s_val[m, j]
        if x == x:
            ss += (x - mean) * (x - mean)
    return np.sqrt(ss / c)


@njit(cache=True)
def trailing_features(
    kidx, ts, vals, wmb, acc, adm_row, s_ts, s_adm, s_val, pre, bmin, bmax, beg, n, pb,
    ref, since, wsorted, worig, horizon, agg_pos, n_aggs, want_q, rows, out,
):  # fmt: skip  # pragma: no cover - numba
    """Insert accepted rows into the store and write each row's features into ``out``.

    The caller passes the batch stably grouped by key (see ``EventTimeFeatures.process``), so
    a key's state stays in cache while its rows are processed and every array is read and
    written sequentially. A row's features depend only on its own key's earlier rows and on
    its watermark, so this gives exactly the result of input order. Row ``i`` of the grouped
    batch is row ``rows[i]`` of ``out``.
    """
    n_rows = len(ts)
    n_m = vals.shape[1]
    n_w = len(wsorted)
    maxn = 1
    for k in range(len(n)):
        maxn = max(maxn, n[k])
    scratch = np.empty(maxn + n_rows, dtype=np.float64)
    los = np.empty(n_w, dtype=np.int64)
    top = np.empty(64, dtype=np.float64)
    scratch2 = np.empty(maxn + n_rows, dtype=np.float64)
    stride_m = n_w * n_aggs
    need_mm = agg_pos[3] >= 0 or agg_pos[4] >= 0 or agg_pos[5] >= 0
    for i in range(n_rows):
        r_out = rows[i]
        k = kidx[i]
        t = ts[i]
        b = beg[k]
        if acc[i]:  # insert (written out here: numba helper calls cost more than the work)
            end = b + n[k]
            pos = end
            while pos > b and s_ts[pos - 1] > t:
                pos -= 1
            for j in range(end, pos, -1):
                s_ts[j] = s_ts[j - 1]
                s_adm[j] = s_adm[j - 1]
                for m in range(n_m):
                    s_val[m, j] = s_val[m, j - 1]
            s_ts[pos] = t
            s_adm[pos] = adm_row[i]
            for m in range(n_m):
                s_val[m, pos] = vals[i, m]
            end += 1
            n[k] = end - b
            since[k] += 1
            if since[k] >= max(64, 2 * n[k]):
                since[k] = 0
                _rebase(k, s_val, pre, pb, ref, beg, n)
            else:
                for m in range(n_m):
                    if pos > b:
                        c0 = pre[pos - 1, m, 0]
                        c1 = pre[pos - 1, m, 1]
                        c2 = pre[pos - 1, m, 2]
                        c3 = pre[pos - 1, m, 3]
                    else:
                        c0 = pb[k, m, 0]
                        c1 = pb[k, m, 1]
                        c2 = pb[k, m, 2]
                        c3 = pb[k, m, 3]
                    r = ref[k, m]
                    for j in range(pos, end):
                        x = s_val[m, j]
                        if x == x:
                            if r != r:
                                r = x
                                ref[k, m] = x
                            d = x - r
                            c0 += 1.0
                            c1 += x
                            c2 += d
                            c3 += d * d
                        pre[j, m, 0] = c0
                        pre[j, m, 1] = c1
                        pre[j, m, 2] = c2
                        pre[j, m, 3] = c3
            if pos == end - 1 and pos % BLOCK != 0:
                blk = pos // BLOCK
                for m in range(n_m):
                    x = s_val[m, pos]
                    bmin[m, blk] = x if x < bmin[m, blk] else bmin[m, blk]
                    bmax[m, blk] = x if x > bmax[m, blk] else bmax[m, blk]
            else:
                blocks_from(pos, end, s_val, bmin, bmax)
        e = b + n[k]
        hi = e
        if e > b and s_ts[e - 1] > t:
            lo_ = b
            while lo_ < hi:  # first index with ts > t
                mid = (lo_ + hi) >> 1
                if s_ts[mid] <= t:
                    lo_ = mid + 1
                else:
                    hi = mid
        floor = wmb[i] - horizon
        lo_prev = hi
        for w in range(n_w):
            lb = max(t - wsorted[w], floor)
            lo_ = b
            hi_ = lo_prev
            while lo_ < hi_:
                mid = (lo_ + hi_) >> 1
                if s_ts[mid] <= lb:
                    lo_ = mid + 1
                else:
                    hi_ = mid
            los[w] = lo_
            lo_prev = lo_
        for m in range(n_m):
            if hi > b:
                h0, h1, h2, h3 = (
                    pre[hi - 1, m, 0],
                    pre[hi - 1, m, 1],
                    pre[hi - 1, m, 2],
                    pre[hi - 1, m, 3],
                )
            else:
                h0, h1, h2, h3 = pb[k, m, 0], pb[k, m, 1], pb[k, m, 2], pb[k, m, 3]
            mn = np.inf
            mx = -np.inf
            seg_hi = hi
            q_hi = hi
            cnt_q = 0
            for w in range(n_w):
                lo = los[w]
                if lo > b:
                    l0, l1, l2, l3 = (
                        pre[lo - 1, m, 0],
                        pre[lo - 1, m, 1],
                        pre[lo - 1, m, 2],
                        pre[lo - 1, m, 3],
                    )
                else:
                    l0, l1, l2, l3 = pb[k, m, 0], pb[k, m, 1], pb[k, m, 2], pb[k, m, 3]
                c = h0 - l0
                if need_mm:
                    if seg_hi - lo <= 2 * BLOCK:
                        for j in range(lo, seg_hi):
                            x = s_val[m, j]
                            mn = x if x < mn else mn
                            mx = x if x > mx else mx
                    else:
                        mn, mx = _range_minmax(m, lo, seg_hi, s_val, bmin, bmax, mn, mx)
                seg_hi = lo
                base = m * stride_m + worig[w] * n_aggs
                if c > 0.5:
                    mean = (h1 - l1) / c
                    ms = (h2 - l2) / c
                    var = (h3 - l3) / c - ms * ms
                    if need_mm and mn == mx:
                        std = 0.0
                    elif var * c <= 1e-5 * ms * ms * (3 * n[k] + 64):
                        # the running sums' rounding (~1e-16 of their size) could exceed
                        # 1e-10 of this variance: recompute it exactly, two-pass
                        std = _std_exact(m, lo, hi, s_val)
                    else:
                        std = np.sqrt(var)
                    vmin = mn
                    vmax = mx
                    s = h1 - l1
                else:
                    c = 0.0
                    mean = np.nan
                    std = np.nan
                    vmin = np.nan
                    vmax = np.nan
                    s = 0.0
                if agg_pos[0] >= 0:
                    out[r_out, base + agg_pos[0]] = c
                if agg_pos[1] >= 0:
                    out[r_out, base + agg_pos[1]] = s
                if agg_pos[2] >= 0:
                    out[r_out, base + agg_pos[2]] = mean
                if agg_pos[3] >= 0:
                    out[r_out, base + agg_pos[3]] = std
                if agg_pos[4] >= 0:
                    out[r_out, base + agg_pos[4]] = vmin
                if agg_pos[5] >= 0:
                    out[r_out, base + agg_pos[5]] = vmax
                if agg_pos[6] >= 0:
                    out[r_out, base + agg_pos[6]] = c / (wsorted[w] / 1000.0)
                if want_q:
                    # windows are nested: append this window's new segment [lo, q_hi)
                    for j in range(lo, q_hi):
                        x = s_val[m, j]
                        if x == x:
                            scratch[cnt_q] = x
                            cnt_q += 1
                    q_hi = lo
                    nq = cnt_q
                    if nq == 0:
                        qv = np.nan
                    else:
                        hq = (nq - 1) * P95
                        lq = int(np.floor(hq))
                        rq = nq - lq  # the rq largest values decide the quantile
                        if rq > len(top):
                            for u in range(nq):
                                scratch2[u] = scratch[u]
                            qv = select_two(scratch2, nq, P95)
                        else:
                            c_t = 0
                            for u in range(nq):
                                x = scratch[u]
                                if c_t < rq:
                                    pz = c_t
                                    c_t += 1
                                elif x > top[rq - 1]:
                                    pz = rq - 1
                                else:
                                    continue
                                while pz > 0 and top[pz - 1] < x:
                                    top[pz] = top[pz - 1]
                                    pz -= 1
                                top[pz] = x
                            if rq == 1:
                                qv = top[0]
                            else:
                                qv = top[rq - 1] + (hq - lq) * (top[rq - 2] - top[rq - 1])
                    out[r_out, base + agg_pos[7]] = qv


@njit(cache=True)
def insert_rows(
    kidx, ts, vals, acc, adm_row, s_ts, s_adm, s_val, pre, bmin, bmax, beg, n, pb, ref, since
):  # fmt: skip  # pragma: no cover
    """Insert the accepted rows only (no trailing windows configured)."""
    for i in range(len(ts)):
        if acc[i]:
            _insert(kidx[i], ts[i], adm_row[i], vals[i], s_ts, s_adm, s_val, pre, bmin, bmax,
                    beg, n, pb, ref, since)  # fmt: skip
