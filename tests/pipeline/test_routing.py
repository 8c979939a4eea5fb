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

from eddy.dataflows.packet import Packet
from eddy.dataflows.routing import decoder_keys, shard_names, worker_of
from eddy.dataflows.shards import BatchNumbers, DecodeLogic, OpenedLogic
from eddy.sources.base import RawBatch


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


def test_decoders_are_the_workers_without_a_decide_shard() -> None:
    one_decider = {"pick": shard_names("pick-", 1, 3, start=2)}
    keys = decoder_keys(3, one_decider)
    assert sorted(worker_of(k, 3) for k in keys) == [0, 1]
    assert [_placement(keys, 3)[k] for k in keys] == [worker_of(k, 3) for k in keys]
    # no decide stage, or one with a shard on every worker: every worker decodes
    assert sorted(worker_of(k, 2) for k in decoder_keys(2, {})) == [0, 1]
    everywhere = {"pick": shard_names("pick-", 2, 2, start=1)}
    assert sorted(worker_of(k, 2) for k in decoder_keys(2, everywhere)) == [0, 1]


def _raw(partition: int) -> RawBatch:
    return RawBatch("s", "test", partition, [1], [b"{}"], ingest_ns=0)


def test_batch_numbers_count_per_partition_and_deal_over_the_decoders() -> None:
    number = BatchNumbers(["d0", "d1", "d2"])
    out = [number(_raw(p)) for p in (0, 0, 7, 0, 7)]
    assert [key for key, _ in out] == ["d0", "d1", "d2", "d0", "d1"]
    orders = [packet.value[0] for _, packet in out]
    assert len({token for token, _ in orders}) == 1
    assert [seq for _, seq in orders] == [0, 1, 0, 2, 1]
    with pytest.raises(ValueError, match="at least one decoder"):
        BatchNumbers([])


def test_decode_logic_flattens_what_it_decodes_and_keeps_nothing() -> None:
    logic = DecodeLogic(lambda item: [item, item * 10])
    assert logic.on_batch([1, 2]) == ([1, 10, 2, 20], StatefulBatchLogic.DISCARD)
    assert logic.snapshot() is None


def test_opened_logic_feeds_the_packets_values_and_delegates_the_rest() -> None:
    logic = OpenedLogic(DecodeLogic(lambda item: [item, item * 10]))
    assert logic.on_batch([Packet(1), Packet(2)]) == ([1, 10, 2, 20], StatefulBatchLogic.DISCARD)
    assert logic.on_eof() == ((), StatefulBatchLogic.RETAIN)
    assert logic.notify_at() is None
    assert logic.snapshot() is None
