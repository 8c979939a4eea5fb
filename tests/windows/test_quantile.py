"""The exact p95 helpers against numpy's type-7 (linear) quantile."""

from __future__ import annotations

import numpy as np
import pytest

from operators.windows.quantile import P95, quantile_top, select_two


@pytest.mark.parametrize("n", [1, 2, 3, 19, 20, 21, 100, 1_000, 5_000])
def test_quantile_helpers_match_numpy(n: int) -> None:
    rng = np.random.default_rng(n)
    for values in (rng.normal(size=n), np.round(rng.normal(size=n), 1)):  # with ties
        want = np.quantile(values, P95)
        top = np.empty(64)
        assert quantile_top(values.copy(), n, P95, top) == pytest.approx(want, rel=1e-12)
        assert select_two(values.copy(), n, P95) == pytest.approx(want, rel=1e-12)


def test_empty_is_nan() -> None:
    assert np.isnan(quantile_top(np.empty(0), 0, P95, np.empty(64)))
    assert np.isnan(select_two(np.empty(0), 0, P95))
