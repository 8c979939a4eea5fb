"""Kafka as a Bytewax sink: an idempotent producer per worker, failures never ignored.

Items are :class:`KafkaRecords` micro-batches (a topic plus parallel lists of keys and values).
Each worker owns one ``confluent_kafka.Producer`` with ``enable.idempotence=true`` and
``acks=all``; the message key is the record id (decision id, anomaly id, ...), and keys are
partitioned with ``murmur2_random`` (the Java client's partitioner), so a key always lands in the
same partition, whichever client wrote it.

Delivery is asynchronous: ``write_batch`` hands every record to the producer and serves delivery
reports with ``poll(0)``; when the local queue is full it waits for deliveries (``poll``) and
retries, so in-flight messages are bounded by ``max_in_flight``. A failed delivery (reported by
the delivery callback or the error callback, e.g. a record larger than the topic allows) is
remembered and raised as :class:`KafkaDeliveryError` from the next ``write_batch`` or from
``close``, which flushes everything first: the step fails loudly, nothing is dropped quietly.

:func:`encode_json_rows` turns a columnar batch (numpy arrays or lists) into JSON values,
:func:`table_records` / :func:`results_records` map result tables to their output topics (key =
primary key), and :func:`ensure_topics` creates the output topics (the test broker does not
auto-create). The pipeline publishes its results through
:class:`sinks.kafka_fenced.FencedKafkaResultsSink` (flushed at every epoch end; a replay after a
crash does not publish a record twice), and the rows of its ``metrics`` table, which the DuckDB
sink computes, through a :class:`KafkaTablePublisher`.
"""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from bytewax.outputs import (
    DynamicSink,
    StatelessSinkPartition,
)
from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from eddy.schemas.results import Results
from eddy.schemas.tables import TABLES
from eddy.schemas.topics import OUTPUT_TOPICS

__all__ = [
    "KafkaDeliveryError",
    "KafkaRecords",
    "KafkaSink",
    "KafkaSinkPartition",
    "KafkaTablePublisher",
    "check_create_partitions",
    "encode_json_rows",
    "ensure_topics",
    "results_records",
    "table_records",
]

log = logging.getLogger(__name__)

_MAX_EXAMPLES = 5


class KafkaDeliveryError(RuntimeError):
    """Records could not be delivered to Kafka; the message names how many and why."""


@dataclass(frozen=True)
class KafkaRecords:
    """Records for one topic: ``keys[i]`` (the record id) goes with ``values[i]``."""

    topic: str
    keys: Sequence[bytes]
    values: Sequence[bytes]

    def __post_init__(self) -> None:
        if not isinstance(self.topic, str) or not self.topic:
            raise ValueError(f"KafkaRecords topic: expected a non-empty str, got {self.topic!r}")
        if len(self.keys) != len(self.values):
            raise ValueError(
                f"KafkaRecords keys/values: expected equal lengths, "
                f"got {len(self.keys)} keys and {len(self.values)} values"
            )

    def __len__(self) -> int:
        return len(self.values)


def _default(obj: Any) -> Any:
    # orjson calls this for types it does not know: raw bytes (dead letters) and numpy scalars.
    if isinstance(obj, bytes | bytearray | memoryview):
        raw = bytes(obj)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def _as_list(col: np.ndarray | Sequence[Any]) -> list[Any]:
    return col.tolist() if isinstance(col, np.ndarray) else list(col)


_OPT = orjson.OPT_SERIALIZE_NUMPY
_NUMERIC_KINDS = frozenset("biuf")


def _short_floats(col: np.ndarray) -> np.ndarray:
    # float16/float32 are written with the shortest digits that read back as the same float32
    # (0.1, not 0.10000000149011612): what was stored, in fewer bytes and less formatting.
    return np.ascontiguousarray(col, dtype=np.float32)


def _row_values(col: np.ndarray | Sequence[Any]) -> list[Any]:
    """The values of one column, one per row, as the row-by-row encoder takes them."""
    if isinstance(col, np.ndarray) and col.dtype.kind == "f" and col.dtype.itemsize < 8:
        return list(_short_floats(col))  # numpy values: orjson writes them as float32
    return _as_list(col)


