"""The recoverable Kafka output of the pipeline: flushed at every epoch, fenced on replay.

See :class:`FencedKafkaResultsSink`. Built on the producer partition of :mod:`sinks.kafka`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition
from confluent_kafka import KafkaError, KafkaException

from eddy.schemas.results import Results
from eddy.schemas.topics import OUTPUT_TOPICS
from eddy.sinks.kafka import (
    KafkaDeliveryError,
    KafkaRecords,
    KafkaSink,
    KafkaSinkPartition,
    check_create_partitions,
    ensure_topics,
    log,
    results_records,
)

__all__ = ["FencedKafkaResultsSink", "published_keys"]


class _TrackingPartition(KafkaSinkPartition):
    """A :class:`KafkaSinkPartition` that remembers, per topic partition, the offset after the
    last record it delivered there."""

    def __init__(self, config: Mapping[str, Any], offsets: dict[tuple[str, int], int], **kw: Any):
        super().__init__(config, **kw)
        self.offsets = offsets

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        super()._on_delivery(err, msg)
        if err is None:
            tp = (msg.topic(), msg.partition())
            end = msg.offset() + 1
            if end > self.offsets.get(tp, -1):
                self.offsets[tp] = end


def _high_watermark(consumer: Any, tp: Any, timeout_s: float) -> int:
    # Just after a topic is created its leader may not be known everywhere yet: retry
    # retriable errors until the deadline, then fail naming the partition.
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return int(consumer.get_watermark_offsets(tp, timeout=5.0, cached=False)[1])
        except KafkaException as e:
            err = e.args[0]
            retriable = err.retriable() or err.code() in (
                KafkaError.NOT_LEADER_FOR_PARTITION,
                KafkaError.LEADER_NOT_AVAILABLE,
                KafkaError.UNKNOWN_TOPIC_OR_PART,
                KafkaError._TIMED_OUT,
                KafkaError._TRANSPORT,
            )
            if not retriable or time.monotonic() >= deadline:
                raise KafkaDeliveryError(
                    f"cannot read the end offset of {tp.topic}/{tp.partition}: {err}"
                ) from e
            time.sleep(0.2)


def _topic_ends(bootstrap: str, topics: Sequence[str], timeout_s: float = 30.0) -> dict:
    """``{(topic, partition): high watermark}`` for every partition of ``topics``."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "eddy-fence"})
    try:
        md = consumer.list_topics(timeout=timeout_s)
        ends: dict[tuple[str, int], int] = {}
        for t in topics:
            tmd = md.topics.get(t)
            if tmd is None or tmd.error is not None:
                raise KafkaDeliveryError(f"Kafka at {bootstrap}: topic {t!r} is not available")
            for p in tmd.partitions:
                ends[(t, p)] = _high_watermark(consumer, TopicPartition(t, p), timeout_s)
        return ends
    finally:
        consumer.close()


def published_keys(
    bootstrap: str, starts: Mapping[tuple[str, int], int], timeout_s: float = 60.0
) -> tuple[dict[str, set[bytes]], dict[tuple[str, int], int]]:
    """The keys of the records in each ``(topic, partition)`` from ``starts[tp]`` to its current
    end, per topic, and the ends read up to."""
    from confluent_kafka import Consumer, TopicPartition

    topics = sorted({t for t, _ in starts})
    ends = _topic_ends(bootstrap, topics) if topics else {}
    todo = {tp: end for tp, end in ends.items() if tp in starts and starts[tp] < end}
    keys: dict[str, set[bytes]] = {}
    if not todo:
        return keys, ends
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "eddy-fence",
            "enable.auto.commit": False,
            "isolation.level": "read_uncommitted",
            "enable.partition.eof": True,
        }
    )
    try:
        consumer.assign([TopicPartition(t, p, starts[(t, p)]) for t, p in todo])
        deadline = time.monotonic() + timeout_s
        while todo:
            if time.monotonic() > deadline:
                raise KafkaDeliveryError(
                    f"Kafka at {bootstrap}: could not read back {sorted(todo)} within "
                    f"{timeout_s:.0f}s to fence a replay"
                )
            for msg in consumer.consume(10_000, 0.2):
                tp = (str(msg.topic()), int(msg.partition() or 0))
                offset = int(msg.offset() or 0)
                err = msg.error()
                if err is not None:
                    if err.code() == KafkaError._PARTITION_EOF:
                        if offset >= todo.get(tp, 0):
                            todo.pop(tp, None)
                        continue
                    raise KafkaDeliveryError(f"Kafka at {bootstrap}: reading back {tp}: {err}")
                key = msg.key()
                if key is not None:
                    keys.setdefault(tp[0], set()).add(key)
                if offset + 1 >= todo.get(tp, 0):
                    todo.pop(tp, None)
    finally:
        consumer.close()
    return keys, ends


