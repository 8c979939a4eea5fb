"""A Kafka topic as a Bytewax source: one Bytewax partition per Kafka partition.

Each partition reads with its own ``confluent_kafka.Consumer`` (manual ``assign``, no consumer
group, no commits): the position lives in Bytewax's recovery snapshot, which is the offset of the
next record to read, so a restart continues exactly after the last emitted record.

Every ``next_batch`` call returns at most one :class:`~sources.base.RawBatch` of up to
``batch_size`` records (``consume(batch_size, poll_timeout_s)``), with the record offsets as
positions and the raw value bytes as lines. Nothing is silently dropped:

* a tombstone (``null`` value) becomes an empty line, so decoding dead-letters it;
* a record the client reports as failed (it has an offset but no usable value) becomes a dead
  letter at its offset whose reason is the client's error (``sources.base.dead_line``), and
  reading continues after it;
* oversize values are passed on as they are; decoding enforces the size limit;
* transient client errors (broker down, rebalancing metadata) carry no record: they are
  logged and counted in ``errors`` while librdkafka retries; fatal client errors raise.

With ``stop_at_end=True`` a partition ends once it reaches the high watermark it saw when it was
built (bounded runs and tests); otherwise it follows the topic forever.

Spec strings ``kafka:HOST:PORT/TOPIC`` (several bootstrap servers separated by commas) are
parsed by :func:`parse_kafka_spec`.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient

from eddy.sources.base import RawBatch, dead_line

__all__ = [
    "KafkaSource",
    "KafkaSourcePartition",
    "list_partitions",
    "parse_kafka_spec",
    "partitions_with_data",
]

log = logging.getLogger(__name__)

_STARTUP_TIMEOUT_S = 30.0
_TRANSIENT = frozenset(
    {
        KafkaError._UNKNOWN_PARTITION,
        KafkaError._TIMED_OUT,
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)
_TOPIC_RE = re.compile(r"[A-Za-z0-9._-]{1,249}")
_HOST_RE = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)")
_EXAMPLE = "kafka:127.0.0.1:9092/eddy.requests"


def parse_kafka_spec(spec: str) -> tuple[str, str]:
    """Split ``kafka:HOST:PORT[,HOST:PORT...]/TOPIC`` into ``(bootstrap_servers, topic)``.

    Raises ``ValueError`` naming what is wrong and showing a valid example.
    """
    if not isinstance(spec, str) or not spec.startswith("kafka:"):
        raise ValueError(
            f"Kafka source/sink {spec!r}: expected 'kafka:HOST:PORT/TOPIC', e.g. {_EXAMPLE}"
        )
    rest = spec[len("kafka:") :]
    if "/" not in rest:
        raise ValueError(
            f"Kafka spec {spec!r}: missing '/TOPIC' after the bootstrap address, e.g. {_EXAMPLE}"
        )
    servers, topic = rest.split("/", 1)
    if not _TOPIC_RE.fullmatch(topic) or topic in (".", ".."):
        raise ValueError(
            f"Kafka spec {spec!r}: topic {topic!r} is not a valid Kafka topic name "
            "(1-249 characters from A-Z a-z 0-9 . _ -)"
        )
    if not servers:
        raise ValueError(f"Kafka spec {spec!r}: missing bootstrap HOST:PORT, e.g. {_EXAMPLE}")
    for server in servers.split(","):
        host, sep, port = server.rpartition(":")
        if not sep or not host or not _HOST_RE.fullmatch(host):
            raise ValueError(
                f"Kafka spec {spec!r}: bootstrap server {server!r} is not HOST:PORT, "
                f"e.g. {_EXAMPLE}"
            )
        if not port.isdigit() or not 1 <= int(port) <= 65535:
            raise ValueError(
                f"Kafka spec {spec!r}: bootstrap server {server!r} has port {port!r}, "
                "expected an integer in 1..65535"
            )
    return servers, topic


def list_partitions(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The partition ids of ``topic``; raises ``RuntimeError`` if the topic cannot be found."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    try:
        md = admin.list_topics(topic=topic, timeout=timeout_s)
    except Exception as e:
        raise RuntimeError(
            f"Kafka at {bootstrap}: cannot read metadata of topic {topic!r}: {e}"
        ) from e
    tmd = md.topics.get(topic)
    if tmd is None or tmd.error is not None or not tmd.partitions:
        reason = tmd.error.str() if tmd is not None and tmd.error is not None else "no partitions"
        raise RuntimeError(f"Kafka at {bootstrap}: topic {topic!r} is not available: {reason}")
    return sorted(tmd.partitions)


class KafkaSourcePartition(StatefulSourcePartition[RawBatch, int]):
    """Reads one Kafka partition; the snapshot is the offset of the next record to read."""

    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        partition: int,
        next_offset: int | None,
        *,
        stream: str,
        batch_size: int,
        poll_timeout_s: float,
        idle_wait_s: float,
        stop_at_end: bool,
        linger_s: float = 0.0,
        from_end: bool,
        stop: threading.Event | None = None,
        partition_base: int = 0,
    ) -> None:
        self._topic = topic
        self._partition = partition
        self._stop = stop
        self._index = partition_base + partition
        self._stream = stream
        self._batch_size = batch_size
        self._poll_timeout_s = poll_timeout_s
        self._idle_wait = timedelta(seconds=idle_wait_s)
        self._linger = timedelta(seconds=linger_s)
        self._awake: datetime | None = None
        self._source = f"kafka:{topic}/{partition}"
        self._consumer = Consumer(dict(config))
        self.errors = 0
        tp = TopicPartition(topic, partition)
        low, high = self._watermarks(tp, _STARTUP_TIMEOUT_S)
        if next_offset is None:
            next_offset = high if from_end else low
        elif next_offset < low:
            log.warning(
                "%s: resume offset %d is below the earliest retained offset %d; "
                "records %d..%d were deleted by retention before they were read",
                self._source,
                next_offset,
                low,
                next_offset,
                low - 1,
            )
        elif next_offset > high:
            log.warning(
                "%s: resume offset %d is beyond the end of the partition (%d): was the topic "
                "recreated? The client will reset to the earliest offset",
                self._source,
                next_offset,
                high,
            )
        self._next = next_offset
        self._end = high if stop_at_end else None
        self._consumer.assign([TopicPartition(topic, partition, next_offset)])

    def _watermarks(self, tp: TopicPartition, timeout_s: float) -> tuple[int, int]:
        # A partition just created (or whose leader is moving) is briefly unknown to the
        # client: retry transient errors for a while, then fail naming the partition.
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                low, high = self._consumer.get_watermark_offsets(tp, timeout=5.0, cached=False)
                return int(low), int(high)
            except KafkaException as e:
                err = e.args[0]
                transient = err.retriable() or err.code() in _TRANSIENT
                if not transient or time.monotonic() >= deadline:
                    raise RuntimeError(
                        f"{self._source}: cannot read the partition's offsets: {err}"
                    ) from e
                time.sleep(0.2)

    def next_batch(self) -> list[RawBatch]:
        if self._end is not None and self._next >= self._end:
            raise StopIteration
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        msgs = self._consumer.consume(self._batch_size, self._poll_timeout_s)
        ingest_ns = time.time_ns()
        positions: list[int] = []
        lines: list[bytes] = []
        for msg in msgs:
            err = msg.error()
            offset = msg.offset()
            if err is not None:
                if err.fatal():
                    raise RuntimeError(f"{self._source}: fatal Kafka consumer error: {err}")
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if offset is None or offset < self._next or msg.partition() != self._partition:
                    self.errors += 1
                    log.warning("%s: Kafka consumer error (retrying): %s", self._source, err)
                    continue
                value = dead_line(f"Kafka could not deliver the record at this offset: {err.str()}")
                # A failed record is delivered once; continue reading after it.
                self._consumer.seek(TopicPartition(self._topic, self._partition, offset + 1))
            else:
                raw = msg.value()
                value = b"" if raw is None else raw
            assert offset is not None
            if self._end is not None and offset >= self._end:
                break
            positions.append(offset)
            lines.append(value)
            self._next = offset + 1
        if not positions and self._end is not None:
            # Transaction markers and compaction leave offsets without records: the consumer's
            # position, not the last record, says whether the end was reached.
            (pos,) = self._consumer.position([TopicPartition(self._topic, self._partition)])
            if pos.offset >= self._end:
                self._next = max(self._next, self._end)
        if not positions:
            # Nothing queued locally: let the worker run other steps instead of spinning.
            self._awake = datetime.now(UTC) + self._idle_wait
            return []
        # A short batch means the partition is caught up: with ``linger`` it waits a moment
        # before the next poll, so the next batch is larger (per-batch costs downstream are
        # paid less often); a full batch means a backlog: poll again at once.
        full = len(positions) >= self._batch_size
        self._awake = None if full or not self._linger else datetime.now(UTC) + self._linger
        return [
            RawBatch(
                stream=self._stream,
                source=self._source,
                partition=self._index,
                positions=positions,
                lines=lines,
                ingest_ns=ingest_ns,
                lag=self._lag(),
            )
        ]

    def _lag(self) -> int:
        """Records between the next offset and the partition's end, from the end offset the
        last fetch reported (no broker round trip); -1 before the client knows it."""
        tp = TopicPartition(self._topic, self._partition)
        try:
            _, high = self._consumer.get_watermark_offsets(tp, cached=True)
        except KafkaException:
            return -1
        return max(0, int(high) - self._next) if high is not None and high >= 0 else -1

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> int:
        return self._next

    def close(self) -> None:
        self._consumer.close()


class KafkaSource(FixedPartitionedSource[RawBatch, int]):
    """All partitions of ``topic`` on ``bootstrap``, as :class:`RawBatch` micro-batches.

    ``start`` is where a partition without a snapshot begins: ``"beginning"`` (default) or
    ``"end"``. ``next_batch`` never blocks by default (``poll_timeout_s=0``: librdkafka
    prefetches in the background); a partition with nothing queued sleeps ``idle_wait_s``
    (via ``next_awake``) so the worker serves its other steps instead of spinning. With
    ``linger_s`` a partition that returned less than a full batch waits that long before its
    next poll: fewer, larger batches when caught up (downstream per-batch costs are paid less
    often) for at most ``linger_s`` more latency. A partition ends when ``stop`` (an Event) is
    set, or with ``stop_at_end`` at the end of the data present when it started.
    ``RawBatch.partition`` is ``partition_base`` + the Kafka
    partition (so two topics merged into one flow keep distinct partition indexes), while
    ``RawBatch.source`` always names the real topic and partition. ``consumer_config`` entries
    override the defaults (e.g. security settings).
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        *,
        stream: str = "events",
        batch_size: int = 2_000,
        poll_timeout_s: float = 0.0,
        idle_wait_s: float = 0.005,
        linger_s: float = 0.0,
        stop_at_end: bool = False,
        start: str = "beginning",
        stop: threading.Event | None = None,
        partition_base: int = 0,
        consumer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"KafkaSource batch_size: expected an int >= 1, got {batch_size!r}")
        if not poll_timeout_s >= 0:
            raise ValueError(f"KafkaSource poll_timeout_s: expected >= 0, got {poll_timeout_s!r}")
        if not idle_wait_s >= 0:
            raise ValueError(f"KafkaSource idle_wait_s: expected >= 0, got {idle_wait_s!r}")
        if not linger_s >= 0:
            raise ValueError(f"KafkaSource linger_s: expected >= 0, got {linger_s!r}")
        if start not in ("beginning", "end"):
            raise ValueError(f"KafkaSource start: expected 'beginning' or 'end', got {start!r}")
        self.bootstrap = bootstrap
        self.topic = topic
        self.stream = stream
        self.batch_size = batch_size
        self.poll_timeout_s = poll_timeout_s
        self.idle_wait_s = idle_wait_s
        self.linger_s = linger_s
        self.stop_at_end = stop_at_end
        self.start = start
        self.stop = stop
        self.partition_base = partition_base
        self.consumer_config = dict(consumer_config or {})

    @classmethod
    def from_spec(cls, spec: str, **kwargs: Any) -> KafkaSource:
        """``KafkaSource.from_spec("kafka:HOST:PORT/TOPIC", stream=..., ...)``."""
        bootstrap, topic = parse_kafka_spec(spec)
        return cls(bootstrap, topic, **kwargs)

    def _config(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            # Required by the client, unused: partitions are assigned, offsets live in snapshots.
            "group.id": "eddy-source",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "enable.partition.eof": False,
            "queued.max.messages.kbytes": 32_768,
            "fetch.wait.max.ms": 100,
        }
        config.update(self.consumer_config)
        return config

    def list_parts(self) -> list[str]:
        return [f"{p}-{self.topic}" for p in list_partitions(self.bootstrap, self.topic)]

    def build_part(
        self, step_id: str, for_part: str, resume_state: int | None
    ) -> KafkaSourcePartition:
        partition = int(for_part.split("-", 1)[0])
        return KafkaSourcePartition(
            self._config(),
            self.topic,
            partition,
            resume_state,
            stream=self.stream,
            batch_size=self.batch_size,
            poll_timeout_s=self.poll_timeout_s,
            idle_wait_s=self.idle_wait_s,
            linger_s=self.linger_s,
            stop_at_end=self.stop_at_end,
            from_end=self.start == "end",
            stop=self.stop,
            partition_base=self.partition_base,
        )


def partitions_with_data(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list[int]:
    """The partitions of ``topic`` that hold at least one record now (low < high watermark)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "eddy-probe"})
    try:
        out = []
        for p in list_partitions(bootstrap, topic, timeout_s):
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, p), timeout=timeout_s, cached=False
            )
            if high > low:
                out.append(p)
        return out
    finally:
        consumer.close()