def _column_json(col: np.ndarray | Sequence[Any], n: int) -> tuple[list[bytes], bytes]:
    """One column as per-row JSON fragments and how a row wraps them (a ``%b`` pattern).

    Numbers and 2-D numeric arrays are written by one orjson call for the whole column and cut
    at the commas (numbers hold none); strings too when the JSON has no escape at all (so no
    quote inside a value, and ``","`` only ever separates values); anything else value by
    value."""
    if isinstance(col, np.ndarray) and col.dtype.kind in _NUMERIC_KINDS and col.ndim in (1, 2):
        arr = _short_floats(col) if col.dtype.kind == "f" and col.dtype.itemsize < 8 else col
        blob = orjson.dumps(np.ascontiguousarray(arr), option=_OPT)
        parts = blob[1:-1].split(b",") if arr.ndim == 1 else blob[2:-2].split(b"],[")
        if len(parts) == n:
            return parts, b"[%b]" if arr.ndim == 2 else b"%b"
    values = _as_list(col)
    if set(map(type, values)) == {str}:
        blob = orjson.dumps(values)
        if b"\\" not in blob:  # no escapes, so no quote inside a value
            parts = blob[2:-2].split(b'","')
            if len(parts) == n:
                return parts, b'"%b"'
    dumps = orjson.dumps
    return [dumps(v, default=_default, option=_OPT) for v in _row_values(col)], b"%b"


def _encode_by_column(columns: Mapping[str, np.ndarray | Sequence[Any]], n: int) -> list[bytes]:
    fragments = []
    template = []
    for name, col in columns.items():
        parts, wrap = _column_json(col, n)
        fragments.append(parts)
        key = orjson.dumps(name).replace(b"%", b"%%")
        template.append(key + b":" + wrap)
    row = b"{" + b",".join(template) + b"}"
    return [row % values for values in zip(*fragments, strict=True)]


def encode_json_rows(columns: Mapping[str, np.ndarray | Sequence[Any]]) -> list[bytes]:
    """One JSON object per row of a columnar batch (all columns of equal length).

    numpy values become JSON numbers/strings/booleans/arrays; NaN and infinities become
    ``null`` (JSON has neither); float16/float32 values are written with the shortest digits
    that read back as the same float32; bytes become a string (UTF-8 text as is, anything else
    as ``"base64:<base64>"``). Each column is encoded at once and the rows are assembled from
    the pieces (numbers, 2-D numeric arrays and plain strings in one orjson call per column,
    not one per row); the tests hold it to a row-by-row reference, byte for byte.
    """
    names = list(columns)
    if not names:
        return []
    n = len(columns[names[0]])
    for name in names:
        if len(columns[name]) != n:
            raise ValueError(
                f"encode_json_rows column {name!r}: expected {n} values like column "
                f"{names[0]!r}, got {len(columns[name])}"
            )
    if n == 0:
        return []
    return _encode_by_column(columns, n)


