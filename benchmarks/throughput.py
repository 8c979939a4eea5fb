"""Throughput: every variant on the same serialised stream, one run, one process tree.

The stream is simulated once and written to JSONL (``benchmarks.baselines.common.make_stream``);
each variant then runs in its own child process (``multiprocessing`` spawn: a clean heap, an
honest peak RSS, no JIT or import shared between variants), first on a short warm-up prefix
(imports, numba compilation, DuckDB start-up), then timed on the whole stream:

* ``eddy`` — the reference pipeline, ``dataflows.pipeline.run_pipeline`` on the JSONL files;
* ``naive`` — per-event Python loop with River models (``benchmarks/baselines/naive.py``);
* ``bytewax_idiomatic`` — Bytewax the way its examples do it (``.../bytewax_idiomatic.py``);
* ``floor`` — read, decode, sink; nothing else (``.../floor.py``).

``events`` counts input lines processed (requests + outcomes). Slow variants get a time budget
(``max_seconds``) and are measured on the prefix they finished (``complete: false``).
"""

from __future__ import annotations

import dataclasses
import multiprocessing as mp
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eddy.benchmarks.baselines.common import (
    Stream,
    VariantResult,
    db_path,
    make_stream,
    peak_rss_mb,
)

__all__ = [
    "VARIANTS",
    "call_isolated",
    "run_eddy",
    "run_isolated",
    "run_throughput",
    "run_variant",
]

VARIANTS = ("eddy", "naive", "bytewax_idiomatic", "floor")
WARMUP_REQUESTS = 3_000


def run_eddy(
    stream: Stream, workdir: str, max_seconds: float | None = None, batch_size: int | None = None
) -> VariantResult:
    """The reference pipeline on the JSONL files (default config, its own DuckDB file)."""
    from eddy.dataflows.config import load_settings
    from eddy.dataflows.pipeline import RunOptions, run_pipeline

    base = load_settings(None)
    settings = dataclasses.replace(
        base,
        duckdb=db_path(workdir, "eddy"),
        batch_size=batch_size or base.batch_size,
    )
    opts = RunOptions(
        settings=settings,
        source=f"jsonl:{stream.requests}",
        rewards=f"jsonl:{stream.outcomes}",
        seconds=max_seconds,
    )
    c0 = time.process_time()
    res = run_pipeline(opts)
    cpu = time.process_time() - c0
    events = int(res.counters.get("requests", 0) + res.counters.get("outcomes", 0))
    events += int(res.tables.get("dead_letters", 0))
    return VariantResult(
        variant="eddy",
        events=events,
        wall_s=res.wall_s,
        latency_ms=dict(res.latency_ms),
        rows=dict(res.tables),
        peak_rss_mb=peak_rss_mb(),
        cpu_s=cpu,
        complete=events >= stream.n_events,
        notes=f"reference pipeline, batch_size={settings.batch_size}",
    )


def _runner(variant: str) -> Any:
    if variant == "eddy":
        return run_eddy
    if variant == "naive":
        from eddy.benchmarks.baselines import naive

        return naive.run
    if variant == "bytewax_idiomatic":
        from eddy.benchmarks.baselines import bytewax_idiomatic

        return bytewax_idiomatic.run
    if variant == "floor":
        from eddy.benchmarks.baselines import floor

        return floor.run
    raise ValueError(f"throughput variant: expected one of {VARIANTS}, got {variant!r}")


def run_variant(
    variant: str,
    stream: Stream,
    workdir: str,
    max_seconds: float | None = None,
    warmup: bool = True,
    warmup_requests: int = WARMUP_REQUESTS,
    **kwargs: Any,
) -> VariantResult:
    """Run one variant in this process (warm-up on a prefix first, then the timed run)."""
    run = _runner(variant)
    if warmup:
        head = stream.head(Path(workdir) / f"warmup-{variant}", warmup_requests)
        run(head, str(Path(workdir) / f"warmup-{variant}"), max_seconds, **kwargs)
    result: VariantResult = run(stream, workdir, max_seconds, **kwargs)
    return result


