"""The operator against a brute-force Python reading of the documented definitions."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from eddy.operators.windows import EventTimeFeatures, FeatureConfig

from .conftest import assert_close, make_stream, run, sort_windows
from .reference import reference


def _check(cfg: FeatureConfig, s, cuts):
    feats, late, wins = run(EventTimeFeatures(cfg), s, cuts)
    rf, rl, rw = reference(cfg, s.keys, s.ts, s.vals, s.parts)
    assert (late == rl).all()
    assert_close(feats, rf, "features")
    wins = sort_windows(wins)
    got = {
        (wins["key"][i], wins["metric"][i], wins["window"][i], int(wins["window_start"][i])): i
        for i in range(len(wins["key"]))
    }
    assert len(got) == len(wins["key"]), "a window was emitted twice"
    assert set(got) == set(rw)
    for col in ("window_end", "count", "sum", "mean", "std", "min", "max", "rate", "p95"):
        a = np.array([wins[col][got[k]] for k in rw])
        b = np.array([rw[k][col] for k in rw])
        assert_close(a, b, col)


@pytest.mark.parametrize("policy", ["drop", "include"])
@pytest.mark.parametrize("seed", [1, 2])
def test_matches_reference(cfg: FeatureConfig, policy: str, seed: int) -> None:
    cfg = dataclasses.replace(cfg, late_policy=policy)
    s = make_stream(seed, 1500, 7, span_ms=60_000, disorder_ms=400, late_frac=0.05)
    _check(cfg, s, [1, 2, 500, 501, 900])


def test_matches_reference_partitions(cfg: FeatureConfig) -> None:
    s = make_stream(3, 1200, 5, span_ms=40_000, disorder_ms=300, n_parts=3)
    _check(dataclasses.replace(cfg, late_policy="include"), s, list(range(0, 1200, 97)))


def test_subset_of_aggregations_and_no_windows() -> None:
    cfg = FeatureConfig(
        metrics=("a", "b"), trailing_ms=(3_000, 1_000), aggregations=("p95", "mean")
    )
    s = make_stream(4, 600, 3, span_ms=20_000, disorder_ms=200)
    _check(cfg, s, [300])
    op = EventTimeFeatures(cfg)
    assert op.feature_names[:4] == ["a_p95_3s", "a_mean_3s", "a_p95_1s", "a_mean_1s"]


def test_first_row_and_exact_ties() -> None:
    cfg = FeatureConfig(
        metrics=("x",),
        trailing_ms=(1000,),
        aggregations=("count", "sum", "std"),
        allowed_lateness_ms=1000,
    )
    op = EventTimeFeatures(cfg)
    keys = np.array(["a", "a", "a", "b", "a"], dtype=object)
    ts = np.array([1000, 1000, 0, 1000, 2000], dtype=np.int64)
    vals = np.array([[1.0], [3.0], [5.0], [7.0], [np.nan]])
    r = op.process(keys, ts, vals)
    # (t - 1000, t]: row 2 (ts 0) is outside rows 0/1's window; ties with t are in, arrival
    # order matters (row 0 does not see row 1); row 4 sees (1000, 2000] -> nothing but a NaN.
    assert r.features[:, 0].tolist() == [1, 2, 1, 1, 0]
    assert r.features[:, 1].tolist() == [1.0, 4.0, 5.0, 7.0, 0.0]
    assert r.features[:3, 2].tolist() == [0.0, 1.0, 0.0]
    assert np.isnan(r.features[4, 2])
    assert not r.late.any()


def test_late_rows_counted_and_policy() -> None:
    base = FeatureConfig(metrics=("x",), trailing_ms=(10_000,), aggregations=("count",),
                         tumbling_ms=(10_000,), allowed_lateness_ms=1000)  # fmt: skip
    keys = np.array(["a"] * 4, dtype=object)
    ts = np.array([5000, 9000, 3000, 8500], dtype=np.int64)
    vals = np.ones((4, 1))
    for policy, counts, win_count in (("drop", [1, 2, 0, 2], 3), ("include", [1, 2, 1, 3], 4)):
        op = EventTimeFeatures(dataclasses.replace(base, late_policy=policy))
        r = op.process(keys, ts, vals)
        assert r.late.tolist() == [False, False, True, False]
        assert r.row_watermark_ms.tolist()[2] == 8000
        assert r.features[:, 0].tolist() == counts
        assert op.late_count == 1
        w = op.flush().windows
        assert w["count"].tolist() == [win_count]


def test_real_epoch_times_and_negative_times(cfg: FeatureConfig) -> None:
    s = make_stream(8, 800, 5, span_ms=30_000, disorder_ms=300)
    for offset in (1_763_700_000_000, -15_000):
        s2 = dataclasses.replace(s, ts=s.ts + offset)
        _check(dataclasses.replace(cfg, late_policy="include"), s2, [100, 400])
