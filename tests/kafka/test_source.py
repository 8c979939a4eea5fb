"""KafkaSource against the real broker, in real Bytewax dataflows."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable

import bytewax.operators as op
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from eddy.dataflows.commands.run import reference_spec_path
from eddy.schemas.decode import decode_lines
from eddy.schemas.spec_load import load_spec
from eddy.sources.base import RawBatch
from eddy.sources.kafka import KafkaSource, list_partitions
from tests.fixtures_kafka import KafkaBroker
from tests.kafka.helpers import run_source

pytestmark = pytest.mark.kafka

REQUESTS, OUTCOMES = "requests", "outcomes"


def request_line(i: int) -> bytes:
    return orjson.dumps(
        {
            "id": f"r{i}",
            "ts": 1_700_000_000_000 + i,
            "placement": "top",
            "device": "mobile",
            "geo": "FR",
            "floor_price": 0.5,
        }
    )


def test_reads_every_record_with_offsets_in_order(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=1)
    lines = [request_line(i) for i in range(500)]
    kafka_broker.produce(topic, lines)

    src = KafkaSource(
        kafka_broker.bootstrap, topic, stream=REQUESTS, batch_size=64, stop_at_end=True
    )
    batches = run_source(src)

    assert all(1 <= len(b) <= 64 for b in batches)
    assert {(b.stream, b.source, b.partition) for b in batches} == {
        (REQUESTS, f"kafka:{topic}/0", 0)
    }
    positions = [p for b in batches for p in b.positions]
    assert positions == list(range(500))
    assert [line for b in batches for line in b.lines] == lines
    assert all(b.ingest_ns > 1_600_000_000 * 10**9 for b in batches)
    # lag: what the partition still held behind each batch (from the fetched end offset)
    assert [b.lag for b in batches] == [500 - (b.positions[-1] + 1) for b in batches]
    assert {b.lag_unit for b in batches} == {"records"}


def test_bad_records_reach_decode_as_lines_and_become_dead_letters(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic()
    values: list[bytes | None] = [
        request_line(0),
        None,
        b"not json",
        b"x" * 70_000,
        request_line(4),
    ]
    kafka_broker.produce(topic, values)

    batches = run_source(
        KafkaSource(kafka_broker.bootstrap, topic, stream=REQUESTS, stop_at_end=True)
    )

    positions = [p for b in batches for p in b.positions]
    lines = [line for b in batches for line in b.lines]
    assert positions == [0, 1, 2, 3, 4]
    assert lines[1] == b""  # the tombstone is delivered, not dropped
    requests = load_spec(reference_spec_path()).stream(REQUESTS)
    good, dead = decode_lines(requests, lines, positions, f"kafka:{topic}/0")
    assert list(good.ids) == ["r0", "r4"]
    assert [(d.position, d.source) for d in dead] == [(p, f"kafka:{topic}/0") for p in (1, 2, 3)]
    assert "exceeds the limit" in dead[2].reason


def test_one_bytewax_partition_per_kafka_partition(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=3)
    sizes = {0: 40, 1: 0, 2: 75}
    for part, n in sizes.items():
        kafka_broker.produce(topic, [b"%d:%d" % (part, i) for i in range(n)], partition=part)
    assert list_partitions(kafka_broker.bootstrap, topic) == [0, 1, 2]

    batches = run_source(
        KafkaSource(kafka_broker.bootstrap, topic, stream=OUTCOMES, batch_size=16, stop_at_end=True)
    )

    by_part: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
    for b in batches:
        assert b.source == f"kafka:{topic}/{b.partition}"
        assert b.stream == OUTCOMES
        by_part[b.partition].extend(zip(b.positions, b.lines, strict=True))
    for part, n in sizes.items():
        assert by_part.get(part, []) == [(i, b"%d:%d" % (part, i)) for i in range(n)]


def test_partitions_are_spread_over_workers_and_read_once(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=4)
    for part in range(4):
        kafka_broker.produce(topic, [b"%d:%d" % (part, i) for i in range(30)], partition=part)

    batches = run_source(
        KafkaSource(kafka_broker.bootstrap, topic, batch_size=7, stop_at_end=True), workers=2
    )

    got = sorted(
        (b.partition, p, line)
        for b in batches
        for p, line in zip(b.positions, b.lines, strict=True)
    )
    assert got == [(part, i, b"%d:%d" % (part, i)) for part in range(4) for i in range(30)]


def test_stop_event_ends_a_following_source_and_partition_base_shifts_indexes(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=2)
    for part in (0, 1):
        kafka_broker.produce(topic, [b"x"] * 25, partition=part)
    stop = threading.Event()
    seen = [0]

    def count(b: RawBatch) -> RawBatch:
        seen[0] += len(b)
        if seen[0] == 50:
            stop.set()  # a following source only ends when told to
        return b

    flow = Dataflow("kafka_stop_test")
    src = KafkaSource(kafka_broker.bootstrap, topic, stop=stop, partition_base=10)
    out: list[RawBatch] = []
    op.output("out", op.map("count", op.input("in", flow, src), count), TestingSink(out))
    run_main(flow)

    assert {(b.partition, b.source) for b in out} == {
        (10, f"kafka:{topic}/0"),
        (11, f"kafka:{topic}/1"),
    }
    assert sum(len(b) for b in out) == 50


def test_start_at_end_reads_nothing_already_in_the_topic(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic()
    kafka_broker.produce(topic, [b"old"] * 10)
    src = KafkaSource(kafka_broker.bootstrap, topic, start="end", stop_at_end=True)
    assert run_source(src) == []


def test_missing_topic_fails_with_its_name(kafka_broker: KafkaBroker) -> None:
    with pytest.raises(RuntimeError, match="no-such-topic"):
        list_partitions(kafka_broker.bootstrap, "no-such-topic", timeout_s=5)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"batch_size": 0}, "batch_size"),
        ({"start": "middle"}, "start"),
        ({"poll_timeout_s": -1}, "poll"),
    ],
)
def test_invalid_parameters_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        KafkaSource("127.0.0.1:9092", "t", **kwargs)  # type: ignore[arg-type]
