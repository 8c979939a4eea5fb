"""`AheadGuard`: an outlier in the future is refused, a real jump goes on, and neither the
batch cuts nor the shard count change what happens."""

from __future__ import annotations

import pickle
from itertools import pairwise

import numpy as np
import pytest

from eddy.operators.ahead import AheadGuard
from eddy.operators.sharding import Piece, cut, shard_index, whole
from eddy.schemas.batch import EventBatch

T0 = 1_600_000_000_000
HOUR = 3_600_000


def _batch(ts: np.ndarray, start: int = 0) -> EventBatch:
    ids = np.array([f"e{start + i}" for i in range(len(ts))], dtype=object)
    keys = np.array([f"k{(start + i) % 7}" for i in range(len(ts))], dtype=object)
    return EventBatch("s", np.asarray(ts, dtype=np.int64), ids, {"key": keys})


def _play(guard: AheadGuard, pieces: list[Piece]) -> tuple[list[str], list[str]]:
    go: list[str] = []
    refused: list[str] = []
    for piece in pieces:
        out, bad = guard.admit(piece)
        go += [i for p in out for i in p.batch.ids.tolist()]
        refused += [i for r in bad for i in r.piece.batch.ids.tolist()]
    return go, refused


def _cuts(ts: np.ndarray, bounds: list[int]) -> list[Piece]:
    edges = [0, *bounds, len(ts)]
    return [whole(0, _batch(ts[a:b], a)) for a, b in pairwise(edges) if b > a]


def _stream(rng: np.random.Generator, n: int) -> np.ndarray:
    """Events 1 s apart with jitter, two real gaps of days, and outliers years ahead."""
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000 + rng.integers(-500, 500, n)
    for at in rng.choice(n, 2, replace=False):
        ts[at:] += 3 * 24 * HOUR
    outliers = rng.choice(n, 5, replace=False)
    ts[outliers] += 40 * 365 * 24 * HOUR
    return ts


def test_one_record_years_ahead_is_refused_and_everything_else_goes_on() -> None:
    ts = T0 + np.arange(20_000, dtype=np.int64) * 50
    ts[7_000] = 4_070_908_800_000  # 2099
    guard = AheadGuard(HOUR)
    go, refused = _play(guard, _cuts(ts, list(range(1_000, 20_000, 1_000))))
    assert refused == ["e7000"]
    assert go == [f"e{i}" for i in range(20_000) if i != 7_000]
    assert guard.holding == 0


def test_the_refusal_says_how_far_ahead_of_what() -> None:
    ts = np.array([T0, T0 + 10, T0 + 5 * HOUR, T0 + 20, T0 + 30, T0 + 40])
    _, refused = AheadGuard(HOUR).admit(whole(3, _batch(ts)))
    [r] = refused
    assert r.piece.partition == 3
    assert r.position.tolist() == [T0 + 10]
    assert r.ahead_ms.tolist() == [5 * HOUR - 10]


def test_a_stream_that_resumes_after_a_gap_loses_nothing() -> None:
    ts = np.concatenate([T0 + np.arange(100) * 1_000, T0 + 5 * 24 * HOUR + np.arange(100) * 1_000])
    go, refused = _play(AheadGuard(HOUR), _cuts(ts, [30, 101, 102, 150]))
    assert refused == []
    assert go == [f"e{i}" for i in range(200)]


def test_events_further_apart_than_the_bound_are_only_delayed() -> None:
    ts = T0 + np.arange(11, dtype=np.int64) * 24 * HOUR  # daily
    guard = AheadGuard(HOUR, confirm=3)
    go, refused = _play(guard, [whole(0, _batch(ts[i : i + 1], i)) for i in range(11)])
    assert refused == []
    assert go == [f"e{i}" for i in range(10)]  # every third confirms; the last one waits
    assert [i for p in guard.release_all() for i in p.batch.ids.tolist()] == ["e10"]
    assert guard.holding == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batch_cuts_change_nothing(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts = _stream(rng, 3_000)
    one_go, one_refused = _play(AheadGuard(HOUR), _cuts(ts, []))
    assert len(one_refused) == 5 and len(one_go) == 3_000 - 5
    for _ in range(5):
        bounds = sorted(rng.choice(np.arange(1, 3_000), 40, replace=False).tolist())
        assert _play(AheadGuard(HOUR), _cuts(ts, bounds)) == (one_go, one_refused)
    singles = [whole(0, _batch(ts[i : i + 1], i)) for i in range(len(ts))]
    assert _play(AheadGuard(HOUR), singles) == (one_go, one_refused)


@pytest.mark.parametrize("seed", [3, 4])
def test_every_shard_decides_alike_on_its_own_rows(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ts = _stream(rng, 2_000)
    bounds = sorted(rng.choice(np.arange(1, 2_000), 25, replace=False).tolist())
    whole_go, whole_refused = _play(AheadGuard(HOUR), _cuts(ts, bounds))
    shards = 3
    per_shard: list[list[Piece]] = [[] for _ in range(shards)]
    for piece in _cuts(ts, bounds):
        for s, p in enumerate(cut(0, piece.batch, shard_index(piece.batch.columns["key"], 3), 3)):
            per_shard[s].append(p)
    results = [_play(AheadGuard(HOUR), pieces) for pieces in per_shard]
    assert sorted(i for go, _ in results for i in go) == sorted(whole_go)
    assert sorted(i for _, bad in results for i in bad) == sorted(whole_refused)
    for go, _ in results:  # each shard's rows in the order the whole stream lets them through
        assert go == [i for i in whole_go if i in set(go)]


def test_a_restored_guard_continues_exactly() -> None:
    rng = np.random.default_rng(9)
    ts = _stream(rng, 1_000)
    pieces = _cuts(ts, list(range(50, 1_000, 50)))
    straight = _play(AheadGuard(HOUR), pieces)
    guard = AheadGuard(HOUR)
    first = _play(guard, pieces[:9])
    resumed = pickle.loads(pickle.dumps(guard))
    rest = _play(resumed, pieces[9:])
    assert (first[0] + rest[0], first[1] + rest[1]) == straight


def test_partitions_keep_their_own_position() -> None:
    guard = AheadGuard(HOUR)
    lagging = T0 + np.arange(10) * 1_000
    leading = T0 + 10 * HOUR + np.arange(10) * 1_000
    go_a, bad_a = guard.admit(whole(0, _batch(lagging)))
    go_b, bad_b = guard.admit(whole(1, _batch(leading)))
    assert (bad_a, bad_b) == ([], [])
    assert sum(len(p.batch) for p in go_a + go_b) == 20


@pytest.mark.parametrize(("ahead", "confirm"), [(0, 3), (-5, 3), (HOUR, 0)])
def test_bad_parameters_are_refused(ahead: int, confirm: int) -> None:
    with pytest.raises(ValueError, match="AheadGuard"):
        AheadGuard(ahead, confirm)
