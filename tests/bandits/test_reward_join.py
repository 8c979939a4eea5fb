from __future__ import annotations

import pickle

import numpy as np
import pytest

from eddy.operators.bandits import RewardJoin

D = 3


def _join(ttl_ms: int = 1000) -> RewardJoin:
    return RewardJoin(ttl_ms=ttl_ms, default_reward=-0.5, n_features=D)


def _add(j: RewardJoin, ids: list, ts: list) -> np.ndarray:
    n = len(ids)
    X = np.arange(n * D, dtype=float).reshape(n, D)
    return j.add_decisions(
        np.array(ids, dtype=object), np.array(ts), X, np.arange(n) % 2, np.full(n, 0.5)
    )


def test_outcome_in_time_matches_and_leaves_state() -> None:
    j = _join()
    _add(j, ["a", "b", "c"], [0, 100, 200])
    m = j.match(np.array(["c", "a"], dtype=object), np.array([900, 1000]), np.array([2.0, 3.0]))
    assert list(m.decision_ids) == ["c", "a"]
    np.testing.assert_array_equal(m.index, [0, 1])
    np.testing.assert_array_equal(m.rewards, [2.0, 3.0])
    np.testing.assert_array_equal(m.X, [[6, 7, 8], [0, 1, 2]])
    np.testing.assert_array_equal(m.arms, [0, 0])
    assert j.pending == 1 and len(m.unmatched_index) == 0


def test_timeout_learns_default_reward_in_decision_time_order() -> None:
    j = _join()
    _add(j, ["late", "early", "fresh"], [500, 100, 5000])
    assert len(j.expire(1100).decision_ids) == 0  # 100 is not older than 1100 - 1000
    e = j.expire(1600)
    assert list(e.decision_ids) == ["early", "late"]
    np.testing.assert_array_equal(e.rewards, [-0.5, -0.5])
    np.testing.assert_array_equal(e.ts, [100, 500])
    np.testing.assert_array_equal(e.X, [[3, 4, 5], [0, 1, 2]])
    assert j.pending == 1 and j.counts["expired"] == 2


def test_unknown_expired_and_duplicate_outcomes_are_counted_not_raised() -> None:
    j = _join()
    _add(j, ["a", "b", "c"], [0, 0, 0])
    j.expire(2000)  # a, b, c time out
    _add(j, ["d", "e"], [2000, 2000])
    m = j.match(
        np.array(["a", "zz", "d", "d", "e"], dtype=object),
        np.array([2100, 2100, 2100, 2100, 3500]),
        np.ones(5),
    )
    np.testing.assert_array_equal(m.index, [2])
    np.testing.assert_array_equal(m.unmatched_index, [0, 1, 3, 4])
    assert list(m.unmatched_reason) == [
        "expired",
        "unknown decision",
        "duplicate outcome",
        "expired",
    ]
    # "e"'s outcome came 1500 ms after it: too late, so "e" stays pending and times out
    assert j.pending == 1
    e = j.expire(3500)
    assert list(e.decision_ids) == ["e"]
    assert j.unmatched_counts == {"unknown decision": 1, "expired": 2, "duplicate outcome": 1}


def test_duplicate_decisions_are_not_stored_twice() -> None:
    j = _join()
    assert list(_add(j, ["a", "a", "b"], [0, 1, 2])) == [True, False, True]
    assert list(_add(j, ["b", "c"], [3, 4])) == [False, True]
    j.match(np.array(["a"], dtype=object), np.array([10]), np.ones(1))
    assert list(_add(j, ["a"], [20])) == [False]  # replayed request after its outcome
    assert j.pending == 2


def test_memory_bounded_by_decisions_in_flight() -> None:
    j = _join(ttl_ms=100)
    for t in range(0, 200_000, 1000):
        ids = np.array([f"{t}-{i}" for i in range(500)], dtype=object)
        j.add_decisions(ids, np.full(500, t), np.zeros((500, D)), np.zeros(500, int), np.ones(500))
        j.match(ids[:250], np.full(250, t + 50), np.ones(250))
        j.expire(t + 500)
    assert j.pending == 0
    assert len(j._ts) <= 4096 and len(j._matched) + len(j._expired) <= 1000
    assert j.counts["matched"] == 250 * 200 and j.counts["expired"] == 250 * 200


