"""The benchmark suites behind ``eddy bench``: run them, write JSON, PNG plots and markdown
(``benchmarks/report.py``).

Suites (each ``suite(quick: bool, workdir: str) -> dict``):

* ``throughput`` — eddy vs naive vs bytewax_idiomatic vs floor on one recorded input; with a
  ``pipeline`` spec other than the reference, eddy vs floor on that spec's input;
* ``latency`` — eddy end to end (ingest -> readable in DuckDB) at paced input rates;
* ``batch_size`` — eddy throughput against the micro-batch size (one worker);
* ``memory`` — peak RSS of every variant, and of eddy at two stream lengths;
* ``quality`` — concept drift: alert detection delay, bandit recovery time, false alerts.

``quick=True`` keeps all five short. The JSON always has ``{"pipeline": name, "throughput":
{variant: events/s}, "latency_ms": {variant: {p50, p95, p99}}}`` when the throughput suite ran,
plus every suite's full result under ``"suites"``.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eddy.benchmarks.baselines.common import peak_rss_mb, reference_recording, reference_spec
from eddy.benchmarks.quality import run_quality
from eddy.benchmarks.report import markdown, plot
from eddy.benchmarks.throughput import (
    call_isolated,
    run_isolated,
    run_throughput,
    targets,
)
from eddy.schemas.spec import PipelineSpec

__all__ = ["PROFILES", "SUITES", "run_suites"]

Suite = Callable[[bool | str, str], dict[str, Any]]

#: sizes per profile: "quick" (``--quick``), "full" (the default) and "tiny" (the tests);
#: ``tp_events``: events of the simulator's driving stream (requests, shipments, readings)
PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {
        "tp_events": 1_500,
        "tp_slow_s": 2.0,
        "warmup": 300,
        "lat_rates": (1_000.0,),
        "lat_s": 1.5,
        "batch_sizes": (250, 1_000),
        "batch_requests": 1_500,
        "mem_requests": (1_000, 2_000),
        "q_requests": 12_000,
        "q_drift_s": 3.0,
    },
    "quick": {
        "tp_events": 8_000,
        "tp_slow_s": 5.0,
        "warmup": 1_000,
        "lat_rates": (1_000.0, 4_000.0),
        "lat_s": 4.0,
        "batch_sizes": (500, 2_000),
        "batch_requests": 8_000,
        "mem_requests": (4_000, 16_000),
        "q_requests": 60_000,
        "q_drift_s": 15.0,
    },
    "full": {
        "tp_events": 200_000,
        "tp_slow_s": 30.0,
        "warmup": 3_000,
        "lat_rates": (1_000.0, 5_000.0, 20_000.0),
        "lat_s": 15.0,
        "batch_sizes": (250, 1_000, 4_000, 16_000),
        "batch_requests": 100_000,
        "mem_requests": (50_000, 200_000),
        "q_requests": 120_000,
        "q_drift_s": 30.0,
    },
}


def _profile(quick: bool | str) -> dict[str, Any]:
    name = quick if isinstance(quick, str) else ("quick" if quick else "full")
    if name not in PROFILES:
        raise ValueError(f"bench profile: expected one of {list(PROFILES)}, got {name!r}")
    return PROFILES[name]


def suite_throughput(
    quick: bool | str, workdir: str, pipeline: PipelineSpec | None = None
) -> dict[str, Any]:
    """Every variant on the reference, or eddy and its floor on ``pipeline``."""
    p = _profile(quick)
    res = run_throughput(
        pipeline,
        events=p["tp_events"],
        slow_max_seconds=p["tp_slow_s"],
        workdir=workdir,
        warmup_events=p["warmup"],
    )
    res["targets"] = targets(res["throughput"], reference=pipeline in (None, reference_spec()))
    return res


def paced_eddy(rate: float, seconds: float, workdir: str) -> dict[str, Any]:
    """The reference pipeline on its simulator paced in real time at ``rate`` requests/s."""
    from eddy.benchmarks.closed_loop import with_simulator
    from eddy.dataflows.run_options import RunOptions
    from eddy.dataflows.runner import run_pipeline

    spec = with_simulator(reference_spec(), rate_per_s=rate, events=int(rate * seconds))
    db = Path(workdir) / f"latency-{int(rate)}.duckdb"
    res = run_pipeline(RunOptions(spec, duckdb=str(db), speed=1.0))
    return {
        "peak_rss_mb": peak_rss_mb(),
        "offered_requests_per_s": rate,
        "seconds": seconds,
        "achieved_requests_per_s": res.counters.get("events.requests", 0) / res.wall_s,
        "events": res.counters.get("decode.events_in", 0),
        "latency_ms": res.latency_ms,
    }


def suite_latency(quick: bool | str, workdir: str) -> dict[str, Any]:
    p = _profile(quick)
    runs = [call_isolated(paced_eddy, r, p["lat_s"], workdir) for r in p["lat_rates"]]
    for r, rate in zip(runs, p["lat_rates"], strict=True):
        r.setdefault("offered_requests_per_s", rate)
    return {"runs": runs}


def suite_batch_size(quick: bool | str, workdir: str) -> dict[str, Any]:
    p = _profile(quick)
    rec = reference_recording(Path(workdir) / "batch-size-stream", p["batch_requests"], seed=1)
    runs = []
    for b in p["batch_sizes"]:
        r = run_isolated("eddy", rec, workdir, None, batch_size=b, warmup_events=p["warmup"])
        runs.append({"batch_size": b, **{k: r.get(k) for k in _KEEP if k in r}})
    return {"workers": 1, "runs": runs, "n_events": rec.n_events}


_KEEP = (
    "events",
    "wall_s",
    "events_per_s",
    "events_per_cpu_s",
    "latency_ms",
    "peak_rss_mb",
    "error",
)


def suite_memory(quick: bool | str, workdir: str, throughput: dict | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if throughput is not None:
        out["peak_rss_mb"] = throughput.get("peak_rss_mb", {})
        out["stream_events"] = throughput.get("stream", {}).get("n_events")
    growth = []
    for n in _profile(quick)["mem_requests"]:
        rec = reference_recording(Path(workdir) / f"memory-stream-{n}", n, seed=2)
        r = run_isolated("eddy", rec, workdir, None, warmup=False)
        growth.append({"events": rec.n_events, **{k: r.get(k) for k in _KEEP if k in r}})
    out["eddy_by_stream_length"] = growth
    return out


def suite_quality(quick: bool | str, workdir: str) -> dict[str, Any]:
    p = _profile(quick)
    return run_quality(n_requests=p["q_requests"], drift_at_s=p["q_drift_s"])


SUITES: dict[str, Suite] = {
    "throughput": suite_throughput,
    "latency": suite_latency,
    "batch_size": suite_batch_size,
    "memory": suite_memory,
    "quality": suite_quality,
}


def run_suites(
    names: list[str] | tuple[str, ...],
    quick: bool | str,
    out_dir: str | Path | None = None,
    json_path: str | Path | None = None,
    log: Callable[[str], None] = print,
    extra: dict[str, Callable[[bool], dict[str, Any]]] | None = None,
    pipeline: PipelineSpec | None = None,
) -> dict[str, Any]:
    """Run the named suites in order; write JSON (``json_path``, and ``out_dir/bench.json``),
    PNGs and ``out_dir/bench.md``. ``extra`` suites (``runner(quick) -> dict``, e.g. the other
    ``eddy bench`` suites) run afterwards and land under ``"suites"`` too. ``pipeline``: the
    spec the throughput suite measures (the only suite that takes one; default: reference)."""
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"bench: unknown suite(s) {unknown}; expected some of {list(SUITES)}")
    if pipeline is not None and (list(names) != ["throughput"] or extra):
        raise ValueError("bench: a pipeline spec applies to the throughput suite only")
    extra = extra or {}
    out: dict[str, Any] = {"meta": _meta(quick, [*names, *extra]), "suites": {}}
    with tempfile.TemporaryDirectory(prefix="eddy-bench-") as workdir:
        for name in [*names, *extra]:
            log(f"bench: {name} ...")
            t0 = time.perf_counter()
            if name in extra:
                res = dict(extra[name](bool(quick)))
            elif name == "memory":
                res = suite_memory(quick, workdir, out["suites"].get("throughput"))
            elif name == "throughput":
                res = suite_throughput(quick, workdir, pipeline)
            else:
                res = SUITES[name](quick, workdir)
            res["suite_wall_s"] = time.perf_counter() - t0
            out["suites"][name] = res
            log(f"bench: {name} done in {res['suite_wall_s']:.1f} s")
    tp = out["suites"].get("throughput")
    if tp is not None:
        out["pipeline"] = tp["pipeline"]
        out["throughput"] = tp["throughput"]
        out["latency_ms"] = tp["latency_ms"]
        out["targets"] = tp["targets"]
    out["meta"]["total_wall_s"] = sum(s["suite_wall_s"] for s in out["suites"].values())
    if json_path is not None:
        p = Path(json_path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(out, indent=2, default=_json_default))
    if out_dir is not None:
        d = Path(out_dir)
        d.mkdir(parents=True, exist_ok=True)
        out["meta"]["plots"] = plot(out, d)
        (d / "bench.md").write_text(markdown(out))
        text = json.dumps(out, indent=2, default=_json_default)
        (d / "bench.json").write_text(text)
        if json_path is not None:  # again, now with the plot paths
            Path(json_path).write_text(text)
    return out


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    return str(o)


def _meta(quick: bool | str, names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    return {
        "quick": quick,
        "suites": list(names),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "load_avg_at_start": os.getloadavg(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    """``python -m eddy.benchmarks.harness [SUITE ...] [--quick] [--json FILE] [--out DIR]``.

    The same as ``eddy bench``; no suite names means all of them."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m eddy.benchmarks.harness")
    ap.add_argument("suites", nargs="*", help=f"any of {list(SUITES)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a quick check")
    ap.add_argument("--json", dest="json_path", default=None, help="write the results here")
    ap.add_argument("--out", default="bench-results", help="directory for PNGs and bench.md")
    ap.add_argument("--pipeline", help="spec the throughput suite measures (default: reference)")
    args = ap.parse_args(argv)
    names = args.suites or list(SUITES)
    try:
        spec = None
        if args.pipeline:
            from eddy.schemas.spec_load import load_spec

            spec = load_spec(args.pipeline)
        out = run_suites(names, args.quick, args.out, args.json_path, pipeline=spec)
    except ValueError as e:
        ap.error(str(e))
    print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
