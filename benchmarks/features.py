"""Benchmark: the event-time features operator alone, against two baselines, same data.

Workload (all in one run, same events): ``n`` events over ``keys`` keys, 4 metrics
(filled, revenue, latency_ms, error), event times jittered back by up to 1 s (out of order
within the 2 s allowed lateness), 3 trailing windows (10 s, 1 min, 5 min) x 4 metrics x 6
aggregations (count, sum, mean, std, min, max) per event, plus 10 s tumbling windows per key.

* ``eddy`` - :class:`operators.windows.EventTimeFeatures`, micro-batches of ``batch`` rows.
* ``python_loop`` - a plain per-event Python loop (per-key deques, the same aggregations).
* ``bytewax_windowing`` - Bytewax's own ``bytewax.operators.windowing.fold_window`` with an
  ``EventClock``: Bytewax has no per-event trailing windows, so each trailing window is
  approximated by a sliding window hopping by a tenth of its length (10 windows per event
  and trailing window), plus the tumbling window; the folder keeps count/sum/sum of
  squares/min/max per metric. It does strictly less work than the other two.

Baselines are run on a prefix of the events (they are slow); all figures are events/s of
wall time on one core. Memory: a child process feeds 100,000 keys (3 trailing windows, one
event per key every 30 s, so ~10 live events per key in the 5 min window) and reports its peak
resident set size.

Run: ``eddy bench features [--quick] --json FILE`` or ``python -m eddy.benchmarks.features``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from eddy.operators.windows import EventTimeFeatures, FeatureConfig

__all__ = ["SIX", "make_events", "run"]

METRICS = ("filled", "revenue", "latency_ms", "error")
TRAILING = (10_000, 60_000, 300_000)
SIX = ("count", "sum", "mean", "std", "min", "max")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def make_events(
    n: int, n_keys: int, span_ms: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    ts = np.sort(rng.integers(0, span_ms, n)) - rng.integers(0, 1_000, n)
    names = np.array([f"partner-{i}" for i in range(n_keys)], dtype=object)
    keys = names[rng.integers(0, n_keys, n)]
    vals = np.empty((n, 4))
    vals[:, 0] = rng.random(n) < 0.7
    vals[:, 1] = np.where(vals[:, 0] > 0, rng.gamma(2.0, 0.5, n), 0.0)
    vals[:, 2] = rng.lognormal(4.0, 0.5, n)
    vals[:, 3] = rng.random(n) < 0.01
    return keys, ts.astype(np.int64), vals


def config(aggs: tuple[str, ...] = SIX) -> FeatureConfig:
    return FeatureConfig(
        metrics=METRICS, trailing_ms=TRAILING, aggregations=aggs, tumbling_ms=(10_000,),
        allowed_lateness_ms=2_000,
    )  # fmt: skip


def bench_eddy(ev: tuple, cfg: FeatureConfig, batch: int, repeat: int = 3) -> dict[str, Any]:
    """Best of ``repeat`` runs (the machine may be shared); every run is reported."""
    keys, ts, vals = ev
    warm = EventTimeFeatures(cfg)  # compile / load the numba kernels outside the timing
    warm.process(keys[:1000], ts[:1000], vals[:1000])
    warm.flush()
    runs = []
    for _ in range(repeat):
        op = EventTimeFeatures(cfg)
        n_windows = 0
        t0 = time.perf_counter()
        for a in range(0, len(ts), batch):
            r = op.process(keys[a : a + batch], ts[a : a + batch], vals[a : a + batch])
            n_windows += len(r.windows["key"])
        n_windows += len(op.flush().windows["key"])
        runs.append(time.perf_counter() - t0)
    dt = min(runs)
    return {
        "events_per_s": len(ts) / dt,
        "runs_events_per_s": [len(ts) / r for r in runs],
        "seconds": dt,
        "window_rows": n_windows,
        "late": op.late_count,
        "state_bytes": op.memory_bytes(),
        "bytes_per_key": op.memory_bytes() / max(op.n_keys, 1),
    }


def bench_python_loop(ev: tuple, cfg: FeatureConfig) -> dict[str, float]:
    """Per event: append to the key's deque, then aggregate each trailing window in Python."""
    keys, ts, vals = ev
    rows = list(zip(keys.tolist(), ts.tolist(), vals.tolist(), strict=True))
    wmax = max(cfg.trailing_ms)
    state: dict[str, deque] = defaultdict(deque)
    tumbling: dict[tuple[str, int], list[float]] = {}
    sink = 0.0
    t0 = time.perf_counter()
    for k, t, v in rows:
        dq = state[k]
        dq.append((t, v))
        while dq and dq[0][0] <= t - wmax - 2_000:
            dq.popleft()
        for w in cfg.trailing_ms:
            lo = t - w
            for m in range(len(v)):
                xs = [e[1][m] for e in dq if lo < e[0] <= t]
                c = len(xs)
                s = sum(xs)
                mean = s / c
                std = math.sqrt(max(sum(x * x for x in xs) / c - mean * mean, 0.0))
                sink += c + s + mean + std + min(xs) + max(xs)
        acc = tumbling.setdefault((k, t // 10_000), [0.0] * 5)
        acc[0] += 1
        acc[1] += v[1]
    dt = time.perf_counter() - t0
    return {"events_per_s": len(rows) / dt, "events": len(rows), "checksum": sink}


def bench_bytewax(ev: tuple, cfg: FeatureConfig) -> dict[str, float]:
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators.windowing import (
        EventClock,
        SlidingWindower,
        TumblingWindower,
        fold_window,
    )
    from bytewax.testing import TestingSink, TestingSource, run_main

    keys, ts, vals = ev
    items = list(zip(keys.tolist(), ts.tolist(), vals.tolist(), strict=True))
    n_m = vals.shape[1]

    def builder() -> list[float]:
        return [0.0] * n_m * 3 + [math.inf] * n_m + [-math.inf] * n_m

    def folder(acc: list[float], item: tuple) -> list[float]:
        v = item[2]
        for m in range(n_m):
            x = v[m]
            acc[m] += 1
            acc[n_m + m] += x
            acc[2 * n_m + m] += x * x
            acc[3 * n_m + m] = min(acc[3 * n_m + m], x)
            acc[4 * n_m + m] = max(acc[4 * n_m + m], x)
        return acc

    def merger(a: list[float], b: list[float]) -> list[float]:
        return [
            *(x + y for x, y in zip(a[: 3 * n_m], b[: 3 * n_m], strict=True)),
            *(min(x, y) for x, y in zip(a[3 * n_m : 4 * n_m], b[3 * n_m : 4 * n_m], strict=True)),
            *(max(x, y) for x, y in zip(a[4 * n_m :], b[4 * n_m :], strict=True)),
        ]

    out: list[Any] = []
    flow = Dataflow("bench_bytewax_windowing")
    s = op.input("in", flow, TestingSource(items, batch_size=1000))
    keyed = op.key_on("key", s, lambda it: it[0])
    clock: EventClock[tuple] = EventClock(
        lambda it: EPOCH + timedelta(milliseconds=it[1]),
        wait_for_system_duration=timedelta(milliseconds=cfg.allowed_lateness_ms),
        now_getter=lambda: EPOCH,  # replay: only event time moves the watermark
    )
    streams = []
    for w in cfg.trailing_ms:
        win = SlidingWindower(
            length=timedelta(milliseconds=w), offset=timedelta(milliseconds=w // 10),
            align_to=EPOCH,
        )  # fmt: skip
        streams.append(fold_window(f"trail{w}", keyed, clock, win, builder, folder, merger).down)
    tw = TumblingWindower(length=timedelta(seconds=10), align_to=EPOCH)
    streams.append(fold_window("tumbling", keyed, clock, tw, builder, folder, merger).down)
    op.output("out", op.merge("all", *streams), TestingSink(out))
    t0 = time.perf_counter()
    run_main(flow)
    dt = time.perf_counter() - t0
    return {"events_per_s": len(items) / dt, "events": len(items), "window_rows": len(out)}


def _vm(field: str) -> int:
    """``VmHWM`` (peak) or ``VmRSS`` of this process in bytes, from /proc (Linux);
    falls back to ``ru_maxrss``, which can include a parent's RSS at fork."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_child(n_keys: int, per_key_s: int = 30, span_s: int = 330) -> dict[str, float]:
    """Feed ``n_keys`` keys, one event per key every ``per_key_s`` seconds on average, for
    ``span_s`` seconds of event time (so the 5 min window is full), generated chunk by chunk;
    report the peak resident set size of this process and the operator's own state size."""
    rng = np.random.default_rng(3)
    n = n_keys * span_s // per_key_s
    chunk = 100_000
    names = np.array([f"user-{i}" for i in range(n_keys)], dtype=object)
    op = EventTimeFeatures(config())
    rss0 = _vm("VmRSS")
    for a in range(0, n, chunk):
        m = min(chunk, n - a)
        t_lo = a * span_s * 1000 // n
        t_hi = (a + m) * span_s * 1000 // n
        ts = np.sort(rng.integers(t_lo, t_hi, m)) - rng.integers(0, 1_000, m)
        vals = rng.random((m, 4))
        op.process(names[rng.integers(0, n_keys, m)], ts.astype(np.int64), vals)
    rss = _vm("VmHWM")
    live = int(op._store.n.sum())
    return {
        "keys": op.n_keys,
        "events": n,
        "live_events": live,
        "peak_rss_bytes": rss,
        "rss_before_operator_bytes": rss0,  # interpreter + numpy + numba
        "state_bytes": op.memory_bytes(),
        "state_bytes_per_key": op.memory_bytes() / op.n_keys,
        "state_bytes_per_live_event": op.memory_bytes() / max(live, 1),
    }


def run(quick: bool = False) -> dict[str, Any]:
    n = 200_000 if quick else 1_000_000
    n_keys = 1_000
    span = n // 100  # 100 events/s of event time in total: 0.1/s per key, ~30 in 5 min
    ev = make_events(n, n_keys, span_ms=span * 1000)
    n_base = 5_000 if quick else 20_000
    sub = tuple(a[:n_base] for a in ev)
    eddy6 = bench_eddy(ev, config(), batch=50_000)
    eddy8 = bench_eddy(ev, config((*SIX, "rate", "p95")), batch=50_000)
    loop = bench_python_loop(sub, config())
    bw = bench_bytewax(sub, config())
    child = subprocess.run(
        [sys.executable, "-m", "eddy.benchmarks.features", "--memory-child", str(100_000)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    mem = json.loads(child.stdout.strip().splitlines()[-1])
    return {
        "features": {
            "eddy": eddy6["events_per_s"],
            "python_loop": loop["events_per_s"],
            "bytewax_windowing": bw["events_per_s"],
        },
        "features_with_rate_p95": {"eddy": eddy8["events_per_s"]},
        "bytes_per_key": eddy6["bytes_per_key"],
        "memory_100k_keys": mem,
        "details": {"eddy": eddy6, "eddy_8_aggs": eddy8, "python_loop": loop, "bytewax": bw},
        "params": {
            "events": n,
            "keys": n_keys,
            "event_time_span_s": span,
            "metrics": list(METRICS),
            "trailing_ms": list(TRAILING),
            "aggregations": list(SIX),
            "tumbling_ms": [10_000],
            "allowed_lateness_ms": 2_000,
            "batch": 50_000,
            "baseline_events": n_base,
            "quick": quick,
        },
        "units": "events per second (wall clock, one process)",
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m eddy.benchmarks.features")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.memory_child:
        print(json.dumps(memory_child(a.memory_child)))
        return 0
    res = run(a.quick)
    text = json.dumps(res, indent=2)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
