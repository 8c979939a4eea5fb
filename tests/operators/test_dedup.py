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


class _RowByRow:
    """The definition, one row at a time: rotate at the row that reaches the generation's end,
    then look the id up."""

    def __init__(self, horizon_ms: int) -> None:
        self.horizon = horizon_ms
        self.cur: dict[str, list[int]] = {}
        self.old: dict[str, list[int]] = {}
        self.start: int | None = None

    def row(self, key: str, t: int) -> tuple[int, int] | None:
        if self.start is None:
            self.start = t
        elif t >= self.start + self.horizon:
            self.old, self.cur = ({} if t >= self.start + 2 * self.horizon else self.cur), {}
            self.start = t
        entry = self.cur.get(key) or self.old.get(key)
        if entry is None:
            self.cur[key] = [t, 1]
            return None
        entry[1] += 1
        return entry[1], entry[0]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("in_order", [True, False])
def test_batches_spanning_many_generations_find_what_row_by_row_finds(
    seed: int, in_order: bool
) -> None:
    rng = np.random.default_rng(seed)
    n = 3_000
    ids = np.array([f"e{int(i)}" for i in rng.integers(0, 900, n)], dtype=object)
    steps = rng.exponential(40.0, n).astype(np.int64)
    steps[rng.random(n) < 0.01] += 5_000  # jumps of more than two generations
    ts = np.cumsum(steps)
    if not in_order:
        ts = ts + rng.integers(-600, 600, n)  # late and early rows
    ref = _RowByRow(1_000)
    rows = enumerate(zip(ids.tolist(), ts.tolist(), strict=True))
    expected = [(i, *hit) for i, (k, t) in rows if (hit := ref.row(k, t))]
    seen = RecentIds(horizon_ms=1_000)
    bounds = [0, *sorted(rng.choice(np.arange(1, n), 5, replace=False).tolist()), n]
    got = []
    for a, b in pairwise(bounds):  # batches of hundreds of rows: dozens of generations each
        rep = seen.repeats(ids[a:b], ts[a:b])
        found = (rep.index + a).tolist(), rep.occurrence.tolist(), rep.first_ts.tolist()
        got += zip(*found, strict=True)
    assert got == expected and len(expected) > 50


def test_a_snapshot_of_the_earlier_layout_continues() -> None:
    """Snapshots once stored ``[first time, occurrences]`` per id."""
    seen = RecentIds.__new__(RecentIds)
    seen.__dict__.update(
        horizon_ms=1_000, _cur={"a": [100, 2], "b": [150, 1]}, _old={"c": [0, 1]}, _cur_start=90
    )
    again = pickle.loads(pickle.dumps(seen))
    rep = again.repeats(_ids("a", "c", "d"), np.array([200, 210, 220]))
    assert rep.index.tolist() == [0, 1]
    assert rep.occurrence.tolist() == [3, 2] and rep.first_ts.tolist() == [100, 0]
