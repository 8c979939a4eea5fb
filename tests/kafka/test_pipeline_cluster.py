"""`eddy run --processes 2` (a two-process Bytewax cluster, process 0 owning DuckDB) gives the
same results as one process on the same Kafka input."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from eddy.sinks.kafka import ensure_topics
from tests.fixtures_kafka import KafkaBroker
from tests.kafka.pipeline_runs import (
    TopicFollower,
    eddy_run_cmd,
    open_loop_topics,
    query,
    run_to_end,
)

pytestmark = pytest.mark.kafka

N = 40_000
PARTITIONS = 3
_WINDOWS = (
    'SELECT key, metric, "window", epoch_ms(window_start), epoch_ms(window_end), "count", '
    "sum, mean, std, min, max, rate, p95 FROM window_aggregates ORDER BY ALL"
)


def _same_rows(a: list[tuple], b: list[tuple]) -> list[str]:
    """Row-by-row differences; floats agree to 1e-9 relative (sums in another order)."""
    diffs = []
    if len(a) != len(b):
        diffs.append(f"{len(a)} rows vs {len(b)}")
    for ra, rb in zip(a, b, strict=False):
        for x, y in zip(ra, rb, strict=True):
            if isinstance(x, float) and isinstance(y, float):
                same = (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-9)
            else:
                same = x == y
            if not same:
                diffs.append(f"{ra} vs {rb}")
                break
    return diffs[:5]


def test_two_process_cluster_matches_one_process(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap
    req_topic, out_topic, ids = open_loop_topics(bootstrap, make_topic, N, 23, PARTITIONS)

    results = {}
    for procs in (1, 2):
        prefix = f"{req_topic}.p{procs}."
        ensure_topics(bootstrap, {prefix + "eddy.decisions": PARTITIONS})
        follower = TopicFollower(bootstrap, prefix + "eddy.decisions", PARTITIONS)
        db = tmp_path / f"p{procs}.duckdb"
        extra = ["--processes", str(procs), "--topic-prefix", prefix]
        try:
            run_to_end(eddy_run_cmd(bootstrap, req_topic, out_topic, db, *extra), tmp_path / "log")
            follower.wait_for(N, 30)
        finally:
            records = follower.stop()
        published = {k.decode() for k, _ in records}
        assert published == ids and len(records) == N, procs  # each decision once
        decided = query(db, "SELECT decision_id FROM decisions")
        assert len(decided) == N and {r[0] for r in decided} == ids, procs
        assert query(db, "SELECT count(*) FROM late_events") == [(0,)], procs
        assert query(db, "SELECT count(*) FROM rewards") == [(N,)], procs
        results[procs] = query(db, _WINDOWS)

    assert len(results[1]) > 100
    assert _same_rows(results[1], results[2]) == []
