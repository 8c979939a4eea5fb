"""Cost of anomaly detection per event per metric, on one core.

    .venv/bin/python -m eddy.benchmarks.anomaly_cost [--rows 200000] [--keys 20] [--metrics 5]

Measures steady state (every key sees ``rows / keys`` events, more than the detectors' windows;
numba compiled in a warm-up first):
- ``KeyedDetector`` with ``detector = "ensemble"``, what a spec's detect stage runs:
  micro-batches of ``--batch`` rows over ``--keys`` keys x ``--metrics`` metrics;
- the single-series form of the same ensemble, the one ``eddy eval nab`` scores;
- River ``HalfSpaceTrees`` (one model per key x metric, ``score_one`` + ``learn_one`` per value,
  on ``--hst-values`` values), the per-event-Python baseline.
Prints a Markdown table and writes JSON with ``--json PATH``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from eddy.operators.anomaly import default_detector
from eddy.operators.anomaly.keyed import DetectorConfig, KeyedDetector

__all__ = ["main", "measure"]


def _data(rows: int, keys: int, metrics: int, seed: int = 0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    key_ids = rng.integers(0, keys, rows).astype(np.int64)
    ts = (1_700_000_000_000 + np.arange(rows) * 1000).astype(np.int64)
    t = np.arange(rows)[:, None]
    vals = (
        10 + np.sin(2 * np.pi * t / 3600 + np.arange(metrics)) + rng.normal(0, 0.3, (rows, metrics))
    )
    spikes = rng.random((rows, metrics)) < 1e-3
    vals[spikes] += 8
    return key_ids, ts, vals, spikes


def measure(
    rows: int = 200_000,
    keys: int = 200,
    metrics: int = 5,
    batch: int = 2000,
    hst_values: int = 20_000,
) -> dict[str, float]:
    key_ids, ts, vals, spikes = _data(rows, keys, metrics)
    config = DetectorConfig(
        metrics=tuple(f"m{j}" for j in range(metrics)), bool_metrics=(False,) * metrics
    )
    key_names = np.array([f"key-{k}" for k in range(keys)], dtype=object)[key_ids]
    KeyedDetector(config).update(key_names[:batch], ts[:batch], vals[:batch], 0)  # compile
    keyed = KeyedDetector(config)
    found = 0
    t0 = time.perf_counter()
    for a in range(0, rows, batch):
        out = keyed.update(key_names[a : a + batch], ts[a : a + batch], vals[a : a + batch], 0)
        found += len(out.anomalies["key"])
    keyed_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    snap = keyed.snapshot()
    snap_s = time.perf_counter() - t0

    series = vals[:, 0].copy()
    default_detector().score_learn(ts[:1000], series[:1000])
    det = default_detector()
    t0 = time.perf_counter()
    det.score_learn(ts, series)
    series_s = time.perf_counter() - t0

    from river import anomaly, preprocessing

    # one model per key x metric, built and warmed (past its first window) before timing
    models = {
        (k, j): preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=0)
        for k in range(keys)
        for j in range(metrics)
    }
    n_rows = max(1, hst_values // metrics)

    def hst_pass(lo: int, hi: int) -> None:
        for i in range(lo, hi):
            k = int(key_ids[i])
            for j in range(metrics):
                m = models[(k, j)]
                x = {"x": float(vals[i, j])}
                m.score_one(x)
                m.learn_one(x)

    hst_pass(0, min(rows, 300 * keys))
    start = min(rows - n_rows, 300 * keys)
    t0 = time.perf_counter()
    hst_pass(start, start + n_rows)
    hst_s = time.perf_counter() - t0
    return {
        "keyed_us_per_event_metric": 1e6 * keyed_s / (rows * metrics),
        "series_us_per_event": 1e6 * series_s / rows,
        "river_hst_us_per_event_metric": 1e6 * hst_s / (n_rows * metrics),
        "anomalies": found,
        "spikes": int(spikes.sum()),
        "snapshot_ms": 1e3 * snap_s,
        "snapshot_mb": len(snap) / 1e6,
        "rows": rows,
        "keys": keys,
        "metrics": metrics,
        "batch": batch,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--keys", type=int, default=20)
    p.add_argument("--metrics", type=int, default=5)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--hst-values", type=int, default=20_000)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core
    r = measure(a.rows, a.keys, a.metrics, a.batch, a.hst_values)
    print(f"rows={a.rows} keys={a.keys} metrics={a.metrics} batch={a.batch} (one core)")
    print("| detector | µs / event / metric |")
    print("|---|---|")
    print(
        f"| eddy ensemble, KeyedDetector (a detect stage) | {r['keyed_us_per_event_metric']:.2f} |"
    )
    print(f"| eddy ensemble, single series (NAB) | {r['series_us_per_event']:.2f} |")
    hst = r["river_hst_us_per_event_metric"]
    print(f"| River HalfSpaceTrees (score_one + learn_one) | {hst:.2f} |")
    print(f"anomaly rows: {r['anomalies']} for {r['spikes']} injected spikes")
    print(f"detector snapshot: {r['snapshot_mb']:.1f} MB in {r['snapshot_ms']:.0f} ms")
    if a.json:
        a.json.write_text(json.dumps(r, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
