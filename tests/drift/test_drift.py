"""Drift monitor: in-control silence, detection of shifts, batch-cut invariance, the simulator."""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pytest

from eddy.operators.drift import ALERT_COLUMNS, DriftConfig, DriftMonitor
from eddy.schemas.tables import TABLES
from eddy.sources.simulators.adserving_world import SimConfig, Simulator


def _alerts(mon: DriftMonitor, x: np.ndarray, key: str = "k", batch: int | None = None) -> dict:
    ts = np.arange(len(x), dtype=np.int64)
    if batch is None:
        return mon.update("s", key, ts, x, now_ms=0)
    parts = [
        mon.update("s", key, ts[i : i + batch], x[i : i + batch], now_ms=0)
        for i in range(0, len(x), batch)
    ]
    return {c: np.concatenate([p[c] for p in parts]) for c in ALERT_COLUMNS}


def test_columns_match_the_drift_alerts_table() -> None:
    # the stage that raised the alert is added by the stage (operators.stages.base)
    table = TABLES["drift_alerts"].column_names
    assert [c for c in table if c != "stage"] == list(ALERT_COLUMNS)


@pytest.mark.parametrize(
    ("field", "value"),
    [("threshold", 0.0), ("block", 0), ("warmup", 1), ("half_life", 0.5), ("clip", -1.0)],
)
def test_config_errors_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"DriftConfig\.{field}: expected"):
        DriftConfig(**{field: value})


def test_stationary_gaussian_stream_gives_no_alert() -> None:
    x = np.random.default_rng(0).normal(5.0, 2.0, 400_000)
    assert len(_alerts(DriftMonitor(), x)["alert_id"]) == 0


@pytest.mark.parametrize("shift", [-0.5, 0.3, 1.0])
def test_a_mean_shift_gives_one_alert_soon_after_with_its_magnitude(shift: float) -> None:
    x = np.random.default_rng(1).normal(0.0, 1.0, 300_000)
    x[150_000:] += shift
    a = _alerts(DriftMonitor(), x)
    assert len(a["alert_id"]) == 1
    delay = int(a["event_time"][0]) - 150_000
    assert 0 <= delay < 5_000
    assert np.sign(a["magnitude"][0]) == np.sign(shift)
    assert abs(a["magnitude"][0] - shift) < 0.6 * abs(shift)


def test_alerts_do_not_depend_on_how_the_stream_is_cut_into_batches() -> None:
    x = np.random.default_rng(2).normal(0.0, 1.0, 100_000)
    x[40_000:] -= 0.8
    whole = _alerts(DriftMonitor(), x)
    cut = _alerts(DriftMonitor(), x, batch=777)
    assert len(whole["alert_id"]) == 1
    for c in ALERT_COLUMNS:
        np.testing.assert_array_equal(whole[c], cut[c])


def test_keys_are_independent_and_nan_is_skipped_and_counted() -> None:
    rng = np.random.default_rng(3)
    n = 120_000
    keys = np.where(rng.random(n) < 0.5, "a", "b").astype(object)
    x = rng.normal(0.0, 1.0, n)
    x[(keys == "b") & (np.arange(n) > 60_000)] += 1.0
    x[::1000] = np.nan
    mon = DriftMonitor()
    a = mon.update("s", keys, np.arange(n), x, now_ms=123)
    assert a["key"].tolist() == ["b"]
    assert a["detected_at"].tolist() == [123]
    assert a["stream"].tolist() == ["s"]
    assert mon.skipped == 120
    assert mon.alerts_total == 1


def test_a_key_is_its_text() -> None:
    """``1`` and ``"1"`` are one key; ``1.0`` and ``True`` (equal to ``1`` in a dict) are not."""
    rng = np.random.default_rng(5)
    n = 60_000
    x = rng.normal(0.0, 1.0, n)
    x[30_000:] += 1.5
    mixed = np.empty(n, dtype=object)
    mixed[:] = [(1, "1")[i % 2] for i in range(n)]
    as_text = DriftMonitor().update("s", np.full(n, "1", dtype=object), np.arange(n), x, 0)
    got = DriftMonitor().update("s", mixed, np.arange(n), x, 0)
    assert got["key"].tolist() == as_text["key"].tolist() == ["1"]
    mon = DriftMonitor()
    mon.update("s", np.array([1, 1.0, True, "x"], dtype=object), np.arange(4), np.zeros(4), 0)
    assert mon._streams["s"].keys == ["1", "1.0", "True", "x"]


def test_snapshot_restore_continues_exactly_and_state_pickles() -> None:
    x = np.random.default_rng(4).normal(0.0, 1.0, 100_000)
    x[70_000:] += 0.7
    ts = np.arange(len(x))
    ref = DriftMonitor().update("s", "k", ts, x, now_ms=0)
    mon = DriftMonitor()
    assert len(mon.update("s", "k", ts[:50_000], x[:50_000], now_ms=0)["alert_id"]) == 0
    mon2 = DriftMonitor.restore(pickle.loads(pickle.dumps(mon.snapshot())))
    rest = mon2.update("s", "k", ts[50_000:], x[50_000:], now_ms=0)
    assert rest["alert_id"].tolist() == ref["alert_id"].tolist()
    assert len(ref["alert_id"]) == 1


