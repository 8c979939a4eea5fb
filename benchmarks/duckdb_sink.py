"""DuckDB sink benchmark: Arrow batch inserts vs executemany, and query-endpoint latency.

    python -m eddy.benchmarks.duckdb_sink [--batches 50] [--batch-size 10000] [--queries 300]

Measures, on a fresh file in a temporary directory:

* ``arrow_insert``: :meth:`DuckDBWriter.write` of ``decisions`` batches (new keys), rows/s;
* ``arrow_replay``: the same batches again (every key conflicts, nothing inserted), rows/s;
* ``arrow_insert_checkpoint_threshold_16MB``: new keys again on a second file with DuckDB's
  default automatic checkpoint (every 16 MB of WAL; each blocks the writer, see
  ``batch_ms.max``) instead of the writer's default ``1GB``;
* ``close_s``: the final checkpoint in ``close()`` (where deferred checkpoint work lands);
* ``executemany_autocommit`` / ``executemany_1tx``: the row-by-row baseline, ``INSERT ...
  VALUES (?, ...) ON CONFLICT DO NOTHING`` through ``executemany`` on the same table, each row
  its own transaction / all rows in one transaction, rows/s (fewer rows: it is slow);
* ``endpoint_latency``: ``SELECT count(*) FROM decisions`` over HTTP through
  :class:`QueryServer`, idle and while another thread keeps writing 10k-row batches
  (p50/p95/p99/max ms, and how many rows the writer added meanwhile).

Prints one JSON object; ``--out FILE`` also writes it.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import time
from typing import Any

import numpy as np
import orjson

from eddy.schemas.tables import TABLES
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.query_client import Endpoint, query_endpoint
from eddy.sinks.query_server import QueryServer

__all__ = ["decisions_batch", "main", "run"]

_T0 = 1_700_000_000_000


def decisions_batch(start: int, n: int, d: int = 16, seed: int = 0) -> dict[str, Any]:
    """A realistic ``decisions`` batch with keys ``start .. start + n``."""
    rng = np.random.default_rng(seed + start)
    ids = np.arange(start, start + n)
    names = np.array(["a0", "a1", "a2", "a3", "a4"], dtype=object)
    arm = rng.integers(0, 5, n).astype(np.int32)
    return {
        "decision_id": np.array([f"req-{i}" for i in ids], dtype=object),
        "decide": np.full(n, "pick", dtype=object),
        "event_time": _T0 + ids * 2,
        "arm": names[arm],
        "arm_index": arm,
        "propensity": rng.random(n),
        "policy": np.full(n, "linucb", dtype=object),
        "policy_version": np.full(n, "v1", dtype=object),
        "feature_version": np.full(n, "f1", dtype=object),
        "context": rng.random((n, d)),
        "eligible_arms": [None] * n,
        "decided_at": _T0 + ids * 2 + 1,
        "latency_ms": rng.random(n),
    }


def _arrow(writer: DuckDBWriter, batches: list[dict[str, Any]]) -> dict[str, Any]:
    times = []
    inserted = 0
    for b in batches:
        t0 = time.perf_counter()
        inserted += writer.write("decisions", b)
        times.append(time.perf_counter() - t0)
    rows = sum(len(b["decision_id"]) for b in batches)
    secs = float(sum(times))
    ms = np.asarray(times) * 1e3
    return {
        "rows": rows,
        "inserted": inserted,
        "seconds": round(secs, 3),
        "rows_per_s": round(rows / secs),
        "batch_ms": {
            "p50": round(float(np.quantile(ms, 0.5)), 1),
            "p99": round(float(np.quantile(ms, 0.99)), 1),
            "max": round(float(ms.max()), 1),
        },
    }


def _executemany(path: str, batch: dict[str, Any], transaction: bool) -> float:
    import duckdb

    cols = TABLES["decisions"].column_names
    ts = {"event_time", "decided_at"}

    def value(c: str, i: int) -> Any:
        v = batch[c][i]
        if c in ts:
            return np.datetime64(int(v), "ms").item()
        if c == "context":
            return v.tolist()
        return v.item() if isinstance(v, np.generic) else v

    rows = [tuple(value(c, i) for c in cols) for i in range(len(batch["decision_id"]))]
    marks = ", ".join("?" for _ in cols)
    con = duckdb.connect(path)
    try:
        t0 = time.perf_counter()
        if transaction:
            con.execute("BEGIN TRANSACTION")
        con.executemany(f"INSERT INTO decisions VALUES ({marks}) ON CONFLICT DO NOTHING", rows)
        if transaction:
            con.execute("COMMIT")
        return time.perf_counter() - t0
    finally:
        con.close()


def _quantiles(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms)
    return {
        "n": len(ms),
        "p50_ms": round(float(np.quantile(a, 0.5)), 3),
        "p95_ms": round(float(np.quantile(a, 0.95)), 3),
        "p99_ms": round(float(np.quantile(a, 0.99)), 3),
        "max_ms": round(float(a.max()), 3),
    }


def _latency(writer: DuckDBWriter, queries: int, batch_size: int, start: int) -> dict[str, Any]:
    sql = "SELECT count(*) FROM decisions"
    with QueryServer(writer, advertise=False) as server:
        ep = Endpoint(server.host, server.port, server.token, os.getpid(), server.db)

        def measure() -> list[float]:
            out = []
            for _ in range(queries):
                t0 = time.perf_counter()
                query_endpoint(ep, sql)
                out.append((time.perf_counter() - t0) * 1e3)
            return out

        idle = measure()
        stop = threading.Event()
        written = [0]

        def pump() -> None:
            i = start
            while not stop.is_set():
                written[0] += writer.write("decisions", decisions_batch(i, batch_size))
                i += batch_size

        before = query_endpoint(ep, sql).rows[0][0]
        t = threading.Thread(target=pump, daemon=True)
        t.start()
        try:
            busy = measure()
        finally:
            stop.set()
            t.join()
        after = query_endpoint(ep, sql).rows[0][0]
    return {
        "query": sql,
        "idle": _quantiles(idle),
        "while_writing": _quantiles(busy),
        "rows_written_meanwhile": written[0],
        "count_before": before,
        "count_after": after,
    }


def run(
    batches: int = 50,
    batch_size: int = 10_000,
    queries: int = 300,
    checkpoint_threshold: str = "16MB",
) -> dict[str, Any]:
    data = [decisions_batch(i * batch_size, batch_size) for i in range(batches)]
    rows = batches * batch_size
    out: dict[str, Any] = {"table": "decisions", "batch_size": batch_size, "context_dims": 16}
    with tempfile.TemporaryDirectory(prefix="eddy-bench-") as tmp:
        path = os.path.join(tmp, "bench.duckdb")
        writer = DuckDBWriter(path)
        out["checkpoint_threshold"] = writer.checkpoint_threshold
        out["arrow_insert"] = _arrow(writer, data)
        out["arrow_replay"] = _arrow(writer, data)
        out["endpoint_latency"] = _latency(writer, queries, batch_size, rows)
        t0 = time.perf_counter()
        writer.close()
        out["close_s"] = round(time.perf_counter() - t0, 3)
        other = os.path.join(tmp, "other-threshold.duckdb")
        with DuckDBWriter(other, checkpoint_threshold=checkpoint_threshold) as writer:
            out[f"arrow_insert_checkpoint_threshold_{checkpoint_threshold}"] = _arrow(writer, data)
        for label, n, tx in (
            ("executemany_autocommit", 300, False),
            ("executemany_1tx", 3000, True),
        ):
            em_path = os.path.join(tmp, f"{label}.duckdb")
            DuckDBWriter(em_path).close()
            secs = _executemany(em_path, decisions_batch(0, n), tx)
            out[label] = {"rows": n, "seconds": round(secs, 3), "rows_per_s": round(n / secs)}
    out["arrow_speedup_vs_executemany_1tx"] = round(
        out["arrow_insert"]["rows_per_s"] / out["executemany_1tx"]["rows_per_s"], 1
    )
    out["cpu_count"] = os.cpu_count()
    out["load_avg_1min"] = round(os.getloadavg()[0], 2)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eddy.benchmarks.duckdb_sink", description=__doc__)
    p.add_argument("--batches", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument(
        "--checkpoint-threshold", default="16MB", help="second insert run (DuckDB default 16MB)"
    )
    p.add_argument("--out", help="also write the JSON result here")
    args = p.parse_args(argv)
    result = run(args.batches, args.batch_size, args.queries, args.checkpoint_threshold)
    text = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
