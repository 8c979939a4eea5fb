"""FencedKafkaResultsSink: a replay after a crash does not publish a record a second time."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pytest

from eddy.schemas.results import Results
from eddy.sinks.kafka import KafkaDeliveryError
from eddy.sinks.kafka_fenced import FencedKafkaResultsSink
from tests.fixtures_kafka import KafkaBroker
from tests.kafka.helpers import consume_all

pytestmark = pytest.mark.kafka


def decisions(lo: int, hi: int, arm: int) -> Results:
    r = Results()
    ids = np.array([f"d{i}" for i in range(lo, hi)], dtype=object)
    r.add("decisions", {"decision_id": ids, "arm": np.full(hi - lo, arm, np.int32)})
    return r


def test_replay_after_a_crash_keeps_the_first_copy_of_each_record(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    topic = make_topic(partitions=3)
    sink = FencedKafkaResultsSink(kafka_broker.bootstrap, topics={"decisions": topic})

    first = sink.build_part("kafka", "kafka", None)
    first.write_batch([decisions(0, 10, arm=0)])
    epoch1 = first.snapshot()  # epoch 1 complete: d0..d9 are in Kafka
    first.write_batch([decisions(10, 20, arm=1)])  # epoch 2: published, then the process dies
    first.inner.flush()

    # The restart resumes from epoch 1 and replays epoch 2 with other content (other arms),
    # plus new records.
    second = sink.build_part("kafka", "kafka", epoch1)
    second.write_batch([decisions(10, 15, arm=2)])
    second.write_batch([decisions(15, 25, arm=2)])
    assert second.skipped == 10
    epoch2 = second.snapshot()
    assert epoch2["skip"] == {}  # every fenced key was met once: nothing left to carry

    # A second crash before epoch 2 of the restarted run completed: resume from epoch 1 again.
    third = sink.build_part("kafka", "kafka", epoch1)
    third.write_batch([decisions(10, 30, arm=3)])
    assert third.skipped == 15
    third.close()
    second.close()

    rows = consume_all(kafka_broker.bootstrap, topic, 3, expected=30)
    by_key: dict[str, list[int]] = {}
    for _, _, key, value in rows:
        assert key is not None and value is not None
        by_key.setdefault(key.decode(), []).append(orjson.loads(value)["arm"])
    assert sorted(by_key, key=lambda k: int(k[1:])) == [f"d{i}" for i in range(30)]
    assert all(len(arms) == 1 for arms in by_key.values())  # each record once
    first_copy = {f"d{i}": 0 if i < 10 else 1 if i < 20 else 2 if i < 25 else 3 for i in range(30)}
    assert {k: arms[0] for k, arms in by_key.items()} == first_copy


def test_a_crash_before_the_first_epoch_completes_is_fenced_through_the_start_file(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic(partitions=3)
    start_file = tmp_path / "fence-starts.json"
    sink = FencedKafkaResultsSink(
        kafka_broker.bootstrap, topics={"decisions": topic}, start_file=start_file
    )
    first = sink.build_part("kafka", "kafka", None)
    assert start_file.exists()  # written before anything is published
    first.write_batch([decisions(0, 10, arm=0)])
    first.inner.flush()  # published; the process dies before its first epoch completes

    # No snapshot to resume from: the restart starts from the beginning, with other content.
    second = sink.build_part("kafka", "kafka", None)
    second.write_batch([decisions(0, 6, arm=1)])
    assert second.skipped == 6
    second.snapshot()
    # Killed again before an epoch completed: the file still names the first start.
    third = sink.build_part("kafka", "kafka", None)
    third.write_batch([decisions(0, 15, arm=2)])
    assert third.skipped == 10
    third.close()
    second.close()

    rows = consume_all(kafka_broker.bootstrap, topic, 3, expected=15)
    arms = {key.decode(): orjson.loads(value)["arm"] for _, _, key, value in rows if key and value}
    assert len(rows) == 15
    assert arms == {f"d{i}": 0 if i < 10 else 2 for i in range(15)}


def test_without_recovery_a_failed_delivery_still_fails_loudly(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str]
) -> None:
    # Without recovery the sink asks for delivery reports of failures only; those must still
    # reach the step (a record the broker refuses is never dropped in silence).
    topic = make_topic(config={"max.message.bytes": "2048"})
    sink = FencedKafkaResultsSink(
        kafka_broker.bootstrap,
        topics={"decisions": topic},
        flush_on_snapshot=False,
        compression="none",
    )
    part = sink.build_part("kafka", "kafka", None)
    big = Results()
    big.add(
        "decisions",
        {
            "decision_id": np.array(["big"], dtype=object),
            "pad": np.array(["x" * 20_000], dtype=object),
        },
    )
    part.write_batch([decisions(0, 5, arm=0)])
    part.inner.flush(30)  # delivered: no reports at all
    part.write_batch([big])
    part.snapshot()  # no flush without recovery
    with pytest.raises(KafkaDeliveryError, match=r"1 record\(s\) not delivered.*key b'big'"):
        part.inner.flush(30)
    with pytest.raises(KafkaDeliveryError):
        part.write_batch([decisions(5, 6, arm=0)])
    assert len(consume_all(kafka_broker.bootstrap, topic, 1, expected=5)) == 5
