"""The DuckDB sink as one Bytewax partition: the single writer of the database file.

Items are :class:`schemas.results.Results`. Each ``write_batch`` merges everything Bytewax
handed over into one insert per table (Arrow, ``ON CONFLICT DO NOTHING``), then updates the
run statistics and, once per wall-clock second, writes a snapshot of them to ``metrics``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from operators.stats import RunStats
from schemas.results import Results
from sinks.duckdb import DuckDBWriter

__all__ = ["DuckDBSink", "metrics_rows"]

PART = "duckdb"


def metrics_rows(run_id: str, stats: RunStats, ts_ms: int, step: str = "pipeline") -> dict:
    """The current counters and latency quantiles as ``metrics`` table columns."""
    counters, hist = stats.view()
    names = sorted(counters)
    values = [float(counters[n]) for n in names]
    for q in (0.5, 0.95, 0.99):
        names.append(f"latency_p{round(q * 100)}_ms")
        values.append(hist.quantile(q))
    n = len(names)
    return {
        "run_id": np.full(n, run_id, dtype=object),
        "ts": np.full(n, ts_ms, dtype=np.int64),
        "step": np.full(n, step, dtype=object),
        "name": np.array(names, dtype=object),
        "value": np.array(values, dtype=np.float64),
    }


class _Partition(StatefulSinkPartition[Results, None]):
    def __init__(
        self,
        writer: DuckDBWriter,
        stats: RunStats,
        run_id: str,
        on_write: Callable[[Results], None] | None,
    ) -> None:
        self._writer = writer
        self._stats = stats
        self._run_id = run_id
        self._on_write = on_write
        self._last_metrics = 0.0

    def write_batch(self, values: list[Results]) -> None:
        merged = Results()
        for v in values:
            merged.merge(v)
        if merged.tables:
            self._writer.write_many(merged.tables)
        now_ns = time.time_ns()
        dec = merged.tables.get("decisions")
        with self._stats.lock:
            for k, v in merged.counters.items():
                self._stats.add(k, v)
            if dec is not None:  # end to end: ingest -> readable in DuckDB
                ingest_ms = np.asarray(dec["decided_at"]) - np.asarray(dec["latency_ms"])
                self._stats.latency.add(now_ns / 1e6 - ingest_ms)
        if self._on_write is not None:
            self._on_write(merged)
        if time.monotonic() - self._last_metrics >= 1.0:
            self.flush_metrics()

    def flush_metrics(self) -> None:
        self._last_metrics = time.monotonic()
        rows = metrics_rows(self._run_id, self._stats, int(time.time() * 1000))
        self._writer.write("metrics", rows)

    def snapshot(self) -> None:
        return None

    def close(self) -> None:
        self.flush_metrics()


class DuckDBSink(FixedPartitionedSink[Results, None]):
    """Routes every item to the one partition that owns ``writer``."""

    def __init__(
        self,
        writer: DuckDBWriter,
        stats: RunStats,
        run_id: str,
        on_write: Callable[[Results], None] | None = None,
    ) -> None:
        self._writer = writer
        self._stats = stats
        self._run_id = run_id
        self._on_write = on_write

    def list_parts(self) -> list[str]:
        return [PART]

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Partition:
        return _Partition(self._writer, self._stats, self._run_id, self._on_write)
