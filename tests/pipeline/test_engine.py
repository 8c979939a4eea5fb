"""The engine on its own (no Bytewax) running the reference spec: decisions, rewards,
anomalies, drift, lateness, the order of outcomes and decisions."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import orjson

from eddy.operators.engine import KeyedEngine, PipelineEngine
from eddy.operators.sharding import whole
from eddy.schemas.batch import EventBatch
from tests.pipeline.conftest import NOW_NS, decoded, drive, merged, simulator_of

T0 = 1_767_225_600_000
ARMS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")


def test_one_decision_per_request_and_one_reward_per_decision(reference) -> None:
    spec = reference(events=6_000, outcome_loss=0.02)
    total, _ = drive(spec)
    dec, rew = total.tables["decisions"], total.tables["rewards"]
    assert len(set(dec["decision_id"].tolist())) == len(dec["decision_id"]) == 6_000
    assert ((dec["propensity"] > 0) & (dec["propensity"] <= 1)).all()
    assert set(dec["arm"].tolist()) <= set(ARMS)
    assert (dec["decide"] == "pick_partner").all()
    assert dec["context"].shape[0] == 6_000 and np.isfinite(dec["context"]).all()
    # every decision is answered exactly once: by its outcome or by the TTL
    assert sorted(rew["decision_id"].tolist()) == sorted(dec["decision_id"].tolist())
    timed_out = int(rew["timed_out"].sum())
    assert 0 < timed_out < 6_000 * 0.05
    learned = ~rew["timed_out"]
    expected = rew["revenue"][learned] - rew["latency_ms"][learned] / 1000
    np.testing.assert_allclose(rew["reward"][learned], expected)  # the spec's expression
    assert total.counters["decisions"] == 6_000


def test_bandit_learns_to_beat_random(reference) -> None:
    _, sim = drive(reference(events=20_000))
    sb = sim.scoreboard()
    assert sb["chosen"] > 1.6 * sb["random"]
    assert sb["chosen"] <= sb["oracle"]


def test_same_input_same_decisions(reference) -> None:
    a, _ = drive(reference(events=3_000))
    b, _ = drive(reference(events=3_000))
    assert a.tables["decisions"]["arm"].tolist() == b.tables["decisions"]["arm"].tolist()
    assert np.array_equal(a.tables["rewards"]["reward"], b.tables["rewards"]["reward"])


def _record(spec, batch: int = 400) -> list[list[tuple[int, EventBatch]]]:
    """The items of a closed-loop run, step by step (replayable without the simulator)."""
    sim = simulator_of(spec)
    eng = PipelineEngine(spec)
    steps: list[list[tuple[int, EventBatch]]] = []
    parts = {s.name: i * 1_000 for i, s in enumerate(spec.streams)}
    while True:
        try:
            got = sim.next_batch(batch)
        except StopIteration:
            return steps
        items = [(parts[s], decoded(spec, s, lines)) for s, lines in got or []]
        steps.append(items)
        dec = eng.process_many(items, NOW_NS).tables.get("decisions")
        if dec is not None:
            sim.respond(dec["decision_id"], dec["arm"])


def test_snapshot_restore_mid_stream_gives_identical_outputs(reference) -> None:
    spec = reference(events=4_000)
    steps = _record(spec)
    straight = PipelineEngine(spec)
    a = [straight.process_many(items, NOW_NS) for items in steps]
    first = PipelineEngine(spec)
    half = len(steps) // 2
    b = [first.process_many(items, NOW_NS) for items in steps[:half]]
    resumed = PipelineEngine.restore(spec, first.snapshot())
    b += [resumed.process_many(items, NOW_NS) for items in steps[half:]]
    for x, y in zip(a, b, strict=True):
        assert sorted(x.tables) == sorted(y.tables)
        for t in x.tables:
            for c in x.tables[t]:
                assert np.asarray(x.tables[t][c]).tolist() == np.asarray(y.tables[t][c]).tolist()


def _req(i: int, ts: int) -> bytes:
    return orjson.dumps(
        {"id": f"q{i}", "ts": ts, "placement": "p", "device": "d", "geo": "g", "floor_price": 0.1}
    )


def _out(decision: str, ts: int, partner: str = "alpha") -> bytes:
    return orjson.dumps(
        {
            "decision_id": decision,
            "ts": ts,
            "partner": partner,
            "filled": True,
            "revenue": 2.0,
            "latency_ms": 100.0,
            "error": False,
        }
    )


def _parts(spec) -> tuple[int, int]:
    names = [s.name for s in spec.streams]
    return names.index("requests") * 1_000, names.index("outcomes") * 1_000


def test_outcome_before_its_request_waits_and_unknown_outcomes_are_kept(reference) -> None:
    spec = reference()
    req_p, out_p = _parts(spec)
    eng = PipelineEngine(spec)
    ob = decoded(spec, "outcomes", [_out("q0", T0 + 500), _out("nobody", T0 + 600)])
    early = eng.process_many([(out_p, ob)], NOW_NS)  # read before the requests got there
    assert "rewards" not in early.tables
    rb = decoded(spec, "requests", [_req(0, T0), _req(1, T0 + 1_000)])
    res = eng.process_many([(req_p, rb)], NOW_NS)
    decided = res.tables["decisions"]["arm"][0]
    un = res.tables["unmatched_outcomes"]
    assert "unknown" in un["reason"][un["decision_id"].tolist().index("nobody")]
    if decided == "alpha":
        rew = res.tables["rewards"]
        assert rew["decision_id"].tolist() == ["q0"] and rew["reward"].tolist() == [2.0 - 0.1]
        assert un["decision_id"].tolist() == ["nobody"]
    else:  # the outcome names another arm than the decision's: kept, not learned
        assert "rewards" not in res.tables
        assert sorted(un["decision_id"].tolist()) == ["nobody", "q0"]
    assert un["outcome_id"].tolist()[-1] == "pick_partner:test:outcomes#2"


def test_an_outcome_naming_another_arm_is_kept_with_its_reason_and_not_learned(reference) -> None:
    spec = reference()
    req_p, out_p = _parts(spec)
    eng = PipelineEngine(spec)
    requests = decoded(spec, "requests", [_req(0, T0), _req(1, T0 + 1_000)])
    res = eng.process_many([(req_p, requests)], NOW_NS)  # decided up to T0 + 1 s
    arm = res.tables["decisions"]["arm"][0]
    other = next(a for a in ARMS if a != arm)
    wrong = decoded(spec, "outcomes", [_out("q0", T0 + 500, other)])
    res = eng.process_many([(out_p, wrong)], NOW_NS)
    un = res.tables["unmatched_outcomes"]
    assert un["decision_id"].tolist() == ["q0"] and "another arm" in un["reason"][0]
    assert "rewards" not in res.tables
    right = decoded(spec, "outcomes", [_out("q0", T0 + 600, arm)], start=2)
    res = eng.process_many([(out_p, right)], NOW_NS)
    assert res.tables["rewards"]["decision_id"].tolist() == ["q0"]  # still waiting: learned


def test_a_repeated_request_id_is_a_dead_letter_and_decided_once(reference) -> None:
    spec = reference()
    req_p, _ = _parts(spec)
    eng = PipelineEngine(spec)
    first = decoded(spec, "requests", [_req(0, T0), _req(1, T0 + 10)])
    again = decoded(spec, "requests", [_req(2, T0 + 20), _req(0, T0 + 30)], start=3)
    eng.process_many([(req_p, first)], NOW_NS)
    res = eng.process_many([(req_p, again)], NOW_NS)
    assert res.tables["decisions"]["decision_id"].tolist() == ["q2"]
    dead = res.tables["dead_letters"]
    assert dead["dead_letter_id"].tolist() == ["duplicate:requests:q0#2"]
    assert "id 'q0' repeats an event of stream 'requests'" in dead["reason"][0]
    assert "+30 ms" in dead["reason"][0]
    raw = orjson.loads(dead["raw"][0])
    assert raw["id"] == "q0" and raw["ts"] == T0 + 30 and raw["floor_price"] == 0.1
    assert res.counters["duplicates"] == 1


def test_anomaly_rows_are_complete(reference) -> None:
    total, _ = drive(reference(events=40_000, rate_per_s=250.0, incident_every="8s"))
    an = total.tables.get("anomalies")
    assert an is not None and len(an["anomaly_id"]) > 0
    assert set(an["metric"]) <= {"filled", "revenue", "latency_ms", "error"}
    assert set(an["key"]) <= set(ARMS)
    assert (an["detect"] == "partner_alerts").all() and (an["stream"] == "outcomes").all()
    assert all(sc >= 0.99 for sc in an["score"])
    assert len(set(an["anomaly_id"])) == len(an["anomaly_id"])
    assert all(isinstance(d, list) and d for d in an["detectors"])


def test_reward_drift_alerts_once_per_stream_when_the_best_arm_changes(reference) -> None:
    spec = reference(events=80_000, rate_per_s=1_000.0, drift_at="40s", incident_every="0s")
    total, sim = drive(spec)
    alerts = total.tables.get("drift_alerts")
    assert alerts is not None
    start = sim.start_ms + 40_000
    assert all(int(t) >= start for t in alerts["event_time"])  # nothing before the drift
    cols = ("stream", "key", "event_time", "magnitude")
    rows = list(zip(*(alerts[c] for c in cols), strict=True))
    reward = [r for r in rows if r[0] in ("reward", "reward_by_arm")]
    assert all(int(t) <= start + 10_000 for _, _, t, _ in reward)
    streams = [st for st, _, _, _ in reward]
    assert len(streams) == len(set(streams))  # one alert per stream, not a burst
    assert all(m < 0 for _, _, _, m in reward)  # drops
    by_arm = [k for st, k, _, _ in reward if st == "reward_by_arm"]
    assert len(by_arm) == 1  # it names the arm whose truth changed
    # the detector's inputs of that arm shifted too: a sustained shift, later than the reward's
    features = [(st, k) for st, k, _, _ in rows if st.startswith("feature.")]
    assert by_arm[0] in {k for _, k in features}
    assert len(features) == len(set(features))


def test_no_drift_alert_without_drift(reference) -> None:
    total, _ = drive(reference(events=80_000, rate_per_s=1_000.0, incident_every="0s"))
    assert "drift_alerts" not in total.tables  # neither on rewards nor on detector inputs


def test_late_request_is_still_decided_and_reported_with_its_watermark(reference) -> None:
    spec = reference()
    req_p, _ = _parts(spec)
    eng = PipelineEngine(spec)
    on_time = decoded(spec, "requests", [_req(i, T0 + i * 1_000) for i in range(11)])
    eng.process_many([(req_p, on_time)], NOW_NS)
    late = decoded(spec, "requests", [_req(99, T0 + 1_000)], start=12)
    res = eng.process_many([(req_p, late)], NOW_NS)
    assert res.tables["decisions"]["decision_id"].tolist() == ["q99"]
    rows = res.tables["late_events"]
    assert rows["late_event_id"].tolist() == ["requests:q99"]
    assert rows["watermark"].tolist() == [T0 + 10_000 - spec.allowed_lateness_ms]
    assert rows["policy"].tolist() == ["drop"] and rows["key"].tolist() == ["p"]


def test_outcomes_wait_for_the_slowest_request_partition(reference) -> None:
    spec = reference()
    req_p, out_p = _parts(spec)
    eng = PipelineEngine(spec)
    fast = decoded(spec, "requests", [_req(i, T0 + i * 1_000) for i in range(11)])
    eng.process_many([(req_p, fast)], NOW_NS)  # partition req_p is 10 s ahead
    slow = decoded(spec, "requests", [_req(100, T0 + 1_000)], start=20)
    eng.process_many([(req_p + 1, slow)], NOW_NS)
    ob = decoded(spec, "outcomes", [_out("q101", T0 + 5_500)])
    held = eng.process_many([(out_p, ob)], NOW_NS)  # q101 is not decided yet: not "unknown"
    assert "unmatched_outcomes" not in held.tables and "rewards" not in held.tables
    later = decoded(spec, "requests", [_req(101, T0 + 5_000), _req(102, T0 + 6_000)], start=21)
    res = eng.process_many([(req_p + 1, later)], NOW_NS)
    got = res.tables.get("rewards", {}).get("decision_id", np.array([])).tolist()
    got += res.tables.get("unmatched_outcomes", {}).get("decision_id", np.array([])).tolist()
    assert got == ["q101"]  # joined now (learned, or kept if it named another arm)


def test_steps_of_several_batches_keep_windows_and_answer_every_decision(reference) -> None:
    spec = reference(events=4_000)
    steps = _record(spec, batch=250)
    items = [item for step in steps for item in step]
    one = PipelineEngine(spec)
    singles = [one.process_many([it], NOW_NS) for it in items] + [one.finish(NOW_NS)]
    many = PipelineEngine(spec)
    rng = np.random.default_rng(0)
    cuts = np.sort(rng.choice(np.arange(1, len(items)), size=len(items) // 3, replace=False))
    groups = np.split(np.arange(len(items)), cuts)
    grouped = [many.process_many([items[j] for j in g], NOW_NS) for g in groups]
    grouped.append(many.finish(NOW_NS))
    a, b = merged(singles), merged(grouped)
    key = ("features", "key", "metric", "window", "window_start")
    wa, wb = a.tables["window_aggregates"], b.tables["window_aggregates"]
    oa = np.lexsort([np.asarray(wa[c]).astype(str) for c in key[::-1]])
    ob = np.lexsort([np.asarray(wb[c]).astype(str) for c in key[::-1]])
    for c in wa:  # the same windows, the same values
        np.testing.assert_array_equal(np.asarray(wa[c])[oa], np.asarray(wb[c])[ob], err_msg=c)
    ids = [i for _, bt in items if bt.stream == "requests" for i in bt.ids.tolist()]
    for t in (a, b):  # one decision per request, every decision answered once
        assert sorted(t.tables["decisions"]["decision_id"].tolist()) == sorted(ids)
        assert sorted(t.tables["rewards"]["decision_id"].tolist()) == sorted(ids)
    assert "late_events" not in a.tables and "late_events" not in b.tables


def test_a_step_takes_batches_until_its_decisions_would_pass_step_rows(reference) -> None:
    spec = replace(reference(), batch_size=4_000)
    eng = KeyedEngine(spec)

    def batch(stream: str, n: int) -> EventBatch:
        return EventBatch(stream, np.zeros(n, np.int64), np.empty(n, object), {})

    r, o = "requests", "outcomes"
    items = [(0, batch(r, 3_000)), (1, batch(o, 10)), (0, batch(r, 1_500)), (0, batch(r, 400))]
    items += [(2, batch(o, 5)), (0, batch(r, 4_500)), (1, batch(r, 1))]
    steps = eng._steps([whole(p, b) for p, b in items], 4_000)
    sizes = [[(piece.stream[0], len(piece.batch)) for piece in step] for step in steps]
    assert sizes == [
        [("r", 3_000), ("o", 10)],
        [("r", 1_500), ("r", 400), ("o", 5)],
        [("r", 4_500)],
        [("r", 1)],
    ]
