"""Quality under concept drift: detection delay of the drift alert and the bandit's recovery.

The reference spec runs closed loop against its simulator in-process
(``benchmarks.closed_loop.play``: the engine, no Bytewax) with ``drift_at`` set (the best and
worst partners swap truth). Every decision's expected reward and the oracle's are taken from
the simulator's hidden truth, so per event-time second we know ``ratio = chosen / oracle``.
Reported:

* ``detection_delay_s`` — first ``DriftMonitor`` alert on the learned rewards at or after the
  drift, minus the drift time (event time);
* ``recovery_s`` — the first second after the drift from which the 3 s rolling ratio is back to
  at least ``recover_frac`` of its level over the 10 s before the drift;
* ``false_alerts`` — alerts before the drift (and in a drift-free control run of the same length);
* regret totals from the simulator's scoreboard.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from eddy.benchmarks.baselines.common import reference_spec
from eddy.benchmarks.closed_loop import SimFeed, play, with_simulator
from eddy.operators.drift import DriftConfig, DriftMonitor
from eddy.schemas.results import Results
from eddy.sources.simulators.adserving import AdServingSimulator

__all__ = ["run_quality"]


def _closed_loop(options: dict[str, Any], batch: int, drift_cfg: DriftConfig) -> dict[str, Any]:
    spec = with_simulator(reference_spec(), **options)
    feed = SimFeed(spec)
    assert isinstance(feed.sim, AdServingSimulator), "the reference spec plays adserving"
    truth = feed.sim.sim  # the hidden truth: expected reward of every arm per request
    start_ms = feed.sim.start_ms
    mon = DriftMonitor(drift_cfg)
    sec_chosen: dict[int, float] = {}
    sec_oracle: dict[int, float] = {}
    alerts: list[tuple[int, float, str, str]] = []

    def score(res: Results) -> None:
        dec = res.tables.get("decisions")
        if dec is None:
            return
        idx = truth.index_of(np.asarray(dec["decision_id"], dtype=object))
        exp = truth.expected_rewards(idx)
        secs = (truth.ts_of(idx) - start_ms) // 1000
        chosen = exp[np.arange(len(idx)), np.asarray(dec["arm_index"], dtype=np.int64)]
        best = exp.max(axis=1)
        for s in np.unique(secs).tolist():
            sel = secs == s
            sec_chosen[s] = sec_chosen.get(s, 0.0) + float(chosen[sel].sum())
            sec_oracle[s] = sec_oracle.get(s, 0.0) + float(best[sel].sum())

    def learn(res: Results) -> None:
        rw = res.tables.get("rewards")
        if rw is None:
            return
        real = ~np.asarray(rw["timed_out"], dtype=bool)  # a TTL default is not a reward
        ts = np.asarray(rw["event_time"], dtype=np.int64)[real]
        r = np.asarray(rw["reward"], dtype=np.float64)[real]
        partner = np.asarray(rw["arm"], dtype=object)[real]
        for stream, keys in (("reward", "all"), ("reward_by_partner", partner)):
            a = mon.update(stream, keys, ts, r)
            for k, m, t in zip(a["key"], a["magnitude"], a["event_time"], strict=True):
                alerts.append((int(t), float(m), stream, str(k)))

    t0 = time.perf_counter()
    events = 0
    for res in play(feed, batch=batch):
        score(res)
        learn(res)
        events += int(res.counters.get("events", 0))
    wall = time.perf_counter() - t0
    seconds = sorted(sec_chosen)
    ratio = np.array([sec_chosen[s] / sec_oracle[s] if sec_oracle[s] else np.nan for s in seconds])
    sb = feed.sim.scoreboard()
    return {
        "start_ms": start_ms,
        "seconds": seconds,
        "ratio": ratio,
        "alerts": alerts,
        "wall_s": wall,
        "events": events,
        "scoreboard": {
            "decisions": sb["decisions"],
            "chosen": sb["chosen"],
            "oracle": sb["oracle"],
            "random": sb["random"],
            "regret_vs_oracle": sb["oracle"] - sb["chosen"],
            "ratio_to_oracle": sb["chosen"] / sb["oracle"] if sb["oracle"] else None,
        },
    }


def _recovery(
    secs: list[int], ratio: np.ndarray, drift_s: float, frac: float
) -> tuple[float | None, float, float]:
    s = np.asarray(secs, dtype=float)
    before = ratio[(s >= drift_s - 10) & (s < drift_s)]
    level = float(np.nanmean(before)) if len(before) else float("nan")
    after = s >= drift_s
    rolling = np.convolve(np.nan_to_num(ratio), np.ones(3) / 3, mode="full")[: len(ratio)]
    dip = float(np.nanmin(ratio[after])) if after.any() else float("nan")
    for i in np.flatnonzero(after & (s >= drift_s + 2)):
        if rolling[i] >= frac * level:
            return float(s[i] - drift_s), level, dip
    return None, level, dip


def run_quality(
    n_requests: int = 120_000,
    rate_per_s: float = 2_000.0,
    drift_at_s: float = 30.0,
    seed: int = 0,
    batch: int = 1_000,
    recover_frac: float = 0.9,
    drift_config: DriftConfig | None = None,
) -> dict[str, Any]:
    """Drifted run and a drift-free control of the same length; incidents off (pure drift)."""
    options: dict[str, Any] = {
        "seed": seed,
        "rate_per_s": rate_per_s,
        "events": n_requests,
        "drift_at": int(drift_at_s * 1000),
        "incident_every": 0,
    }
    dcfg = drift_config or DriftConfig(direction="down")
    drifted = _closed_loop(options, batch, dcfg)
    control = _closed_loop({**options, "drift_at": "none"}, batch, dcfg)
    drift_ms = drifted["start_ms"] + int(drift_at_s * 1000)
    # the overall reward, or one partner's: a bandit that routes around the changed partner
    # quickly can keep the overall dip too short to alert, while that partner's reward drops
    after = sorted(a for a in drifted["alerts"] if a[0] >= drift_ms)
    recovery, level, dip = _recovery(drifted["seconds"], drifted["ratio"], drift_at_s, recover_frac)
    return {
        "drift_at_s": drift_at_s,
        "detection_delay_s": (after[0][0] - drift_ms) / 1000.0 if after else None,
        "alert_magnitude": after[0][1] if after else None,
        "alerts_after_drift": len(after),
        "false_alerts_before_drift": len([a for a in drifted["alerts"] if a[0] < drift_ms]),
        "false_alerts_control_run": len(control["alerts"]),
        "recovery_s": recovery,
        "ratio_before_drift": level,
        "ratio_min_after_drift": dip,
        "recover_frac": recover_frac,
        "ratio_by_second": {
            "seconds": drifted["seconds"],
            "drifted": [None if np.isnan(x) else float(x) for x in drifted["ratio"]],
            "control": [None if np.isnan(x) else float(x) for x in control["ratio"]],
        },
        "scoreboard": {"drifted": drifted["scoreboard"], "control": control["scoreboard"]},
        "engine_events_per_s": drifted["events"] / drifted["wall_s"],
        "alerts": [
            {"event_time": t, "magnitude": m, "stream": st, "key": k}
            for t, m, st, k in drifted["alerts"]
        ],
    }
