"""The simulator protocol: registry, shared pieces, the ad-serving wrapper and the NAB replay."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eddy.sources.simulators import SIMULATORS, make_simulator
from eddy.sources.simulators.adserving import AdServingSimulator
from eddy.sources.simulators.adserving_world import SimConfig, Simulator
from eddy.sources.simulators.base import Coded, DecisionLedger, json_lines
from eddy.sources.simulators.nab import DEFAULT_DATA, NabReplay
from tests.sources.simulator_helpers import check_line, hash_policy, play

# -- registry and shared pieces ----------------------------------------------------------------


def test_registry_names_and_unknown_simulator() -> None:
    assert set(SIMULATORS) == {"adserving", "logistics", "nab"}
    for name, cls in SIMULATORS.items():
        assert cls.name == name
        assert cls.decision_stream is None or cls.decision_stream in cls.STREAMS
        assert "seed" in cls.OPTIONS
    with pytest.raises(ValueError, match="known: adserving, logistics, nab"):
        make_simulator("nope", {})


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        ("adserving", {"rate_per_s": 0}, r"^simulator\.rate_per_s: expected a number > 0"),
        ("adserving", {"partners": ["solo"]}, r"^simulator\.partners: expected a list"),
        ("adserving", {"outcome_delay": "10ms"}, r"^simulator\.outcome_delay: expected"),
        ("adserving", {"events": -1}, r"^simulator\.events: expected an integer >= 0"),
        ("adserving", {"outcome_loss": 1.5}, r"^simulator\.outcome_loss: expected"),
        ("adserving", {"colour": "red"}, r"^simulator\.colour: unknown option; known: drift_at"),
        ("logistics", {"rate_per_h": "fast"}, r"^simulator\.rate_per_h: expected a number"),
        ("logistics", {"incident_at": "soon"}, r"^simulator\.incident_at: expected \"none\" or a"),
        ("logistics", {"incident_carrier": "zeppelin"}, r"^simulator\.incident_carrier: expected"),
        ("logistics", {"events": True}, r"^simulator\.events: expected an integer"),
        ("nab", {"data": "/no/such/dir"}, r"^simulator\.data: expected a NAB directory"),
        ("nab", {"categories": ["nope"]}, r"^simulator\.categories: expected names among"),
        ("nab", {"events": 1.5}, r"^simulator\.events: expected an integer"),
    ],
)
def test_option_errors_name_the_option(name: str, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_simulator(name, options)


def test_seed_argument_overrides_the_options_seed() -> None:
    a = make_simulator("adserving", {"seed": 1, "events": 50}, seed=2)
    b = make_simulator("adserving", {"seed": 2, "events": 50})
    assert play(a) == play(b)


_CODE = st.integers(0, 2)
_TEXT = st.text(max_size=6) | st.sampled_from(['a","b', "a,b", 'q"', "back\\slash", "é", ""])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(_TEXT, st.integers(-(2**62), 2**62), st.floats(), st.booleans(), _CODE),
        min_size=1,
        max_size=20,
    )
)
def test_json_lines_are_byte_identical_to_row_by_row(rows: list) -> None:
    s, i, f, b, c = (list(x) for x in zip(*rows, strict=True))
    table = Coded.table_of([["x"], ["y", "z"], []])
    got = json_lines(
        [
            ("s", s),
            ("i", np.array(i, dtype=np.int64)),
            ("f", np.array(f)),
            ("b", np.array(b)),
            ("c", Coded(np.array(c), table)),
            ("%k", s),
        ]
    )
    lists = [["x"], ["y", "z"], []]
    want = [
        orjson.dumps({"s": r[0], "i": r[1], "f": r[2], "b": r[3], "c": lists[r[4]], "%k": r[0]})
        for r in rows
    ]
    assert got == want


def test_ledger_tracks_the_first_open_decision_in_any_answer_order() -> None:
    rng = np.random.default_rng(0)
    led = DecisionLedger()
    answered: set[int] = set()
    for _ in range(40):
        led.issue(int(rng.integers(1, 300)))
        pick = rng.integers(0, led.issued, 200)
        fresh = led.answer(np.concatenate([pick, [-1, led.issued + 5]]))
        new = [int(p) for p, ok in zip(pick, fresh[:-2], strict=True) if ok]
        assert len(new) == len(set(new)) and not set(new) & answered
        assert set(new) == set(pick.tolist()) - answered
        answered |= set(new)
        first = min(set(range(led.issued)) - answered, default=led.issued)
        assert led.first_open == first
        assert led.open == led.issued - len(answered)
    assert not led.answer(np.array(sorted(answered))).any()


# -- ad serving --------------------------------------------------------------------------------


def test_adserving_lines_decode_to_the_old_simulators_batches() -> None:
    opts = {"seed": 5, "events": 3_000, "incident_every": "2s", "drift_at": "1s"}
    sim = AdServingSimulator(opts)
    lines = play(sim, sizes=(700,))
    old = Simulator(SimConfig(seed=5, n_events=3_000, incident_every_s=2.0, drift_at_s=1.0))
    rb = old.next_requests(3_000)
    req = [orjson.loads(x) for x in lines["requests"]]
    events = [dict(r) for r in req]
    arms = np.array(hash_policy(sim, events), dtype=object)
    old.respond(rb.id, np.array([sim.arms.index(a) for a in arms]))
    ob = old.due_outcomes(np.iinfo(np.int64).max)
    for name in ("id", "ts", "placement", "device", "geo", "floor_price"):
        assert [r[name] for r in req] == getattr(rb, name).tolist()
    out = sorted((orjson.loads(x) for x in lines["outcomes"]), key=lambda o: o["decision_id"])
    order = np.argsort(ob.decision_id)
    for name in ("decision_id", "ts", "partner", "filled", "revenue", "latency_ms", "error"):
        assert [o[name] for o in out] == getattr(ob, name)[order].tolist()
    assert sim.scoreboard() == pytest.approx(
        {
            "decisions": 3_000,
            "chosen": old.scoreboard.chosen,
            "oracle": old.scoreboard.oracle,
            "random": old.scoreboard.random,
        }
    )
    assert [(i.key, i.kind, i.start_ms, i.end_ms) for i in sim.incidents] == [
        (i.partner, i.kind, i.start_ms, i.end_ms) for i in old.incidents
    ]
    # the throughput benchmark's JSONL bytes: one orjson.dumps(dict) per event
    assert lines["requests"][7] == orjson.dumps(
        {k: req[7][k] for k in ("id", "ts", "placement", "device", "geo", "floor_price")}
    )


def test_adserving_lines_have_the_declared_fields_and_outcomes_follow_decisions() -> None:
    sim = AdServingSimulator({"seed": 1, "events": 4_000, "outcome_loss": 0.05})
    lines = play(sim, sizes=(333, 1_000))
    req = {r["id"]: r for r in (check_line(x, sim.STREAMS["requests"]) for x in lines["requests"])}
    assert len(req) == 4_000
    seen: set[str] = set()
    for x in lines["outcomes"]:
        o = check_line(x, sim.STREAMS["outcomes"])
        assert o["decision_id"] not in seen
        seen.add(o["decision_id"])
        assert o["ts"] - req[o["decision_id"]]["ts"] >= SimConfig().min_delay_ms
    assert 0.02 < 1 - len(seen) / 4_000 < 0.09  # ~5 % of outcomes never arrive


def test_adserving_is_deterministic_across_cuts_waits_and_pacing() -> None:
    def run(**kw: object) -> dict[str, list[bytes]]:
        return play(AdServingSimulator({"seed": 2, "events": 5_000}), **kw)  # type: ignore[arg-type]

    a, b = run(sizes=(1_000,)), run(sizes=(17, 999, 250), hold=2)
    c, d = run(sizes=(400,), until_step=137), run(sizes=(400,), until_step=3, hold=1)
    for other in (b, c, d):
        assert other["requests"] == a["requests"]
        assert sorted(other["outcomes"]) == sorted(a["outcomes"])
    assert run(sizes=(1_000,), hold=3) == a  # the same cuts: the same sequence, however late


def test_adserving_respond_ignores_unknown_and_repeated_ids_and_rejects_unknown_arms() -> None:
    sim = AdServingSimulator({"events": 100, "outcome_loss": 0.0})
    got = sim.next_batch(100)
    assert got is not None
    ids = np.array([orjson.loads(x)["id"] for x in dict(got)["requests"]], dtype=object)
    sim.respond(np.array(["r9-1", "bogus", "r0-100000"], dtype=object), np.array(["alpha"] * 3))
    assert sim.scoreboard()["decisions"] == 0
    with pytest.raises(ValueError, match="'zulu'"):
        sim.respond(ids[:1], np.array(["zulu"], dtype=object))
    sim.respond(ids, np.array(["bravo"] * 100, dtype=object))
    sim.respond(ids, np.array(["alpha"] * 100, dtype=object))
    assert sim.scoreboard()["decisions"] == 100
    rest = play(sim)
    assert len(rest["outcomes"]) == 100
    assert {orjson.loads(x)["partner"] for x in rest["outcomes"]} == {"bravo"}


def test_adserving_events_zero_runs_until_stopped_and_drains_in_flight_outcomes() -> None:
    sim = AdServingSimulator({"events": 0, "outcome_loss": 0.0})
    lines = play(sim, sizes=(2_000,), hold=1, stop_after=200)
    assert len(lines["requests"]) > 120_000  # past the default run length
    assert len(lines["outcomes"]) == len(lines["requests"])
    assert sim.peek_ms() is None


# -- NAB replay --------------------------------------------------------------------------------


def _csv_rows(path: Path) -> list[list[str]]:
    with open(path, newline="") as f:
        return [r for r in csv.reader(f) if r][1:]


def _utc_ms(text: str) -> int:
    return round((datetime.fromisoformat(text) - datetime(1970, 1, 1)).total_seconds() * 1000)


def test_nab_replay_merges_all_series_in_time_order_with_their_rows() -> None:
    sim = NabReplay({})
    lines = play(sim, sizes=(4_096, 10_000))["readings"]
    recs = [check_line(x, sim.STREAMS["readings"]) for x in lines]
    keys = [(r["ts"], r["series"]) for r in recs]
    assert keys == sorted(keys)  # non-decreasing in time, ties by series name
    files = sorted((DEFAULT_DATA / "data").glob("*/*.csv"))
    assert len(sim.series) == len(files) > 20
    by_series: dict[str, list[dict]] = {}
    for r in recs:
        by_series.setdefault(r["series"], []).append(r)
    for f in files:
        rows = _csv_rows(f)
        got = by_series[f"{f.parent.name}/{f.stem}"]
        assert len(got) == len(rows)
        assert [g["reading_id"] for g in got] == [
            f"{f.parent.name}/{f.stem}#{i}" for i in range(1, len(rows) + 1)
        ]
        assert [g["value"] for g in got] == [float(r[1]) for r in rows]
        assert [g["ts"] for g in got] == [_utc_ms(r[0]) for r in rows]


def test_nab_incidents_are_the_label_windows() -> None:
    sim = NabReplay({})
    assert sim.incidents == []
    play(sim, sizes=(50_000,))
    labels = json.loads((DEFAULT_DATA / "labels" / "combined_windows.json").read_text())
    want = sorted(
        (k.removesuffix(".csv"), _utc_ms(a), _utc_ms(b) + 1)
        for k, v in labels.items()
        for a, b in v
    )
    got = sorted((i.key, i.start_ms, i.end_ms) for i in sim.incidents)
    assert got == want and len(want) > 10
    assert {i.kind for i in sim.incidents} == {"labelled"}


def test_nab_categories_events_pacing_and_relative_data() -> None:
    one = NabReplay({"categories": ["realTraffic"], "events": 5_000})
    a = play(one, sizes=(999,))["readings"]
    assert len(a) == 5_000 and all(b'"realTraffic/' in x for x in a)
    paced = NabReplay({"categories": ["realTraffic"], "events": 5_000})
    assert play(paced, sizes=(999,), until_step=3_600_000)["readings"] == a
    rel = NabReplay(
        {"data": DEFAULT_DATA.name, "categories": ["realTraffic"], "events": 5_000},
        base_dir=DEFAULT_DATA.parent,
    )
    assert play(rel)["readings"] == a
    rel.respond(np.array(["x"], dtype=object), np.array(["y"], dtype=object))  # open: ignored
    assert rel.arms == () and rel.scoreboard()["decisions"] == 0
    assert math.isfinite(rel.start_ms)
