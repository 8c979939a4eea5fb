"""Throughput: every variant on the same recorded input, one run, one process tree.

The spec's streams are recorded once to JSONL (``benchmarks.recording.record``: a simulator
played closed loop with a seeded random policy, or the spec's own files); each variant then
runs in its own child process (``multiprocessing`` spawn: a clean heap, an honest peak RSS, no
JIT or import shared between variants), first on a short warm-up prefix (imports, numba
compilation, DuckDB start-up), then timed on the whole recording:

* ``eddy`` — the spec, ``dataflows.runner.run_pipeline`` with every stream read from its
  JSONL file;
* ``floor`` — read, decode, sink; no stage (``benchmarks/baselines/floor.py``);
* ``naive`` — the reference spec's job as a per-event Python loop with River models
  (``benchmarks/baselines/naive.py``), reference only;
* ``bytewax_idiomatic`` — the same job the way Bytewax's examples write it
  (``.../bytewax_idiomatic.py``), reference only.

``events`` counts input lines read (every stream, bad lines included). Slow variants get a
time budget (``max_seconds``) and are measured on the prefix they finished
(``complete: false``). A closed-loop spec's recording answers its decisions with a random
policy, so eddy replays it with outcomes joined by id alone (:func:`replay_spec`): every
outcome is learned, as in a closed-loop run and as the baselines do.
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from eddy.benchmarks.baselines.common import (
    VariantResult,
    db_path,
    peak_rss_mb,
    reference_spec,
)
from eddy.benchmarks.recording import Recording, record
from eddy.schemas.spec import PipelineSpec

__all__ = [
    "GENERIC_VARIANTS",
    "VARIANTS",
    "call_isolated",
    "run_eddy",
    "run_isolated",
    "run_throughput",
    "run_variant",
    "targets",
]

VARIANTS = ("eddy", "naive", "bytewax_idiomatic", "floor")
#: the variants any spec has (naive and bytewax_idiomatic reimplement the reference by hand)
GENERIC_VARIANTS = ("eddy", "floor")
WARMUP_EVENTS = 3_000


def replay_spec(spec: PipelineSpec) -> PipelineSpec:
    """The spec as the replay runs it: outcomes join their decision by id alone.

    The recording's outcomes answer a random policy, not eddy's choices; with a decide
    stage's ``reward.arm`` check on, eddy would learn from one outcome in ``n_arms`` and keep
    the others in ``unmatched_outcomes`` — a workload no closed-loop run has (there, every
    outcome is of the decided arm) and not the work the baselines do (they learn every
    outcome by id). Without the check eddy learns every outcome, as they do."""
    decide = tuple(replace(d, reward=replace(d.reward, arm=None)) for d in spec.decide)
    return replace(spec, decide=decide)


def run_eddy(
    rec: Recording, workdir: str, max_seconds: float | None = None, batch_size: int | None = None
) -> VariantResult:
    """The recorded spec on its JSONL files (its own DuckDB file), as :func:`replay_spec`."""
    from eddy.dataflows.run_options import RunOptions
    from eddy.dataflows.runner import run_pipeline

    opts = RunOptions(
        replay_spec(rec.spec),
        sources=rec.sources,
        duckdb=db_path(workdir, "eddy"),
        batch_size=batch_size,
        seconds=max_seconds,
    )
    c0 = time.process_time()
    res = run_pipeline(opts)
    cpu = time.process_time() - c0
    events = int(res.counters.get("decode.events_in", 0))
    return VariantResult(
        variant="eddy",
        events=events,
        wall_s=res.wall_s,
        latency_ms=dict(res.latency_ms),
        rows=dict(res.tables),
        peak_rss_mb=peak_rss_mb(),
        cpu_s=cpu,
        complete=events >= rec.n_events,
        notes=f"pipeline {rec.spec.name}, batch_size={opts.batch}",
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
    rec: Recording,
    workdir: str,
    max_seconds: float | None = None,
    warmup: bool = True,
    warmup_events: int = WARMUP_EVENTS,
    **kwargs: Any,
) -> VariantResult:
    """Run one variant in this process (warm-up on a prefix first, then the timed run)."""
    run = _runner(variant)
    if warmup:
        head = rec.head(Path(workdir) / f"warmup-{variant}", warmup_events)
        run(head, str(Path(workdir) / f"warmup-{variant}"), max_seconds, **kwargs)
    result: VariantResult = run(rec, workdir, max_seconds, **kwargs)
    return result


def _variant_dict(
    variant: str, rec: Recording, workdir: str, max_seconds: float | None, kw: dict[str, Any]
) -> dict[str, Any]:
    return run_variant(variant, rec, workdir, max_seconds, **kw).as_dict()


def _call_child(func: Callable[..., dict], args: tuple, q: Any) -> None:
    try:
        q.put(("ok", func(*args)))
    except BaseException:
        q.put(("error", traceback.format_exc()))


def call_isolated(func: Callable[..., dict], *args: Any, timeout_s: float = 600.0) -> dict:
    """``func(*args)`` (a module-level function returning a dict) in a spawned child process;
    a child that fails, dies or hangs gives ``{"error": ...}``, never an exception."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_call_child, args=(func, args, q))
    p.start()
    try:
        status, payload = q.get(timeout=timeout_s)
    except Exception:  # the child died or hung: report it, never hide it
        status, payload = "error", f"no result within {timeout_s:.0f} s (exit code {p.exitcode})"
    p.join(timeout=30)
    if p.is_alive():
        p.kill()
        p.join()
    return dict(payload) if status == "ok" else {"error": payload}


