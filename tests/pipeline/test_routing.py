"""Shard names land on the workers they were chosen for, in a real Bytewax dataflow: a stateful
step's output stays on the worker that holds the key, so a sink partition (built with its
worker's index) sees exactly the keys that live on its worker."""

from __future__ import annotations

import threading

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.outputs import DynamicSink, StatelessSinkPartition
from bytewax.testing import TestingSource, cluster_main

from eddy.dataflows.routing import shard_names, worker_of


class _Where(DynamicSink[tuple[str, str]]):
    """Collects ``(worker index, key)`` for every item a worker's partition writes."""

    def __init__(self) -> None:
        self.seen: set[tuple[int, str]] = set()
        self._lock = threading.Lock()

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Part:
        return _Part(self, worker_index)


class _Part(StatelessSinkPartition[tuple[str, str]]):
    def __init__(self, sink: _Where, worker: int) -> None:
        self._sink, self._worker = sink, worker

    def write_batch(self, items: list[tuple[str, str]]) -> None:
        with self._sink._lock:
            self._sink.seen.update((self._worker, key) for key, _ in items)


class _Echo(StatefulBatchLogic[str, str, None]):
    """Emits the key of every item it holds (a step's logic is not told its key)."""

    def on_batch(self, values: list[str]) -> tuple[list[str], bool]:
        return values, StatefulBatchLogic.RETAIN

    def snapshot(self) -> None:
        return None


def _placement(keys: list[str], workers: int) -> dict[str, int]:
    """Where a ``workers``-worker dataflow keeps each key's state."""
    flow = Dataflow("routing")
    items = [(k, k) for _ in range(3) for k in keys]
    up = op.input("in", flow, TestingSource(items, batch_size=5))
    held = op.stateful_batch("hold", up, lambda _resume: _Echo())
    sink = _Where()
    op.output("out", held, sink)
    cluster_main(flow, [], 0, worker_count_per_proc=workers)
    placed: dict[str, int] = {}
    for worker, key in sink.seen:
        assert placed.setdefault(key, worker) == worker, f"{key!r} on two workers"
    assert sorted(placed) == sorted(set(keys))
    return placed


OTHER_KEYS = ["a", "b", "keyed-0", "keyed-1", "partner-17", "ключ", "键", "x" * 9, "y" * 17]


@pytest.mark.parametrize("workers", [2, 3])
def test_shard_names_land_on_their_workers(workers: int) -> None:
    names = shard_names("k-", 4, workers)
    assert len(set(names)) == 4 and all(n.startswith(f"k-{i}.") for i, n in enumerate(names))
    placed = _placement(names + OTHER_KEYS, workers)
    assert [placed[n] for n in names] == [i % workers for i in range(4)]
    for key, worker in placed.items():
        assert worker_of(key, workers) == worker, key


def test_shard_names_from_an_offset_spread_past_the_first_workers() -> None:
    names = shard_names("stage-", 3, 2, start=1)
    placed = _placement(names, 2)
    assert [placed[n] for n in names] == [1, 0, 1]
