"""Where the reference pipeline's time goes, part by part, on the throughput suite's stream.

    python -m eddy.benchmarks.time_budget [--requests 200000] [--json FILE]

* ``pipeline_without_duckdb``: ``run_pipeline`` on the JSONL replay with the DuckDB writer's
  inserts replaced by a no-op (everything else as in ``eddy bench throughput``), events/s;
* ``decode_ns_per_line``: ``decode_requests`` / ``decode_outcomes`` on 4,000-line batches
  (best of five rounds of 20);
* ``engine_us_per_event``: ``AdServingEngine.process`` alone on the decoded batches, request
  and outcome batches alternating, at 50- and 1,000-row batches (a step's fixed cost shows as
  the difference);
* ``duckdb_insert_cpu_s``: CPU seconds to insert as many ``decisions`` rows as the stream has
  requests (``benchmarks.duckdb_sink.decisions_batch``, 49-float contexts) into an in-memory
  DuckDB table in 4,000-row Arrow batches: the real table, without its primary key, and
  without the ``context`` column.
"""

from __future__ import annotations

import argparse
import re
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import orjson

from eddy.benchmarks.baselines.common import Stream, make_stream
from eddy.benchmarks.duckdb_sink import decisions_batch
from eddy.dataflows.config import load_settings
from eddy.operators.adserving import AdServingEngine
from eddy.schemas.events import decode_outcomes, decode_requests
from eddy.schemas.tables import TABLES, ddl
from eddy.sinks.duckdb import DuckDBWriter, to_arrow

__all__ = ["main", "run_time_budget"]

_CONTEXT_DIMS = 49


def _lines(path: str) -> list[bytes]:
    return Path(path).read_bytes().splitlines()


def _pipeline_without_duckdb(stream: Stream, work: Path) -> float:
    from eddy.dataflows.pipeline import RunOptions, run_pipeline

    saved = DuckDBWriter.write_many, DuckDBWriter.write
    DuckDBWriter.write_many = lambda self, batches: dict.fromkeys(batches, 0)  # type: ignore[method-assign]
    DuckDBWriter.write = lambda self, table, columns: 0  # type: ignore[method-assign]
    try:
        base = load_settings(None)
        head = stream.head(work / "head", 3_000)
        for name, s in (("warm", head), ("timed", stream)):
            opts = RunOptions(
                settings=replace(base, duckdb=str(work / f"{name}.duckdb")),
                source=f"jsonl:{s.requests}",
                rewards=f"jsonl:{s.outcomes}",
            )
            res = run_pipeline(opts)
    finally:
        DuckDBWriter.write_many, DuckDBWriter.write = saved  # type: ignore[method-assign]
    return stream.n_events / res.wall_s


def _decode_ns(req: list[bytes], out: list[bytes]) -> dict[str, float]:
    got = {}
    for name, lines, decode in (
        ("requests", req, decode_requests),
        ("outcomes", out, decode_outcomes),
    ):
        batch = lines[:4_000]
        pos = list(range(len(batch)))
        args: tuple[Any, ...] = (
            (batch, pos, "bench", 0) if name == "requests" else (batch, pos, "bench")
        )
        decode(*args)
        best = float("inf")
        for _ in range(5):  # best of five: a shared machine's hiccups are not the decoder's
            t = time.perf_counter()
            for _ in range(20):
                decode(*args)
            best = min(best, (time.perf_counter() - t) / 20 / len(batch) * 1e9)
        got[name] = best
    return got


def _engine_us(req: list[bytes], out: list[bytes], rows: int) -> float:
    batches: list[Any] = []
    for i in range(0, max(len(req), len(out)), rows):
        r, o = req[i : i + rows], out[i : i + rows]
        if r:
            batches.append(decode_requests(r, list(range(i, i + len(r))), "r", time.time_ns())[0])
        if o:
            batches.append(decode_outcomes(o, list(range(i, i + len(o))), "o")[0])
    config = load_settings(None).engine
    warm = AdServingEngine(config)
    for b in batches[:20]:
        warm.process(b)
    engine = AdServingEngine(config)
    t = time.process_time()
    for b in batches:
        engine.process(b)
    engine.finish()
    return (time.process_time() - t) / sum(len(b) for b in batches) * 1e6


def _insert_cpu(n: int) -> dict[str, float]:
    size = 4_000
    batches = [
        to_arrow("decisions", decisions_batch(i, min(size, n - i), d=_CONTEXT_DIMS))
        for i in range(0, n, size)
    ]
    full = ddl(TABLES["decisions"])
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
        stream = make_stream(work / "stream", n_requests)
        req, out = _lines(stream.requests), _lines(stream.outcomes)
        return {
            "events": stream.n_events,
            "pipeline_without_duckdb_events_per_s": round(_pipeline_without_duckdb(stream, work)),
            "decode_ns_per_line": {k: round(v) for k, v in _decode_ns(req, out).items()},
            "engine_us_per_event": {
                rows: round(_engine_us(req, out, rows), 2) for rows in (50, 1_000)
            },
            "duckdb_insert_cpu_s": {k: round(v, 3) for k, v in _insert_cpu(len(req)).items()},
            "decisions_rows": len(req),
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
