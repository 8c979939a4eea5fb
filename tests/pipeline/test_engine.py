"""The reference pipeline's logic on its own (no Bytewax): decisions, rewards, anomalies."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from eddy.operators.adserving import HEALTH_METRICS, AdServingEngine
from eddy.schemas.events import decode_outcomes, decode_requests
from eddy.sources.simulator import Simulator
from tests.pipeline.conftest import drive, merged


def test_one_decision_per_request_and_one_reward_per_decision(settings) -> None:
    s = settings(events=6_000, outcome_loss=0.02)
    total = merged(drive(AdServingEngine(s.engine), Simulator(s.simulator)))
    dec, rew = total.tables["decisions"], total.tables["rewards"]
    assert len(set(dec["decision_id"].tolist())) == len(dec["decision_id"]) == 6_000
    assert ((dec["propensity"] > 0) & (dec["propensity"] <= 1)).all()
    assert set(dec["partner"].tolist()) <= set(s.engine.arms)
    assert dec["context"].shape[0] == 6_000 and np.isfinite(dec["context"]).all()
    # every decision is answered exactly once: by its outcome or by the TTL
    assert sorted(rew["decision_id"].tolist()) == sorted(dec["decision_id"].tolist())
    timed_out = int(rew["timed_out"].sum())
    assert 0 < timed_out < 6_000 * 0.05
    assert total.counters["decisions"] == 6_000


def test_bandit_learns_to_beat_random(settings) -> None:
    s = settings(events=20_000)
    sim = Simulator(s.simulator)
    drive(AdServingEngine(s.engine), sim)
    sb = sim.scoreboard
    assert sb.chosen > 1.6 * sb.random
    assert sb.chosen <= sb.oracle


def test_same_input_same_decisions(settings) -> None:
    s = settings(events=3_000)
    a = merged(drive(AdServingEngine(s.engine), Simulator(s.simulator)))
    b = merged(drive(AdServingEngine(s.engine), Simulator(s.simulator)))
    assert a.tables["decisions"]["arm"].tolist() == b.tables["decisions"]["arm"].tolist()
    assert np.array_equal(a.tables["rewards"]["reward"], b.tables["rewards"]["reward"])


def test_snapshot_restore_mid_stream_gives_identical_decisions(settings) -> None:
    s = settings(events=4_000)
    sim = Simulator(s.simulator)
    eng = AdServingEngine(s.engine)
    batches = []
    while not sim.exhausted:
        rb = sim.next_requests(400)
        ob = sim.due_outcomes(int(rb.ts[-1]) + 1)
        batches += [ob, rb]
        for b in (ob, rb):
            dec = eng.process(b).tables.get("decisions")
            if dec is not None:
                sim.respond(dec["decision_id"], dec["arm"].astype(np.int64))
    # replay the recorded stream: once straight through, once with a restore in the middle
    straight = AdServingEngine(s.engine)
    arms_a = [straight.process(b).tables.get("decisions", {}).get("arm") for b in batches]
    first = AdServingEngine(s.engine)
    half = len(batches) // 2
    arms_b = [first.process(b).tables.get("decisions", {}).get("arm") for b in batches[:half]]
    resumed = AdServingEngine.restore(s.engine, first.snapshot())
    arms_b += [resumed.process(b).tables.get("decisions", {}).get("arm") for b in batches[half:]]
    assert len(arms_a) == len(arms_b)
    for x, y in zip(arms_a, arms_b, strict=True):
        assert (x is None and y is None) or np.array_equal(x, y)


def _req(i: int, ts: int) -> bytes:
    return orjson.dumps(
        {"id": f"q{i}", "ts": ts, "placement": "p", "device": "d", "geo": "g", "floor_price": 0.1}
    )


def _out(decision: str, ts: int) -> bytes:
    return orjson.dumps(
        {
            "decision_id": decision,
            "ts": ts,
            "partner": "alpha",
            "filled": True,
            "revenue": 2.0,
            "latency_ms": 100.0,
            "error": False,
        }
    )


def test_outcome_before_its_request_waits_and_unknown_outcomes_are_kept(settings) -> None:
    s = settings()
    eng = AdServingEngine(s.engine)
    t0 = 1_767_225_600_000
    ob, _ = decode_outcomes([_out("q0", t0 + 500), _out("nobody", t0 + 600)], [1, 2], "o")
    early = eng.process(ob)  # read before the request stream got there
    assert "rewards" not in early.tables
    rb, _ = decode_requests([_req(0, t0), _req(1, t0 + 1_000)], [1, 2], "r", 0)
    res = eng.process(rb)
    assert res.tables["rewards"]["decision_id"].tolist() == ["q0"]
    assert res.tables["rewards"]["reward"].tolist() == [2.0 - 0.1]
    un = res.tables["unmatched_outcomes"]
    assert un["decision_id"].tolist() == ["nobody"]
    assert un["outcome_id"].tolist() == ["o#2"]
    assert "unknown" in un["reason"][0]


def test_anomaly_rows_are_complete(settings) -> None:
    s = settings(events=40_000, rate_per_s=250.0, incident_every_s=8.0)
    total = merged(drive(AdServingEngine(s.engine), Simulator(s.simulator)))
    an = total.tables.get("anomalies")
    assert an is not None and len(an["anomaly_id"]) > 0
    assert set(an["metric"]) <= set(HEALTH_METRICS)
    assert set(an["key"]) <= set(s.engine.arms)
    assert all(sc >= s.engine.anomaly_threshold for sc in an["score"])
    assert len(set(an["anomaly_id"])) == len(an["anomaly_id"])
    assert all(isinstance(d, list) and d for d in an["detectors"])


def test_reward_drift_alerts_once_per_stream_when_the_best_partner_changes(settings) -> None:
    drift_s = 40.0
    s = settings(events=80_000, rate_per_s=1_000.0, drift_at_s=drift_s, incident_every_s=0.0)
    total = merged(drive(AdServingEngine(s.engine), Simulator(s.simulator)))
    alerts = total.tables.get("drift_alerts")
    assert alerts is not None
    start = s.simulator.start_ms + int(drift_s * 1000)
    assert all(int(t) >= start for t in alerts["event_time"])  # nothing before the drift
    cols = ("stream", "key", "event_time", "magnitude")
    rows = list(zip(*(alerts[c] for c in cols), strict=True))
    reward = [r for r in rows if r[0] in ("reward", "reward_by_partner")]
    assert all(int(t) <= start + 10_000 for _, _, t, _ in reward)
    streams = [st for st, _, _, _ in reward]
    assert len(streams) == len(set(streams))  # one alert per stream, not a burst
    assert all(m < 0 for _, _, _, m in reward)  # drops
    by_partner = [k for st, k, _, _ in reward if st == "reward_by_partner"]
    assert len(by_partner) == 1  # it names the partner whose truth changed
    # the health detectors' inputs of that partner shifted too: a sustained shift (>= 20 s of
    # buckets the detectors did not flag), so later than the reward alert
    features = [(st, k) for st, k, _, _ in rows if st.startswith("feature.")]
    assert by_partner[0] in {k for _, k in features}
    assert len(features) == len(set(features))


def test_no_drift_alert_without_drift(settings) -> None:
    s = settings(events=80_000, rate_per_s=1_000.0, incident_every_s=0.0)
    total = merged(drive(AdServingEngine(s.engine), Simulator(s.simulator)))
    assert "drift_alerts" not in total.tables  # neither on rewards nor on detector inputs


def test_late_request_is_still_decided_and_reported_with_its_watermark(settings) -> None:
    s = settings()
    eng = AdServingEngine(s.engine)
    t0 = 1_767_225_600_000
    on_time, _ = decode_requests(
        [_req(i, t0 + i * 1_000) for i in range(11)], list(range(11)), "r", 0
    )
    eng.process(on_time)
    late, _ = decode_requests([_req(99, t0 + 1_000)], [12], "r", 0)
    res = eng.process(late)
    assert res.tables["decisions"]["decision_id"].tolist() == ["q99"]
    rows = res.tables["late_events"]
    assert rows["late_event_id"].tolist() == ["requests:q99"]
    lateness = s.engine.allowed_lateness_ms
    assert rows["watermark"].tolist() == [t0 + 10_000 - lateness]
    assert rows["policy"].tolist() == ["drop"]


def test_outcomes_wait_for_the_slowest_request_partition(settings) -> None:
    s = settings()
    eng = AdServingEngine(s.engine)
    t0 = 1_767_225_600_000
    fast, _ = decode_requests([_req(i, t0 + i * 1_000) for i in range(11)], list(range(11)), "a", 0)
    eng.process(fast, partition=0)  # partition 0 is 10 s ahead
    slow, _ = decode_requests([_req(100, t0 + 1_000)], [1], "b", 0)
    eng.process(slow, partition=1)
    ob, _ = decode_outcomes([_out("q101", t0 + 5_500)], [1], "o")
    held = eng.process(ob, partition=1_000)  # q101 is not decided yet: not "unknown"
    assert "unmatched_outcomes" not in held.tables and "rewards" not in held.tables
    later, _ = decode_requests([_req(101, t0 + 5_000), _req(102, t0 + 6_000)], [2, 3], "b", 0)
    res = eng.process(later, partition=1)
    assert res.tables["rewards"]["decision_id"].tolist() == ["q101"]


def test_steps_of_several_partitions_batches_keep_windows_and_answer_every_decision(
    settings, tmp_path
) -> None:
    from eddy.benchmarks.baselines.common import make_stream
    from eddy.schemas.events import concat

    stream = make_stream(tmp_path, 4_000, seed=2)  # outcomes do not depend on the decisions
    req = Path(stream.requests).read_bytes().splitlines()
    out = Path(stream.outcomes).read_bytes().splitlines()
    items = []  # two partitions of each, interleaved as a source would deliver them
    for i in range(0, len(req), 250):
        for part, lines, decode in ((0, req, decode_requests), (1, out, decode_outcomes)):
            chunk = lines[i : i + 250]
            for sub, rows in enumerate((chunk[0::2], chunk[1::2])):
                args = (rows, list(range(i, i + len(rows))), f"p{part}.{sub}")
                b = decode(*args, 0)[0] if decode is decode_requests else decode(*args)[0]
                items.append((2 * part + sub, b))
    s = settings()
    one = AdServingEngine(s.engine)
    singles = [one.process(b, p) for p, b in items] + [one.finish()]
    many = AdServingEngine(s.engine)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(items)), size=len(items) // 3, replace=False))
    groups = np.split(np.arange(len(items)), cuts)
    steps = [many.process_many([items[j] for j in g]) for g in groups] + [many.finish()]
    a, b = merged(singles), merged(steps)
    assert len(steps) < len(singles) / 2
    key = ("key", "metric", "window", "window_start")
    wa, wb = a.tables["window_aggregates"], b.tables["window_aggregates"]
    oa = np.lexsort([np.asarray(wa[c]).astype(str) for c in key[::-1]])
    ob = np.lexsort([np.asarray(wb[c]).astype(str) for c in key[::-1]])
    for c in wa:  # the same windows, the same values
        np.testing.assert_array_equal(np.asarray(wa[c])[oa], np.asarray(wb[c])[ob], err_msg=c)
    ids = concat([bt for _, bt in items if hasattr(bt, "placement")]).id.tolist()
    for t in (a, b):  # one decision per request, every decision answered once
        assert sorted(t.tables["decisions"]["decision_id"].tolist()) == sorted(ids)
        assert sorted(t.tables["rewards"]["decision_id"].tolist()) == sorted(ids)
    assert "late_events" not in a.tables and "late_events" not in b.tables


def test_a_step_takes_batches_until_its_requests_would_pass_step_rows() -> None:
    from eddy.operators.adserving import _steps
    from eddy.schemas.events import OutcomeBatch, RequestBatch

    def req(n: int) -> RequestBatch:
        return RequestBatch(ts=np.zeros(n, np.int64))

    def out(n: int) -> OutcomeBatch:
        return OutcomeBatch(ts=np.zeros(n, np.int64))

    items = [(0, req(3_000)), (1, out(10)), (1, req(1_500)), (0, req(400)), (2, out(5))]
    items.append((0, req(4_500)))  # larger than a step: a step of its own
    items.append((1, req(1)))
    steps = _steps(items, 4_000)
    sizes = [[(type(b).__name__[0], len(b)) for _, b in step] for step in steps]
    assert sizes == [
        [("R", 3_000), ("O", 10)],
        [("R", 1_500), ("R", 400), ("O", 5)],
        [("R", 4_500)],
        [("R", 1)],
    ]
