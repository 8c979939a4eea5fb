"""A slow, obviously-correct pure-Python reading of the documented definitions (tiny inputs)."""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from eddy.operators.windows import NO_WATERMARK, FeatureConfig

__all__ = ["reference"]


def _q(xs: list[float], q: float) -> float:
    if not xs:
        return math.nan
    xs = sorted(xs)
    h = (len(xs) - 1) * q
    lo = math.floor(h)
    if lo >= len(xs) - 1:
        return xs[-1]
    return xs[lo] + (h - lo) * (xs[lo + 1] - xs[lo])


def _stats(xs: list[float], dur_ms: int) -> dict[str, float]:
    n = len(xs)
    if n == 0:
        nan = math.nan
        return {"count": 0, "sum": 0.0, "mean": nan, "std": nan, "min": nan, "max": nan,
                "rate": 0.0, "p95": nan}  # fmt: skip
    mean = sum(xs) / n
    return {
        "count": n,
        "sum": math.fsum(xs),
        "mean": mean,
        "std": math.sqrt(sum((x - mean) ** 2 for x in xs) / n),
        "min": min(xs),
        "max": max(xs),
        "rate": n / (dur_ms / 1000),
        "p95": _q(xs, 0.95),
    }


def reference(cfg: FeatureConfig, keys, ts, vals, parts):
    """Returns (features (n, F), late (n,), windows: dict[(key, metric, window, start)] -> row)."""
    n = len(ts)
    lat = cfg.allowed_lateness_ms
    pmax: dict[int, int] = {}
    wm = NO_WATERMARK
    wmb = np.empty(n, dtype=np.int64)
    for i in range(n):
        wmb[i] = wm
        p = int(parts[i])
        pmax[p] = max(pmax.get(p, int(ts[i])), int(ts[i]))
        wm = max(wm, min(pmax.values()) - lat)
    late = ts < wmb
    acc = ~late | (cfg.late_policy == "include")
    tmax = max(cfg.trailing_ms)
    feats = np.full((n, len(cfg.feature_names)), np.nan)
    by_key: dict[object, list[int]] = defaultdict(list)
    for i in range(n):
        if acc[i]:
            by_key[keys[i]].append(i)
        col = 0
        for m in range(len(cfg.metrics)):
            for d in cfg.trailing_ms:
                lo = max(ts[i] - d, wmb[i] - tmax)
                xs = [
                    float(vals[j, m])
                    for j in by_key[keys[i]]
                    if lo < ts[j] <= ts[i] and not math.isnan(vals[j, m])
                ]
                s = _stats(xs, d)
                for a in cfg.aggregations:
                    feats[i, col] = s[a]
                    col += 1
    windows: dict[tuple, dict[str, float]] = {}
    for name, size, slide in cfg.window_specs:
        members: dict[tuple, list[int]] = defaultdict(list)
        for i in range(n):
            if not acc[i]:
                continue
            start = (int(ts[i]) // slide) * slide
            while start > ts[i] - size:
                if not late[i] or start + size > wmb[i]:
                    members[(keys[i], start)].append(i)
                start -= slide
        for (k, start), idx in members.items():
            for m, metric in enumerate(cfg.metrics):
                xs = [float(vals[j, m]) for j in idx if not math.isnan(vals[j, m])]
                st = _stats(xs, size)
                st["window_end"] = start + size
                windows[(k, metric, name, start)] = st
    for gap, name in zip(cfg.session_gap_ms, cfg.session_names, strict=True):
        for k in dict.fromkeys(keys.tolist()):
            order = sorted((int(ts[i]), i) for i in range(n) if keys[i] == k and not late[i])
            groups: list[list[int]] = []
            last = None
            for t, i in order:
                if last is None or t - last >= gap:
                    groups.append([])
                groups[-1].append(i)
                last = t
            for g in groups:
                first, end = int(ts[g[0]]), int(ts[g[-1]]) + gap
                for m, metric in enumerate(cfg.metrics):
                    xs = [float(vals[j, m]) for j in g if not math.isnan(vals[j, m])]
                    st = _stats(xs, end - first)
                    st["window_end"] = end
                    windows[(k, metric, name, first)] = st
    return feats, late, windows
