"""Kafka connector benchmark: broker start time, sink and source throughput.

    python -m benchmarks.kafka_io [--records 300000] [--batch-size 5000] [--partitions 3]
                                  [--bootstrap HOST:PORT] [--out FILE]

Without ``--bootstrap`` it starts a private broker with ``scripts/kafka.sh up`` (fresh state in a
temporary directory) and stops it at the end. Measures:

* ``broker_start_s``: ``scripts/kafka.sh up`` wall time, format + JVM start until the broker
  serves (best of one; the machine load is reported next to it);
* ``encode``: :func:`sinks.kafka.encode_json_rows` of decision-like rows, rows/s;
* ``sink``: :class:`sinks.kafka.KafkaSink` (one worker, idempotent, acks=all, lz4) writing
  pre-encoded :class:`KafkaRecords` batches, write_batch + final flush, records/s and MB/s;
* ``source``: :class:`sources.kafka.KafkaSource` reading them all back in a real Bytewax dataflow
  (``run_main``, ``stop_at_end``), records/s and MB/s.

Prints one JSON object; ``--out FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import orjson
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from sinks.kafka import KafkaRecords, KafkaSink, encode_json_rows, ensure_topics
from sources.base import RawBatch
from sources.kafka import KafkaSource

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
    env = {**os.environ, "EDDY_KAFKA_STATE": str(state), "EDDY_KAFKA_OWNER_PID": str(os.getpid())}
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
    t0 = time.perf_counter()
    for it in items:
        part.write_batch([it])
    part.close()
    dt = time.perf_counter() - t0
    assert part.delivered == records and part.failed == 0, (part.delivered, part.failed)
    result["sink"] = {
        "records_per_s": round(records / dt),
        "mb_per_s": round(nbytes / dt / 1e6, 1),
        "seconds": round(dt, 3),
    }

    flow = Dataflow("bench_kafka_source")
    src = KafkaSource(bootstrap, topic, batch_size=batch_size, stop_at_end=True)
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
        prog="python -m benchmarks.kafka_io", description=__doc__.split("\n")[0]
    )
    p.add_argument("--records", type=int, default=300_000)
    p.add_argument("--batch-size", type=int, default=5_000)
    p.add_argument("--partitions", type=int, default=3)
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
