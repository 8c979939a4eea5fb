"""Numba kernels of the rates detector (``rates.py``): per-event bucket accumulation and the
per-bucket score-then-learn loop, one compiled call per batch (no Python per event or bucket).

Bucket statistics per metric (columns, ``WIDTH`` per kind): a bool metric ``n, k`` (values,
ones); a relative numeric one ``n, npos, sum log, sum log^2, sum`` (over its positive values);
an absolute numeric one ``n, sum, sum^2``. ``rates.py`` documents what the tests mean.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from eddy.operators.anomaly.anomaly_rows import NO_TIME

__all__ = ["BOOL", "LOG", "MEAN", "WIDTH", "accumulate", "close_buckets"]

BOOL, LOG, MEAN = 0, 1, 2  # metric kinds: rate, mean log of positive values, plain mean
WIDTH = (2, 5, 3)  # bucket statistics per kind


@njit(cache=True)
def accumulate(rows, stats, acc):  # pragma: no cover
    """Add each event's stats to its open bucket, in arrival order (cut-invariant sums)."""
    for i in range(rows.shape[0]):
        r = rows[i]
        for c in range(stats.shape[1]):
            acc[r, c] += stats[i, c]


@njit(cache=True)
def _fmax(a, b):  # pragma: no cover
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


@njit(cache=True)
def _root_deviance(k, n, p0):  # pragma: no cover
    """Signed root of the binomial deviance of ``k`` of ``n`` against ``p0``: > 0 when above."""
    p = min(max(k / max(n, 1.0), 0.0), 1.0)
    q = min(max(p0, 1e-9), 1.0 - 1e-9)
    a = p * math.log(p / q) if p > 0 else 0.0
    b = (1 - p) * math.log((1 - p) / (1 - q)) if p < 1 else 0.0
    dev = math.sqrt(max(2.0 * n * (a + b), 0.0))
    return dev if p > q else (-dev if p < q else 0.0)


@njit(cache=True)
def _test(kind, rel, down, up, a, s, base, c0, min_n, min_pos):  # pragma: no cover
    """One metric's test of bucket stats ``s`` against ``base``: (value, r_down, r_up, low,
    high); ``r`` > 0 is past the band's edge (NaN: no opinion)."""
    nan = np.nan
    n, bn = s[c0], base[c0]
    rd, ru, lo, hi, value = nan, nan, nan, nan, nan
    if kind == BOOL:  # rate: binomial against the band's edge
        k, bk = s[c0 + 1], base[c0 + 1]
        if n > 0:
            value = k / n
        if bn > 0:
            lo, hi = 0.0, 1.0
            if down:
                p0 = (1.0 - a) * bk / bn if rel else bk / bn - a
                rd, lo = -_root_deviance(k, n, p0), min(max(p0, 0.0), 1.0)
            if up:
                p0 = min((1.0 + a) * bk / bn if rel else bk / bn + a, 1.0)
                ru, hi = _root_deviance(k, n, p0), p0
        if n < min_n:
            rd, ru = nan, nan
    elif kind == LOG:  # mean log of the positive values against the baseline's
        npos, bpos = s[c0 + 1], base[c0 + 1]
        if npos > 0:
            value = s[c0 + 4] / npos
        if bpos > 0:
            mu = base[c0 + 2] / bpos
            var = max(base[c0 + 3] / bpos - mu * mu, 1e-4)
            plain = base[c0 + 4] / bpos
            lo, hi = 0.0, np.inf
            if npos > 0:
                xm, se = s[c0 + 2] / npos, math.sqrt(var / npos)
                if down:
                    rd = (mu + math.log(1.0 - a) - xm) / se
                if up:
                    ru = (xm - mu - math.log(1.0 + a)) / se
            if down:
                lo = (1.0 - a) * plain
            if up:
                hi = (1.0 + a) * plain
        if n < min_n or npos < min_pos:
            rd, ru = nan, nan
    else:  # plain mean against the baseline's
        if n > 0:
            value = s[c0 + 1] / n
        if bn > 0:
            mu = base[c0 + 1] / bn
            var = max(base[c0 + 2] / bn - mu * mu, 1e-12)
            lo, hi = -np.inf, np.inf
            if n > 0:
                se = math.sqrt(var / n)
                if down:
                    rd = (mu - a - value) / se
                if up:
                    ru = (value - mu - a) / se
            if down:
                lo = mu - a
            if up:
                hi = mu + a
        if n < min_n:
            rd, ru = nan, nan
    if not math.isfinite(rd):
        rd = nan
    if not math.isfinite(ru):
        ru = nan
    return value, rd, ru, lo, hi