def table_records(
    table: str,
    columns: Mapping[str, np.ndarray | Sequence[Any]],
    topics: Mapping[str, str] = OUTPUT_TOPICS,
) -> KafkaRecords | None:
    """A table batch as the records of its output topic, or ``None`` if it is not published.

    The topic comes from ``topics`` (default ``schemas.topics.OUTPUT_TOPICS``); the key is the
    table's primary key (``schemas.tables``), several key columns joined with ``|``, so a
    replayed row is the same message key again (compacted topics keep one copy).
    """
    topic = topics.get(table)
    if topic is None:
        return None
    if table not in TABLES:
        raise ValueError(f"table_records table: expected one of {sorted(TABLES)}, got {table!r}")
    pk = TABLES[table].primary_key
    missing = [k for k in pk if k not in columns]
    if missing:
        raise ValueError(f"table_records {table!r}: primary-key column(s) {missing} missing")
    parts = [_as_list(columns[k]) for k in pk]
    keys = ["|".join(map(str, row)).encode() for row in zip(*parts, strict=True)]
    return KafkaRecords(topic, keys, encode_json_rows(columns))


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    *,
    config: Mapping[str, str] | None = None,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> None:
    """Create each ``topic -> partitions`` that does not exist yet (existing ones are kept)
    and wait until every partition of every topic has a leader."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [
        NewTopic(
            t, num_partitions=p, replication_factor=replication_factor, config=dict(config or {})
        )
        for t, p in topics.items()
    ]
    if not new:
        return
    for topic, fut in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            fut.result(timeout=timeout_s)
        except KafkaException as e:
            if e.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(
                    f"Kafka at {bootstrap}: cannot create topic {topic!r}: {e}"
                ) from e
    # Creation returns before every partition has a leader; wait until they all do, so the
    # topics are usable as soon as this returns.
    deadline = time.monotonic() + timeout_s
    pending = set(topics)
    while pending:
        md = admin.list_topics(timeout=max(1.0, deadline - time.monotonic()))
        for topic in list(pending):
            tmd = md.topics.get(topic)
            if (
                tmd is not None
                and tmd.error is None
                and tmd.partitions
                and all(p.leader >= 0 for p in tmd.partitions.values())
            ):
                pending.discard(topic)
        if pending and time.monotonic() >= deadline:
            raise RuntimeError(
                f"Kafka at {bootstrap}: topic(s) {sorted(pending)} have no partition leaders "
                f"{timeout_s:.0f}s after creation"
            )
        if pending:
            time.sleep(0.05)


class KafkaSinkPartition(StatelessSinkPartition[KafkaRecords]):
    """One worker's producer. Raises :class:`KafkaDeliveryError` once any delivery failed."""

    def __init__(self, config: Mapping[str, Any], *, close_timeout_s: float, check_topics: bool):
        self._bootstrap = str(config.get("bootstrap.servers"))
        self._close_timeout_s = close_timeout_s
        self._check_topics = check_topics
        self._known_topics: set[str] = set()
        self.delivered = 0
        self.failed = 0
        self._examples: list[str] = []
        self._producer = Producer({**config, "error_cb": self._on_error})
        self._counts_deliveries = not config.get("delivery.report.only.error", False)

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            return
        self.failed += 1
        if len(self._examples) < _MAX_EXAMPLES:
            key = msg.key()
            self._examples.append(f"topic {msg.topic()!r} key {key!r:.60}: {err.str()}")

    def _on_error(self, err: KafkaError) -> None:
        # Client-level errors; only fatal ones (e.g. the idempotent producer lost its
        # guarantees) mean records may be lost. Transient ones are retried by librdkafka.
        if err.fatal():
            self.failed += 1
            self._examples.append(f"fatal producer error: {err.str()}")

    def _raise_if_failed(self) -> None:
        if self.failed:
            raise KafkaDeliveryError(
                f"Kafka at {self._bootstrap}: {self.failed} record(s) not delivered"
                f"{self._delivered_note()}; first failures: " + "; ".join(self._examples)
            )

    def _delivered_note(self) -> str:
        return f" ({self.delivered} delivered)" if self._counts_deliveries else ""

    def _check_topic(self, topic: str) -> None:
        md = self._producer.list_topics(topic=topic, timeout=10.0)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            reason = tmd.error.str() if tmd is not None and tmd.error is not None else "missing"
            raise KafkaDeliveryError(
                f"Kafka at {self._bootstrap}: topic {topic!r} is not available ({reason}); "
                "create it first (sinks.kafka.ensure_topics) or enable auto-creation on the broker"
            )
        self._known_topics.add(topic)

    def write_batch(self, items: list[KafkaRecords]) -> None:
        self._raise_if_failed()
        produce = self._producer.produce
        poll = self._producer.poll
        cb = self._on_delivery
        for rec in items:
            if self._check_topics and rec.topic not in self._known_topics:
                self._check_topic(rec.topic)
            topic = rec.topic
            for key, value in zip(rec.keys, rec.values, strict=True):
                while True:
                    try:
                        produce(topic, value=value, key=key, on_delivery=cb)
                        break
                    except BufferError:
                        # Local queue full: wait for deliveries to free room (bounds in-flight).
                        poll(0.05)
                        self._raise_if_failed()
                    except KafkaException as e:
                        raise KafkaDeliveryError(
                            f"Kafka at {self._bootstrap}: cannot produce to topic {topic!r} "
                            f"(key {key!r:.60}, {len(value)} bytes): {e}"
                        ) from e
        poll(0)
        self._raise_if_failed()

    def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every produced record is delivered; raise on failure or timeout."""
        deadline = time.monotonic() + (self._close_timeout_s if timeout_s is None else timeout_s)
        remaining = self._producer.flush(max(0.0, deadline - time.monotonic()))
        self._raise_if_failed()
        if remaining:
            raise KafkaDeliveryError(
                f"Kafka at {self._bootstrap}: {remaining} record(s) still undelivered after "
                f"{self._close_timeout_s:.0f}s{self._delivered_note()}"
            )

    def close(self) -> None:
        self.flush()


class KafkaSink(DynamicSink[KafkaRecords]):
    """Writes :class:`KafkaRecords` with an idempotent producer per worker.

    ``producer_config`` entries override the defaults. ``max_in_flight`` bounds the messages
    queued locally per worker; ``linger_ms`` trades latency for batching.
    """

    def __init__(
        self,
        bootstrap: str,
        *,
        linger_ms: int = 5,
        max_in_flight: int = 100_000,
        compression: str = "lz4",
        close_timeout_s: float = 60.0,
        check_topics: bool = True,
        producer_config: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(max_in_flight, int) or max_in_flight < 1:
            raise ValueError(
                f"KafkaSink max_in_flight: expected an int >= 1, got {max_in_flight!r}"
            )
        if not linger_ms >= 0:
            raise ValueError(f"KafkaSink linger_ms: expected >= 0, got {linger_ms!r}")
        if not close_timeout_s > 0:
            raise ValueError(f"KafkaSink close_timeout_s: expected > 0, got {close_timeout_s!r}")
        self.bootstrap = bootstrap
        self.linger_ms = linger_ms
        self.max_in_flight = max_in_flight
        self.compression = compression
        self.close_timeout_s = close_timeout_s
        self.check_topics = check_topics
        self.producer_config = dict(producer_config or {})

    def config(self) -> dict[str, Any]:
        """The producer configuration (defaults + ``producer_config``)."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "partitioner": "murmur2_random",
            "linger.ms": self.linger_ms,
            "compression.type": self.compression,
            "queue.buffering.max.messages": self.max_in_flight,
        }
        config.update(self.producer_config)
        return config

    def build(self, step_id: str, worker_index: int, worker_count: int) -> KafkaSinkPartition:
        return KafkaSinkPartition(
            self.config(), close_timeout_s=self.close_timeout_s, check_topics=self.check_topics
        )


