"""Dataflow runners shared by the Kafka tests."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import orjson
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, TestingSource, cluster_main, run_main
from confluent_kafka import Consumer, TopicPartition

from eddy.sinks.kafka import KafkaRecords, KafkaSink, _default
from eddy.sources.base import RawBatch
from eddy.sources.kafka import KafkaSource

__all__ = ["consume_all", "error_chain", "json_rows_reference", "run_sink", "run_source"]


def error_chain(exc: BaseException) -> str:
    """The messages of ``exc`` and its causes (Bytewax wraps step errors in its own)."""
    parts = []
    e: BaseException | None = exc
    while e is not None:
        parts.append(f"{type(e).__name__}: {e}")
        e = e.__cause__ or e.__context__
    return "\n".join(parts)


def run_source(
    source: KafkaSource, recovery_dir: Path | None = None, workers: int = 1
) -> list[RawBatch]:
    """Run ``source`` to its end (``stop_at_end``) in a real dataflow; return the batches."""
    flow = Dataflow("kafka_source_test")
    stream = op.input("in", flow, source)
    out: list[RawBatch] = []
    op.output("out", stream, TestingSink(out))
    rc = RecoveryConfig(str(recovery_dir)) if recovery_dir is not None else None
    if workers == 1:
        run_main(flow, recovery_config=rc)
    else:
        cluster_main(flow, [], 0, recovery_config=rc, worker_count_per_proc=workers)
    return out


def run_sink(sink: KafkaSink, items: list[KafkaRecords]) -> None:
    flow = Dataflow("kafka_sink_test")
    stream = op.input("in", flow, TestingSource(items))
    op.output("out", stream, sink)
    run_main(flow)


def consume_all(
    bootstrap: str, topic: str, partitions: int, expected: int, timeout_s: float = 30.0
) -> list[tuple[int, int, bytes | None, bytes | None]]:
    """Read ``expected`` records of ``topic``: ``(partition, offset, key, value)``."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "eddy-test", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    out: list[tuple[int, int, bytes | None, bytes | None]] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < expected and time.monotonic() < deadline:
        for msg in consumer.consume(1000, 0.2):
            assert msg.error() is None, msg.error()
            out.append((msg.partition() or 0, msg.offset() or 0, msg.key(), msg.value()))
    consumer.close()
    return out


def json_rows_reference(columns: Mapping[str, np.ndarray | Sequence[Any]]) -> list[bytes]:
    """What ``sinks.kafka.encode_json_rows`` must write, the slow and obvious way: one
    ``orjson.dumps`` of a dict per row, float16/float32 values as float32 (shortest digits
    that read back as the same float32). It shares the encoder's rule for single values
    (bytes, numpy scalars: checked on their own in test_sink.py); what it checks is how the
    encoder assembles rows from whole columns."""

    def values(col: np.ndarray | Sequence[Any]) -> list[Any]:
        if not isinstance(col, np.ndarray):
            return list(col)
        if col.dtype.kind == "f" and col.dtype.itemsize < 8:
            return list(np.ascontiguousarray(col, dtype=np.float32))
        return col.tolist()

    names = list(columns)
    cols = [values(columns[k]) for k in names]
    return [
        orjson.dumps(
            dict(zip(names, row, strict=True)), default=_default, option=orjson.OPT_SERIALIZE_NUMPY
        )
        for row in zip(*cols, strict=True)
    ]