def test_snapshot_restore_mid_stream() -> None:
    j = _join()
    _add(j, ["a", "b", "c"], [0, 100, 200])
    j.match(np.array(["b"], dtype=object), np.array([150]), np.ones(1))
    k = RewardJoin.restore(pickle.loads(pickle.dumps(j.snapshot())))
    for x in (j, k):
        m = x.match(np.array(["a", "b", "q"], dtype=object), np.array([300, 300, 300]), np.ones(3))
        assert list(m.decision_ids) == ["a"]
        assert list(m.unmatched_reason) == ["duplicate outcome", "unknown decision"]
        assert list(x.expire(5000).decision_ids) == ["c"]


def test_bad_construction_and_shapes_raise() -> None:
    with pytest.raises(ValueError, match="ttl_ms"):
        RewardJoin(ttl_ms=0, default_reward=0.0, n_features=2)
    j = _join()
    with pytest.raises(ValueError, match="add_decisions"):
        j.add_decisions(
            np.array(["a"], dtype=object),
            np.array([0, 1]),
            np.zeros((1, D)),
            np.zeros(1, int),
            np.ones(1),
        )


def test_restore_keeps_matched_and_expired_tombstones() -> None:
    j = _join()
    _add(j, ["a", "b", "c"], [0, 100, 200])
    j.match(np.array(["b"], dtype=object), np.array([150]), np.ones(1))
    j.expire(100 + j.ttl_ms + 1)  # "a" times out
    k = RewardJoin.restore(pickle.loads(pickle.dumps(j.snapshot())))
    m = k.match(np.array(["a", "b", "c"], dtype=object), np.array([300, 300, 300]), np.ones(3))
    assert list(m.decision_ids) == ["c"]
    assert list(m.unmatched_reason) == ["expired", "duplicate outcome"]


def test_long_run_against_a_plain_dict_model() -> None:
    """Decisions (new and repeated), outcomes (in time, late, repeated, unknown) and timeouts
    over many TTLs, through compactions, forgetting and a snapshot round trip: every answer is
    a plain per-id model's, and a tombstone is kept between 2 and 3 TTLs (plus a step)."""
    rng = np.random.default_rng(7)
    ttl, step_ms = 1000, 250
    j = _join(ttl)
    model: dict[str, tuple[str, int]] = {}  # id -> (state, decision time)
    issued = 0
    for step in range(400):
        now = step * step_ms
        fresh = [f"d{issued + i}" for i in range(int(rng.integers(0, 60)))]
        issued += len(fresh)
        ids = fresh + [f"d{int(i)}" for i in rng.integers(0, max(issued, 1), 5)]
        accepted = _add(j, ids, [now] * len(ids)).tolist()
        for i, d in enumerate(ids):
            remembered = model.get(d, ("forgotten", 0))[0] != "forgotten"
            assert accepted[i] == (not remembered and d not in ids[:i]), (step, d)
            if accepted[i]:
                model[d] = ("pending", now)
        known = sorted(d for d, (st, _) in model.items() if st != "forgotten")
        asked = [*rng.choice(known, min(len(known), 40)).tolist(), "never-decided"]
        m = j.match(np.array(asked, dtype=object), np.full(len(asked), now), np.ones(len(asked)))
        why = dict(zip(m.unmatched_index.tolist(), m.unmatched_reason.tolist(), strict=True))
        for i, d in enumerate(asked):
            st, t = model.get(d, ("forgotten", 0))
            if st == "pending" and now - t <= ttl:
                assert i in m.index.tolist(), (step, d)
                model[d] = ("matched", t)
            else:
                want = {"pending": "expired", "expired": "expired", "matched": "duplicate outcome"}
                assert why[i] == want.get(st, "unknown decision"), (step, d, st)
        timed_out = sorted(d for d, (st, t) in model.items() if st == "pending" and t < now - ttl)
        assert sorted(j.expire(now).decision_ids.tolist()) == timed_out
        for d in timed_out:
            model[d] = ("expired", model[d][1])
        for d, (st, t) in model.items():
            if st in ("matched", "expired"):
                if d not in j._matched and d not in j._expired:
                    assert t < now - 2 * ttl, (step, d)
                    model[d] = ("forgotten", t)
                else:
                    assert t >= now - 3 * ttl - step_ms, (step, d)
        assert j.pending == sum(st == "pending" for st, _ in model.values())
        if step == 200:
            j = RewardJoin.restore(pickle.loads(pickle.dumps(j.snapshot())))
    assert j.counts["matched"] > 1000 and j.counts["expired"] > 1000
    assert sum(st == "forgotten" for st, _ in model.values()) > 1000
