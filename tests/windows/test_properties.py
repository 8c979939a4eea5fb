"""Outputs do not depend on batch cuts; snapshot + restore at any point changes nothing."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eddy.operators.windows import WINDOW_COLUMNS, EventTimeFeatures, FeatureConfig

from .conftest import Stream, assert_close, make_stream, run, sort_windows

N = 800
_STREAMS = {
    p: make_stream(11 + p, N, 6, span_ms=30_000, disorder_ms=400, late_frac=0.05, n_parts=p)
    for p in (1, 2)
}
_CFG = FeatureConfig(
    metrics=("filled", "latency_ms"),
    trailing_ms=(1_000, 5_000),
    tumbling_ms=(2_000,),
    sliding=((6_000, 2_000),),
    session_gap_ms=(1_500,),
    allowed_lateness_ms=500,
)
_BASE: dict[tuple[int, str], tuple] = {}


def _baseline(parts: int, policy: str):
    if (parts, policy) not in _BASE:
        cfg = dataclasses.replace(_CFG, late_policy=policy)
        _BASE[(parts, policy)] = run(EventTimeFeatures(cfg), _STREAMS[parts], [])
    return _BASE[(parts, policy)]


def _same(a, b) -> None:
    assert (a[1] == b[1]).all()
    assert_close(a[0], b[0], "features")
    wa, wb = sort_windows(a[2]), sort_windows(b[2])
    for c in WINDOW_COLUMNS:
        if wa[c].dtype == object:
            assert (wa[c] == wb[c]).all(), c
        else:
            assert_close(wa[c], wb[c], c)


cuts = st.lists(st.integers(0, N), max_size=25)
settings_ = settings(max_examples=25, deadline=None, derandomize=True)


@settings_
@given(cuts=cuts, parts=st.sampled_from([1, 2]), policy=st.sampled_from(["drop", "include"]))
def test_batch_cuts_do_not_matter(cuts: list[int], parts: int, policy: str) -> None:
    cfg = dataclasses.replace(_CFG, late_policy=policy)
    got = run(EventTimeFeatures(cfg), _STREAMS[parts], cuts)
    _same(got, _baseline(parts, policy))


@settings_
@given(cuts=cuts, policy=st.sampled_from(["drop", "include"]))
def test_batches_mixing_partitions_give_the_same_output(cuts: list[int], policy: str) -> None:
    cfg = dataclasses.replace(_CFG, late_policy=policy)
    got = run(EventTimeFeatures(cfg), _STREAMS[2], cuts, mixed=True)
    _same(got, _baseline(2, policy))


def _run_with_restore(cfg: FeatureConfig, s: Stream, cuts: list[int], at: int):
    first = Stream(s.keys[:at], s.ts[:at], s.vals[:at], s.parts[:at])
    rest = Stream(s.keys[at:], s.ts[at:], s.vals[at:], s.parts[at:])
    op = EventTimeFeatures(cfg)
    f1, l1, w1 = run(op, first, [c for c in cuts if c < at], flush=False)
    blob = pickle.dumps(op.snapshot())
    op2 = EventTimeFeatures.restore(cfg, pickle.loads(blob))
    f2, l2, w2 = run(op2, rest, [c - at for c in cuts if c > at])
    wins = {c: np.concatenate([w1[c], w2[c]]) for c in WINDOW_COLUMNS}
    return np.concatenate([f1, f2]), np.concatenate([l1, l2]), wins


@settings_
@given(
    cuts=cuts,
    at=st.integers(0, N),
    parts=st.sampled_from([1, 2]),
    policy=st.sampled_from(["drop", "include"]),
)
def test_snapshot_restore_is_exact(cuts: list[int], at: int, parts: int, policy: str) -> None:
    cfg = dataclasses.replace(_CFG, late_policy=policy)
    got = _run_with_restore(cfg, _STREAMS[parts], cuts, at)
    _same(got, _baseline(parts, policy))


def test_snapshot_is_small_and_restored_state_is_identical() -> None:
    s = _STREAMS[1]
    op = EventTimeFeatures(_CFG)
    run(op, Stream(s.keys[:600], s.ts[:600], s.vals[:600], s.parts[:600]), [], flush=False)
    snap = op.snapshot()
    # live events only: far fewer than the 600 rows seen, nothing per row beyond the horizon
    assert len(snap["store"]["ts"]) < 600
    op2 = EventTimeFeatures.restore(_CFG, snap)
    assert op2.n_keys == op.n_keys and op2.watermark_ms == op.watermark_ms
    assert op2.late_count == op.late_count


def test_store_maintenance_does_not_change_outputs() -> None:
    """Closing holes / compacting the arena between batches changes layout, not results."""
    s = _STREAMS[1]
    base = _baseline(1, "include")
    cfg = dataclasses.replace(_CFG, late_policy="include")
    for action in ("close_holes", "compact"):
        op = EventTimeFeatures(cfg)
        feats, late, wins = [], [], []
        for a in range(0, N, 50):
            r = op.process(s.keys[a : a + 50], s.ts[a : a + 50], s.vals[a : a + 50])
            getattr(op._store, action)()
            feats.append(r.features)
            late.append(r.late)
            wins.append(r.windows)
        wins.append(op.flush().windows)
        cat = {c: np.concatenate([w[c] for w in wins]) for c in WINDOW_COLUMNS}
        _same((np.concatenate(feats), np.concatenate(late), cat), base)


def test_restore_is_bitwise_identical_with_the_same_batches() -> None:
    """Snapshots carry the running sums as they are: same batches after restore -> same bits."""
    s = make_stream(5, 6_000, 30, span_ms=200_000, disorder_ms=400, late_frac=0.05)
    cfg = dataclasses.replace(_CFG, late_policy="include")

    def go(restore_at: int) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
        op = EventTimeFeatures(cfg)
        feats, wins = [], []
        for bi, a in enumerate(range(0, len(s.ts), 500)):
            if bi == restore_at:
                op = EventTimeFeatures.restore(cfg, pickle.loads(pickle.dumps(op.snapshot())))
            r = op.process(s.keys[a : a + 500], s.ts[a : a + 500], s.vals[a : a + 500])
            feats.append(r.features)
            wins.append(r.windows)
        wins.append(op.flush().windows)
        return np.concatenate(feats), wins

    f0, w0 = go(-1)
    for at in (3, 7):
        f1, w1 = go(at)
        assert np.array_equal(f0, f1, equal_nan=True)
        for x, y in zip(w0, w1, strict=True):
            for c in WINDOW_COLUMNS:
                assert np.array_equal(x[c], y[c], equal_nan=x[c].dtype != object), c


def test_an_idle_partition_stops_holding_the_watermark_back() -> None:
    """A partition silent for ``idle_after_ms`` of wall clock leaves the minimum; when it
    delivers again it counts again (its rows behind the watermark are late)."""
    from eddy.operators.windows.watermark import Watermark

    wm = Watermark(allowed_lateness_ms=0, idle_after_ms=1_000)
    wm.advance(np.array([100]), partition=0, now_ms=0)
    wm.advance(np.array([500]), partition=1, now_ms=10)
    assert wm.value == 100  # the slow partition holds it back
    wm.advance(np.array([900]), partition=1, now_ms=999)
    assert wm.value == 100  # partition 0 heard 999 ms ago: still awake
    wm.advance(np.array([950]), partition=1, now_ms=1_000)
    assert wm.value == 950  # partition 0 silent for 1 s: idle
    before = wm.advance(np.array([200, 960]), partition=0, now_ms=1_001)
    assert before.tolist() == [950, 950] and wm.value == 950  # awake again, its 200 is late
    wm.advance(np.array([990]), partition=1, now_ms=1_002)
    assert wm.value == 960  # the minimum over both again
    still = Watermark(allowed_lateness_ms=0, idle_after_ms=1_000)
    still.advance(np.array([100]), partition=0)
    still.advance(np.array([500]), partition=1)
    assert still.value == 100  # no wall clock given: nobody is idle
