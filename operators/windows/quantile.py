"""Exact quantiles and window statistics (numba helpers shared by all window kinds).

Quantile definition: linear interpolation between order statistics (Hyndman-Fan type 7, the
default of ``numpy.quantile`` and DuckDB's ``quantile_cont``): for sorted non-missing values
``x[0..n-1]``, ``h = (n - 1) q``, ``Q = x[floor h] + (h - floor h) (x[floor h + 1] - x[floor h])``.
It is exact (no sketch): the stores keep every event inside the retention horizon.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["P95", "quantile_sorted", "select_two", "stats_exact"]

P95 = 0.95


@njit(cache=True, inline="always")
def quantile_sorted(x, n, q):  # pragma: no cover - numba
    """Type-7 quantile of the first ``n`` entries of the sorted array ``x`` (NaN if n == 0)."""
    if n == 0:
        return np.nan
    h = (n - 1) * q
    lo = int(np.floor(h))
    if lo >= n - 1:
        return x[n - 1]
    frac = h - lo
    return x[lo] + frac * (x[lo + 1] - x[lo])


@njit(cache=True, inline="always")
def stats_exact(v, n, want_q, out):  # pragma: no cover - numba
    """count, sum, mean, std (population, two-pass), min, max, p95 of ``v[:n]`` into ``out[0:7]``.

    ``v`` is scratch: it is sorted in place when ``want_q``.
    """
    out[0] = n
    if n == 0:
        out[1] = 0.0
        for j in range(2, 7):
            out[j] = np.nan
        return
    s = 0.0
    mn = v[0]
    mx = v[0]
    for j in range(n):
        x = v[j]
        s += x
        mn = min(mn, x)
        mx = max(mx, x)
    mean = s / n
    ss = 0.0
    for j in range(n):
        d = v[j] - mean
        ss += d * d
    out[1] = s
    out[2] = mean
    out[3] = np.sqrt(ss / n)
    out[4] = mn
    out[5] = mx
    if want_q:
        w = v[:n]
        w.sort()
        out[6] = quantile_sorted(w, n, P95)
    else:
        out[6] = np.nan


@njit(cache=True, inline="always")
def _nth(a, lo, hi, k):  # pragma: no cover - numba
    """Partially order ``a[lo:hi]`` so that ``a[k]`` is its k-th smallest (quickselect)."""
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        # median of three as pivot
        x, y, z = a[lo], a[mid], a[hi - 1]
        if x > y:
            x, y = y, x
        if y > z:
            y = z
            if x > y:
                y = x
        pivot = y
        i = lo
        j = hi - 1
        while i <= j:
            while a[i] < pivot:
                i += 1
            while a[j] > pivot:
                j -= 1
            if i <= j:
                a[i], a[j] = a[j], a[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j + 1
        elif k >= i:
            lo = i
        else:
            return


@njit(cache=True, inline="always")
def select_two(a, n, q):  # pragma: no cover - numba
    """Type-7 quantile of ``a[:n]`` by selection (O(n), ``a`` is reordered)."""
    if n == 0:
        return np.nan
    h = (n - 1) * q
    lo = int(np.floor(h))
    _nth(a, 0, n, lo)
    if lo >= n - 1:
        return a[lo]
    nxt = a[lo + 1]
    for j in range(lo + 2, n):
        if a[j] < nxt:
            nxt = a[j]
    return a[lo] + (h - lo) * (nxt - a[lo])
