"""KafkaSource with Bytewax recovery: a restarted dataflow continues from its snapshot."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import bytewax.operators as op
import pytest
from bytewax.dataflow import Dataflow
from bytewax.recovery import RecoveryConfig
from bytewax.testing import TestingSink, run_main

from eddy.sources.base import RawBatch
from eddy.sources.kafka import KafkaSource
from tests.fixtures_kafka import KafkaBroker
from tests.kafka.helpers import error_chain, run_source

pytestmark = pytest.mark.kafka


def init_recovery(tmp_path: Path) -> Path:
    db = tmp_path / "recovery"
    db.mkdir()
    subprocess.run([sys.executable, "-m", "bytewax.recovery", str(db), "1"], check=True)
    return db


def positions_by_partition(batches: list[RawBatch]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for b in batches:
        out[b.partition].extend(b.positions)
    return dict(out)


def test_second_run_resumes_after_the_first_runs_offsets(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic(partitions=2)
    for part in (0, 1):
        kafka_broker.produce(topic, [b"a%d" % i for i in range(100)], partition=part)
    db = init_recovery(tmp_path)

    def source() -> KafkaSource:
        return KafkaSource(kafka_broker.bootstrap, topic, batch_size=30, stop_at_end=True)

    first = run_source(source(), recovery_dir=db)
    assert positions_by_partition(first) == {0: list(range(100)), 1: list(range(100))}

    for part in (0, 1):
        kafka_broker.produce(topic, [b"b%d" % i for i in range(50)], partition=part)
    second = run_source(source(), recovery_dir=db)

    assert positions_by_partition(second) == {0: list(range(100, 150)), 1: list(range(100, 150))}
    assert {line for b in second for line in b.lines} == {b"b%d" % i for i in range(50)}
    assert run_source(source(), recovery_dir=db) == []  # nothing new: nothing re-read


class Crash(RuntimeError):
    pass


def test_crashed_run_loses_nothing_and_replays_only_the_open_epoch(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    topic = make_topic(partitions=1)
    kafka_broker.produce(topic, [b"%d" % i for i in range(400)])
    db = init_recovery(tmp_path)

    def run(crash_at: int | None, out: list[RawBatch]) -> None:
        flow = Dataflow("kafka_crash_test")
        src = KafkaSource(kafka_broker.bootstrap, topic, batch_size=20, stop_at_end=True)
        stream = op.input("in", flow, src)

        def maybe_crash(b: RawBatch) -> RawBatch:
            if crash_at is not None and b.positions[-1] >= crash_at:
                raise Crash(f"crash at {b.positions[-1]}")
            return b

        op.output("out", op.map("crash", stream, maybe_crash), TestingSink(out))
        run_main(flow, epoch_interval=timedelta(0), recovery_config=RecoveryConfig(str(db)))

    first: list[RawBatch] = []
    with pytest.raises(Exception, match="crash") as exc:
        run(300, first)
    assert "Crash: crash at" in error_chain(exc.value)
    second: list[RawBatch] = []
    run(None, second)

    seen_first = sorted({p for b in first for p in b.positions})
    resumed_at = second[0].positions[0]
    assert 0 < resumed_at <= 300  # continued from a snapshot, not from the beginning
    assert [p for b in second for p in b.positions] == list(range(resumed_at, 400))
    assert set(seen_first) | set(range(resumed_at, 400)) == set(range(400))
