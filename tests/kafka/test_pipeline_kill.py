"""`eddy run` from Kafka, killed with SIGKILL three times and restarted: nothing lost, nothing
twice, and the bandit continues from its snapshot instead of starting over."""

from __future__ import annotations

import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from eddy.sinks.kafka import ensure_topics
from tests.fixtures_kafka import ROOT, KafkaBroker
from tests.kafka.pipeline_runs import (
    TopicFollower,
    eddy_run_cmd,
    log_tail,
    open_loop_topics,
    query,
    run_to_end,
)

pytestmark = pytest.mark.kafka

N = 200_000
PARTITIONS = 3


def test_sigkill_three_times_then_restart_gives_every_decision_once_and_continues_learning(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap
    req_topic, out_topic, ids = open_loop_topics(bootstrap, make_topic, N, 11, PARTITIONS)
    prefix = f"{req_topic}."
    decisions_topic = prefix + "eddy.decisions"
    ensure_topics(bootstrap, {decisions_topic: PARTITIONS})
    follower = TopicFollower(bootstrap, decisions_topic, PARTITIONS)
    db, log = tmp_path / "eddy.duckdb", tmp_path / "eddy.log"
    cmd = eddy_run_cmd(
        bootstrap,
        req_topic,
        out_topic,
        db,
        "--recovery",
        str(tmp_path / "recovery"),
        "--topic-prefix",
        prefix,
    )
    # Three seeded moments, in terms of decisions published: early, middle, late.
    rng = np.random.default_rng(6)
    kill_at = [int(N * rng.uniform(lo, lo + 0.2)) for lo in (0.1, 0.4, 0.65)]
    try:
        for target in kill_at:
            with open(log, "ab") as fh:
                proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=fh)
            try:
                deadline = time.monotonic() + 120
                while follower.distinct() < target and time.monotonic() < deadline:
                    assert proc.poll() is None, f"eddy run ended before its kill:\n{log_tail(log)}"
                    time.sleep(0.01)
                assert follower.distinct() >= target, f"no progress to {target}:\n{log_tail(log)}"
            finally:
                proc.kill()  # SIGKILL: no cleanup, no final snapshot, buffers lost
                proc.wait()
            assert proc.returncode == -9
        run_to_end(cmd, log)
        assert follower.wait_for(N, 30) == N
    finally:
        records = follower.stop()

    # Kafka: every decision id, and a key seen twice only with identical bytes.
    by_key: dict[bytes, set[bytes]] = defaultdict(set)
    for key, value in records:
        by_key[key].add(value)
    assert {k.decode() for k in by_key} == ids
    different = [k for k, vs in by_key.items() if len(vs) > 1]
    assert different == [], f"{len(different)} decisions published twice with different content"

    # DuckDB: exactly one decision and one learned reward per request.
    assert query(db, "SELECT count(*), count(DISTINCT decision_id) FROM decisions") == [(N, N)]
    assert {r[0] for r in query(db, "SELECT decision_id FROM decisions")} == ids
    assert query(db, "SELECT count(*), count(DISTINCT decision_id) FROM rewards") == [(N, N)]
    # Three partitions per topic read at their own speeds, across restarts: nothing late.
    assert query(db, "SELECT count(*) FROM late_events") == [(0,)]
    assert query(db, "SELECT count(*) FROM dead_letters") == [(0,)]

    # The bandit's learned-row count continues across restarts: every restarted run reports
    # a count it did not learn itself, and the last one ends at every decision learned once.
    runs = query(
        db,
        "SELECT run_id, min(value), max(value) FROM metrics WHERE name = 'bandit_updates' "
        "GROUP BY run_id ORDER BY min(ts)",
    )
    assert len(runs) >= 3, runs
    assert runs[-1][2] == N, runs
    assert all(lo > 0 for _, lo, _ in runs[1:]), runs