def check_create_partitions(owner: str, create_partitions: int | None) -> None:
    """``create_partitions`` of a results sink: ``None`` (topics must exist) or >= 1."""
    if create_partitions is not None and create_partitions < 1:
        raise ValueError(
            f"{owner} create_partitions: expected None or >= 1, got {create_partitions!r}"
        )


def results_records(
    results: Results, topics: Mapping[str, str] = OUTPUT_TOPICS
) -> list[KafkaRecords]:
    """The published tables of a :class:`~schemas.results.Results` as :class:`KafkaRecords`."""
    out = []
    for table, columns in results.tables.items():
        rec = table_records(table, columns, topics)
        if rec is not None and len(rec):
            out.append(rec)
    return out


class KafkaTablePublisher:
    """Publishes the batches of one table that are made outside the dataflow's streams.

    The run's ``metrics`` rows are computed by the DuckDB sink once per wall-clock second (its
    rows written and the end-to-end latency are known only there); ``DuckDBSink(on_metrics=)``
    hands each batch to this callable once it is in the file, so ``<prefix>.metrics`` gets the
    same rows as the ``metrics`` table, keyed like every published table by its primary key.

    Each call is from one thread at a time, encodes the batch (:func:`table_records`), produces
    it with an idempotent producer (created at the first call, which also creates the topic when
    ``create_partitions`` is set) and waits until it is delivered: a failure raises
    :class:`KafkaDeliveryError` in the caller, and the last batch is in Kafka when the last call
    returns (no close to forget). ``sink_options`` are passed to :class:`KafkaSink`.
    """

    def __init__(
        self,
        bootstrap: str,
        table: str,
        *,
        topics: Mapping[str, str] = OUTPUT_TOPICS,
        create_partitions: int | None = None,
        **sink_options: Any,
    ) -> None:
        check_create_partitions("KafkaTablePublisher", create_partitions)
        if table not in topics:
            raise ValueError(
                f"KafkaTablePublisher table: expected one of {sorted(topics)}, got {table!r}"
            )
        self.sink = KafkaSink(bootstrap, **sink_options)
        self.table = table
        self.topic = topics[table]
        self.create_partitions = create_partitions
        self._part: KafkaSinkPartition | None = None

    def __call__(self, columns: Mapping[str, np.ndarray | Sequence[Any]]) -> None:
        rec = table_records(self.table, columns, {self.table: self.topic})
        if rec is None or not len(rec):
            return
        if self._part is None:
            if self.create_partitions is not None:
                ensure_topics(self.sink.bootstrap, {self.topic: self.create_partitions})
            self._part = self.sink.build(self.table, 0, 1)
        self._part.write_batch([rec])
        self._part.flush()