def test_mismatched_lengths_raise_value_error() -> None:
    with pytest.raises(ValueError, match="one entry per value"):
        DriftMonitor().update("s", np.array(["a", "b"], dtype=object), [1, 2, 3], [1.0, 2.0, 3.0])


def test_empty_batch_gives_empty_alerts() -> None:
    a = DriftMonitor().update("s", np.empty(0, object), [], [])
    assert set(a) == set(ALERT_COLUMNS) and all(len(v) == 0 for v in a.values())


def _simulated_reward_alerts(drift_at_s: float | None, seed: int) -> tuple[list[dict], int]:
    """A converged greedy policy (oracle of the pre-drift truth) on the simulator's reward."""
    cfg = SimConfig(seed=seed, n_events=120_000, drift_at_s=drift_at_s, incident_every_s=0)
    sim = Simulator(cfg)
    before = Simulator(SimConfig(seed=seed, n_events=120_000, incident_every_s=0))
    mon = DriftMonitor()
    out_alerts = []
    while not sim.exhausted:
        req = sim.next_requests(2_000)
        arms = before.expected_rewards(sim.index_of(req.id)).argmax(axis=1)
        sim.respond(req.id, arms)
        out = sim.due_outcomes(int(req.ts[-1]))
        reward = out.revenue - cfg.latency_penalty_per_s * out.latency_ms / 1000.0
        out_alerts.append(mon.update("reward", "all", out.ts, reward, now_ms=0))
        out_alerts.append(mon.update("reward_by_partner", out.partner, out.ts, reward, now_ms=0))
    return [a for a in out_alerts if len(a["alert_id"])], cfg.start_ms


@pytest.mark.parametrize("seed", [1, 2])
def test_simulated_concept_drift_is_alerted_once_and_a_clean_run_is_silent(seed: int) -> None:
    drifted, start = _simulated_reward_alerts(30.0, seed)
    overall = [a for a in drifted if a["stream"][0] == "reward"]
    assert sum(len(a["alert_id"]) for a in overall) == 1
    delay_s = (int(overall[0]["event_time"][0]) - start) / 1000.0 - 30.0
    assert 0.0 <= delay_s < 5.0
    assert overall[0]["magnitude"][0] < 0  # the best partner became the worst: reward dropped
    for a in drifted:  # nothing before the drift, on any stream
        assert ((a["event_time"] - start) / 1000.0 >= 30.0).all()
    clean, _ = _simulated_reward_alerts(None, seed)
    assert clean == []


def test_a_short_burst_neither_alerts_nor_drags_the_reference_into_a_later_alert() -> None:
    cfg = DriftConfig(block=1, warmup=30, half_life=30.0, threshold=40.0, slack=1.0, clip=3.0)
    x = np.random.default_rng(11).normal(0.0, 1.0, 2_000)
    x[500:510] += 20.0  # an incident: 10 values far off, then back to normal
    assert len(_alerts(DriftMonitor(cfg), x)["alert_id"]) == 0
    x[1_000:] += 4.0  # a lasting shift is still found, within ~20 values
    a = _alerts(DriftMonitor(cfg), x)
    assert len(a["alert_id"]) == 1 and 1_000 <= a["event_time"][0] < 1_030


def test_direction_limits_the_test_to_drops_or_rises() -> None:
    x = np.random.default_rng(5).normal(0.0, 1.0, 200_000)
    x[100_000:] += 1.0
    assert len(_alerts(DriftMonitor(DriftConfig(direction="down")), x)["alert_id"]) == 0
    assert len(_alerts(DriftMonitor(DriftConfig(direction="up")), x)["alert_id"]) == 1
    with pytest.raises(ValueError, match=r"DriftConfig\.direction: expected one of"):
        DriftConfig(direction="sideways")


def test_reference_engine_under_drift_alerts_and_the_bandit_recovers() -> None:
    from eddy.benchmarks.quality import run_quality

    q = run_quality(n_requests=60_000, drift_at_s=15.0, seed=0)
    # the changed partner's reward alerts, and the overall reward may too: once each at most
    assert 1 <= q["alerts_after_drift"] <= 2
    assert {a["key"] for a in q["alerts"]} <= {"all", "foxtrot"}
    assert q["detection_delay_s"] is not None and 0.0 <= q["detection_delay_s"] < 5.0
    assert q["alert_magnitude"] < 0
    assert q["false_alerts_before_drift"] == 0 and q["false_alerts_control_run"] == 0
    assert q["ratio_min_after_drift"] < 0.8 * q["ratio_before_drift"]  # the drift hurt...
    assert q["recovery_s"] is not None and q["recovery_s"] <= 10.0  # ...and LinUCB got back
