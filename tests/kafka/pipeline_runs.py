"""Helpers for the end-to-end Kafka pipeline tests: run ``eddy run`` as a subprocess, follow
an output topic from a background thread, read DuckDB results."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
from confluent_kafka import Consumer, TopicPartition

from eddy.benchmarks.kafka_events import open_loop_events, produce_records
from tests.fixtures_kafka import ROOT

__all__ = ["TopicFollower", "eddy_run_cmd", "log_tail", "open_loop_topics", "query"]


def open_loop_topics(
    bootstrap: str, make_topic: Callable[..., str], n: int, seed: int, partitions: int
) -> tuple[str, str, set[str]]:
    """Two fresh topics of ``partitions`` partitions holding ``n`` open-loop requests and
    their outcomes: ``(requests topic, outcomes topic, the requests' ids)``."""
    req_topic, out_topic = make_topic(partitions=partitions), make_topic(partitions=partitions)
    requests, outcomes = open_loop_events(n, seed=seed, partitions=partitions)
    produce_records(bootstrap, req_topic, requests)
    produce_records(bootstrap, out_topic, outcomes)
    return req_topic, out_topic, {k.decode() for k in requests.keys}


def eddy_run_cmd(bootstrap: str, requests: str, outcomes: str, db: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "eddy",
        "run",
        "--source",
        f"kafka:{bootstrap}/{requests}",
        "--rewards",
        f"kafka:{bootstrap}/{outcomes}",
        "--until-end",
        "--duckdb",
        str(db),
        "--quiet",
        *extra,
    ]


def log_tail(path: Path, lines: int = 40) -> str:
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def run_to_end(cmd: Sequence[str], log: Path, timeout_s: float = 240.0) -> None:
    with open(log, "ab") as fh:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=fh, stderr=fh, timeout=timeout_s, check=False)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{log_tail(log)}"


def query(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


class TopicFollower:
    """Reads every record of ``topic`` (all ``partitions``, from the beginning) in a thread.

    ``records`` holds ``(key, value)`` in arrival order; ``distinct()`` counts distinct keys."""

    def __init__(self, bootstrap: str, topic: str, partitions: int) -> None:
        self.records: list[tuple[bytes, bytes]] = []
        self._keys: set[bytes] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._error: str | None = None
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "eddy-test-follower",
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
            }
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                msgs = self._consumer.consume(5000, 0.1)
                with self._lock:
                    for m in msgs:
                        if m.error() is not None:
                            self._error = str(m.error())
                            continue
                        self.records.append((m.key(), m.value()))
                        self._keys.add(m.key())
        finally:
            self._consumer.close()

    def distinct(self) -> int:
        with self._lock:
            if self._error is not None:
                raise AssertionError(f"reading the output topic failed: {self._error}")
            return len(self._keys)

    def wait_for(self, n: int, timeout_s: float) -> int:
        deadline = time.monotonic() + timeout_s
        while self.distinct() < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.distinct()

    def stop(self) -> list[tuple[bytes, bytes]]:
        self._stop.set()
        self._thread.join(timeout=10)
        with self._lock:
            return list(self.records)
