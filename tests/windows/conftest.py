"""Shared helpers for the windows tests: seeded streams and a runner that collects outputs."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from eddy.operators.windows import WINDOW_COLUMNS, EventTimeFeatures, FeatureConfig

WKEY = ("key", "metric", "window", "window_start")


@dataclass
class Stream:
    keys: np.ndarray
    ts: np.ndarray
    vals: np.ndarray
    parts: np.ndarray


def make_stream(
    seed: int,
    n: int,
    n_keys: int,
    span_ms: int,
    disorder_ms: int,
    n_metrics: int = 2,
    late_frac: float = 0.02,
    late_ms: int = 20_000,
    nan_frac: float = 0.05,
    n_parts: int = 1,
    skew: float = 1.0,
) -> Stream:
    """Events spread over ``span_ms``, jittered back by up to ``disorder_ms``, a fraction pushed
    back by up to ``late_ms`` more (late ones), some NaNs, repeated timestamps, skewed keys."""
    rng = np.random.default_rng(seed)
    base = np.sort(rng.integers(0, span_ms, n))
    ts = base - rng.integers(0, disorder_ms + 1, n)
    lates = rng.random(n) < late_frac
    ts[lates] -= rng.integers(0, late_ms + 1, int(lates.sum()))
    ts = (ts // 7) * 7  # coarse grid: plenty of exact ties
    w = 1.0 / np.arange(1, n_keys + 1) ** skew
    kid = rng.choice(n_keys, size=n, p=w / w.sum())
    keys = np.array([f"k{i}" for i in kid], dtype=object)
    vals = np.round(rng.normal(100, 15, (n, n_metrics)), 3)
    vals[:, 0] = rng.random(n) < 0.7  # a 0/1 metric (ties, exact zeros in std)
    vals[rng.random((n, n_metrics)) < nan_frac] = np.nan
    parts = rng.integers(0, n_parts, n) if n_parts > 1 else np.zeros(n, dtype=np.int64)
    return Stream(keys, ts.astype(np.int64), vals, parts.astype(np.int64))


def run(
    op: EventTimeFeatures, s: Stream, cuts: list[int], flush: bool = True, mixed: bool = False
) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Feed ``s`` cut at ``cuts`` (a batch never mixes partitions: it is split further, unless
    ``mixed``: then a batch carries a partition per row)."""
    bounds = sorted({0, len(s.ts), *(c for c in cuts if c <= len(s.ts))})
    feats, late, wins = [], [], []
    if len(s.ts) == 0:  # an empty batch must work too
        r = op.process(s.keys, s.ts, s.vals, partition=0)
        feats.append(r.features)
        late.append(r.late)
        wins.append(r.windows)
    for a, b in itertools.pairwise(bounds):
        p = s.parts[a:b]
        if mixed:
            r = op.process(s.keys[a:b], s.ts[a:b], s.vals[a:b], partition=p)
            feats.append(r.features)
            late.append(r.late)
            wins.append(r.windows)
            continue
        edges = [a, *(a + np.flatnonzero(np.diff(p)) + 1).tolist(), b]
        for u, v in itertools.pairwise(edges):
            wm_before = op.watermark_ms
            r = op.process(s.keys[u:v], s.ts[u:v], s.vals[u:v], partition=int(s.parts[u]))
            ends = r.windows["window_end"]
            assert ((ends > wm_before) & (ends <= r.watermark_ms)).all()
            feats.append(r.features)
            late.append(r.late)
            wins.append(r.windows)
    if flush:
        wins.append(op.flush().windows)
    cat = {c: np.concatenate([w[c] for w in wins]) for c in WINDOW_COLUMNS}
    return np.concatenate(feats), np.concatenate(late), cat


def sort_windows(w: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    order = np.lexsort([w[c].astype(str) if w[c].dtype == object else w[c] for c in WKEY[::-1]])
    return {c: v[order] for c, v in w.items()}


def assert_close(a: np.ndarray, b: np.ndarray, what: str) -> None:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    nan_a, nan_b = np.isnan(a), np.isnan(b)
    bad = nan_a != nan_b
    assert not bad.any(), f"{what}: NaN mismatch at {np.argwhere(bad)[:5].tolist()}"
    ok = np.isclose(a, b, rtol=1e-9, atol=1e-9) | nan_a
    assert ok.all(), (
        f"{what}: {int((~ok).sum())} mismatches, first at {np.argwhere(~ok)[:3].tolist()}: "
        f"{a[~ok][:3]} vs {b[~ok][:3]}"
    )


@pytest.fixture
def cfg() -> FeatureConfig:
    return FeatureConfig(
        metrics=("filled", "latency_ms"),
        trailing_ms=(1_000, 5_000, 20_000),
        tumbling_ms=(2_000,),
        sliding=((6_000, 2_000),),
        session_gap_ms=(1_500,),
        allowed_lateness_ms=500,
    )
