"""Baseline ``floor``: read, decode and sink only; the ceiling no pipeline can pass.

The same Bytewax input (``sources.jsonl.JsonlSource``, micro-batches of raw lines), the same
batch decoder (``schemas.events``) and the same DuckDB sink (``sinks.duckdb_sink.DuckDBSink``)
as the reference pipeline, with no features, detectors or bandit in between: requests become
``decisions`` rows with a fixed arm, outcomes become ``rewards`` rows with ``reward = revenue``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import bytewax.operators as op
import numpy as np
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from eddy.benchmarks.baselines.common import ARMS, Stream, VariantResult, db_path, peak_rss_mb
from eddy.operators.stats import RunStats
from eddy.schemas.events import decode_outcomes, decode_requests
from eddy.schemas.results import Results, dead_letter_results
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.duckdb_sink import DuckDBSink
from eddy.sources.base import REQUESTS, RawBatch
from eddy.sources.jsonl import JsonlSource

__all__ = ["BATCH_LINES", "run"]

BATCH_LINES = 2_000


def _to_results(item: RawBatch) -> list[Any]:
    now = time.time_ns() // 1_000_000
    res = Results()
    if item.stream == REQUESTS:
        rb, dead = decode_requests(item.lines, item.positions, item.source, item.ingest_ns)
        n = len(rb)
        res.add(
            "decisions",
            {
                "decision_id": rb.id,
                "event_time": rb.ts,
                "placement": rb.placement,
                "device": rb.device,
                "geo": rb.geo,
                "floor_price": rb.floor_price,
                "arm": np.zeros(n, np.int32),
                "partner": np.full(n, ARMS[0], dtype=object),
                "propensity": np.ones(n),
                "policy": np.full(n, "floor", dtype=object),
                "policy_version": np.full(n, "0", dtype=object),
                "feature_version": np.full(n, "0", dtype=object),
                "context": np.zeros((n, 1)),
                "decided_at": np.full(n, now, np.int64),
                "latency_ms": now - rb.ingest_ns / 1e6,
            },
        )
        res.count("requests", n)
    else:
        ob, dead = decode_outcomes(item.lines, item.positions, item.source)
        n = len(ob)
        arm = np.searchsorted(np.array(ARMS, dtype=object), ob.partner)
        res.add(
            "rewards",
            {
                "decision_id": ob.decision_id,
                "event_time": ob.ts,
                "arm": arm.astype(np.int32),
                "partner": ob.partner,
                "filled": ob.filled,
                "revenue": ob.revenue,
                "latency_ms": ob.latency_ms,
                "error": ob.error,
                "reward": ob.revenue,
                "timed_out": np.zeros(n, bool),
            },
        )
        res.count("outcomes", n)
    if dead:
        res.merge(dead_letter_results(dead, now))
    return [res]


def run(stream: Stream, workdir: str, max_seconds: float | None = None) -> VariantResult:
    writer = DuckDBWriter(db_path(workdir, "floor"))
    stats = RunStats()
    flow = Dataflow("floor")
    stop = threading.Event()
    reqs = op.input(
        "requests", flow, JsonlSource([stream.requests], REQUESTS, batch_lines=BATCH_LINES)
    )
    outs = op.input(
        "outcomes",
        flow,
        JsonlSource([stream.outcomes], "outcomes", batch_lines=BATCH_LINES, partition_base=1),
    )
    decoded = op.flat_map("decode", op.merge("inputs", reqs, outs), _to_results)
    op.output(
        "duckdb",
        op.key_on("to_duckdb", decoded, lambda _: "duckdb"),
        DuckDBSink(writer, stats, "floor"),
    )
    t0 = time.perf_counter()
    c0 = time.process_time()
    run_main(flow, epoch_interval=None)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    del stop
    counters, hist = stats.view()
    rows = writer.counts()
    writer.close()
    return VariantResult(
        variant="floor",
        events=int(counters.get("requests", 0) + counters.get("outcomes", 0)),
        wall_s=wall,
        latency_ms={f"p{round(q * 100)}": hist.quantile(q) for q in (0.5, 0.95, 0.99)},
        rows=rows,
        peak_rss_mb=peak_rss_mb(),
        cpu_s=cpu,
        notes="Bytewax: JsonlSource -> batch decode -> DuckDBSink, no processing",
    )
