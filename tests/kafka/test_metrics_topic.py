"""The ``<prefix>.metrics`` topic carries the rows of the ``metrics`` table, the same ones."""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from eddy.dataflows.commands.run import reference_spec_path
from eddy.dataflows.run_options import RunOptions
from eddy.dataflows.runner import run_pipeline
from eddy.operators.stats import RunStats
from eddy.schemas.spec_load import load_spec
from eddy.schemas.topics import output_topics
from eddy.sinks.duckdb_sink import metrics_rows
from eddy.sinks.kafka import KafkaDeliveryError, KafkaTablePublisher
from eddy.sources.kafka import list_partitions
from tests.fixtures_kafka import KafkaBroker
from tests.kafka.helpers import consume_all
from tests.kafka.pipeline_runs import query

pytestmark = pytest.mark.kafka


def _metrics(ts: int, names: list[str]) -> dict:
    n = len(names)
    return {
        "run_id": np.full(n, "r1", dtype=object),
        "ts": np.full(n, ts, dtype=np.int64),
        "step": np.full(n, "pipeline", dtype=object),
        "name": np.array(names, dtype=object),
        "value": np.arange(n, dtype=np.float64) + 0.5,
    }


def test_publisher_creates_its_topic_and_every_call_is_delivered_when_it_returns(
    kafka_broker: KafkaBroker,
) -> None:
    topic = f"metrics-{uuid.uuid4().hex[:8]}"
    pub = KafkaTablePublisher(
        kafka_broker.bootstrap, "metrics", topics={"metrics": topic}, create_partitions=2
    )
    pub(_metrics(1_000, ["events", "decisions"]))
    pub(_metrics(2_000, ["events"]))
    pub(_metrics(3_000, []))  # nothing to publish
    assert list_partitions(kafka_broker.bootstrap, topic) == [0, 1]
    # no close, no flush: each call returned only once its rows were in Kafka
    got = consume_all(kafka_broker.bootstrap, topic, 2, expected=3, timeout_s=10)
    rows = {k: orjson.loads(v) for _, _, k, v in got if k is not None and v is not None}
    assert set(rows) == {b"r1|1000|pipeline|events", b"r1|1000|pipeline|decisions"} | {
        b"r1|2000|pipeline|events"
    }
    assert rows[b"r1|1000|pipeline|decisions"] == {
        "run_id": "r1",
        "ts": 1000,
        "step": "pipeline",
        "name": "decisions",
        "value": 1.5,
    }


def test_publisher_raises_a_failed_delivery_from_the_call(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(config={"max.message.bytes": "512"})
    pub = KafkaTablePublisher(
        kafka_broker.bootstrap, "metrics", topics={"metrics": topic}, compression="none"
    )
    with pytest.raises(KafkaDeliveryError, match=r"1 record\(s\) not delivered"):
        pub(_metrics(1_000, ["x" * 2_000]))
    with pytest.raises(ValueError, match="table: expected one of \\['decisions'\\]"):
        KafkaTablePublisher(kafka_broker.bootstrap, "metrics", topics={"decisions": topic})


def test_a_second_before_anything_was_counted_is_an_empty_batch() -> None:
    # the writer's first second can come before the first result (a restart reading back
    # its Kafka output): nothing to write, nothing to publish, no error
    rows = metrics_rows("r1", RunStats(), 1_000)
    assert {k: len(v) for k, v in rows.items()} == dict.fromkeys(_metrics(0, []), 0)
    KafkaTablePublisher("127.0.0.1:1", "metrics")(rows)  # no broker needed for nothing


def test_a_run_publishes_its_metrics_table_to_the_metrics_topic(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    spec = load_spec(reference_spec_path())
    db = tmp_path / "eddy.duckdb"
    prefix = f"m{uuid.uuid4().hex[:8]}."
    opts = RunOptions(
        spec,
        duckdb=str(db),
        events=6_000,
        speed=1.5,  # 3 s of event time (2,000 requests/s) in about 2 s of wall clock
        kafka_out=kafka_broker.bootstrap,
        topic_prefix=prefix,
    )
    result = run_pipeline(opts)
    assert result.counters["decisions"] > 0

    table = query(db, "SELECT run_id, epoch_ms(ts), step, name, value FROM metrics")
    assert len({r[1] for r in table}) >= 2  # per-second rows, not one at the end
    topics = output_topics(spec.topics, prefix)
    assert list_partitions(kafka_broker.bootstrap, topics["metrics"]) == [0, 1, 2]
    got = consume_all(kafka_broker.bootstrap, topics["metrics"], 3, expected=len(table))
    published = []
    for _, _, key, value in got:
        assert key is not None and value is not None
        row = orjson.loads(value)
        assert key == f"{row['run_id']}|{row['ts']}|{row['step']}|{row['name']}".encode()
        published.append((row["run_id"], row["ts"], row["step"], row["name"], row["value"]))
    assert all(isinstance(r[4], float) and math.isfinite(r[4]) for r in published)
    assert sorted(published) == sorted(table)  # the same rows, each once
    assert {r[0] for r in published} == {opts.run_id}
