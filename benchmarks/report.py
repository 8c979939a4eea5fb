"""``eddy bench`` reports: the markdown summary and the PNG plots of whatever suites ran.

Kept apart from the suites (``benchmarks/harness.py``) so a report can be rebuilt from a saved
``bench.json`` without running anything: ``markdown(json.load(f))``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from eddy.benchmarks.throughput import VARIANTS

__all__ = ["markdown", "plot"]

#: suites with a section of their own; any other suite gets a pointer to the JSON
_SECTIONS = ("throughput", "latency", "batch_size", "memory", "quality")


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
    others = [n for n in s if n not in _SECTIONS]
    lines.append(
        f"Machine: {meta['cpus']} CPUs, Python {meta['python']}, "
        f"load average at start {tuple(round(x, 1) for x in meta['load_avg_at_start'])}."
    )
    lines.append("")
    if "throughput" in s:
        lines += _throughput_markdown(s["throughput"])
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
    if "batch_size" in s:
        lines += [
            "## Batch size (eddy, one worker, by micro-batch size)",
            "",
            "| batch | events/s | events per CPU-s | p99 ms |",
            "|---:|---:|---:|---:|",
        ]
        for r in s["batch_size"]["runs"]:
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


def _throughput_markdown(t: dict[str, Any]) -> list[str]:
    lines = [
        f"## Throughput: pipeline {t['pipeline']} ({t['stream']['n_events']:,} events, one worker)",
        "",
        "| variant | events/s | events per CPU-s | p50 ms | p95 ms | p99 ms | peak RSS MB "
        "| complete |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for v in VARIANTS:
        if v not in t["variants"]:
            continue
        r = t["variants"][v]
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
    said = [f"eddy/floor = {_fmt(tg['eddy_over_floor'], 2)} (>= 0.5: {tg['met_half_floor']})"]
    if tg["eddy_over_naive"] is not None:
        said.insert(
            0, f"eddy/naive = {_fmt(tg['eddy_over_naive'], 1)} (>= 12: {tg['met_12x_naive']})"
        )
    if tg["met_200k"] is not None:
        said.insert(0, f"eddy >= 200k ev/s: {tg['met_200k']}")
    return [*lines, "", f"Targets: {'; '.join(said)}.", ""]


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
        a1.set_title(f"throughput of {s['throughput']['pipeline']}, one worker")
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
    if "batch_size" in s:
        runs = [r for r in s["batch_size"]["runs"] if "error" not in r]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot([r["batch_size"] for r in runs], [r["events_per_s"] for r in runs], marker="o")
        ax.set_xscale("log")
        ax.set_xlabel("micro-batch size")
        ax.set_ylabel("events/s")
        ax.set_title("eddy throughput by batch size (1 worker)")
        save(fig, "batch_size.png")
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