@njit(cache=True)
def close_buckets(
    rows_k, rows_b, x, kinds, rels, downs, ups, amounts, c0s, widths, spans,
    min_n, min_pos, warmup, relearn, decay, threshold, bucket_ms, cooldown_ms,
    base, seen, streak, ring, ring_id, last_hit, last_row,
    value, score, lower, upper, hit, emit,
):  # fmt: skip  # pragma: no cover
    """Score, then learn, closed buckets in order (rows sorted by bucket, then key)."""
    n_ring = ring.shape[1]
    agg = np.zeros(x.shape[1])
    for i in range(rows_k.shape[0]):
        k, b = rows_k[i], rows_b[i]
        for e in range(n_ring - 1, 0, -1):  # the key's last buckets, newest first
            ring[k, e, :] = ring[k, e - 1, :]
            ring_id[k, e] = ring_id[k, e - 1]
        ring[k, 0, :] = x[i]
        ring_id[k, 0] = b
        t_end = (b + 1) * bucket_ms
        for j in range(kinds.shape[0]):
            kind, rel, dn, up, a = kinds[j], rels[j], downs[j], ups[j], amounts[j]
            c0, w = c0s[j], widths[j]
            rd, ru = np.nan, np.nan
            for sp in spans:  # the strongest evidence span
                agg[c0 : c0 + w] = 0.0
                for e in range(n_ring):
                    if b - ring_id[k, e] < sp:
                        agg[c0 : c0 + w] += ring[k, e, c0 : c0 + w]
                _, d, u, _, _ = _test(kind, rel, dn, up, a, agg, base[k], c0, min_n, min_pos)
                rd, ru = _fmax(rd, d), _fmax(ru, u)
            v, d1, u1, lo, hi = _test(kind, rel, dn, up, a, x[i], base[k], c0, 1.0, 1.0)
            # the current bucket itself must be past the band's edge
            if d1 <= 0 and not math.isnan(rd):
                rd = min(rd, d1)
            if u1 <= 0 and not math.isnan(ru):
                ru = min(ru, u1)
            r = _fmax(rd, ru)
            if seen[k] < warmup:
                r = np.nan
            sc = 0.5 * (1.0 + math.erf(r / math.sqrt(2.0)))
            h = sc >= threshold
            value[i, j], score[i, j], lower[i, j], upper[i, j], hit[i, j] = v, sc, lo, hi, h
            # learn unless alerting; a long enough alert streak is the new normal
            streak[k, j] = streak[k, j] + 1 if h else 0
            if streak[k, j] >= relearn:
                streak[k, j] = 0
                for c in range(c0, c0 + w):
                    base[k, c] = 0.0
                    for e in range(n_ring):
                        base[k, c] += ring[k, e, c]
            elif not h:
                for c in range(c0, c0 + w):
                    base[k, c] = base[k, c] * decay + x[i, c]
            # episodes: consecutive alerting buckets are one; reported at start, then per cooldown
            if h:
                last = last_hit[k, j]
                last_hit[k, j] = t_end
                ongoing = last != NO_TIME and t_end - last <= bucket_ms
                prev = last_row[k, j]
                if ongoing and prev != NO_TIME and t_end - prev < cooldown_ms:
                    emit[i, j] = False
                else:
                    last_row[k, j] = t_end
                    emit[i, j] = True
        seen[k] += 1
