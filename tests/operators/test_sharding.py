"""Shards: pieces partition a batch, keep the whole batch's clock, split like the whole batch;
a shard's watermark equals the unsharded one; the shard of a value is stable across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eddy.operators.sharding import Piece, cut, shard_index
from eddy.operators.windows.watermark import NO_TIME, NO_WATERMARK, Watermark
from eddy.schemas.batch import EventBatch

ROOT = Path(__file__).resolve().parents[2]
settings_ = settings(max_examples=150, deadline=None, derandomize=True)


def _batch(ts: list[int], keys: list[str]) -> EventBatch:
    n = len(ts)
    ids = np.array([f"e{i}" for i in range(n)], dtype=object)
    k = np.array(keys, dtype=object)
    v = np.arange(n, dtype=np.float64) * 0.5
    ingest = np.arange(n, dtype=np.int64) + 10
    return EventBatch("s", np.array(ts, dtype=np.int64), ids, {"k": k, "v": v}, ingest)


@st.composite
def cut_batches(draw, min_size: int = 1):
    """A batch (ties in time, repeated keys), a shard count and every row's shard."""
    n = draw(st.integers(min_size, 30))
    ts = draw(st.lists(st.integers(-50, 50), min_size=n, max_size=n))
    keys = draw(st.lists(st.sampled_from("abcdefg"), min_size=n, max_size=n))
    shards = draw(st.integers(1, 4))
    shard = draw(st.lists(st.integers(0, shards - 1), min_size=n, max_size=n))
    return _batch(ts, keys), np.array(shard, dtype=np.int64), shards


def _rows(piece: Piece) -> np.ndarray:
    return np.arange(len(piece.ts_all)) if piece.rows is None else piece.rows


def _same_batch(a: EventBatch, b: EventBatch) -> None:
    assert a.stream == b.stream
    assert a.ts.tolist() == b.ts.tolist()
    assert a.ids.tolist() == b.ids.tolist()
    assert sorted(a.columns) == sorted(b.columns)
    for c in a.columns:
        assert a.columns[c].tolist() == b.columns[c].tolist(), c
    assert a.ingest_ns.tolist() == b.ingest_ns.tolist()


def _running(ts: list[int]) -> tuple[list[int], list[int]]:
    """The exclusive and inclusive running max, one row at a time."""
    prior, upto, top = [], [], NO_TIME
    for t in ts:
        prior.append(top)
        top = max(top, t)
        upto.append(top)
    return prior, upto


orders = st.none() | st.tuples(st.sampled_from(["w0", "w1"]), st.integers(0, 9))


@settings_
@given(case=cut_batches(), partition=st.sampled_from([0, 1, 1_000]), order=orders)
def test_cut_pieces_partition_the_rows_in_order(case, partition: int, order) -> None:
    batch, shard, shards = case
    pieces = cut(partition, batch, shard, shards, order)
    assert len(pieces) == shards
    taken = np.concatenate([_rows(p) for p in pieces])
    assert sorted(taken.tolist()) == list(range(len(batch)))  # every row exactly once
    for s, piece in enumerate(pieces):
        rows = _rows(piece)
        assert rows.tolist() == np.flatnonzero(shard == s).tolist()  # its rows, in order
        _same_batch(piece.batch, batch.take(rows))
        assert piece.partition == partition and piece.stream == "s" and piece.order == order
        assert piece.ts_all.tolist() == batch.ts.tolist()
        assert piece.top == int(batch.ts.max()) and piece.low == int(batch.ts.min())


@settings_
@given(case=cut_batches())
def test_prior_and_upto_are_the_whole_batch_running_max(case) -> None:
    batch, shard, shards = case
    prior, upto = _running(batch.ts.tolist())
    for piece in cut(0, batch, shard, shards):
        rows = _rows(piece).tolist()
        assert piece.prior().tolist() == [prior[r] for r in rows]
        assert piece.upto().tolist() == [upto[r] for r in rows]


@settings_
@given(case=cut_batches(), data=st.data(), order=orders)
def test_split_of_a_piece_is_the_piece_of_the_split_batch(case, data, order) -> None:
    batch, shard, shards = case
    n = len(batch)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    for s, piece in enumerate(cut(7, batch, shard, shards, order)):
        got = piece.split(mask)
        for part, m in zip(got, (mask, ~mask), strict=True):
            want = cut(7, batch.take(m), shard[m], shards, order)[s]
            _same_batch(part.batch, want.batch)
            assert part.partition == 7 and part.order == order
            assert part.ts_all.tolist() == want.ts_all.tolist() == batch.ts[m].tolist()
            assert (part.rows is None) == (want.rows is None)
            assert _rows(part).tolist() == _rows(want).tolist()
            if m.any():
                assert part.top == want.top and part.low == want.low
                assert part.prior().tolist() == want.prior().tolist()
                assert part.upto().tolist() == want.upto().tolist()


