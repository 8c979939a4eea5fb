"""A KafkaSource dataflow for the kill -9 test, run by ``python -m bytewax.run``.

``build(bootstrap, topic, out)`` reads ``topic`` to its end (``stop_at_end``), slowly (a short
sleep per batch, so the test can kill it midway), and appends ``"<partition> <offset>"`` lines
to ``out``, flushed per batch.
"""

from __future__ import annotations

import time

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from eddy.sources.base import RawBatch
from eddy.sources.kafka import KafkaSource

__all__ = ["build"]


class _Append(StatelessSinkPartition[RawBatch]):
    def __init__(self, path: str) -> None:
        self._fh = open(path, "a")  # noqa: SIM115 - closed in close()

    def write_batch(self, items: list[RawBatch]) -> None:
        for b in items:
            self._fh.write("".join(f"{b.partition} {p}\n" for p in b.positions))
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


class _AppendSink(DynamicSink[RawBatch]):
    def __init__(self, path: str) -> None:
        self._path = path

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Append:
        return _Append(self._path)


def _slow(b: RawBatch) -> RawBatch:
    time.sleep(0.1)
    return b


def build(bootstrap: str, topic: str, out: str) -> Dataflow:
    flow = Dataflow("kafka_kill_test")
    src = KafkaSource(bootstrap, topic, stream="events", batch_size=50, stop_at_end=True)
    op.output("out", op.map("slow", op.input("in", flow, src), _slow), _AppendSink(out))
    return flow
