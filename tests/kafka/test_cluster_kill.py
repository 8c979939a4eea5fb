"""`eddy run --workers 2` from Kafka: the whole cluster killed with SIGKILL twice (a machine
crash: every process at once) and restarted; nothing lost, nothing twice, and the bandit (two
decide shards sharing what they learn) continues from its snapshot instead of starting over."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import orjson
import pytest

from eddy.operators.engine.exchange import FINAL
from eddy.sinks.kafka import ensure_topics
from tests.fixtures_kafka import ROOT, KafkaBroker
from tests.kafka.pipeline_runs import (
    TopicFollower,
    eddy_run_cmd,
    log_tail,
    open_loop_topics,
    query,
)

pytestmark = pytest.mark.kafka

N = 150_000
# Epochs of 0.2 s: the input is all in Kafka at the start, so a run's first epoch holds what
# it read in that time; with the default 1 s that is up to ~80,000 decisions before the first
# commit, in place of ~12,000, and a restart could end before it commits anything.
SNAPSHOT_INTERVAL_S = 0.2
PARTITIONS = 3
WORKERS = 2


# -- the cluster's processes ------------------------------------------------------------------
def _group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``.

    A member orphaned by the kill is reparented to init, which in a container need not reap
    it: a zombie holds nothing (no port, no file), so it does not count."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:  # gone meanwhile
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat.rpartition(")")[2].split()
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def _describe(pids: list[int]) -> str:
    out = []
    for pid in pids:
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        member = argv[argv.index(b"--process-id") + 1].decode() if b"--process-id" in argv else "0"
        out.append(f"pid {pid} (member {member})")
    return ", ".join(out) or "none"


def _start(cmd: Sequence[str], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``eddy run`` as the leader of a new process group: its members join it."""
    with open(log, "ab") as fh:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=fh, stderr=fh, start_new_session=True)
    return proc, os.getpgid(proc.pid)


