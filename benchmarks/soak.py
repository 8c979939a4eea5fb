"""Soak benchmark: a pipeline run ``--forever`` at a sustained rate, and what it costs over time.

    eddy bench soak --minutes M [--rate R | --speed X] [--pipeline FILE] [--out DIR]
                    [--every S] [--retention D] [--duckdb-memory-limit SIZE]
    python -m eddy.benchmarks.soak ...   (the same options)

Starts ``eddy run --forever`` (default: the reference spec and its simulator at twice real
time) as a child process on a fresh database in ``DIR``, and every ``S`` seconds records:

* ``rss_mb``: resident memory of the run, summed over its process tree (Linux ``/proc``);
* ``wal_mb``, ``db_mb``: sizes of the DuckDB write-ahead log and database file;
* ``events_per_s``: events read per second since the previous sample, and ``p99_ms``: the
  highest per-second end-to-end latency p99 since then, both from the run's own ``metrics``
  table, read through its query endpoint (so the per-interval latency rows are what is
  plotted).

After ``M`` minutes it stops the run with SIGINT, as Ctrl-C would, and times how long the run
took to stop and the file to open again (a restart replays the WAL). Writes ``DIR/soak.json``
(settings, samples, every per-second metrics row, a summary) and ``DIR/soak.png`` (the curves
over time). ``--rate R`` is decision-stream events per wall-clock second; it needs the spec's
``[simulator]`` to set ``rate_per_s`` or ``rate_per_h`` (``--speed`` works with any simulator).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["SoakSettings", "add_arguments", "main", "plot", "run", "speed_for_rate"]

_DEFAULT_SPEED = 2.0
# per-second metrics rows the soak reads: step.name -> key in the per-second records
_METRICS = {
    "pipeline.events": "events",
    "duckdb.latency_p99_ms": "p99_ms",
    "duckdb.latency_p50_ms": "p50_ms",
    "duckdb.checkpoints": "checkpoints",
    "duckdb.checkpoint_ms": "checkpoint_ms",
    "duckdb.expired_rows": "expired_rows",
    "duckdb.expire_ms": "expire_ms",
}
_STOP_TIMEOUT_S = 300.0


@dataclass
class SoakSettings:
    minutes: float
    out: Path
    pipeline: str | None = None
    rate: float | None = None
    speed: float | None = None
    every_s: float = 5.0
    retention: str | None = None
    duckdb_memory_limit: str | None = None
    extra_args: list[str] = field(default_factory=list)


def speed_for_rate(spec: Any, rate: float) -> float:
    """The ``--speed`` that makes the spec's simulator emit ``rate`` decision-stream events
    per wall-clock second, from its ``[simulator]`` rate option."""
    options = dict(spec.simulator)
    if "rate_per_s" in options:
        per_s = float(options["rate_per_s"])
    elif "rate_per_h" in options:
        per_s = float(options["rate_per_h"]) / 3600.0
    else:
        raise ValueError(
            "--rate: the spec's [simulator] sets no rate_per_s or rate_per_h; use --speed X"
        )
    return rate / per_s


def _process_tree(root: int) -> list[int]:
    """``root`` and its descendants (from ``/proc/<pid>/stat``)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            # the command name is in parentheses and may contain spaces: split after it
            parent[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, todo = [root], [root]
    while todo:
        pid = todo.pop()
        kids = [p for p, pp in parent.items() if pp == pid]
        tree += kids
        todo += kids
    return tree


def tree_rss_mb(root: int) -> float:
    """Resident memory (MB) of ``root`` and its descendants."""
    total_kb = 0
    for pid in _process_tree(root):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
                    break
    return total_kb / 1024.0


def _size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 1e6
    except OSError:
        return 0.0


def _command(s: SoakSettings, db: Path, speed: float) -> list[str]:
    cmd = [sys.executable, "-m", "eddy", "run", "--forever", "--quiet", "--duckdb", str(db)]
    cmd += ["--speed", repr(speed)]
    if s.pipeline:
        cmd += ["--pipeline", s.pipeline]
    if s.retention:
        cmd += ["--retention", s.retention]
    if s.duckdb_memory_limit:
        cmd += ["--duckdb-memory-limit", s.duckdb_memory_limit]
    return cmd + s.extra_args


class _MetricsReader:
    """Per-second ``metrics`` rows of the running engine, through its query endpoint."""

    def __init__(self, db: Path) -> None:
        self._db = str(db)
        self._endpoint: Any = None
        self._after_ms = 0
        self.seconds: dict[int, dict[str, float]] = {}

    def poll(self) -> bool:
        from eddy.sinks.query_client import QueryError, discover, query_endpoint

        if self._endpoint is None:
            self._endpoint = discover(self._db)
            if self._endpoint is None:
                return False
        names = ", ".join(f"'{n}'" for n in _METRICS)
        sql = (
            "SELECT epoch_ms(ts) AS t, step || '.' || name AS metric, value FROM metrics "
            f"WHERE ts > epoch_ms({self._after_ms}) AND step || '.' || name IN ({names}) "
            "ORDER BY t"
        )
        try:
            result = query_endpoint(self._endpoint, sql, max_rows=1_000_000, timeout_s=30.0)
        except (ConnectionError, QueryError):
            self._endpoint = None  # restarted or gone: look it up again next time
            return False
        for t, metric, value in result.rows:
            self.seconds.setdefault(int(t), {})[_METRICS[metric]] = float(value)
            self._after_ms = max(self._after_ms, int(t))
        return True


def _per_second(seconds: dict[int, dict[str, float]], t0_ms: int) -> list[dict[str, Any]]:
    """One record per metrics row: time since start, events/s, p50/p99 of that interval, and
    the checkpoint time and rows expired in it (differences of the run's counters)."""
    out: list[dict[str, Any]] = []
    prev: dict[str, float] | None = None
    prev_t = 0
    for t in sorted(seconds):
        row = seconds[t]
        rec: dict[str, Any] = {"t_s": round((t - t0_ms) / 1000.0, 3)}
        rec["p50_ms"] = row.get("p50_ms")
        rec["p99_ms"] = row.get("p99_ms")
        if prev is not None and t > prev_t:
            dt = (t - prev_t) / 1000.0
            rec["events_per_s"] = (row.get("events", 0.0) - prev.get("events", 0.0)) / dt
            for key in ("checkpoints", "checkpoint_ms", "expired_rows", "expire_ms"):
                rec[key] = row.get(key, 0.0) - prev.get(key, 0.0)
        out.append(rec)
        prev, prev_t = row, t
    return out


def _window(per_second: list[dict[str, Any]], lo: float, hi: float) -> dict[str, Any]:
    inside = [r for r in per_second if lo < r["t_s"] <= hi]
    p99 = [r["p99_ms"] for r in inside if r.get("p99_ms") is not None]
    events = [r["events_per_s"] for r in inside if "events_per_s" in r]
    return {
        "p99_ms": max(p99) if p99 else None,
        "events_per_s": statistics.fmean(events) if events else None,
    }


def run(s: SoakSettings, log: Any = None) -> dict[str, Any]:
    """Run the soak; returns what ``soak.json`` holds (and writes it and ``soak.png``)."""
    from eddy.dataflows.commands.run import load_pipeline

    say = log or (lambda m: print(m, file=sys.stderr, flush=True))
    spec = load_pipeline(s.pipeline)
    if not any(st.source.startswith("simulator:") for st in spec.streams):
        raise ValueError("eddy bench soak runs a spec whose streams read a simulator")
    if s.rate is not None and s.speed is not None:
        raise ValueError("--rate and --speed exclude each other")
    speed = s.speed or (speed_for_rate(spec, s.rate) if s.rate else _DEFAULT_SPEED)
    s.out.mkdir(parents=True, exist_ok=True)
    db = s.out / "soak.duckdb"
    for stale in (db, Path(f"{db}.wal")):
        stale.unlink(missing_ok=True)
    cmd = _command(s, db, speed)
    say(f"soak: {' '.join(cmd[1:])} for {s.minutes:g} min, a sample every {s.every_s:g} s")
    reader = _MetricsReader(db)
    samples: list[dict[str, Any]] = []
    with open(s.out / "soak-run.log", "wb") as run_log:
        t_start = time.time()
        proc = subprocess.Popen(cmd, stdout=run_log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + s.minutes * 60.0
            next_at = time.monotonic() + s.every_s
            while time.monotonic() < deadline and proc.poll() is None:
                time.sleep(max(0.0, min(next_at, deadline) - time.monotonic()))
                next_at += s.every_s
                rss = tree_rss_mb(proc.pid)
                if proc.poll() is not None:
                    break
                reader.poll()
                samples.append(
                    {
                        "t_s": round(time.time() - t_start, 3),
                        "rss_mb": round(rss, 1),
                        "wal_mb": round(_size_mb(Path(f"{db}.wal")), 2),
                        "db_mb": round(_size_mb(db), 2),
                    }
                )
            if proc.poll() is not None:
                raise RuntimeError(
                    f"eddy run ended by itself (exit {proc.returncode}); see "
                    f"{s.out / 'soak-run.log'}"
                )
            reader.poll()
            t_stop = time.perf_counter()
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=_STOP_TIMEOUT_S)
            stop_s = time.perf_counter() - t_stop
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    reopen_s = _reopen(db)
    per_second = _per_second(reader.seconds, int(t_start * 1000))
    decide = _decision_latency(db, int(t_start * 1000))
    prev_t = 0.0
    for sample in samples:
        sample.update(_window(per_second, prev_t, sample["t_s"]))
        prev_t = sample["t_s"]
    result = {
        "command": " ".join(["eddy", *cmd[3:]]),
        "settings": {
            "minutes": s.minutes,
            "speed": speed,
            "rate": s.rate,
            "every_s": s.every_s,
            "pipeline": spec.name,
            "retention": s.retention,
            "duckdb_memory_limit": s.duckdb_memory_limit,
        },
        "machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
        "date": time.strftime("%Y-%m-%d", time.gmtime(t_start)),
        "samples": samples,
        "per_second": per_second,
        "decide_per_second": decide,
        "summary": summarize(samples, per_second, stop_s, reopen_s, db, decide),
    }
    (s.out / "soak.json").write_text(json.dumps(result, indent=1) + "\n")
    result["png"] = plot(result, s.out / "soak.png")
    say(f"soak: {s.out / 'soak.json'}, {result['png']}")
    return result


def _reopen(db: Path) -> float:
    """Seconds to open the file again and count one table (replays what the WAL holds)."""
    import duckdb

    t0 = time.perf_counter()
    con = duckdb.connect(str(db), read_only=True)
    try:
        con.execute("SELECT count(*) FROM metrics").fetchone()
    finally:
        con.close()
    return time.perf_counter() - t0


def _decision_latency(db: Path, t0_ms: int) -> list[dict[str, float]]:
    """p99 of ``decisions.latency_ms`` (read to decided: the decisions themselves, not the
    sink) per wall-clock second of ``decided_at``, for the rows the file still holds."""
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute(
            "SELECT epoch_ms(date_trunc('second', decided_at)) AS s, "
            "quantile_cont(latency_ms, 0.99) FROM decisions GROUP BY s ORDER BY s"
        ).fetchall()
    finally:
        con.close()
    return [{"t_s": (s - t0_ms) / 1000.0, "p99_ms": float(v)} for s, v in rows if s >= t0_ms]


def summarize(
    samples: list[dict[str, Any]],
    per_second: list[dict[str, Any]],
    stop_s: float,
    reopen_s: float,
    db: Path,
    decide: list[dict[str, float]] | None = None,
) -> dict[str, Any]:
    """The figures a long run is judged by: memory start/min/max/end and its slope over the
    second half, WAL and file sizes, throughput, per-interval p99 (and around checkpoints)."""
    rss = [x["rss_mb"] for x in samples]
    p99 = [r["p99_ms"] for r in per_second if r.get("p99_ms") is not None]
    rates = [r["events_per_s"] for r in per_second if r.get("events_per_s") is not None]
    checkpoint_at = [i for i, r in enumerate(per_second) if r.get("checkpoints")]
    near = {j for i in checkpoint_at for j in (i, i + 1) if j < len(per_second)}
    p99_near = [per_second[j]["p99_ms"] for j in near if per_second[j].get("p99_ms") is not None]
    p99_far = [
        r["p99_ms"]
        for j, r in enumerate(per_second)
        if j not in near and r.get("p99_ms") is not None
    ]
    ck_ms = [r["checkpoint_ms"] / r["checkpoints"] for r in per_second if r.get("checkpoints")]
    # a checkpoint ran in the second before the metrics row that counts it
    ck_t = [per_second[i]["t_s"] for i in checkpoint_at]
    decide = decide or []
    d_near = [d["p99_ms"] for d in decide if any(-2.0 <= d["t_s"] - t <= 1.0 for t in ck_t)]
    d_all = [d["p99_ms"] for d in decide]
    half = [x for x in samples if x["t_s"] >= samples[-1]["t_s"] / 2] if samples else []

    def q(values: list[float], p: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))]

    return {
        "samples": len(samples),
        "seconds": len(per_second),
        "rss_mb": {
            "start": rss[0] if rss else None,
            "min": min(rss, default=None),
            "max": max(rss, default=None),
            "end": rss[-1] if rss else None,
            "slope_mb_per_min_second_half": _slope(half, "rss_mb"),
        },
        "wal_mb_max": max((x["wal_mb"] for x in samples), default=None),
        "db_mb_end": samples[-1]["db_mb"] if samples else None,
        "db_mb_after_stop": round(_size_mb(db), 2),
        "db_mb_slope_per_min_second_half": _slope(half, "db_mb"),
        "events_per_s_mean": statistics.fmean(rates) if rates else None,
        "p99_ms_per_second": {
            "median": q(p99, 0.5),
            "p99": q(p99, 0.99),
            "max": max(p99, default=None),
        },
        "p99_ms_checkpoint_seconds": {
            "median": q(p99_near, 0.5),
            "max": max(p99_near, default=None),
        },
        "p99_ms_other_seconds": {"median": q(p99_far, 0.5), "max": max(p99_far, default=None)},
        "decide_p99_ms_per_second": {"median": q(d_all, 0.5), "max": max(d_all, default=None)},
        "decide_p99_ms_checkpoint_seconds": {
            "median": q(d_near, 0.5),
            "max": max(d_near, default=None),
        },
        "checkpoints": len(checkpoint_at),
        "checkpoint_ms": {"median": q(ck_ms, 0.5), "max": max(ck_ms, default=None)},
        "expired_rows": sum(r.get("expired_rows", 0.0) for r in per_second),
        "expire_ms_per_s": (
            sum(r.get("expire_ms", 0.0) for r in per_second) / max(1, len(per_second))
        ),
        "stop_s": round(stop_s, 2),
        "reopen_s": round(reopen_s, 3),
    }