def _child(
    variant: str, stream: Stream, workdir: str, max_seconds: float | None, kw: dict, q: Any
) -> None:
    try:
        q.put(("ok", run_variant(variant, stream, workdir, max_seconds, **kw).as_dict()))
    except BaseException:
        q.put(("error", traceback.format_exc()))


def _call_child(func: Callable[..., dict], args: tuple, q: Any) -> None:
    try:
        q.put(("ok", func(*args)))
    except BaseException:
        q.put(("error", traceback.format_exc()))


def call_isolated(func: Callable[..., dict], *args: Any, timeout_s: float = 600.0) -> dict:
    """``func(*args)`` (a module-level function returning a dict) in a spawned child process."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_call_child, args=(func, args, q))
    p.start()
    try:
        status, payload = q.get(timeout=timeout_s)
    except Exception:
        status, payload = "error", f"no result within {timeout_s:.0f} s (exit code {p.exitcode})"
    p.join(timeout=30)
    if p.is_alive():
        p.kill()
        p.join()
    return dict(payload) if status == "ok" else {"error": payload}


def run_isolated(
    variant: str,
    stream: Stream,
    workdir: str,
    max_seconds: float | None = None,
    timeout_s: float = 600.0,
    **kw: Any,
) -> dict[str, Any]:
    """``run_variant`` in a spawned child process; returns its result dict (or an error)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(variant, stream, workdir, max_seconds, kw, q))
    p.start()
    try:
        status, payload = q.get(timeout=timeout_s)
    except Exception:  # the child died or hung: report it, never hide it
        status, payload = "error", f"no result within {timeout_s:.0f} s (exit code {p.exitcode})"
    p.join(timeout=30)
    if p.is_alive():
        p.kill()
        p.join()
    if status != "ok":
        return {"variant": variant, "error": payload}
    return dict(payload)


def run_throughput(
    n_requests: int = 200_000,
    seed: int = 0,
    variants: tuple[str, ...] = VARIANTS,
    slow_max_seconds: float = 20.0,
    workdir: str | None = None,
    isolate: bool = True,
    warmup_requests: int = WARMUP_REQUESTS,
) -> dict[str, Any]:
    """Run the throughput suite; returns ``{"throughput": {variant: events/s}, ...}``."""
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="eddy-bench-")
        workdir = tmp.name
    try:
        t0 = time.perf_counter()
        stream = make_stream(Path(workdir) / "stream", n_requests, seed)
        gen_s = time.perf_counter() - t0
        results: dict[str, dict[str, Any]] = {}
        for v in variants:
            budget = slow_max_seconds if v in ("naive", "bytewax_idiomatic") else None
            kw: dict[str, Any] = {"warmup_requests": warmup_requests}
            if isolate:
                results[v] = run_isolated(v, stream, workdir, budget, **kw)
            else:
                results[v] = run_variant(v, stream, workdir, budget, **kw).as_dict()
        return {
            "throughput": {v: r.get("events_per_s") for v, r in results.items()},
            "latency_ms": {v: r.get("latency_ms") for v, r in results.items()},
            "throughput_per_cpu_s": {v: r.get("events_per_cpu_s") for v, r in results.items()},
            "peak_rss_mb": {v: r.get("peak_rss_mb") for v, r in results.items()},
            "variants": results,
            "stream": {
                "n_requests": stream.n_requests,
                "n_outcomes": stream.n_outcomes,
                "n_events": stream.n_events,
                "seed": seed,
                "generate_s": gen_s,
                "bytes": Path(stream.requests).stat().st_size
                + Path(stream.outcomes).stat().st_size,
            },
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def _ratio(a: Any, b: Any) -> float | None:
    if not a or not b:
        return None
    return float(a) / float(b)


def targets(throughput: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets: >= 200k ev/s, >= 10x naive, >= 30% of floor."""
    e = throughput.get("eddy")
    vs_naive = _ratio(e, throughput.get("naive"))
    vs_floor = _ratio(e, throughput.get("floor"))
    return {
        "eddy_events_per_s": e,
        "eddy_over_naive": vs_naive,
        "eddy_over_floor": vs_floor,
        "met_200k": bool(e and e >= 200_000),
        "met_10x_naive": bool(vs_naive and vs_naive >= 10),
        "met_30pct_floor": bool(vs_floor and vs_floor >= 0.3),
    }
