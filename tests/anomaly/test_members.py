"""Every member detector and calibration stage: no look-ahead, batch-split invariance, slots
independent, NaN skipped, and the behaviour each one exists for."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from eddy.operators.anomaly.base import SlotDetector
from eddy.operators.anomaly.knn import ContextKnn
from eddy.operators.anomaly.likelihood import Likelihood
from eddy.operators.anomaly.median_mad import MedianMad
from eddy.operators.anomaly.novelty import Novelty, q_to_score
from eddy.operators.anomaly.seasonal import SeasonalNaive
from eddy.operators.anomaly.spatial import RANGE_Q, RangeNovelty

MEMBERS: dict[str, Callable[[], SlotDetector]] = {
    "median": lambda: MedianMad(window=64),
    "median_diff": lambda: MedianMad(window=64, diff=True),
    "median_ew": lambda: MedianMad(window=64, smooth=16),
    "seasonal": lambda: SeasonalNaive(window=64),
    "seasonal_weekly": lambda: SeasonalNaive(window=64, days=7),
    "knn": lambda: ContextKnn(dim=4, history=64),
    "range": lambda: RangeNovelty(),
}


def _two_slots(n: int = 1200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    t = np.arange(n)
    ts = np.repeat(1_400_000_000_000 + t * 3_600_000, 2).astype(np.int64)  # hourly
    a = 5 + np.sin(2 * np.pi * t / 24) + rng.normal(0, 0.2, n)
    b = rng.normal(0, 1, n)
    a[700] += 9
    x = np.stack([a, b], axis=1).ravel()
    x[401] = np.nan
    slots = np.tile(np.array([0, 1], dtype=np.int64), n)
    return slots, ts, x


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_member_no_lookahead_and_batch_invariance(name: str) -> None:
    slots, ts, x = _two_slots()
    full = MEMBERS[name]().score_learn(slots, ts, x)
    for k in (0, 5, 401, 1399, 2399):
        part = MEMBERS[name]().score_learn(slots[: k + 1], ts[: k + 1], x[: k + 1])
        np.testing.assert_array_equal(part.raw, full.raw[: k + 1])  # NaN == NaN here
        np.testing.assert_array_equal(part.lower, full.lower[: k + 1])
    det = MEMBERS[name]()
    cuts = [0, 1, 2, 333, 1000, 2400]
    raw = np.concatenate(
        [det.score_learn(slots[a:b], ts[a:b], x[a:b]).raw for a, b in itertools.pairwise(cuts)]
    )
    np.testing.assert_array_equal(raw, full.raw)
    assert np.isnan(full.raw[401]) or name == "range"
    seen = full.raw[~np.isnan(full.raw)]
    assert seen.size > 2000 and np.all(np.isfinite(seen)) and np.all(seen >= 0)


@pytest.mark.parametrize("name", sorted(MEMBERS))
def test_member_slots_are_independent(name: str) -> None:
    slots, ts, x = _two_slots()
    both = MEMBERS[name]().score_learn(slots, ts, x)
    only0 = MEMBERS[name]().score_learn(np.zeros(1200, np.int64), ts[0::2], x[0::2])
    np.testing.assert_array_equal(both.raw[0::2], only0.raw)


@pytest.mark.parametrize("name", ["median", "median_diff", "seasonal", "knn", "range"])
def test_member_sees_the_spike(name: str) -> None:
    slots, ts, x = _two_slots()
    raw = np.nan_to_num(MEMBERS[name]().score_learn(slots, ts, x).raw[0::2])
    assert raw[700:702].max() == raw[300:].max()  # a diff sees the spike up, then down


def test_seasonal_infers_the_daily_period_and_predicts_it() -> None:
    slots, ts, x = _two_slots()
    out = SeasonalNaive(window=64).score_learn(slots, ts, x)
    lo, hi, v = out.lower[0::2], out.upper[0::2], x[0::2]
    inside = (lo[200:690] <= v[200:690]) & (v[200:690] <= hi[200:690])
    assert inside.mean() > 0.97
    irregular = np.cumsum(np.random.default_rng(0).integers(1, 100, 500)).astype(np.int64) * 1000
    quiet = SeasonalNaive().score_learn(np.zeros(500, np.int64), irregular, np.arange(500.0))
    assert np.all(np.isnan(quiet.raw))


def test_range_break_needs_tolerance_and_a_quiet_stretch_before_it() -> None:
    det = RangeNovelty(tol=0.1, warmup=2, decay=0.5)
    x = np.array([0.0, 10.0, 5.0, 10.5, 12.0, -2.0, 5.0, 5.0, 5.0, 5.0, -4.0])
    raw = det.score_learn(np.zeros(len(x), np.int64), np.arange(len(x)), x).raw
    assert raw[3] == 0.0  # within 10 % of the range: no break
    assert raw[4] == pytest.approx(RANGE_Q * (1 + np.log1p(0.45 / 10.5)))  # the first break
    # The next event breaks the other side: one excursion, damped by the break just before.
    assert raw[5] == pytest.approx(RANGE_Q * (1 + np.log1p(0.8 / 12.0)) / (1 + 1.0))
    # After a quiet stretch a break counts nearly in full again.
    assert raw[10] == pytest.approx(RANGE_Q * (1 + np.log1p(0.6 / 14.0)) / (1 + 1.5 * 0.5**4))


def test_novelty_fires_on_records_only() -> None:
    nov = Novelty(decay=1.0, warmup=0)
    q = nov.score_learn(np.zeros(5, np.int64), np.array([1.0, 2.0, 2.0, 1.0, 4.0]))
    np.testing.assert_allclose(q, [0.0, 2.0, 1.0, 0.5, 2.0])
    s = q_to_score(np.array([0.0, 0.5, 1.05, 2.0, 100.0, 1000.0, 1e5, 1e5 * 1.01]))
    assert s[0] == 0.0 and s[2] == pytest.approx(0.99) and np.all(np.diff(s) > 0) and s[-1] < 1
    assert f"{s[-2]:.9f}" != f"{s[-1]:.9f}"  # resolved in the NAB results format


def test_likelihood_is_calibrated_on_noise() -> None:
    rng = np.random.default_rng(0)
    raw = np.abs(rng.normal(size=20000))
    s = Likelihood(short=1, warmup=50).score_learn(np.zeros(20000, np.int64), raw)
    rate = (s[1000:] >= 0.9).mean()  # 1 - sqrt(Q) >= 0.9  <=>  Q <= 0.01
    assert 0.002 < rate < 0.03


def test_refractory_alerts_once_per_burst() -> None:
    from eddy.operators.anomaly.refractory import Refractory

    ref = Refractory(events=3, damp=0.5)
    s = np.array([0.1, 0.995, 0.993, 0.996, 0.2, 0.2, 0.2, 0.994])
    out = ref.apply(np.zeros(8, np.int64), s)
    np.testing.assert_allclose(out, [0.1, 0.995, 0.4965, 0.996, 0.1, 0.1, 0.1, 0.994])
    two = Refractory(events=3).apply(
        np.array([0, 1, 0, 1], np.int64), np.array([0.9, 0.1, 0.8, 0.2])
    )
    np.testing.assert_allclose(two, [0.9, 0.1, 0.4, 0.2])


def test_seasonal_lag_is_by_time_across_gaps() -> None:
    hours = np.r_[np.arange(0, 50), np.arange(55, 120)]  # five hourly rows missing
    ts = (1_400_000_000_000 + hours * 3_600_000).astype(np.int64)
    v = (hours % 24).astype(np.float64) * 10.0  # a perfect daily pattern
    v[-1] += 1.0
    det = SeasonalNaive(window=16)
    out = det.score_learn(np.zeros(hours.size, np.int64), ts, v)
    base = out.lower + (out.upper - out.lower) / 2  # the value one day earlier (+ median 0)
    ok = ~np.isnan(base)
    np.testing.assert_allclose(base[ok][:-1], v[ok][:-1])
    assert ok[hours.tolist().index(79)] and not ok[hours.tolist().index(24 + 50)]
