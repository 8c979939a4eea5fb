"""RecentIds: repeats within the horizon are found whatever the batch cuts; memory is bounded
by event time."""

from __future__ import annotations

import pickle
from itertools import pairwise

import numpy as np
import pytest

from eddy.operators.dedup import RecentIds


def _ids(*names: str) -> np.ndarray:
    return np.array(names, dtype=object)


def test_a_repeat_within_the_horizon_is_found_with_its_occurrence_and_first_time() -> None:
    seen = RecentIds(horizon_ms=1_000)
    assert len(seen.repeats(_ids("a", "b"), np.array([0, 100])).index) == 0
    rep = seen.repeats(_ids("c", "a", "a", "b"), np.array([200, 300, 400, 900]))
    assert rep.index.tolist() == [1, 2, 3]
    assert rep.occurrence.tolist() == [2, 3, 2]
    assert rep.first_ts.tolist() == [0, 0, 100]


def test_ids_are_forgotten_after_at_most_two_horizons_and_kept_for_at_least_one() -> None:
    seen = RecentIds(horizon_ms=1_000)
    seen.repeats(_ids("a"), np.array([0]))
    seen.repeats(_ids("b"), np.array([1_500]))  # a new generation: "a" is one generation old
    assert seen.repeats(_ids("a"), np.array([1_600])).index.tolist() == [0]  # 1.6 s: still seen
    seen.repeats(_ids("c"), np.array([2_600]))  # another generation: the one holding "a" goes
    assert seen.repeats(_ids("a"), np.array([2_700])).index.tolist() == []
    assert len(seen) <= 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_cuts_do_not_change_which_rows_repeat(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 2_000
    ids = np.array([f"e{int(i)}" for i in rng.integers(0, 300, n)], dtype=object)
    ts = np.arange(n, dtype=np.int64) * 10  # 20 s of event time; horizon 60 s: all within
    whole = RecentIds(horizon_ms=60_000).repeats(ids, ts)
    cut = RecentIds(horizon_ms=60_000)
    bounds = [0, *sorted(rng.choice(np.arange(1, n), 12, replace=False).tolist()), n]
    found = [cut.repeats(ids[a:b], ts[a:b]).index + a for a, b in pairwise(bounds)]
    np.testing.assert_array_equal(np.concatenate(found), whole.index)
    assert len(whole.index) == n - len(set(ids.tolist()))


def test_pickling_keeps_what_was_seen() -> None:
    seen = RecentIds(horizon_ms=1_000)
    seen.repeats(_ids("a"), np.array([0]))
    copy = pickle.loads(pickle.dumps(seen))
    assert copy.repeats(_ids("a"), np.array([10])).occurrence.tolist() == [2]


def test_the_horizon_must_be_positive() -> None:
    with pytest.raises(ValueError, match="horizon_ms"):
        RecentIds(horizon_ms=0)
