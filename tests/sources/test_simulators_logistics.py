"""The logistics simulator: shipments choose a carrier, deliveries come back hours later."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from eddy.sources.simulators.base import ClosedLoopSimulator
from eddy.sources.simulators.logistics import CARRIERS, MIN_DELAY_MS, ROUTES, LogisticsSimulator
from tests.sources.simulator_helpers import check_line, play

_H = 3_600_000


def _oracle(sim: ClosedLoopSimulator, events: list[dict[str, Any]]) -> list[str]:
    assert isinstance(sim, LogisticsSimulator)
    exp, ok = sim.expected_rewards(np.array([e["shipment_id"] for e in events], dtype=object))
    return [CARRIERS[i] for i in np.where(ok, exp, -np.inf).argmax(axis=1)]


def _first(sim: ClosedLoopSimulator, events: list[dict[str, Any]]) -> list[str]:
    return [e["carriers"][0] for e in events]


def _decoded(sim: LogisticsSimulator, lines: dict[str, list[bytes]]) -> tuple[dict, list[dict]]:
    ships = {
        s["shipment_id"]: s
        for s in (check_line(x, sim.STREAMS["shipments"]) for x in lines["shipments"])
    }
    return ships, [check_line(x, sim.STREAMS["deliveries"]) for x in lines["deliveries"]]


def test_lines_are_declared_and_every_shipment_gets_one_delivery_hours_later() -> None:
    sim = LogisticsSimulator({"seed": 3, "events": 6_000})
    lines = play(sim, sizes=(700, 1_500))
    ships, dels = _decoded(sim, lines)
    assert len(ships) == 6_000
    assert sorted(d["shipment_id"] for d in dels) == sorted(ships)  # exactly one each
    for stream, time in (("shipments", "created_at"), ("deliveries", "delivered_at")):
        times = [orjson.loads(x)[time] for x in lines[stream]]
        assert times == sorted(times)  # each stream in event-time order
    hours = []
    for d in dels:
        s = ships[d["shipment_id"]]
        assert d["carrier"] in s["carriers"]
        assert d["delivered_at"] - s["created_at"] >= MIN_DELAY_MS
        assert (d["delay_h"] == 0.0) == d["on_time"] and d["delay_h"] >= 0 and d["cost"] > 0
        hours.append((d["delivered_at"] - s["created_at"]) / _H)
    assert np.percentile(hours, 5) >= 10 and np.percentile(hours, 95) <= 100


def test_carriers_are_fixed_per_route_and_match_the_truth() -> None:
    sim = LogisticsSimulator({"seed": 4, "events": 5_000})
    ships, _ = _decoded(sim, play(sim, _first))
    per_route: dict[str, set[tuple[str, ...]]] = {}
    for s in ships.values():
        per_route.setdefault(s["route"], set()).add(tuple(s["carriers"]))
        assert s["distance_km"] > 0 and 0.2 <= s["weight_kg"] <= 500
    assert set(per_route) <= set(ROUTES) and len(per_route) > len(ROUTES) // 2
    for route, lists in per_route.items():
        assert len(lists) == 1
        (carriers,) = lists
        assert 2 <= len(carriers) <= 4 and set(carriers) <= set(CARRIERS)
        eligible = sim.truth.eligible[ROUTES.index(route)]
        want = [c for c, e in zip(CARRIERS, eligible, strict=True) if e]
        assert list(carriers) == want


def test_deterministic_across_cuts_late_decisions_and_pacing() -> None:
    def run(**kw: Any) -> dict[str, list[bytes]]:
        return play(LogisticsSimulator({"seed": 1, "events": 4_000}), **kw)

    a = run(sizes=(4_000,))
    assert run(sizes=(13, 600, 257), hold=3) == a
    assert run(sizes=(500,), until_step=_H // 4, hold=1) == a
    b = play(LogisticsSimulator({"seed": 2, "events": 4_000}), sizes=(4_000,))
    assert b["shipments"] != a["shipments"]


def test_oracle_beats_random_and_the_reward_matches_its_expectation() -> None:
    sim = LogisticsSimulator({"seed": 0, "events": 20_000})
    _, dels = _decoded(sim, play(sim, _oracle, sizes=(2_000,)))
    sb = sim.scoreboard()
    assert sb["decisions"] == 20_000 and sb["ineligible"] == 0
    assert sb["chosen"] == pytest.approx(sb["oracle"])
    assert sb["oracle"] > 1.15 * sb["random"]
    assert -1 < sb["random"] / sb["decisions"] < sb["oracle"] / sb["decisions"] < 1
    reward = [d["on_time"] - d["cost"] / 100 - 2 * d["damaged"] for d in dels]
    assert np.mean(reward) == pytest.approx(sb["chosen"] / sb["decisions"], abs=0.02)


def test_context_matters_beyond_the_route() -> None:
    """The oracle beats the best carrier per route: express and weight change the best one."""
    sim = LogisticsSimulator({"seed": 0, "events": 10_000, "incident_at": "none"})
    rows: list[tuple[np.ndarray, np.ndarray, int]] = []

    def record(s: ClosedLoopSimulator, events: list[dict[str, Any]]) -> list[str]:
        assert isinstance(s, LogisticsSimulator)
        exp, ok = s.expected_rewards(np.array([e["shipment_id"] for e in events], dtype=object))
        rows.extend(
            (x, o, ROUTES.index(e["route"])) for x, o, e in zip(exp, ok, events, strict=True)
        )
        return _first(s, events)

    play(sim, record)
    exp = np.array([r[0] for r in rows])
    ok = np.array([r[1] for r in rows])
    route = np.array([r[2] for r in rows])
    oracle = np.where(ok, exp, -np.inf).max(axis=1).sum()
    per_route = sum(
        np.where(ok[route == r], exp[route == r], -np.inf).mean(axis=0).max() * (route == r).sum()
        for r in np.unique(route)
    )
    assert oracle > per_route + 0.02 * len(rows)


def test_ineligible_carriers_are_answered_as_rebookings_and_counted() -> None:
    sim = LogisticsSimulator({"seed": 6, "events": 2_000})

    def wrong_half(s: ClosedLoopSimulator, events: list[dict[str, Any]]) -> list[str]:
        out = []
        for i, e in enumerate(events):
            bad = [c for c in CARRIERS if c not in e["carriers"]]
            out.append(bad[0] if i % 2 and bad else e["carriers"][0])
        return out

    ships, dels = _decoded(sim, play(sim, wrong_half))
    wrong = [d for d in dels if d["carrier"] not in ships[d["shipment_id"]]["carriers"]]
    assert sim.scoreboard()["ineligible"] == len(wrong) > 500
    assert all(not d["on_time"] and d["delay_h"] >= 24 for d in wrong)
    fresh = LogisticsSimulator({"seed": 6, "events": 10})
    fresh.next_batch(10)
    with pytest.raises(ValueError, match="'zeppelin'"):
        fresh.respond(np.array(["shp-6-0"], dtype=object), np.array(["zeppelin"], dtype=object))
    fresh.respond(np.array(["shp-6-0"], dtype=object), np.array(["apex"], dtype=object))
    assert fresh.scoreboard()["decisions"] == 1  # the rejected call marked nothing


def test_the_incident_collapses_the_carrier_in_its_window() -> None:
    sim = LogisticsSimulator({"seed": 0, "events": 20_000})
    assert sim.incidents == []
    _, dels = _decoded(sim, play(sim))  # an eligible carrier by a hash of the id
    (inc,) = sim.incidents
    assert inc.key in CARRIERS and inc.kind == "carrier_delay"
    assert inc.end_ms - inc.start_ms == 8 * _H and inc.start_ms == sim.start_ms + 36 * _H
    mine = [d for d in dels if d["carrier"] == inc.key]
    before = [d for d in mine if inc.start_ms - 24 * _H <= d["delivered_at"] < inc.start_ms]
    during = [d for d in mine if inc.start_ms <= d["delivered_at"] < inc.end_ms]
    assert len(before) > 200 and len(during) > 50
    on_before, on_during = (np.mean([d["on_time"] for d in x]) for x in (before, during))
    late_before, late_during = (np.mean([d["delay_h"] for d in x]) for x in (before, during))
    assert on_during < on_before - 0.3
    assert late_during > 2 * late_before
    quiet = LogisticsSimulator({"seed": 0, "events": 20_000, "incident_at": "none"})
    play(quiet, _first, sizes=(5_000,))
    assert quiet.incidents == []
    other = LogisticsSimulator({"incident_carrier": "dash", "incident_at": "2h", "events": 2_000})
    play(other, _first)
    assert [(i.key, i.start_ms - other.start_ms) for i in other.incidents] == [("dash", 2 * _H)]


def test_events_zero_runs_until_stopped_and_answers_in_flight_decisions() -> None:
    sim = LogisticsSimulator({"events": 0})
    ships, dels = _decoded(sim, play(sim, _first, sizes=(3_000,), hold=2, stop_after=40))
    assert len(ships) > 20_000  # past the default run length
    assert len(dels) == len(ships)
    sim.respond(np.array(["shp-0-1", "shp-0-999999999"], dtype=object), np.array(["apex"] * 2))
    assert sim.scoreboard()["decisions"] == len(ships)  # repeated and unknown ids: ignored
