"""The closed-loop simulator: deterministic, answers every decision, labels incidents."""

from __future__ import annotations

import numpy as np
import pytest

from eddy.sources.simulators.adserving_world import SimConfig, Simulator


def _play(sim: Simulator, batch: int, choose) -> list[tuple]:
    seen = []
    while not sim.exhausted:
        rb = sim.next_requests(batch)
        sim.respond(rb.id, choose(sim, rb))
        ob = sim.due_outcomes(int(rb.ts[-1]) + 1)
        seen.extend(zip(ob.decision_id.tolist(), ob.revenue.tolist(), strict=True))
    ob = sim.due_outcomes(np.iinfo(np.int64).max)
    seen.extend(zip(ob.decision_id.tolist(), ob.revenue.tolist(), strict=True))
    return seen


def _oracle(sim: Simulator, rb) -> np.ndarray:
    return sim.expected_rewards(sim.index_of(rb.id)).argmax(axis=1)


def test_same_seed_same_stream_whatever_the_batching() -> None:
    a = _play(Simulator(SimConfig(seed=3, n_events=5_000)), 100, _oracle)
    b = _play(Simulator(SimConfig(seed=3, n_events=5_000)), 777, _oracle)
    assert sorted(a) == sorted(b)
    c = _play(Simulator(SimConfig(seed=4, n_events=5_000)), 100, _oracle)
    assert sorted(a) != sorted(c)


def test_every_decision_gets_at_most_one_outcome_after_its_request() -> None:
    cfg = SimConfig(seed=1, n_events=3_000, outcome_loss=0.05)
    sim = Simulator(cfg)
    got: dict[str, int] = {}
    while not sim.exhausted:
        rb = sim.next_requests(250)
        sim.respond(rb.id, np.zeros(len(rb), dtype=np.int64))
        ob = sim.due_outcomes(int(rb.ts[-1]) + 1)
        req_ts = sim.ts_of(sim.index_of(ob.decision_id))
        assert (ob.ts - req_ts >= cfg.min_delay_ms).all()
        for d in ob.decision_id.tolist():
            got[d] = got.get(d, 0) + 1
    ob = sim.due_outcomes(np.iinfo(np.int64).max)
    for d in ob.decision_id.tolist():
        got[d] = got.get(d, 0) + 1
    assert max(got.values()) == 1
    lost = 1 - len(got) / 3_000
    assert 0.02 < lost < 0.09  # ~5% of outcomes never arrive (the TTL path)


def test_oracle_beats_random_and_scoreboard_adds_up() -> None:
    sim = Simulator(SimConfig(seed=0, n_events=4_000))
    _play(sim, 500, _oracle)
    sb = sim.scoreboard
    assert sb.decisions == 4_000
    assert sb.chosen == pytest.approx(sb.oracle)
    assert sb.oracle > 1.5 * sb.random


def test_incidents_are_labelled_and_hurt_the_partner() -> None:
    cfg = SimConfig(seed=2, n_events=60_000, rate_per_s=1_000, incident_every_s=10)
    sim = Simulator(cfg)
    while not sim.exhausted:
        sim.next_requests(5_000)
    assert sim.incidents, "a minute of traffic with an incident every ~10 s has incidents"
    inc = next(i for i in sim.incidents if i.kind in ("outage", "price_drop"))
    p = cfg.partners.index(inc.partner)
    start = int((inc.start_ms - cfg.start_ms) * cfg.rate_per_s / 1000)
    end = int((inc.end_ms - cfg.start_ms) * cfg.rate_per_s / 1000)
    during = sim.expected_rewards(np.arange(start + 1, end - 1))[:, p].mean()
    before = sim.expected_rewards(np.arange(max(0, start - 3_000), start))[:, p].mean()
    assert during < before


def test_bad_config_names_the_field() -> None:
    with pytest.raises(ValueError, match="rate_per_s"):
        SimConfig(rate_per_s=0)
