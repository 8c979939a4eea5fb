"""The exact p95 helper against numpy's type-7 (linear) quantile."""

from __future__ import annotations

import numpy as np
import pytest

from eddy.operators.windows.quantile import P95, select_two


@pytest.mark.parametrize("n", [1, 2, 3, 19, 20, 21, 100, 1_000, 5_000])
def test_selection_matches_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    for values in (rng.normal(size=n), np.round(rng.normal(size=n), 1)):  # with ties
        want = np.quantile(values, P95)
        assert select_two(values.copy(), n, P95) == pytest.approx(want, rel=1e-12)


def test_empty_is_nan() -> None:
    assert np.isnan(select_two(np.empty(0), 0, P95))


def test_trailing_p95_on_a_long_window_matches_numpy() -> None:
    """> 1,300 values in the window: the kernel's long-window path (full selection)."""
    from eddy.operators.windows import EventTimeFeatures, FeatureConfig

    cfg = FeatureConfig(metrics=("x",), trailing_ms=(1_000, 100_000), aggregations=("p95",))
    rng = np.random.default_rng(3)
    n = 3_000
    ts = np.arange(n, dtype=np.int64) * 10
    vals = rng.normal(size=(n, 1))
    r = EventTimeFeatures(cfg).process(np.array(["k"] * n, dtype=object), ts, vals)
    for i in (99, 1_500, n - 1):
        short = vals[max(0, i - 99) : i + 1, 0]  # (t - 1000, t] holds 100 rows
        assert r.features[i, 0] == pytest.approx(np.quantile(short, P95), rel=1e-12)
        assert r.features[i, 1] == pytest.approx(np.quantile(vals[: i + 1, 0], P95), rel=1e-12)