class _FencedPartition(StatefulSinkPartition[Results, dict]):
    def __init__(
        self,
        sink: KafkaSink,
        topics: Mapping[str, str],
        offsets: dict[tuple[str, int], int],
        skip: dict[str, set[bytes]],
        flush_on_snapshot: bool = True,
    ) -> None:
        self._topics = topics
        self._flush_on_snapshot = flush_on_snapshot
        self._skip = skip
        self.skipped = 0
        config = sink.config()
        if not flush_on_snapshot:
            # Without recovery the offsets are never read: a delivery report per record (a
            # Python callback each, ~10 % of the worker at 20,000 decisions/s) only for failures.
            config["delivery.report.only.error"] = True
        self.inner = _TrackingPartition(
            config,
            offsets,
            close_timeout_s=sink.close_timeout_s,
            check_topics=sink.check_topics,
        )

    def _fence(self, rec: KafkaRecords) -> KafkaRecords | None:
        skip = self._skip.get(rec.topic)
        if not skip:
            return rec
        keep = [i for i, k in enumerate(rec.keys) if k not in skip]
        if len(keep) == len(rec.keys):
            return rec
        for i in set(range(len(rec.keys))) - set(keep):
            skip.discard(rec.keys[i])
        self.skipped += len(rec.keys) - len(keep)
        if not skip:
            del self._skip[rec.topic]
        if not keep:
            return None
        return KafkaRecords(rec.topic, [rec.keys[i] for i in keep], [rec.values[i] for i in keep])

    def write_batch(self, values: list[Results]) -> None:
        records = []
        for res in values:
            for rec in results_records(res, self._topics):
                fenced = self._fence(rec)
                if fenced is not None:
                    records.append(fenced)
        self.inner.write_batch(records)

    def snapshot(self) -> dict:
        # An epoch ends: everything it produced must be in Kafka before Bytewax records the
        # epoch as done (else a crash right after would lose it), and the offsets recorded
        # here are where the next replay's read-back starts. Without recovery nothing reads
        # the snapshot: delivery stays asynchronous (failures still surface) and the worker
        # does not stall once per epoch.
        if self._flush_on_snapshot:
            self.inner.flush()
        return {
            "offsets": dict(self.inner.offsets),
            "skip": {t: set(s) for t, s in self._skip.items()},
        }

    def close(self) -> None:
        self.inner.close()


