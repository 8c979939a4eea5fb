"""Kafka connector benchmark: broker start time, sink and source throughput.

    python -m eddy.benchmarks.kafka_io [--records 300000] [--batch-size 5000] [--partitions 3]
                                  [--bootstrap HOST:PORT] [--out FILE]

Without ``--bootstrap`` it starts a private broker with ``scripts/kafka.sh up`` (fresh state in a
temporary directory) and stops it at the end. Measures:

* ``broker_start_s``: ``scripts/kafka.sh up`` wall time, format + JVM start until the broker
  serves (best of one; the machine load is reported next to it);
* ``encode``: :func:`sinks.kafka.encode_json_rows` of decision-like rows, rows/s;
* ``sink``: :class:`sinks.kafka.KafkaSink` (one worker, idempotent, acks=all, lz4) writing
  pre-encoded :class:`KafkaRecords` batches, write_batch + final flush (after a one-record
  warm-up), records/s and MB/s;
* ``source``: :class:`sources.kafka.KafkaSource` reading them all back in a real Bytewax dataflow
  (``run_main``, ``stop_at_end``), records/s and MB/s;
* ``latency``: produce-to-read latency through the broker at a steady ``--rate`` (records/s,
  default 2000) for ``--latency-seconds`` (default 3): a producer thread writes records stamped
  with ``time.time_ns()`` through the sink (``linger_ms=5``, after a warm-up record), a
  following (not ``stop_at_end``) source partition reads them with its default ``next_awake``
  idle wait; p50/p95/p99/max ms.

Prints one JSON object; ``--out FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import orjson
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from eddy.sinks.kafka import KafkaRecords, KafkaSink, encode_json_rows, ensure_topics
from eddy.sources.base import RawBatch
from eddy.sources.kafka import KafkaSource

__all__ = ["main", "run"]

_ROOT = Path(__file__).resolve().parent.parent


def _rows(start: int, n: int) -> dict[str, Any]:
    rng = np.random.default_rng(start)
    ids = np.arange(start, start + n)
    return {
        "decision_id": np.array([f"req-{i}" for i in ids], dtype=object),
        "event_time": 1_700_000_000_000 + ids * 2,
        "placement": np.array(["top", "side", "feed"], dtype=object)[ids % 3],
        "arm": rng.integers(0, 5, n),
        "propensity": rng.random(n),
        "context": rng.random((n, 8)),
    }


def _start_broker(state: Path) -> tuple[str, float]:
    env = {
        **os.environ,
        "EDDY_KAFKA_STATE": str(state),
        "EDDY_KAFKA_OWNER_PID": str(os.getpid()),
        "EDDY_PYTHON": sys.executable,
    }
    t0 = time.perf_counter()
    proc = subprocess.run(
        ["bash", str(_ROOT / "scripts" / "kafka.sh"), "up"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"scripts/kafka.sh up failed:\n{proc.stderr}")
    return proc.stdout.strip().splitlines()[-1], time.perf_counter() - t0


def _stop_broker(state: Path) -> None:
    env = {**os.environ, "EDDY_KAFKA_STATE": str(state)}
    subprocess.run(["bash", str(_ROOT / "scripts" / "kafka.sh"), "down"], env=env, check=False)


def _latency(bootstrap: str, rate: int, seconds: float) -> dict[str, Any]:
    topic = f"bench-lat-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: 1})
    part = KafkaSource(bootstrap, topic, stream="events").build_part("lat", f"0-{topic}", None)
    n = int(rate * seconds)
    stop = threading.Event()

    warm = f"{topic}-warmup"
    ensure_topics(bootstrap, {warm: 1})

    def produce() -> None:
        sink = KafkaSink(bootstrap, linger_ms=5).build("lat", 0, 1)
        # Warm-up: the idempotent producer's id and metadata (up to ~1 s on a fresh producer).
        sink.write_batch([KafkaRecords(warm, [b"w"], [b"w"])])
        sink.flush()
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            sink.write_batch([KafkaRecords(topic, [b"k"], [b"%d" % time.time_ns()])])
        sink.close()
        stop.set()

    producer = threading.Thread(target=produce)
    producer.start()
    lat_ms: list[float] = []
    deadline = time.monotonic() + seconds + 30
    while len(lat_ms) < n and time.monotonic() < deadline:
        awake = part.next_awake()
        if awake is not None:
            time.sleep(max(0.0, (awake - datetime.now(UTC)).total_seconds()))
        for batch in part.next_batch():
            lat_ms.extend((batch.ingest_ns - int(v)) / 1e6 for v in batch.lines)
    producer.join()
    part.close()
    assert len(lat_ms) == n, (len(lat_ms), n)
    q = np.percentile(lat_ms, [50, 95, 99, 100])
    return {
        "rate_per_s": rate,
        "records": n,
        "p50_ms": round(float(q[0]), 2),
        "p95_ms": round(float(q[1]), 2),
        "p99_ms": round(float(q[2]), 2),
        "max_ms": round(float(q[3]), 2),
    }


def run(bootstrap: str, records: int, batch_size: int, partitions: int) -> dict[str, Any]:
    result: dict[str, Any] = {
        "records": records,
        "batch_size": batch_size,
        "partitions": partitions,
    }
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: partitions})

    cols = [_rows(s, min(batch_size, records - s)) for s in range(0, records, batch_size)]
    t0 = time.perf_counter()
    items = [
        KafkaRecords(topic, [k.encode() for k in c["decision_id"]], encode_json_rows(c))
        for c in cols
    ]
    dt = time.perf_counter() - t0
    result["encode"] = {"rows_per_s": round(records / dt), "seconds": round(dt, 3)}
    nbytes = sum(len(v) for it in items for v in it.values)
    result["mean_value_bytes"] = round(nbytes / records, 1)

    part = KafkaSink(bootstrap).build("bench", 0, 1)
    # Warm-up outside the timing: metadata + the idempotent producer id (first one per broker
    # also creates the transaction-state topic), one record to a separate topic.
    warm = f"{topic}-warmup"
    ensure_topics(bootstrap, {warm: 1})
    part.write_batch([KafkaRecords(warm, [b"w"], [b"{}"])])
    part.flush()
    t0 = time.perf_counter()
    for it in items:
        part.write_batch([it])
    part.close()
    dt = time.perf_counter() - t0
    assert part.delivered == records + 1 and part.failed == 0, (part.delivered, part.failed)
    result["sink"] = {
        "records_per_s": round(records / dt),
        "mb_per_s": round(nbytes / dt / 1e6, 1),
        "seconds": round(dt, 3),
    }

    flow = Dataflow("bench_kafka_source")
    src = KafkaSource(bootstrap, topic, stream="events", batch_size=batch_size, stop_at_end=True)
    counts: list[int] = []

    def count(b: RawBatch) -> int:
        return len(b)

    op.output("out", op.map("len", op.input("in", flow, src), count), TestingSink(counts))
    t0 = time.perf_counter()
    run_main(flow)
    dt = time.perf_counter() - t0
    assert sum(counts) == records, (sum(counts), records)
    result["source"] = {
        "records_per_s": round(records / dt),
        "mb_per_s": round(nbytes / dt / 1e6, 1),
        "seconds": round(dt, 3),
        "batches": len(counts),
    }
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m eddy.benchmarks.kafka_io", description=__doc__.split("\n")[0]
    )
    p.add_argument("--records", type=int, default=300_000)
    p.add_argument("--batch-size", type=int, default=5_000)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--rate", type=int, default=2_000)
    p.add_argument("--latency-seconds", type=float, default=3.0)
    p.add_argument("--bootstrap", help="use this broker instead of starting a private one")
    p.add_argument("--out", help="also write the JSON result here")
    args = p.parse_args(argv)
    state: Path | None = None
    try:
        if args.bootstrap:
            bootstrap, start_s = args.bootstrap, None
        else:
            state = Path(tempfile.mkdtemp(prefix="eddy-kafka-bench-"))
            bootstrap, start_s = _start_broker(state)
        load = os.getloadavg()[0]
        result = run(bootstrap, args.records, args.batch_size, args.partitions)
        result["latency"] = _latency(bootstrap, args.rate, args.latency_seconds)
        result = {
            "broker_start_s": None if start_s is None else round(start_s, 2),
            "load_avg_1m_at_start": round(load, 2),
            **result,
        }
    finally:
        if state is not None:
            _stop_broker(state)
            shutil.rmtree(state, ignore_errors=True)
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return result


if __name__ == "__main__":
    main()
