"""Scaling: events/s of a spec with 1, 2, ... workers on the same recorded input.

``eddy bench scaling --pipeline FILE --workers 1,2 --json out.json``. The spec's streams are
recorded once (``benchmarks.recording``; ``--events`` sets the length); for each worker count a
cluster of that many processes on this machine, one Bytewax worker each (Python threads would
share one core), replays the recording:

* **timed runs** count the results on the worker that computed them (``sinks/counting.py``):
  nothing is written, so the output is not the bottleneck and the figure is the stages'.
  events/s = input lines / the run's busy time in process 0: from the first results to the
  end of the input (start-up is before: imports, numba's cache, the cluster's connections,
  which retry for a second when a member listens late). The best of ``--repeat`` runs, made
  in rounds (every worker count once per round) so that a slower spell of a shared machine
  hits every count alike; ``median_round_speedup`` is the median over the rounds of each
  count's speed against the first count's in the same round.
  Each worker also reports the thread CPU time of each engine step (decode, keyed shards,
  decide shards; ``runs[*].step_cpu_s``): the busiest worker's steps are what bounds the
  speedup, the rest of its busy time is exchange and idling.
* **checked runs** write DuckDB (process 0 owns the file) and ``same_results`` compares, between
  every worker count and the first, ``window_aggregates``, every stored ``features_<name>`` and
  ``anomalies`` (without the wall-clock ``detected_at``): the same rows, with floats equal to
  1e-6 relative, absolute below 1. A trailing feature's running sums restart around the mean
  of the key's live values at points that depend on when expired values were dropped, which
  follows how the input reached the shard: the last bits differ, and a mean near 0 of large
  values, or a small standard deviation of values far from 0, carries that rounding up
  (differences of 1e-9 relative were seen).

Keyed state has one shard per worker unless ``--shards`` (or the spec's ``[pipeline] shards``)
fixes it; a decide stage has the shards its spec gives (``[[decide]] shards``, default 1), which
share what they learn through a temporary directory.
A closed-loop spec replays with outcomes joined by id alone (``throughput.replay_spec``).
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import tempfile
import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from eddy.benchmarks.recording import Recording, record
from eddy.benchmarks.throughput import replay_spec
from eddy.schemas.spec import PipelineSpec

__all__ = ["compare_results", "run_cluster", "run_scaling"]

_COMPARED = ("window_aggregates", "anomalies")
_WALL_CLOCK = {"detected_at", "run_id"}
_REL = 1e-6
_STEPS = ("decode", "keyed", "decide")  # the engine's steps, in the order data meets them


def _member(rec: Recording, opts_kw: dict[str, Any], pid: int, q: Any) -> None:
    try:
        from eddy.dataflows.run_options import RunOptions
        from eddy.dataflows.runner import run_pipeline

        opts = RunOptions(replay_spec(rec.spec), sources=rec.sources, process_id=pid, **opts_kw)
        res = run_pipeline(opts)
        q.put(
            (
                pid,
                {
                    "wall_s": res.wall_s,
                    "busy_s": res.busy_s,
                    "counters": dict(res.counters),
                    "step_cpu_s": dict(res.step_cpu_s),
                },
            )
        )
    except BaseException:
        q.put((pid, {"error": traceback.format_exc()}))


def run_cluster(
    rec: Recording,
    workers: int,
    *,
    duckdb_path: str | None = None,
    shards: int | None = None,
    batch_size: int | None = None,
    timeout_s: float = 1_800.0,
) -> dict[str, Any]:
    """One replay of ``rec`` by ``workers`` processes: process 0's wall time and counters, and
    ``steps``, each process's thread CPU seconds per engine step."""
    from eddy.dataflows.runner import local_addresses

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with tempfile.TemporaryDirectory(prefix="eddy-exchange-") as exchange:
        kw: dict[str, Any] = {
            "processes": workers,
            "addresses": local_addresses(workers) if workers > 1 else None,
            "shards": shards,
            "batch_size": batch_size,
            "duckdb": duckdb_path,
            "no_duckdb": duckdb_path is None,
            "exchange_dir": exchange,  # decide shards in several processes share there
        }
        return _gather(ctx, q, rec, kw, workers, timeout_s)


def _gather(
    ctx: Any, q: Any, rec: Recording, kw: dict[str, Any], workers: int, timeout_s: float
) -> dict[str, Any]:
    """Start the members, wait for each one's result; process 0's, with every member's step
    times."""
    procs = [ctx.Process(target=_member, args=(rec, kw, i, q)) for i in range(workers)]
    for p in procs:
        p.start()
    results: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while len(results) < workers:
            if time.monotonic() > deadline:
                raise TimeoutError(f"scaling: {workers} workers did not finish in {timeout_s} s")
            try:
                pid, res = q.get(timeout=1.0)
            except queue.Empty:
                dead = [i for i, p in enumerate(procs) if p.exitcode not in (None, 0)]
                if dead:
                    raise RuntimeError(f"scaling: worker process {dead[0]} died") from None
                continue
            if "error" in res:
                raise RuntimeError(f"scaling: worker process {pid} failed:\n{res['error']}")
            results[pid] = res
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return {**results[0], "steps": [results[i]["step_cpu_s"] for i in range(workers)]}