@st.composite
def batch_sequences(draw):
    """Batches over 2-3 partitions (late rows, ties), each row's shard, shards, lateness."""
    n_parts = draw(st.integers(2, 3))
    parts = [0, 1_000, 2_000][:n_parts]
    shards = draw(st.integers(1, 3))
    lateness = draw(st.sampled_from([0, 3, 40]))
    seq = []
    for _ in range(draw(st.integers(1, 12))):
        p = draw(st.sampled_from(parts))
        n = draw(st.integers(1, 12))
        base = draw(st.integers(0, 300))
        ts = draw(st.lists(st.integers(base - 60, base + 30), min_size=n, max_size=n))
        shard = draw(st.lists(st.integers(0, shards - 1), min_size=n, max_size=n))
        seq.append((p, _batch(ts, ["k"] * n), np.array(shard, dtype=np.int64)))
    return seq, shards, lateness


class _RowWatermark:
    """The watermark's definition (module docstring of ``watermark.py``), one row at a time."""

    def __init__(self, lateness: int) -> None:
        self.lateness, self.pmax, self.value = lateness, {}, NO_WATERMARK

    def advance(self, ts: list[int], partition: int) -> list[int]:
        before = []
        for t in ts:
            before.append(self.value)
            self.pmax[partition] = max(self.pmax.get(partition, t), t)
            self.value = max(self.value, min(self.pmax.values()) - self.lateness)
        return before


@settings_
@given(case=batch_sequences())
def test_a_shards_watermark_is_the_whole_streams(case) -> None:
    seq, shards, lateness = case
    whole_wm = Watermark(lateness)
    oracle = _RowWatermark(lateness)
    mine = [Watermark(lateness) for _ in range(shards)]
    for partition, batch, shard in seq:
        want = whole_wm.advance(batch.ts, partition)
        assert want.tolist() == oracle.advance(batch.ts.tolist(), partition)
        assert whole_wm.value == oracle.value
        for s, piece in enumerate(cut(partition, batch, shard, shards)):
            got = mine[s].advance_rows(piece.prior(), piece.top, partition)
            assert got.tolist() == want[_rows(piece)].tolist()
        for wm in mine:
            assert wm.value == whole_wm.value
            assert wm.snapshot() == whole_wm.snapshot()


texts = st.text(min_size=0, max_size=12)


@settings_
@given(values=st.lists(texts, min_size=0, max_size=40), shards=st.integers(1, 8), data=st.data())
def test_shard_index_is_stable_and_in_range(values: list[str], shards: int, data) -> None:
    arr = np.array(values, dtype=object)
    got = shard_index(arr, shards)
    assert got.shape == (len(values),) and got.dtype == np.int64
    assert ((got >= 0) & (got < shards)).all()
    if shards == 1:
        assert (got == 0).all()
    by_value: dict[str, int] = {}
    for v, s in zip(values, got.tolist(), strict=True):
        assert by_value.setdefault(v, s) == s  # the same value, the same shard
    # a value's shard does not depend on the other values of the batch, nor on their order
    for v, s in zip(values, got.tolist(), strict=True):
        assert shard_index(np.array([v], dtype=object), shards).tolist() == [s]
    perm = data.draw(st.permutations(range(len(values))))
    assert shard_index(arr[list(perm)], shards).tolist() == got[list(perm)].tolist()
    again = shard_index(arr.copy(), shards)
    assert again.tolist() == got.tolist()


def test_shard_index_spreads_similar_short_keys() -> None:
    keys = np.array([f"k{i}" for i in range(2_000)], dtype=object)
    for shards in (2, 3, 4, 8):
        counts = np.bincount(shard_index(keys, shards), minlength=shards)
        assert counts.min() > 0.7 * len(keys) / shards, (shards, counts.tolist())


_VALUES = [
    "",
    "a",
    "b",
    "alpha",
    "partner-17",
    "placement_3",
    "q123456",
    "ключ",
    "键",
    "🙂",
    "a b",
    *[f"k{i}" for i in range(60)],
]
_CHILD = """
import json, sys
import numpy as np
import pytest
from eddy.operators.sharding import shard_index
values = json.loads(sys.stdin.read())
arr = np.array(values, dtype=object)
print(json.dumps({s: shard_index(arr, s).tolist() for s in range(1, 9)}))
"""


def test_shard_index_does_not_depend_on_the_hash_seed() -> None:
    arr = np.array(_VALUES, dtype=object)
    here = {str(s): shard_index(arr, s).tolist() for s in range(1, 9)}
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run(
            [sys.executable, "-c", _CHILD],
            input=json.dumps(_VALUES),
            capture_output=True,
            text=True,
            cwd=ROOT,
            env=env,
            timeout=60,
            check=True,
        )
        assert json.loads(done.stdout) == here, f"PYTHONHASHSEED={seed}"


def _defined_shard(value: object, shards: int) -> int:
    """The documented definition: CRC-32 of the value's text, a Fibonacci mix, the modulo
    (recovery directories and running clusters rely on it never changing)."""
    crc = zlib.crc32(str(value).encode())
    return (((crc * 2654435761) & 0xFFFFFFFF) >> 8) % shards


@pytest.mark.parametrize("repeats", [False, True])
def test_shard_index_is_the_defined_hash(repeats: bool) -> None:
    values = [*_VALUES, 7, True, 2.5, None]
    if repeats:  # many rows, few values: the path that hashes each value once
        values = values * 30
    arr = np.array(values, dtype=object)
    for shards in (2, 3, 5, 8, 256):
        assert shard_index(arr, shards).tolist() == [_defined_shard(v, shards) for v in values]
