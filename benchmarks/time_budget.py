"""Where the reference pipeline's time goes, part by part, on the throughput suite's input.

    python -m eddy.benchmarks.time_budget [--requests 200000] [--json FILE]

* ``pipeline_without_duckdb``: ``run_pipeline`` on the JSONL replay with the DuckDB writer's
  inserts replaced by a no-op (everything else as in ``eddy bench throughput``), events/s;
* ``decode_ns_per_line``: ``decode_lines`` of each stream on 4,000-line batches (best of five
  rounds of 20);
* ``engine_us_per_event``: ``PipelineEngine.process_many`` alone on the decoded batches, request
  and outcome batches alternating, at 50- and 1,000-row batches (a step's fixed cost shows as
  the difference);
* ``duckdb_insert_cpu_s``: CPU seconds to insert the ``decisions`` rows the engine wrote for the
  stream into an in-memory DuckDB table in 4,000-row Arrow batches: the real table, without its
  primary key, and without the ``context`` column.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import duckdb
import orjson

from eddy.benchmarks.baselines.common import reference_recording, reference_spec
from eddy.benchmarks.recording import Recording
from eddy.operators.engine import PipelineEngine
from eddy.schemas.batch import EventBatch
from eddy.schemas.decode import decode_lines
from eddy.schemas.results import Results
from eddy.schemas.tables import ddl, pipeline_tables
from eddy.sinks.duckdb import DuckDBWriter, to_arrow

__all__ = ["main", "run_time_budget"]

_STREAMS = ("requests", "outcomes")


def _lines(path: str) -> list[bytes]:
    return Path(path).read_bytes().splitlines()


def _pipeline_without_duckdb(rec: Recording, work: Path) -> float:
    from eddy.dataflows.run_options import RunOptions
    from eddy.dataflows.runner import run_pipeline

    saved = DuckDBWriter.write_many, DuckDBWriter.write
    DuckDBWriter.write_many = lambda self, batches: dict.fromkeys(batches, 0)  # type: ignore[method-assign]
    DuckDBWriter.write = lambda self, table, columns: 0  # type: ignore[method-assign]
    try:
        head = rec.head(work / "head", 3_000)
        for name, r in (("warm", head), ("timed", rec)):
            opts = RunOptions(rec.spec, sources=r.sources, duckdb=str(work / f"{name}.duckdb"))
            res = run_pipeline(opts)
    finally:
        DuckDBWriter.write_many, DuckDBWriter.write = saved  # type: ignore[method-assign]
    return rec.n_events / res.wall_s


def _decode(stream: str, lines: list[bytes], first: int = 1) -> EventBatch:
    pos = list(range(first, first + len(lines)))
    return decode_lines(reference_spec().stream(stream), lines, pos, stream, time.time_ns())[0]


def _decode_ns(lines: dict[str, list[bytes]]) -> dict[str, float]:
    got = {}
    for name in _STREAMS:
        batch = lines[name][:4_000]
        _decode(name, batch)
        best = float("inf")
        for _ in range(5):  # best of five: a shared machine's hiccups are not the decoder's
            t = time.perf_counter()
            for _ in range(20):
                _decode(name, batch)
            best = min(best, (time.perf_counter() - t) / 20 / len(batch) * 1e9)
        got[name] = best
    return got


def _engine_us(lines: dict[str, list[bytes]], rows: int) -> tuple[float, Results]:
    """CPU µs per event of the engine alone, and what it produced."""
    spec = reference_spec()
    part = {s.name: i * 1_000 for i, s in enumerate(spec.streams)}
    items: list[tuple[int, EventBatch]] = []
    req, out = lines["requests"], lines["outcomes"]
    for i in range(0, max(len(req), len(out)), rows):
        for name, chunk in (("requests", req[i : i + rows]), ("outcomes", out[i : i + rows])):
            if chunk:
                items.append((part[name], _decode(name, chunk, i + 1)))
    warm = PipelineEngine(spec)
    for item in items[:20]:
        warm.process_many([item], time.time_ns())
    engine = PipelineEngine(spec)
    produced: list[Results] = []
    t = time.process_time()
    for item in items:
        produced.append(engine.process_many([item], time.time_ns()))
    produced.append(engine.finish(time.time_ns()))
    us = (time.process_time() - t) / sum(len(b) for _, b in items) * 1e6
    return us, Results.combine(produced)


def _insert_cpu(decisions: dict[str, Any]) -> dict[str, float]:
    size = 4_000
    table = pipeline_tables(reference_spec())["decisions"]
    whole = to_arrow(table, decisions)
    batches = [whole.slice(i, size) for i in range(0, whole.num_rows, size)]
    full = ddl(table)
    no_pk = re.sub(r",\s*PRIMARY KEY\s*\([^)]*\)", "", full)
    no_context = re.sub(r',\s*"context" FLOAT\[\]', "", full)
    got = {}
    for name, sql, drop in (
        ("table", full, False),
        ("no_primary_key", no_pk, False),
        ("no_context", no_context, True),
    ):
        con = duckdb.connect()
        con.execute(sql)
        t = time.process_time()
        for batch in batches:
            con.register("batch", batch.drop(["context"]) if drop else batch)
            con.execute('INSERT INTO "decisions" SELECT * FROM batch')
            con.unregister("batch")
        got[name] = time.process_time() - t
        con.close()
    return got


def run_time_budget(n_requests: int = 200_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="eddy-budget-") as tmp:
        work = Path(tmp)
        rec = reference_recording(work / "stream", n_requests)
        lines = {s: _lines(rec.path(s)) for s in _STREAMS}
        engine = {rows: _engine_us(lines, rows) for rows in (50, 1_000)}
        decisions = engine[1_000][1].tables["decisions"]
        return {
            "events": rec.n_events,
            "pipeline_without_duckdb_events_per_s": round(_pipeline_without_duckdb(rec, work)),
            "decode_ns_per_line": {k: round(v) for k, v in _decode_ns(lines).items()},
            "engine_us_per_event": {rows: round(us, 2) for rows, (us, _) in engine.items()},
            "duckdb_insert_cpu_s": {k: round(v, 3) for k, v in _insert_cpu(decisions).items()},
            "decisions_rows": len(decisions["decision_id"]),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eddy.benchmarks.time_budget")
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    res = run_time_budget(args.requests)
    text = orjson.dumps(res, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    print(text.decode())
    if args.json:
        args.json.write_bytes(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