def _slope(samples: list[dict[str, Any]], key: str) -> float | None:
    """Least-squares slope of ``key`` per minute."""
    if len(samples) < 3:
        return None
    xs = [x["t_s"] / 60.0 for x in samples]
    ys = [x[key] for x in samples]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else None


def plot(result: dict[str, Any], path: Path) -> str:
    """Four panels over minutes: RSS, WAL and file size, events/s, per-second p99."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples, per_second = result["samples"], result["per_second"]
    minutes = [x["t_s"] / 60.0 for x in samples]
    fig, axes = plt.subplots(4, 1, figsize=(9, 10), sharex=True)
    a_rss, a_disk, a_rate, a_p99 = axes
    a_rss.plot(minutes, [x["rss_mb"] for x in samples], color="tab:blue")
    a_rss.set_ylabel("RSS (MB)")
    a_rss.set_ylim(bottom=0)
    a_disk.plot(minutes, [x["db_mb"] for x in samples], label="database file", color="tab:green")
    a_disk.plot(minutes, [x["wal_mb"] for x in samples], label="WAL", color="tab:orange")
    a_disk.set_ylabel("MB")
    a_disk.legend(loc="upper left")
    sec_min = [r["t_s"] / 60.0 for r in per_second if r.get("events_per_s") is not None]
    a_rate.plot(
        sec_min,
        [r["events_per_s"] for r in per_second if r.get("events_per_s") is not None],
        color="tab:purple",
        linewidth=0.6,
    )
    a_rate.set_ylabel("events/s")
    a_rate.set_ylim(bottom=0)
    p99 = [(r["t_s"] / 60.0, r["p99_ms"]) for r in per_second if r.get("p99_ms") is not None]
    if p99:
        a_p99.plot(*zip(*p99, strict=True), color="tab:red", linewidth=0.6, label="p99 per second")
    marks = [r["t_s"] / 60.0 for r in per_second if r.get("checkpoints")]
    if marks:
        a_p99.plot(marks, [0] * len(marks), "|", color="black", markersize=6, label="checkpoint")
    a_p99.set_ylabel("end-to-end p99 (ms)")
    a_p99.set_ylim(bottom=0)
    a_p99.legend(loc="upper left")
    a_p99.set_xlabel("minutes")
    st = result["settings"]
    fig.suptitle(f"soak: {st['pipeline']} at speed {st['speed']:g}, {st['minutes']:g} min")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)


def add_arguments(p: argparse.ArgumentParser | Any) -> None:
    """The soak's options (shared by ``eddy bench soak`` and ``python -m``)."""
    p.add_argument("--minutes", type=float, metavar="M", help="soak: how long to run")
    p.add_argument(
        "--rate",
        type=float,
        metavar="R",
        help="soak: decision-stream events per second (default: the simulator at twice real time)",
    )
    p.add_argument("--speed", type=float, metavar="X", help="soak: pace the simulator at X")
    p.add_argument(
        "--every", type=float, default=5.0, metavar="S", help="soak: seconds between samples"
    )
    p.add_argument("--retention", metavar="D", help="soak: eddy run --retention D")
    p.add_argument(
        "--duckdb-memory-limit", metavar="SIZE", help="soak: eddy run --duckdb-memory-limit SIZE"
    )


def settings_from(args: argparse.Namespace) -> SoakSettings:
    """Checked settings; a ``ValueError`` names the option."""
    if args.minutes is None or not args.minutes > 0:
        raise ValueError("--minutes: expected a number of minutes > 0")
    for name in ("rate", "speed"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            raise ValueError(f"--{name}: expected a number > 0")
    if not args.every > 0:
        raise ValueError("--every: expected seconds > 0")
    return SoakSettings(
        minutes=args.minutes,
        out=Path(args.out),
        pipeline=args.pipeline,
        rate=args.rate,
        speed=args.speed,
        every_s=args.every,
        retention=args.retention,
        duckdb_memory_limit=args.duckdb_memory_limit,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eddy.benchmarks.soak", description=__doc__)
    p.add_argument("--pipeline", metavar="FILE", help="spec (default: the reference)")
    p.add_argument("--out", default="bench-results", metavar="DIR")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        result = run(settings_from(args))
    except ValueError as e:
        p.error(str(e))
    print(json.dumps(result["summary"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