def _crash(proc: subprocess.Popen[bytes], pgid: int, timeout_s: float = 30.0) -> None:
    """SIGKILL every process of the cluster at once and wait until none is left."""
    with contextlib.suppress(ProcessLookupError):  # all of it gone already
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + timeout_s
    while (left := _group_members(pgid)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not left, f"cluster processes {_describe(left)} alive {timeout_s:.0f}s after SIGKILL"


def _run_to_end(cmd: Sequence[str], log: Path, timeout_s: float = 240.0) -> None:
    """Run the cluster until it ends by itself (``--until-end``); on a timeout, kill all of
    it (``subprocess.run`` would kill the first process only)."""
    proc, pgid = _start(cmd, log)
    try:
        code = proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        _crash(proc, pgid)
        raise AssertionError(
            f"eddy run did not end within {timeout_s:.0f}s:\n{log_tail(log)}"
        ) from None
    left = _group_members(pgid)
    if left:
        _crash(proc, pgid)
    assert code == 0, f"{' '.join(cmd)} exited {code}:\n{log_tail(log)}"
    assert not left, f"cluster members {left} outlived process 0:\n{log_tail(log)}"


# -- progress: Bytewax's recovery partitions and the metrics topic -----------------------------
def _recovery_rows(recovery: Path, sql: str) -> list[list[tuple]] | None:
    """``sql`` on every recovery partition (read only), or None while one cannot be read yet
    (not created, not initialised, busy)."""
    parts = sorted(recovery.glob("part-*.sqlite3"))
    if len(parts) != WORKERS:
        return None
    out = []
    for part in parts:
        try:
            con = sqlite3.connect(f"file:{part}?mode=ro", uri=True, timeout=1.0)
            try:
                out.append(con.execute(sql).fetchall())
            finally:
                con.close()
        except sqlite3.Error:
            return None
    return out


def _committed_epoch(recovery: Path, previous: int = 0) -> int:
    """The last epoch whose snapshot every recovery partition committed (what a restart
    resumes after); ``previous`` while the partitions cannot be read."""
    rows = _recovery_rows(recovery, "SELECT commit_epoch FROM commits")
    if rows is None:
        return previous
    return min((r[0][0] if r else 0) for r in rows)


def _resume_epochs(recovery: Path) -> list[int]:
    """The epoch each execution of the dataflow started from, in order (Bytewax's ``exs``
    rows are spread over the partitions)."""
    rows = _recovery_rows(recovery, "SELECT ex_num, resume_epoch FROM exs")
    assert rows is not None, f"cannot read the recovery partitions in {recovery}"
    by_execution = {ex: epoch for part in rows for ex, epoch in part}
    return [by_execution[ex] for ex in sorted(by_execution)]


def _learned(metrics: TopicFollower) -> bool:
    """Whether any run reported a learned row (``bandit_updates`` > 0) on the metrics topic."""
    for _, value in list(metrics.records):
        row = orjson.loads(value)
        if row["name"] == "bandit_updates" and row["value"] > 0:
            return True
    return False


def test_cluster_killed_twice_then_restarted_gives_every_decision_once_and_continues_learning(
    kafka_broker: KafkaBroker, make_topic: Callable[..., str], tmp_path: Path
) -> None:
    bootstrap = kafka_broker.bootstrap
    req_topic, out_topic, ids = open_loop_topics(bootstrap, make_topic, N, 13, PARTITIONS)
    prefix = f"{req_topic}."
    decisions_topic, metrics_topic = prefix + "eddy.decisions", prefix + "eddy.metrics"
    ensure_topics(bootstrap, {decisions_topic: PARTITIONS, metrics_topic: PARTITIONS})
    follower = TopicFollower(bootstrap, decisions_topic, PARTITIONS)
    metrics = TopicFollower(bootstrap, metrics_topic, PARTITIONS)
    db, log, recovery = tmp_path / "eddy.duckdb", tmp_path / "eddy.log", tmp_path / "recovery"
    # the reference spec with two decide shards: what they share must survive the kills too
    spec = (ROOT / "examples" / "adserving.toml").read_text()
    line = 'name = "pick_partner"\n'
    assert spec.count(line) == 1
    pipeline = tmp_path / "adserving.toml"
    pipeline.write_text(spec.replace(line, f"{line}shards = 2\n"))
    cmd = eddy_run_cmd(
        bootstrap,
        req_topic,
        out_topic,
        db,
        "--pipeline",
        str(pipeline),
        "--workers",
        str(WORKERS),
        "--recovery",
        str(recovery),
        "--snapshot-interval",
        str(SNAPSHOT_INTERVAL_S),
        "--topic-prefix",
        prefix,
    )
    # Two seeded moments, in terms of decisions published: early and late, and each run
    # publishes a tenth of them before its kill. A kill waits, too, until the cluster
    # committed a snapshot of its own since it started (else the restart would replay from
    # where this run began: a restart from scratch), and the first kill until two snapshots
    # were committed after the first learned row was reported (so the snapshot the restart
    # resumes from holds learned rows: the bandit must continue, not start over).
    rng = np.random.default_rng(7)
    kill_at = [int(N * rng.uniform(lo, lo + 0.15)) for lo in (0.15, 0.6)]
    learned_at: int | None = None  # the committed epoch when learning was first reported
    kills: list[tuple[int, int]] = []  # (decisions published, epoch committed) at each kill
    try:
        for seeded in kill_at:
            target = max(seeded, follower.distinct() + N // 10)
            start = committed = _committed_epoch(recovery)
            proc, pgid = _start(cmd, log)
            try:
                deadline = time.monotonic() + 120
                while True:
                    assert proc.poll() is None, (
                        f"eddy run ended before its kill (at {follower.distinct()} decisions, "
                        f"epoch {committed} committed, started after {start}, learned rows "
                        f"first reported at epoch {learned_at}):\n{log_tail(log)}"
                    )
                    assert time.monotonic() < deadline, (
                        f"no progress to {target} decisions and a committed snapshot "
                        f"({follower.distinct()} decisions, epoch {committed} committed, "
                        f"started after {start}, learned at {learned_at}):\n{log_tail(log)}"
                    )
                    committed = _committed_epoch(recovery, committed)
                    if learned_at is None and _learned(metrics):
                        learned_at = committed
                    if (
                        follower.distinct() >= target
                        and learned_at is not None
                        and committed >= max(start + 1, learned_at + 2)
                    ):
                        break
                    time.sleep(0.02)
                # a cluster, not one process: process 0 and its member both die in the crash
                members = _group_members(pgid)
                assert len(members) == WORKERS, (
                    f"kill at {target}: {len(members)} live cluster processes, "
                    f"{_describe(members)}:\n{log_tail(log)}"
                )
                kills.append((follower.distinct(), committed))
            finally:
                _crash(proc, pgid)  # SIGKILL: no cleanup, no final snapshot, buffers lost
            assert proc.returncode == -signal.SIGKILL
        _run_to_end(cmd, log)
        assert follower.wait_for(N, 30) == N
    finally:
        records = follower.stop()
        metrics.stop()

    # Every restart resumed from a later snapshot than the run before it.
    resumed = _resume_epochs(recovery)
    assert len(resumed) == len(kill_at) + 1, (resumed, kills)
    assert all(a < b for a, b in itertools.pairwise(resumed)), (resumed, kills)

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
    # Three partitions per topic read by two workers at their own speeds, across restarts.
    assert query(db, "SELECT count(*) FROM late_events") == [(0,)]
    assert query(db, "SELECT count(*) FROM dead_letters") == [(0,)]

    # The bandit's learned-row count (the sum over its decide shards) continues across
    # restarts: every restarted run reports a count it did not learn itself, and the last one
    # ends at every decision learned once.
    runs = query(
        db,
        "SELECT run_id, min(value), max(value) FROM metrics WHERE name = 'bandit_updates' "
        "GROUP BY run_id ORDER BY min(ts)",
    )
    assert len(runs) == len(kill_at) + 1, (runs, kills)
    assert runs[-1][2] == N, (runs, kills)
    assert all(lo > 0 for _, lo, _ in runs[1:]), (runs, kills)
    # the shards shared through the recovery directory until the end, across the restarts
    for shard in (0, 1):
        posts = list((recovery / "exchange" / "pick_partner" / str(shard)).glob("*.npy"))
        assert posts and max(int(p.stem) for p in posts) == FINAL, shard
