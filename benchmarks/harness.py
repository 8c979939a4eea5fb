"""The benchmark suites behind ``eddy bench``: run them, write JSON, PNG plots and markdown.

Suites (each ``suite(quick: bool, workdir: str) -> dict``):

* ``throughput`` — eddy vs naive vs bytewax_idiomatic vs floor on one serialised stream;
* ``latency`` — eddy end to end (ingest -> readable in DuckDB) at paced input rates;
* ``scaling`` — eddy throughput against the micro-batch size (one worker);
* ``memory`` — peak RSS of every variant, and of eddy at two stream lengths;
* ``quality`` — concept drift: alert detection delay, bandit recovery time, false alerts.

``quick=True`` keeps all five under about two minutes on two cores. The JSON always has
``{"throughput": {variant: events/s}, "latency_ms": {variant: {p50, p95, p99}}}`` when the
throughput suite ran, plus every suite's full result under ``"suites"``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eddy.benchmarks.baselines.common import make_stream, peak_rss_mb
from eddy.benchmarks.quality import run_quality
from eddy.benchmarks.throughput import (
    VARIANTS,
    call_isolated,
    run_isolated,
    run_throughput,
    targets,
)

__all__ = ["PROFILES", "SUITES", "markdown", "plot", "run_suites"]

Suite = Callable[[bool | str, str], dict[str, Any]]

#: sizes per profile: "quick" (``--quick``), "full" (the default) and "tiny" (the tests)
PROFILES: dict[str, dict[str, Any]] = {
    "tiny": {
        "tp_requests": 1_500,
        "tp_slow_s": 2.0,
        "warmup": 300,
        "lat_rates": (1_000.0,),
        "lat_s": 1.5,
        "scale_batches": (250, 1_000),
        "scale_requests": 1_500,
        "mem_requests": (1_000, 2_000),
        "q_requests": 12_000,
        "q_drift_s": 3.0,
    },
    "quick": {
        "tp_requests": 8_000,
        "tp_slow_s": 5.0,
        "warmup": 1_000,
        "lat_rates": (1_000.0, 4_000.0),
        "lat_s": 4.0,
        "scale_batches": (500, 2_000),
        "scale_requests": 8_000,
        "mem_requests": (4_000, 16_000),
        "q_requests": 60_000,
        "q_drift_s": 15.0,
    },
    "full": {
        "tp_requests": 200_000,
        "tp_slow_s": 30.0,
        "warmup": 3_000,
        "lat_rates": (1_000.0, 5_000.0, 20_000.0),
        "lat_s": 15.0,
        "scale_batches": (250, 1_000, 4_000, 16_000),
        "scale_requests": 100_000,
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


def suite_throughput(quick: bool | str, workdir: str) -> dict[str, Any]:
    p = _profile(quick)
    res = run_throughput(
        n_requests=p["tp_requests"],
        slow_max_seconds=p["tp_slow_s"],
        workdir=workdir,
        warmup_requests=p["warmup"],
    )
    res["targets"] = targets(res["throughput"])
    return res


def paced_eddy(rate: float, seconds: float, workdir: str) -> dict[str, Any]:
    """The reference pipeline on the simulator paced in real time at ``rate`` requests/s."""
    from eddy.dataflows.config import load_settings
    from eddy.dataflows.pipeline import RunOptions, run_pipeline

    base = load_settings(None)
    db = Path(workdir) / f"latency-{int(rate)}.duckdb"
    settings = dataclasses.replace(
        base,
        duckdb=str(db),
        simulator=dataclasses.replace(
            base.simulator, rate_per_s=rate, n_events=int(rate * seconds)
        ),
    )
    res = run_pipeline(RunOptions(settings=settings, speed=1.0))
    events = res.counters.get("requests", 0) + res.counters.get("outcomes", 0)
    return {
        "peak_rss_mb": peak_rss_mb(),
        "offered_requests_per_s": rate,
        "seconds": seconds,
        "achieved_requests_per_s": res.counters.get("requests", 0) / res.wall_s,
        "events": events,
        "latency_ms": res.latency_ms,
    }


def suite_latency(quick: bool | str, workdir: str) -> dict[str, Any]:
    p = _profile(quick)
    runs = [call_isolated(paced_eddy, r, p["lat_s"], workdir) for r in p["lat_rates"]]
    for r, rate in zip(runs, p["lat_rates"], strict=True):
        r.setdefault("offered_requests_per_s", rate)
    return {"runs": runs}


def suite_scaling(quick: bool | str, workdir: str) -> dict[str, Any]:
    p = _profile(quick)
    stream = make_stream(Path(workdir) / "scaling-stream", p["scale_requests"], seed=1)
    runs = []
    for b in p["scale_batches"]:
        r = run_isolated("eddy", stream, workdir, None, batch_size=b, warmup_requests=p["warmup"])
        runs.append({"batch_size": b, **{k: r.get(k) for k in _KEEP if k in r}})
    return {"workers": 1, "runs": runs, "n_events": stream.n_events}


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
        stream = make_stream(Path(workdir) / f"memory-stream-{n}", n, seed=2)
        r = run_isolated("eddy", stream, workdir, None, warmup=False)
        growth.append({"events": stream.n_events, **{k: r.get(k) for k in _KEEP if k in r}})
    out["eddy_by_stream_length"] = growth
    return out


def suite_quality(quick: bool | str, workdir: str) -> dict[str, Any]:
    p = _profile(quick)
    return run_quality(n_requests=p["q_requests"], drift_at_s=p["q_drift_s"])


SUITES: dict[str, Suite] = {
    "throughput": suite_throughput,
    "latency": suite_latency,
    "scaling": suite_scaling,
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
) -> dict[str, Any]:
    """Run the named suites in order; write JSON (``json_path``, and ``out_dir/bench.json``),
    PNGs and ``out_dir/bench.md``. ``extra`` suites (``runner(quick) -> dict``, e.g. the other
    ``eddy bench`` suites) run afterwards and land under ``"suites"`` too."""
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        raise ValueError(f"bench: unknown suite(s) {unknown}; expected some of {list(SUITES)}")
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
            else:
                res = SUITES[name](quick, workdir)
            res["suite_wall_s"] = time.perf_counter() - t0
            out["suites"][name] = res
            log(f"bench: {name} done in {res['suite_wall_s']:.1f} s")
    tp = out["suites"].get("throughput")
    if tp is not None:
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


# -- reporting ------------------------------------------------------------------------------
def _fmt(x: Any, nd: int = 0) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    return str(x)


def markdown(out: dict[str, Any]) -> str:
    """A markdown report of whatever suites ran."""
    s = out["suites"]
    q = out["meta"]["quick"]
    profile = q if isinstance(q, str) else ("quick" if q else "full")
    lines = [f"# eddy bench ({profile})", ""]
    meta = out["meta"]
    others = [n for n in s if n not in SUITES]
    lines.append(
        f"Machine: {meta['cpus']} CPUs, Python {meta['python']}, "
        f"load average at start {tuple(round(x, 1) for x in meta['load_avg_at_start'])}."
    )
    lines.append("")
    if "throughput" in s:
        t = s["throughput"]
        lines += [
            f"## Throughput ({t['stream']['n_events']:,} events, one worker)",
            "",
            "| variant | events/s | events per CPU-s | p50 ms | p95 ms | p99 ms | peak RSS MB "
            "| complete |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for v in VARIANTS:
            r = t["variants"].get(v, {})
            if "error" in r:
                lines.append(f"| {v} | error: {r['error'].splitlines()[-1]} |")
                continue
            lat = r.get("latency_ms") or {}
            lines.append(
                f"| {v} | {_fmt(r.get('events_per_s'))} | {_fmt(r.get('events_per_cpu_s'))} "
                f"| {_fmt(lat.get('p50'))} | {_fmt(lat.get('p95'))} | {_fmt(lat.get('p99'))} "
                f"| {_fmt(r.get('peak_rss_mb'))} | {r.get('complete')} |"
            )
        tg = t["targets"]
        lines += [
            "",
            f"Targets: eddy >= 200k ev/s: {tg['met_200k']}; eddy/naive = "
            f"{_fmt(tg['eddy_over_naive'], 1)} (>= 10: {tg['met_10x_naive']}); eddy/floor = "
            f"{_fmt(tg['eddy_over_floor'], 2)} (>= 0.3: {tg['met_30pct_floor']}).",
            "",
        ]
    if "latency" in s:
        lines += [
            "## Latency (eddy, simulator paced in real time)",
            "",
            "| offered req/s | achieved req/s | p50 ms | p95 ms | p99 ms |",
            "|---:|---:|---:|---:|---:|",
        ]
        for r in s["latency"]["runs"]:
            if "error" in r:
                rate = _fmt(r["offered_requests_per_s"])
                lines.append(f"| {rate} | error: {r['error'].splitlines()[-1]} |")
                continue
            lat = r["latency_ms"]
            lines.append(
                f"| {_fmt(r['offered_requests_per_s'])} | {_fmt(r['achieved_requests_per_s'])} "
                f"| {_fmt(lat.get('p50'))} | {_fmt(lat.get('p95'))} | {_fmt(lat.get('p99'))} |"
            )
        lines.append("")
    if "scaling" in s:
        lines += [
            "## Scaling (eddy, one worker, by micro-batch size)",
            "",
            "| batch | events/s | events per CPU-s | p99 ms |",
            "|---:|---:|---:|---:|",
        ]
        for r in s["scaling"]["runs"]:
            if "error" in r:
                lines.append(f"| {r['batch_size']} | error: {r['error'].splitlines()[-1]} |")
                continue
            lat = r.get("latency_ms") or {}
            lines.append(
                f"| {r['batch_size']} | {_fmt(r.get('events_per_s'))} "
                f"| {_fmt(r.get('events_per_cpu_s'))} | {_fmt(lat.get('p99'))} |"
            )
        lines.append("")
    if "memory" in s:
        m = s["memory"]
        lines += ["## Memory (peak RSS, MB)", "", "| run | peak RSS MB |", "|---|---:|"]
        for v, mb in (m.get("peak_rss_mb") or {}).items():
            lines.append(f"| {v} ({_fmt(m.get('stream_events'))} events) | {_fmt(mb)} |")
        for r in m["eddy_by_stream_length"]:
            if "error" in r:
                lines.append(
                    f"| eddy ({r['events']:,} events) | error: {r['error'].splitlines()[-1]} |"
                )
                continue
            lines.append(f"| eddy ({r['events']:,} events) | {_fmt(r['peak_rss_mb'])} |")
        lines.append("")
    if "quality" in s:
        q = s["quality"]
        lines += [
            "## Quality under concept drift (LinUCB, simulator, best/worst partner swap)",
            "",
            "| drift at s | detection delay s | recovery s | false alerts (before / control) "
            "| reward/oracle before | min after |",
            "|---:|---:|---:|---|---:|---:|",
            f"| {_fmt(q['drift_at_s'], 0)} | {_fmt(q['detection_delay_s'], 2)} "
            f"| {_fmt(q['recovery_s'], 0)} | {q['false_alerts_before_drift']} / "
            f"{q['false_alerts_control_run']} | {_fmt(q['ratio_before_drift'], 3)} "
            f"| {_fmt(q['ratio_min_after_drift'], 3)} |",
            "",
        ]
    for name in others:
        lines += [f"## {name}", "", f"See the JSON (`suites.{name}`).", ""]
    return "\n".join(lines) + "\n"


def plot(out: dict[str, Any], out_dir: Path) -> list[str]:
    """PNG plots (matplotlib, Agg) of the suites that ran; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = out["suites"]
    paths: list[str] = []

    def save(fig: Any, name: str) -> None:
        p = out_dir / name
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(str(p))

    if "throughput" in s:
        t = s["throughput"]["variants"]
        vs = [v for v in VARIANTS if v in t and "error" not in t[v]]
        fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
        a1.bar(vs, [t[v]["events_per_s"] for v in vs], color="tab:blue")
        a1.set_yscale("log")
        a1.set_ylabel("events/s (log)")
        a1.set_title("throughput, one worker")
        w = 0.25
        for i, q in enumerate(("p50", "p95", "p99")):
            a2.bar(
                [j + (i - 1) * w for j in range(len(vs))],
                [t[v]["latency_ms"].get(q) or 0 for v in vs],
                w,
                label=q,
            )
        a2.set_xticks(range(len(vs)), vs)
        a2.set_ylabel("ms")
        a2.set_title("end-to-end latency under full load")
        a2.legend()
        save(fig, "throughput.png")
    if "latency" in s:
        runs = [r for r in s["latency"]["runs"] if "error" not in r]
        fig, ax = plt.subplots(figsize=(6, 4))
        for q in ("p50", "p95", "p99"):
            ax.plot(
                [r["offered_requests_per_s"] for r in runs],
                [r["latency_ms"].get(q) for r in runs],
                marker="o",
                label=q,
            )
        ax.set_xscale("log")
        ax.set_xlabel("offered requests/s")
        ax.set_ylabel("latency ms")
        ax.set_title("eddy latency, paced simulator")
        ax.legend()
        save(fig, "latency.png")
    if "scaling" in s:
        runs = [r for r in s["scaling"]["runs"] if "error" not in r]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["batch_size"] for r in runs], [r["events_per_s"] for r in runs], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("micro-batch size")
        ax.set_ylabel("events/s")
        ax.set_title("eddy throughput by batch size (1 worker)")
        save(fig, "scaling.png")
    if "memory" in s and s["memory"].get("peak_rss_mb"):
        m = s["memory"]["peak_rss_mb"]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.bar(list(m), [x or 0 for x in m.values()], color="tab:green")
        ax.set_ylabel("peak RSS MB")
        ax.set_title("memory by variant")
        save(fig, "memory.png")
    if "quality" in s:
        q = s["quality"]
        rb = q["ratio_by_second"]
        fig, ax = plt.subplots(figsize=(8, 4))
        ax.plot(rb["seconds"], rb["drifted"], label="with drift")
        ax.plot(rb["seconds"], rb["control"], label="no drift", alpha=0.7)
        ax.axvline(q["drift_at_s"], color="k", linestyle="--", label="drift")
        if q["detection_delay_s"] is not None:
            ax.axvline(
                q["drift_at_s"] + q["detection_delay_s"], color="r", linestyle=":", label="alert"
            )
        ax.set_xlabel("event time s")
        ax.set_ylabel("expected reward / oracle")
        ax.set_title("bandit under concept drift")
        ax.legend()
        save(fig, "quality.png")
    return paths


def main(argv: list[str] | None = None) -> int:
    """``python -m eddy.benchmarks.harness [SUITE ...] [--quick] [--json FILE] [--out DIR]``.

    The same as ``eddy bench``; no suite names means all of them."""
    import argparse

    ap = argparse.ArgumentParser(prog="python -m eddy.benchmarks.harness")
    ap.add_argument("suites", nargs="*", help=f"any of {list(SUITES)} (default: all)")
    ap.add_argument("--quick", action="store_true", help="small sizes: under ~2 minutes in all")
    ap.add_argument("--json", dest="json_path", default=None, help="write the results here")
    ap.add_argument("--out", default="bench-results", help="directory for PNGs and bench.md")
    args = ap.parse_args(argv)
    names = args.suites or list(SUITES)
    try:
        out = run_suites(names, args.quick, args.out, args.json_path)
    except ValueError as e:
        ap.error(str(e))
    print(markdown(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