class FencedKafkaResultsSink(FixedPartitionedSink[Results, dict]):
    """Publishes pipeline :class:`~schemas.results.Results` so that a recovery replay does not
    publish a record twice: at-least-once delivery, made effectively-once by a read-back fence.

    Why: after a crash Bytewax resumes from the last completed epoch and replays the input
    read since. The replayed decisions are not guaranteed to equal the first ones: wall-clock
    fields (``decided_at``, ``latency_ms``) differ, and the engine may see the partitions
    interleaved differently and choose other arms. A plain at-least-once sink would publish a
    second, DIFFERENT copy of those records.

    How: one partition (on cluster process 0, ``local=True``) owns one idempotent producer
    (``acks=all``). At every epoch end (``snapshot``; unless ``flush_on_snapshot=False``, which
    the pipeline passes when it runs without recovery) it flushes, so an epoch Bytewax records as
    done is entirely in Kafka, and it snapshots, per output topic partition, the offset after the
    last record it delivered there (at the first start: the topics' current ends). On a restart
    it reads every output topic partition back from those offsets to the current end (records a
    killed run published after its last completed epoch), collects their keys (the tables'
    primary keys, e.g. ``decision_id``) and drops the replay's records with those keys, once each:
    the topic keeps the first copy, records are immediately visible (no transaction to wait
    for; latency is one produce round trip), and the skip set is part of the snapshot until it
    is used up. The pipeline's ``metrics`` rows do not come this way (no ``Results`` carries
    them): the DuckDB sink hands them to a :class:`~sinks.kafka.KafkaTablePublisher`.

    The alternative, a transactional producer committing at epoch ends and ``read_committed``
    consumers, would delay every record by up to an epoch (``--snapshot-interval``, 1 s) and
    still leave a window (the Kafka commit succeeds, the process dies before Bytewax records the
    epoch: the replay commits a second copy).

    Before the first epoch completes there is no snapshot to resume from: a run killed then
    restarts from the beginning with no resume state. With ``start_file`` (a path in the
    recovery directory) the first start writes the topics' ends there before it publishes
    anything, and a start without resume state reads back from the offsets in that file when it
    exists: the records of every earlier attempt that never completed an epoch are fenced too.

    Remaining window: a produce request the killed process had sent but the broker appends only
    after the restarted sink finished reading back (the restart takes seconds, appending takes
    milliseconds), and records deleted by retention before the read-back. Other writers to the
    same topics with the same keys are dropped from the replay as well (keys are request ids).
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        topics: Mapping[str, str] = OUTPUT_TOPICS,
        create_partitions: int | None = None,
        local: bool = True,
        flush_on_snapshot: bool = True,
        start_file: str | Path | None = None,
        **sink_options: Any,
    ) -> None:
        check_create_partitions("FencedKafkaResultsSink", create_partitions)
        self.start_file = Path(start_file) if start_file is not None else None
        self.sink = KafkaSink(bootstrap, **sink_options)
        self.topics = dict(topics)
        self.create_partitions = create_partitions
        self.local = local
        self.flush_on_snapshot = flush_on_snapshot

    def list_parts(self) -> list[str]:
        return ["kafka"] if self.local else []

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(
        self, step_id: str, for_part: str, resume_state: dict | None
    ) -> _FencedPartition:
        bootstrap = self.sink.bootstrap
        if self.create_partitions is not None:
            ensure_topics(bootstrap, dict.fromkeys(self.topics.values(), self.create_partitions))
        fenced = list(self.topics.values())
        if resume_state is None:
            first = _read_starts(self.start_file)
            if first is None:
                ends = _topic_ends(bootstrap, fenced)
                _write_starts(self.start_file, ends)
                return _FencedPartition(self.sink, self.topics, ends, {}, self.flush_on_snapshot)
            resume_state = {"offsets": first, "skip": {}}
        offsets = dict(resume_state["offsets"])
        skip = {t: set(s) for t, s in resume_state["skip"].items()}
        starts = {tp: off for tp, off in offsets.items() if tp[0] in fenced}
        keys, ends = published_keys(bootstrap, starts)
        for t, ks in keys.items():
            skip.setdefault(t, set()).update(ks)
        for tp, end in ends.items():  # partitions added since: start from their current end
            offsets[tp] = max(offsets.get(tp, end), end)
        if keys:
            log.warning(
                "kafka output: a replay follows a crash; %d record(s) published after the last "
                "completed epoch will not be published again",
                sum(len(k) for k in keys.values()),
            )
        return _FencedPartition(self.sink, self.topics, offsets, skip, self.flush_on_snapshot)


def _read_starts(path: Path | None) -> dict[tuple[str, int], int] | None:
    """The topic ends the first start of this recovery directory recorded, if any."""
    if path is None or not path.exists():
        return None
    rows = json.loads(path.read_text())
    return {(str(t), int(p)): int(off) for t, p, off in rows}


def _write_starts(path: Path | None, ends: Mapping[tuple[str, int], int]) -> None:
    # Written whole or not at all (rename), and on disk before the first record is produced.
    if path is None:
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as fh:
        json.dump([[t, p, off] for (t, p), off in sorted(ends.items())], fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
