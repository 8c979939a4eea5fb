"""Baseline ``floor``: read, decode and sink only; the ceiling no pipeline of the spec can pass.

The same Bytewax input as ``eddy run`` (``sources.jsonl.JsonlSource``, micro-batches of raw
lines of the spec's ``batch_size``, one partition per stream), the same decoder
(``schemas.decode.decode_lines``, dead letters included) and the same DuckDB sink
(``sinks.duckdb_sink.DuckDBSink``) with no stage in between. Every valid event becomes the one
row any pipeline of the spec must write for it: an event of a decide stage's stream a
``decisions`` row (the first arm, propensity 1, no context: nothing computed), an event of its
outcome stream a ``rewards`` row (the default reward), any other event a row of
``events_<stream>`` (its id, event time and declared fields); every bad line is a
``dead_letters`` row. What eddy does on top of this (features, detectors, decisions, and the
rows they add) is what the ratio eddy/floor prices.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import bytewax.operators as op
import numpy as np
import pyarrow as pa
from bytewax.dataflow import Dataflow
from bytewax.testing import run_main

from eddy.benchmarks.baselines.common import Recording, VariantResult, db_path, peak_rss_mb
from eddy.dataflows.flow import PARTITIONS_PER_STREAM
from eddy.operators.stats import RunStats
from eddy.schemas.batch import EventBatch
from eddy.schemas.decode import TimeBound, decode_lines
from eddy.schemas.results import Results, dead_letter_results
from eddy.schemas.spec import PipelineSpec
from eddy.schemas.tables import Column, Table, pipeline_tables
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.duckdb_sink import DuckDBSink
from eddy.sources.base import RawBatch
from eddy.sources.jsonl import JsonlSource

__all__ = ["floor_tables", "run"]

_TYPES: dict[str, tuple[str, pa.DataType]] = {
    "string": ("VARCHAR", pa.string()),
    "float": ("DOUBLE", pa.float64()),
    "int": ("DOUBLE", pa.float64()),  # decoded as float64 (exact to 2**53)
    "bool": ("BOOLEAN", pa.bool_()),
    "list[string]": ("VARCHAR[]", pa.list_(pa.string())),
}


def floor_tables(spec: PipelineSpec) -> dict[str, Table]:
    """The pipeline's ``decisions``, ``rewards``, ``dead_letters`` and ``metrics``, and
    ``events_<stream>`` for each stream no decide stage reads."""
    common = pipeline_tables(spec)
    out = {t: common[t] for t in ("dead_letters", "metrics", "decisions", "rewards")}
    for s in spec.streams:
        if s.name in spec.decision_streams or s.name in spec.reward_streams:
            continue  # their events become decisions and rewards rows
        fields = []
        for f in s.fields:
            sql, arrow = _TYPES[f.type]
            if f.type == "bool" and f.nullable:  # decoded as float 0/1/NaN
                sql, arrow = "DOUBLE", pa.float64()
            fields.append(Column(f.name, sql, arrow))
        out[f"events_{s.name}"] = Table(
            f"events_{s.name}",
            (
                Column("id", "VARCHAR", pa.string()),
                Column("event_time", "TIMESTAMP", pa.timestamp("ms")),
                *fields,
            ),
            ("id",),
        )
    return out


def _rows(spec: PipelineSpec, batch: EventBatch, tables: dict[str, Table]) -> tuple[str, dict]:
    """The table and the rows the floor writes for a batch (see the module docstring)."""
    n = len(batch)
    decide = next((d for d in spec.decide if d.stream == batch.stream), None)
    if decide is not None:
        now = time.time_ns() // 1_000_000
        cols: dict[str, Any] = {
            "decision_id": batch.ids,
            "decide": np.full(n, decide.name, dtype=object),
            "event_time": batch.ts,
            "arm": np.full(n, decide.arms[0], dtype=object),
            "arm_index": np.zeros(n, np.int32),
            "propensity": np.ones(n),
            "policy": np.full(n, "floor", dtype=object),
            "policy_version": np.full(n, "", dtype=object),
            "feature_version": np.full(n, "", dtype=object),
            "context": np.zeros((n, 0), np.float32),
            "eligible_arms": [None] * n,
            "decided_at": np.full(n, now, np.int64),
            "latency_ms": now - batch.ingest_ns / 1e6,
        }
        for c in tables["decisions"].column_names[len(cols) :]:
            col = batch.columns[c]
            cols[c] = (
                [list(v) for v in col]
                if col.dtype == object and len(col) and isinstance(col[0], tuple)
                else col
            )
        return "decisions", cols
    learns = next((d for d in spec.decide if d.reward.stream == batch.stream), None)
    if learns is not None:
        ids = batch.columns[learns.reward.join]
        if ids.dtype != object:  # an int join field: the decision id is its decimal string
            ids = np.nan_to_num(ids).astype(np.int64).astype(str).astype(object)
        cols = {
            "decision_id": ids,
            "decide": np.full(n, learns.name, dtype=object),
            "event_time": batch.ts,
            "arm": np.full(n, learns.arms[0], dtype=object),
            "reward": np.full(n, learns.reward.default),
            "timed_out": np.zeros(n, np.bool_),
        }
        for c in tables["rewards"].column_names[len(cols) :]:
            cols[c] = np.asarray(batch.columns[c], dtype=np.float64)
        return "rewards", cols
    cols = {"id": batch.ids, "event_time": batch.ts}
    cols.update(batch.columns)
    return f"events_{batch.stream}", cols


def _decoder(spec: PipelineSpec) -> Callable[[RawBatch], list[Results]]:
    tables = floor_tables(spec)

    def decode(item: RawBatch) -> list[Results]:
        stream = spec.stream(item.stream)
        now_ms = time.time_ns() // 1_000_000
        batch, dead = decode_lines(
            stream,
            item.lines,
            item.positions,
            item.source,
            item.ingest_ns,
            spec.max_event_bytes,
            time_bound=TimeBound(now_ms, spec.max_ahead_ms),
        )
        res = dead_letter_results(dead, now_ms)
        res.count("decode.events_in", len(item))
        if len(batch):
            table, cols = _rows(spec, batch, tables)
            res.add(table, cols)
            res.count(f"events.{stream.name}", len(batch))
            read, n = np.unique(batch.ingest_ns // 1_000_000, return_counts=True)
            res.ingest.extend(zip(read.tolist(), n.tolist(), strict=True))
        return [res]

    return decode


def run(rec: Recording, workdir: str, max_seconds: float | None = None) -> VariantResult:
    """The floor of ``rec.spec`` on the recording (``max_seconds`` is not needed: it is the
    fastest variant)."""
    spec = rec.spec
    writer = DuckDBWriter(db_path(workdir, "floor"), tables=floor_tables(spec))
    stats = RunStats()
    flow = Dataflow("floor")
    inputs = [
        op.input(
            f"in_{s.name}",
            flow,
            JsonlSource(
                [rec.path(s.name)],
                s.name,
                batch_lines=spec.batch_size,
                partition_base=i * PARTITIONS_PER_STREAM,
                max_line_bytes=spec.max_event_bytes,
            ),
        )
        for i, s in enumerate(spec.streams)
    ]
    items = inputs[0] if len(inputs) == 1 else op.merge("inputs", *inputs)
    decoded = op.flat_map("decode", items, _decoder(spec))
    op.output(
        "duckdb",
        op.key_on("to_duckdb", decoded, lambda _: "duckdb"),
        DuckDBSink(writer, stats, "floor", drain_on_snapshot=False),
    )
    t0 = time.perf_counter()
    c0 = time.process_time()
    run_main(flow, epoch_interval=timedelta(seconds=1))  # eddy run's default epoch
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    counters, hist = stats.view()
    rows = writer.counts()
    writer.close()
    return VariantResult(
        variant="floor",
        events=int(counters.get("decode.events_in", 0)),
        wall_s=wall,
        latency_ms={f"p{round(q * 100)}": hist.quantile(q) for q in (0.5, 0.95, 0.99)},
        rows=rows,
        peak_rss_mb=peak_rss_mb(),
        cpu_s=cpu,
        complete=counters.get("decode.events_in", 0) >= rec.n_events,
        notes="Bytewax: JsonlSource -> decode_lines -> DuckDBSink, no stages",
    )
