"""Drift alerts on the detectors' inputs: false alerts, and delay after a concept drift.

    python -m eddy.benchmarks.feature_drift [--seconds 180] [--seeds 0,1,2,3] [--json FILE]

The reference spec plays its closed-loop simulator in-process (``benchmarks.closed_loop``;
1,000 requests/s of event time) in three settings, per seed:

* ``clean``: no incidents, no drift. Every ``feature.*`` alert is a false alert;
* ``incidents``: an incident every 20 s on average (outages, latency spikes, price drops, error
  bursts of 4-10 s). The detectors should report those; a ``feature.*`` alert here means an
  incident also read as a lasting shift;
* ``drift``: the best and worst partners swap their hidden truth at ``--drift-at`` s. Reported:
  the delay of the first ``feature.*`` alert and whether one names the partner whose reward
  alert fired (``reward_by_arm``).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from eddy.benchmarks.baselines.common import reference_spec
from eddy.benchmarks.closed_loop import SimFeed, play, with_simulator

__all__ = ["main", "run_feature_drift"]

_RATE = 1_000.0


def _alerts(seconds: float, seed: int, **sim: Any) -> list[tuple[str, str, float]]:
    """(stream, key, seconds since the start) of every drift alert of one run."""
    spec = with_simulator(
        reference_spec(), events=int(seconds * _RATE), rate_per_s=_RATE, seed=seed, **sim
    )
    feed = SimFeed(spec)
    out: list[tuple[str, str, float]] = []
    for res in play(feed, now_ns=0):
        a = res.tables.get("drift_alerts")
        if a is None:
            continue
        t = (np.asarray(a["event_time"], dtype=np.int64) - feed.sim.start_ms) / 1000.0
        rows = zip(a["stream"], a["key"], t.tolist(), strict=True)
        out.extend((str(st), str(k), float(x)) for st, k, x in rows)
    return out


def run_feature_drift(
    seconds: float = 180.0, seeds: tuple[int, ...] = (0, 1, 2, 3), drift_at_s: float = 40.0
) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    settings: tuple[tuple[str, dict[str, Any]], ...] = (
        ("clean", {"incident_every": 0}),
        ("incidents", {"incident_every": 20_000}),
        ("drift", {"incident_every": 0, "drift_at": int(drift_at_s * 1000)}),
    )
    for label, sim in settings:
        for seed in seeds:
            alerts = _alerts(seconds, seed, **sim)
            feats = [a for a in alerts if a[0].startswith("feature.")]
            row: dict[str, Any] = {"setting": label, "seed": seed, "feature_alerts": len(feats)}
            if label == "drift":
                partners = {k for st, k, _ in alerts if st == "reward_by_arm"}
                first = min((t for _, _, t in feats), default=None)
                row["delay_s"] = None if first is None else round(first - drift_at_s, 1)
                row["names_the_partner"] = bool(partners & {k for _, k, _ in feats})
            runs.append(row)
    return {"seconds": seconds, "seeds": list(seeds), "drift_at_s": drift_at_s, "runs": runs}


def _markdown(res: dict[str, Any]) -> str:
    lines = [
        "| setting | seed | feature alerts | delay after drift s | names the partner |",
        "|---|---:|---:|---:|---|",
    ]
    for r in res["runs"]:
        delay = r.get("delay_s")
        lines.append(
            f"| {r['setting']} | {r['seed']} | {r['feature_alerts']} | "
            f"{'' if delay is None else delay} | {r.get('names_the_partner', '')} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m eddy.benchmarks.feature_drift")
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--seeds", default="0,1,2,3")
    ap.add_argument("--drift-at", type=float, default=40.0)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    seeds = tuple(int(x) for x in args.seeds.split(","))
    res = run_feature_drift(args.seconds, seeds, args.drift_at)
    print(_markdown(res))
    if args.json:
        args.json.write_bytes(orjson.dumps(res, option=orjson.OPT_INDENT_2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