def run_isolated(
    variant: str,
    rec: Recording,
    workdir: str,
    max_seconds: float | None = None,
    timeout_s: float = 600.0,
    **kw: Any,
) -> dict[str, Any]:
    """``run_variant`` in a spawned child process; returns its result dict (or an error)."""
    out = call_isolated(_variant_dict, variant, rec, workdir, max_seconds, kw, timeout_s=timeout_s)
    return {"variant": variant, **out} if "error" in out else out


def run_throughput(
    spec: PipelineSpec | None = None,
    events: int | None = None,
    seed: int | None = None,
    variants: tuple[str, ...] | None = None,
    slow_max_seconds: float = 20.0,
    workdir: str | None = None,
    isolate: bool = True,
    warmup_events: int = WARMUP_EVENTS,
) -> dict[str, Any]:
    """Run the throughput suite on ``spec`` (default: the reference) recorded with ``events``
    events of its simulator's driving stream (None: the spec's); returns ``{"pipeline",
    "throughput": {variant: events/s}, ...}``. ``variants`` default to :data:`VARIANTS` for
    the reference and :data:`GENERIC_VARIANTS` for any other spec."""
    ref = reference_spec()
    spec = spec or ref
    is_reference = spec == ref
    variants = variants or (VARIANTS if is_reference else GENERIC_VARIANTS)
    if not is_reference and set(variants) - set(GENERIC_VARIANTS):
        raise ValueError(
            f"throughput variants {sorted(set(variants) - set(GENERIC_VARIANTS))}: they "
            f"reimplement the reference pipeline only; {spec.name!r} has {GENERIC_VARIANTS}"
        )
    tmp = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="eddy-bench-")
        workdir = tmp.name
    try:
        t0 = time.perf_counter()
        rec = record(spec, Path(workdir) / "stream", events=events, seed=seed)
        record_s = time.perf_counter() - t0
        results: dict[str, dict[str, Any]] = {}
        for v in variants:
            budget = slow_max_seconds if v in ("naive", "bytewax_idiomatic") else None
            kw: dict[str, Any] = {"warmup_events": warmup_events}
            if isolate:
                results[v] = run_isolated(v, rec, workdir, budget, **kw)
            else:
                results[v] = run_variant(v, rec, workdir, budget, **kw).as_dict()
        return {
            "pipeline": spec.name,
            "throughput": {v: r.get("events_per_s") for v, r in results.items()},
            "latency_ms": {v: r.get("latency_ms") for v, r in results.items()},
            "throughput_per_cpu_s": {v: r.get("events_per_cpu_s") for v, r in results.items()},
            "peak_rss_mb": {v: r.get("peak_rss_mb") for v, r in results.items()},
            "variants": results,
            "stream": {
                "lines": dict(rec.lines),
                "n_events": rec.n_events,
                "seed": rec.seed,
                "record_s": record_s,
                "bytes": sum(Path(p).stat().st_size for p in rec.files.values()),
            },
        }
    finally:
        if tmp is not None:
            tmp.cleanup()


def _ratio(a: Any, b: Any) -> float | None:
    if not a or not b:
        return None
    return float(a) / float(b)


def targets(throughput: dict[str, Any], reference: bool = True) -> dict[str, Any]:
    """The project's targets: >= 200k ev/s (the reference only), >= 12x naive (where it ran),
    >= half the floor. A target that does not apply is None."""
    e = throughput.get("eddy")
    vs_naive = _ratio(e, throughput.get("naive"))
    vs_floor = _ratio(e, throughput.get("floor"))
    return {
        "eddy_events_per_s": e,
        "eddy_over_naive": vs_naive,
        "eddy_over_floor": vs_floor,
        "met_200k": bool(e and e >= 200_000) if reference else None,
        "met_12x_naive": None if vs_naive is None else vs_naive >= 12,
        "met_half_floor": None if vs_floor is None else vs_floor >= 0.5,
    }
