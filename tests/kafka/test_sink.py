"""KafkaSink against the real broker: keys, partitions, and loud delivery failures; the JSON
encoding of result rows; the pipeline's results and metrics on their topics."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import bytewax.operators as op
import numpy as np
import orjson
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSource, run_main
from hypothesis import given, settings
from hypothesis import strategies as st

from eddy.schemas.results import Results
from eddy.sinks.kafka import (
    KafkaDeliveryError,
    KafkaRecords,
    KafkaSink,
    encode_json_rows,
    ensure_topics,
    table_records,
)
from eddy.sinks.kafka_fenced import FencedKafkaResultsSink
from eddy.sources.kafka import list_partitions
from tests.fixtures_kafka import KafkaBroker
from tests.kafka.helpers import consume_all, error_chain, json_rows_reference, run_sink


@pytest.mark.kafka
def test_every_keyed_record_arrives_and_a_key_keeps_its_partition(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=3)
    rng = np.random.default_rng(7)
    items = []
    expected: dict[bytes, list[bytes]] = defaultdict(list)
    for b in range(20):
        ids = rng.integers(0, 60, 100)
        cols = {"decision_id": np.array([f"d{i}" for i in ids]), "batch": np.full(100, b)}
        rec = table_records("decisions", cols, {"decisions": topic})
        assert rec is not None
        items.append(rec)
        for k, v in zip(rec.keys, rec.values, strict=True):
            expected[k].append(v)

    run_sink(KafkaSink(kafka_broker.bootstrap, linger_ms=1), items)

    got = consume_all(kafka_broker.bootstrap, topic, 3, expected=2000)
    assert len(got) == 2000
    by_key: dict[bytes, list[tuple[int, int, bytes]]] = defaultdict(list)
    for part, offset, key, value in got:
        assert key is not None and value is not None
        by_key[key].append((part, offset, value))
    assert set(by_key) == set(expected)
    for key, recs in by_key.items():
        assert len({p for p, _, _ in recs}) == 1, f"key {key!r} spread over partitions"
        in_order = [v for _, _, v in sorted(recs)]
        assert in_order == expected[key]  # per-key order is preserved
    assert len({recs[0][0] for recs in by_key.values()}) == 3  # all partitions used


@pytest.mark.kafka
def test_record_larger_than_the_topic_allows_fails_the_dataflow(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(config={"max.message.bytes": "2048"})
    items = [
        KafkaRecords(topic, [b"small"], [b"{}"]),
        KafkaRecords(topic, [b"big"], [b"x" * 20_000]),
    ]
    sink = KafkaSink(kafka_broker.bootstrap, compression="none")
    with pytest.raises(Exception) as exc:
        run_sink(sink, items)
    chain = error_chain(exc.value)
    assert "not delivered" in chain
    assert "key b'big'" in chain
    assert "too large" in chain.lower()


@pytest.mark.kafka
def test_delivery_failure_is_raised_by_the_next_write_or_close(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(config={"max.message.bytes": "2048"})
    part = KafkaSink(kafka_broker.bootstrap, compression="none").build("s", 0, 1)
    part.write_batch([KafkaRecords(topic, [b"big"], [b"x" * 20_000])])
    with pytest.raises(KafkaDeliveryError, match="1 record"):
        part.flush(30)  # waits for the broker's answer
    with pytest.raises(KafkaDeliveryError):
        part.write_batch([KafkaRecords(topic, [b"ok"], [b"{}"])])
    with pytest.raises(KafkaDeliveryError):
        part.close()


@pytest.mark.kafka
def test_missing_topic_fails_at_once_with_its_name(kafka_broker: KafkaBroker) -> None:
    part = KafkaSink(kafka_broker.bootstrap).build("s", 0, 1)
    with pytest.raises(KafkaDeliveryError, match=r"topic 'eddy\.no-such-topic' is not available"):
        part.write_batch([KafkaRecords("eddy.no-such-topic", [b"k"], [b"{}"])])


@pytest.mark.kafka
def test_record_over_the_client_limit_raises_from_write_batch(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic()
    part = KafkaSink(kafka_broker.bootstrap, producer_config={"message.max.bytes": 10_000}).build(
        "s", 0, 1
    )
    with pytest.raises(KafkaDeliveryError, match="20000 bytes"):
        part.write_batch([KafkaRecords(topic, [b"k"], [b"x" * 20_000])])


@pytest.mark.kafka
def test_small_in_flight_bound_still_delivers_everything(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic()
    part = KafkaSink(kafka_broker.bootstrap, max_in_flight=50).build("s", 0, 1)
    values = [b"%d" % i for i in range(3000)]
    part.write_batch([KafkaRecords(topic, [b"k"] * 3000, values)])
    part.close()
    assert part.delivered == 3000 and part.failed == 0
    got = consume_all(kafka_broker.bootstrap, topic, 1, expected=3000)
    assert [v for _, _, _, v in got] == values


@pytest.mark.kafka
def test_ensure_topics_creates_missing_and_keeps_existing(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    existing = make_topic(partitions=2)
    ensure_topics(kafka_broker.bootstrap, {existing: 5, "eddy.ensure-test": 3})
    assert list_partitions(kafka_broker.bootstrap, existing) == [0, 1]
    assert list_partitions(kafka_broker.bootstrap, "eddy.ensure-test") == [0, 1, 2]


@pytest.mark.kafka
def test_results_sink_publishes_output_tables_keyed_by_primary_key(
    kafka_broker: KafkaBroker,
) -> None:
    topics = {"decisions": "res.decisions", "dead_letters": "res.dead_letters"}
    items = []
    for b in range(3):
        res = Results()
        ids = np.array([f"req-{b}-{i}" for i in range(10)], dtype=object)
        res.add(
            "decisions", {"decision_id": ids, "arm": np.arange(10), "propensity": np.full(10, 0.2)}
        )
        res.add("rewards", {"decision_id": ids, "reward": np.ones(10)})  # not published
        res.add(
            "dead_letters",
            {"dead_letter_id": [f"dl-{b}"], "raw": [b"\xffbad"], "reason": ["not valid UTF-8"]},
        )
        items.append(res)
    flow = Dataflow("kafka_results_test")
    sink = FencedKafkaResultsSink(kafka_broker.bootstrap, topics=topics, create_partitions=2)
    stream = op.key_on("to_kafka", op.input("in", flow, TestingSource(items)), lambda _: "k")
    op.output("out", stream, sink)
    run_main(flow)

    decisions = consume_all(kafka_broker.bootstrap, "res.decisions", 2, expected=30)
    assert sorted(k or b"" for _, _, k, _ in decisions) == sorted(
        f"req-{b}-{i}".encode() for b in range(3) for i in range(10)
    )
    for _, _, key, value in decisions:
        assert key is not None and value is not None
        assert orjson.loads(value)["decision_id"] == key.decode()
    dead = consume_all(kafka_broker.bootstrap, "res.dead_letters", 2, expected=3)
    assert (
        sorted(orjson.loads(v or b"null")["raw"] for _, _, _, v in dead) == ["base64:/2JhZA=="] * 3
    )
    assert list_partitions(kafka_broker.bootstrap, "res.decisions") == [0, 1]


def test_encode_json_rows_handles_numpy_nan_bytes_and_lists() -> None:
    rows = encode_json_rows(
        {
            "id": np.array(["a", "b"], dtype=object),
            "n": np.array([1, 2], dtype=np.int64),
            "x": np.array([np.nan, 0.25]),
            "ok": np.array([True, False]),
            "raw": [b"text", b"\xff\x00"],
            "vec": np.array([[1.0, 2.0], [3.0, 4.0]]),
        }
    )
    assert [orjson.loads(r) for r in rows] == [
        {"id": "a", "n": 1, "x": None, "ok": True, "raw": "text", "vec": [1.0, 2.0]},
        {"id": "b", "n": 2, "x": 0.25, "ok": False, "raw": "base64:/wA=", "vec": [3.0, 4.0]},
    ]


def test_column_and_row_json_encodings_give_the_same_bytes() -> None:
    rng = np.random.default_rng(3)
    n = 600
    floats = rng.normal(size=n) * 10.0 ** rng.integers(-300, 300, n)
    floats[::17] = np.nan
    floats[::23] = np.inf
    floats[::29] = -np.inf
    text = np.array(
        ["", 'q"uote', "new\nline", "tab\t", "\x00", "é€😀", "back\\slash"], dtype=object
    )
    cols = {
        "id": np.array([f"id-{i}" for i in range(n)], dtype=object),
        "text": text[rng.integers(0, len(text), n)],
        "unicode": np.array(["ü"] * n),
        "i64": rng.integers(-(2**62), 2**62, n),
        "u64": rng.integers(0, 2**63, n).astype(np.uint64) * 2,
        "f64": floats,
        "f32": rng.random(n).astype(np.float32),
        "flag": rng.random(n) < 0.5,
        "vec": rng.random((n, 3)),
        "ctx32": rng.random((n, 5)).astype(np.float32)[:, ::2],  # not contiguous
        "raw": [b"text", b"\xff"] * (n // 2),
        "maybe": [None, 1.5, "s"] * (n // 3),
        'odd "%s" key': np.arange(n),
    }
    fast = encode_json_rows(cols)
    assert fast == json_rows_reference(cols)
    row = orjson.loads(fast[1])
    assert row['odd "%s" key'] == 1 and len(row["ctx32"]) == 3
    # float32 as the shortest digits that read back as the same float32
    assert [np.float32(x) for x in row["ctx32"]] == list(cols["ctx32"][1])
    assert all(len(str(x)) <= 12 for x in row["ctx32"])


_JSON_COLUMNS = st.sampled_from(
    [
        lambda r, n: r.integers(-(2**40), 2**40, n),
        lambda r, n: r.integers(0, 5, n).astype(np.int8),
        lambda r, n: np.where(r.random(n) < 0.2, np.nan, r.normal(size=n) * 1e5),
        lambda r, n: r.normal(size=n).astype(np.float32),
        lambda r, n: r.normal(size=n).astype(np.float16),
        lambda r, n: r.random(n) < 0.5,
        lambda r, n: r.random((n, 3)).astype(np.float32),
        lambda r, n: r.random((n, 0)),
        lambda r, n: np.array([f"p{i % 3}" for i in range(n)], dtype=object),
        lambda r, n: np.array(["a", 'b"', 'q",', "c\\", "", ",", '","'])[r.integers(0, 7, n)],
        lambda r, n: ([b"\xff\x00", None, 7, "x"] * n)[:n],
    ]
)


@given(
    n=st.integers(1, 40),
    makers=st.lists(_JSON_COLUMNS, min_size=1, max_size=6),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=200, deadline=None)
def test_column_encoding_matches_the_row_reference(
    n: int, makers: list[Callable[..., Any]], seed: int
) -> None:
    rng = np.random.default_rng(seed)
    cols = {f"c{i}": make(rng, n) for i, make in enumerate(makers)}
    fast = encode_json_rows(cols)
    assert fast == json_rows_reference(cols)
    assert [list(orjson.loads(x)) for x in fast] == [list(cols)] * n


def test_encode_json_rows_rejects_ragged_columns() -> None:
    with pytest.raises(ValueError, match="column 'b': expected 2 values"):
        encode_json_rows({"a": [1, 2], "b": [1]})


def test_table_records_use_the_output_topic_and_primary_key() -> None:
    rec = table_records(
        "metrics",
        {
            "run_id": ["r1", "r1"],
            "ts": np.array([10, 11]),
            "step": ["decide", "decide"],
            "name": ["lat", "lat"],
            "value": np.array([1.5, 2.5]),
        },
    )
    assert rec is not None
    assert rec.topic == "eddy.metrics"
    assert list(rec.keys) == [b"r1|10|decide|lat", b"r1|11|decide|lat"]
    assert orjson.loads(rec.values[1])["value"] == 2.5
    assert table_records("rewards", {"decision_id": ["d"]}) is None  # not published
    with pytest.raises(ValueError, match=r"primary-key column\(s\) \['anomaly_id'\]"):
        table_records("anomalies", {"score": [0.5]})


def test_records_validate_their_shape() -> None:
    with pytest.raises(ValueError, match="2 keys and 1 values"):
        KafkaRecords("t", [b"a", b"b"], [b"x"])
    with pytest.raises(ValueError, match="topic"):
        KafkaRecords("", [], [])