def compare_results(a: str, b: str, spec: PipelineSpec) -> dict[str, dict[str, int]]:
    """Rows of the compared tables in one DuckDB file and not in the other (floats compared to
    1e-6 relative, absolute below 1), per table: ``{"rows": n, "only_a": .., "only_b": ..}``."""
    tables = [*_COMPARED, *(f"features_{f.name}" for f in spec.features if f.store)]
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute(f"ATTACH '{a}' AS a (READ_ONLY)")
    con.execute(f"ATTACH '{b}' AS b (READ_ONLY)")
    out = {}
    for t in tables:
        cols = con.execute(f"DESCRIBE a.{t}").fetchall()
        exact = [f'"{c}"' for c, typ, *_ in cols if c not in _WALL_CLOCK and typ != "DOUBLE"]
        floats = [f'"{c}"' for c, typ, *_ in cols if c not in _WALL_CLOCK and typ == "DOUBLE"]
        on = " AND ".join(f"x.{c} IS NOT DISTINCT FROM y.{c}" for c in exact) or "TRUE"
        close = " AND ".join(
            f"(x.{c} IS NOT DISTINCT FROM y.{c} OR abs(x.{c} - y.{c}) <= "
            f"{_REL} * greatest(abs(x.{c}), abs(y.{c}), 1.0))"
            for c in floats
        )
        counts = {}
        for name, (x, y) in {"only_a": ("a", "b"), "only_b": ("b", "a")}.items():
            counts[name] = _count(
                con,
                f"SELECT count(*) FROM {x}.{t} x WHERE NOT EXISTS "
                f"(SELECT 1 FROM {y}.{t} y WHERE {on} AND {close or 'TRUE'})",
            )
        counts["rows"] = _count(con, f"SELECT count(*) FROM a.{t}")
        out[t] = counts
    con.close()
    return out


def _count(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    row = con.execute(sql).fetchone()
    return int(row[0]) if row else 0


def run_scaling(
    spec: PipelineSpec,
    workers: list[int],
    *,
    events: int | None = None,
    repeat: int = 2,
    shards: int | None = None,
    workdir: str | None = None,
    log: Any = print,
) -> dict[str, Any]:
    """See the module docstring; ``{"scaling": {"N": events/s}, "same_results": bool, ...}``."""
    with tempfile.TemporaryDirectory(prefix="eddy-scaling-", dir=workdir) as tmp:
        rec = record(spec, Path(tmp) / "recording", events=events)
        rec = replace(rec, spec=replay_spec(rec.spec))
        log(f"scaling: {rec.n_events:,} events of {spec.name!r}")
        busy: dict[int, list[float]] = {n: [] for n in workers}
        walls: dict[int, list[float]] = {n: [] for n in workers}
        steps: dict[int, list[list[dict[str, float]]]] = {n: [] for n in workers}
        for r in range(repeat):  # rounds of every worker count: a slower spell hits all alike
            for n in workers:
                res = run_cluster(rec, n, shards=shards)
                busy[n].append(res["busy_s"] or res["wall_s"])
                walls[n].append(res["wall_s"])
                steps[n].append(res["steps"])
            log(f"  round {r + 1}: busy " + ", ".join(f"{n}: {busy[n][-1]:.2f} s" for n in workers))
        rates = {str(n): rec.n_events / min(busy[n]) for n in workers}
        base = workers[0]
        # per round, each count's speed against the first count's in the same round
        rounds = {
            str(n): [b0 / b for b0, b in zip(busy[base], busy[n], strict=True)] for n in workers[1:]
        }
        runs = [
            {
                "workers": n,
                "busy_s": busy[n],
                "wall_s": walls[n],
                "events_per_s": rates[str(n)],
                "step_cpu_s": steps[n],  # per round, per worker process
            }
            for n in workers
        ]
        for n in workers:
            log(f"  {n} worker(s): {rates[str(n)]:,.0f} events/s (best of {repeat})")
            best = steps[n][int(np.argmin(busy[n]))]
            for i, member in enumerate(best):
                order = sorted(member, key=lambda k: (_STEPS.index(k) if k in _STEPS else 9, k))
                cpu = ", ".join(f"{k} {member[k]:.2f} s" for k in order)
                log(f"    worker {i} in the fastest round, CPU per step: {cpu or 'none'}")
        dbs = {}
        for n in workers:
            dbs[n] = str(Path(tmp) / f"check-{n}.duckdb")
            run_cluster(rec, n, duckdb_path=dbs[n], shards=shards)
        compare = {str(n): compare_results(dbs[base], dbs[n], rec.spec) for n in workers[1:]}
        same = all(
            c["only_a"] == 0 and c["only_b"] == 0 for t in compare.values() for c in t.values()
        )
        return {
            "pipeline": spec.name,
            "scaling": rates,
            "same_results": same,
            "round_speedups": rounds,
            "median_round_speedup": {n: float(np.median(v)) for n, v in rounds.items()},
            "events": rec.n_events,
            "repeat": repeat,
            "shards": shards or "one per worker",
            "output": "counting sink: results counted on the worker that computed them",
            "runs": runs,
            "compare": compare,
        }
