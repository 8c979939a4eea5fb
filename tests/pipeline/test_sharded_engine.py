"""The engine split into shards gives the rows of one engine: keyed shards over a router's
pieces (windows, stored features, detectors, late rows, repeats), and decide shards fed the
keyed shards' messages in an interleaving where one keyed shard lags."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson
import pytest

from eddy.operators.engine import KeyedEngine, PipelineEngine
from eddy.operators.engine.routing import ID, Router, keyed_routes, why_unsplit
from eddy.operators.sharding import shard_index
from eddy.schemas.batch import EventBatch
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec
from eddy.schemas.spec_load import loads_spec
from tests.pipeline.cluster import Cluster, closed_loop, recorded
from tests.pipeline.conftest import NOW_NS, decoded, merged

T0 = 1_767_225_600_000

SPEC = """
[pipeline]
name = "sharded"
seed = 3

[time]
allowed_lateness = "2s"
late_policy = "drop"

[streams.readings]
source = "jsonl:readings.jsonl"
id = "rid"
time = "ts"
[streams.readings.fields]
sensor = "string"
value = { type = "float", min = 0 }
ok = "bool"

[streams.pings]                 # no keyed stage: routed by event id
source = "jsonl:pings.jsonl"
id = "pid"
time = "ts"
fields = { host = "string" }

[[features]]
name = "stats"
stream = "readings"
key = "sensor"
metrics = ["value", "ok"]
trailing = ["5s", "30s"]
aggregations = ["count", "mean", "std", "min", "max"]
tumbling = ["10s"]
sliding = [["20s", "5s"]]
store = true

[[detect]]
name = "bursts"
stream = "readings"
key = "sensor"
metrics = ["value", "ok"]
detector = "rates"
params.bucket = "2s"
params.warmup = 3
params.min_events = 3
params.alert = { value = "rise 50%", ok = "drop 0.3" }
threshold = 0.95
cooldown = "0s"

[[detect]]
name = "spikes"
stream = "readings"
key = "sensor"
metrics = ["value"]
detector = "ensemble"
threshold = 0.95
cooldown = "0s"
"""

READINGS = (0, 1)  # two input partitions of `readings`
PINGS = 1_000


def _lines(rows: list[dict[str, Any]]) -> list[bytes]:
    return [orjson.dumps(r) for r in rows]


def _synthetic(seed: int = 7) -> list[list[tuple[int, EventBatch]]]:
    """Steps of ``(partition, batch)`` items: many sensors over two partitions (one trailing
    the other), bursts on a few sensors, late rows, repeated ids; a pings stream besides."""
    spec = loads_spec(SPEC)
    rng = np.random.default_rng(seed)
    n, sensors, span = 9_000, 48, 150_000
    base = np.sort(rng.integers(0, span, n))
    ts = T0 + base - rng.integers(0, 400, n)  # a little disorder, within the lateness
    late = rng.random(n) < 0.02
    ts[late] -= rng.integers(3_000, 15_000, int(late.sum()))  # past the allowed lateness
    sensor = rng.integers(0, sensors, n)
    value = rng.lognormal(3.0, 0.3, n)
    ok = rng.random(n) < 0.9
    burst = (sensor % 11 == 0) & (base % 40_000 > 30_000)  # incidents: high values, failures
    value[burst] *= 6
    ok[burst] = rng.random(int(burst.sum())) < 0.2
    part = rng.integers(0, 2, n)
    rows = [
        {"rid": f"r{i}", "ts": int(ts[i]), "sensor": f"s{sensor[i]:02d}", "value": float(value[i])}
        | {"ok": bool(ok[i])}
        for i in range(n)
    ]
    # each partition in its own order; repeated ids: a row read again right after (an id is
    # remembered for the allowed lateness at least: a repeat much later may pass unnoticed)
    queues: dict[int, list[dict[str, Any]]] = {p: [] for p in READINGS}
    for i, row in enumerate(rows):
        queues[int(part[i])].append(row)
        if rng.random() < 0.01:
            queues[int(part[i])].append(row)
    pings = []
    for i in range(760):
        pings.append({"pid": f"p{i}", "ts": int(T0 + i * 200), "host": f"h{i % 5}"})
        if i % 50 == 7:
            pings.append(pings[-1])
    items: list[tuple[int, EventBatch]] = []
    pos = dict.fromkeys(READINGS, 0)
    ping_pos, position = 0, 1
    while any(pos[p] < len(queues[p]) for p in READINGS):
        # partition 1 trails partition 0 by a few hundred rows
        lead = pos[0] - pos[1] < 600 or pos[1] >= len(queues[1])
        p = 0 if lead and pos[0] < len(queues[0]) and rng.random() < 0.7 else 1
        if pos[p] >= len(queues[p]):
            p = 1 - p
        k = int(rng.integers(1, 250))
        chunk = queues[p][pos[p] : pos[p] + k]
        pos[p] += len(chunk)
        items.append((p, decoded(spec, "readings", _lines(chunk), position)))
        position += len(chunk)
        if rng.random() < 0.3 and ping_pos < len(pings):
            got = pings[ping_pos : ping_pos + 40]
            ping_pos += len(got)
            items.append((PINGS, decoded(spec, "pings", _lines(got), position)))
            position += len(got)
    cuts = np.flatnonzero(rng.random(len(items)) < 0.4).tolist()
    return [items[a:b] for a, b in zip([0, *cuts], [*cuts, len(items)], strict=True) if a < b]


def _rows(res: Results, table: str, drop: tuple[str, ...] = ()) -> list[tuple]:
    cols = res.tables.get(table)
    if not cols:
        return []
    names = sorted(c for c in cols if c not in drop)
    values = [np.asarray(cols[c], dtype=object).tolist() for c in names]
    return [tuple(_plain(v) for v in row) for row in zip(*values, strict=True)]


def _plain(v: Any) -> Any:
    if isinstance(v, list | tuple | np.ndarray):
        return tuple(_plain(x) for x in v)
    if isinstance(v, np.generic):
        return v.item()
    return v


def _order(row: tuple) -> tuple:
    """Exact values first (they name the row), then floats (NaN last)."""
    exact = tuple(repr(v) for v in row if not isinstance(v, float))
    floats = tuple(
        (math.isnan(v), 0.0 if math.isnan(v) else v) for v in row if isinstance(v, float)
    )
    return exact, floats


def _same_rows(a: list[tuple], b: list[tuple], what: str) -> None:
    assert len(a) == len(b), f"{what}: {len(a)} rows unsharded, {len(b)} sharded"
    for x, y in zip(sorted(a, key=_order), sorted(b, key=_order), strict=True):
        for u, v in zip(x, y, strict=True):
            if isinstance(u, float) and isinstance(v, float):
                same = (math.isnan(u) and math.isnan(v)) or math.isclose(
                    u, v, rel_tol=1e-9, abs_tol=1e-9
                )
            else:
                same = u == v
            assert same, f"{what}: {x} != {y}"


def _sharded(spec: PipelineSpec, steps, shards: int) -> tuple[Results, list[Results]]:
    router = Router(spec, shards)
    assert router.shards == shards
    engines = [KeyedEngine(spec, s, shards) for s in range(shards)]
    per_shard: list[list[Results]] = [[] for _ in range(shards)]
    for items in steps:
        pieces = [router.pieces(p, b) for p, b in items]
        for s, eng in enumerate(engines):
            per_shard[s].append(eng.process_many([cut[s] for cut in pieces], NOW_NS))
    for s, eng in enumerate(engines):
        per_shard[s].append(eng.finish(NOW_NS))
    shard_totals = [merged(r) for r in per_shard]
    return merged(shard_totals), shard_totals


@pytest.mark.parametrize("policy", ["drop", "include"])
def test_keyed_shards_give_the_rows_of_one_engine(policy: str) -> None:
    spec = loads_spec(SPEC.replace('late_policy = "drop"', f'late_policy = "{policy}"'))
    assert spec.late_policy == policy
    assert keyed_routes(spec) == {"readings": "sensor", "pings": ID}
    steps = _synthetic()
    one = PipelineEngine(spec)
    a = merged([one.process_many(items, NOW_NS) for items in steps] + [one.finish(NOW_NS)])
    b, shard_totals = _sharded(spec, steps, 3)
    # the input exercises what the comparison is about
    anomalies = a.tables["anomalies"]
    assert {"bursts", "spikes"} <= set(np.asarray(anomalies["detect"]).tolist())
    assert a.rows("late_events") > 50 and a.rows("dead_letters") > 50
    dead = np.asarray(a.tables["dead_letters"]["stream"]).tolist()
    assert set(dead) == {"readings", "pings"}
    assert a.rows("features_stats") > 8_000
    assert set(np.asarray(a.tables["window_aggregates"]["window"]).tolist()) == {
        "tumbling_10s",
        "sliding_20s_5s",
    }
    assert all(t.rows("window_aggregates") > 0 for t in shard_totals)  # every shard has keys
    compared = {
        "window_aggregates": (),
        "features_stats": (),
        "anomalies": ("detected_at",),
        "late_events": (),
        "dead_letters": (),
        "drift_alerts": ("detected_at",),
    }
    for table, drop in compared.items():
        _same_rows(_rows(a, table, drop), _rows(b, table, drop), table)
    assert a.counters.get("events") == b.counters.get("events")
    assert a.counters.get("duplicates") == b.counters.get("duplicates")


def test_an_id_repeated_under_another_key_is_caught_only_on_one_shard() -> None:
    """The documented limit of per-shard repeat checks (docs/operations.md, scale-out): a
    stream routed by key checks repeats on the key's shard, so a repeated id under another key
    lands on another shard and is processed as a new event; under the same key it is caught
    on any shard count."""
    spec = loads_spec(SPEC)
    sensors = np.array([f"s{i:02d}" for i in range(48)], dtype=object)
    where = shard_index(sensors, 3)
    a, b = sensors[where == 0][0], sensors[where == 1][0]
    rows = [
        {"rid": "x", "ts": T0, "sensor": a, "value": 1.0, "ok": True},
        {"rid": "x", "ts": T0 + 5, "sensor": b, "value": 2.0, "ok": True},
        {"rid": "y", "ts": T0 + 6, "sensor": a, "value": 3.0, "ok": True},
        {"rid": "y", "ts": T0 + 7, "sensor": a, "value": 3.0, "ok": True},
    ]
    steps = [[(0, decoded(spec, "readings", _lines(rows)))]]
    one = PipelineEngine(spec)
    unsharded = merged([one.process_many(steps[0], NOW_NS), one.finish(NOW_NS)])
    assert sorted(unsharded.tables["dead_letters"]["dead_letter_id"].tolist()) == [
        "duplicate:readings:x#2",
        "duplicate:readings:y#2",
    ]
    sharded, _ = _sharded(spec, steps, 3)
    assert sharded.tables["dead_letters"]["dead_letter_id"].tolist() == ["duplicate:readings:y#2"]
    assert sharded.rows("features_stats") == 3 and unsharded.rows("features_stats") == 2


# -- decide shards ---------------------------------------------------------------------------


def _check_answered(total: Results, requests: list[str]) -> list[str]:
    """One decision per request, one reward per decision, no outcome unknown or expired;
    the other reasons outcomes were not learned from."""
    dec, rew = total.tables["decisions"], total.tables["rewards"]
    decided = dec["decision_id"].tolist()
    assert len(set(decided)) == len(decided) and sorted(decided) == sorted(requests)
    answered = rew["decision_id"].tolist()
    assert sorted(answered) == sorted(decided)  # by the outcome or by the TTL, once
    reasons = np.asarray(
        total.tables.get("unmatched_outcomes", {}).get("reason", []), dtype=object
    ).tolist()
    bad = [r for r in reasons if "unknown decision" in r or "expired" in r]
    assert not bad, f"{len(bad)} outcomes unmatched: {sorted(set(bad))}"
    return reasons


# 60 s of event time: decisions time out (TTL 30 s) while the run goes on
LONG = {"events": 9_000, "rate_per_s": 150.0, "outcome_loss": 0.02}


@pytest.mark.parametrize("slow", [0, 1])
def test_decide_shards_in_a_closed_loop_with_a_lagging_keyed_shard(
    reference: Callable[..., PipelineSpec], slow: int
) -> None:
    cluster = Cluster(reference(**LONG), keyed_shards=2, decide_shards=2, slow=slow, lag=8)
    total, requests = closed_loop(cluster)
    assert (cluster.rows_per_shard > 0).all()
    reasons = _check_answered(total, requests)
    assert not reasons  # the simulator answers with the decided arm
    timed_out = int(np.asarray(total.tables["rewards"]["timed_out"]).sum())
    assert 0 < timed_out < LONG["events"] * 0.05  # the lost outcomes, not the lag's


@pytest.mark.parametrize(("slow", "lag"), [(0, 5), (1, 20), (1, None)])
def test_decide_shards_replayed_with_a_keyed_shard_far_behind(
    reference: Callable[..., PipelineSpec], slow: int, lag: int | None
) -> None:
    """Recorded input (no simulator to wait for the lagging decisions): the slow shard's
    messages arrive many steps late, or only once the input has ended. The outcomes name
    the arms one engine chose, so some name another arm than a shard's: kept, not learned."""
    spec = reference(**{**LONG, "events": 6_000, "rate_per_s": 600.0})  # 10 s < the TTL
    steps = recorded(spec)
    cluster = Cluster(spec, keyed_shards=2, decide_shards=2, slow=slow, lag=lag)
    for items in steps:
        cluster.step(items)
    total = cluster.finish()
    assert (cluster.rows_per_shard > 0).all()
    batches = [b for items in steps for _, b in items if b.stream == "requests"]
    requests = [i for b in batches for i in b.ids.tolist()]
    reasons = _check_answered(total, requests)
    assert all("another arm" in r for r in reasons), sorted(set(reasons))


def test_the_unsharded_loop_answers_every_request(reference) -> None:
    """The harness with one keyed and one decide shard (what PipelineEngine is)."""
    cluster = Cluster(reference(events=2_000), keyed_shards=1, decide_shards=1, slow=0, lag=3)
    total, requests = closed_loop(cluster)
    assert not _check_answered(total, requests)


# -- specs that cannot be split --------------------------------------------------------------


def test_a_stream_keyed_by_different_fields_is_not_split() -> None:
    text = (
        SPEC + '[[detect]]\nname = "by_ok"\nstream = "readings"\nkey = "ok"\nmetrics = ["value"]\n'
    )
    spec = loads_spec(text)
    why = why_unsplit(spec)
    assert why is not None and "'readings'" in why and "ok" in why and "sensor" in why
    assert keyed_routes(spec) is None
    router = Router(spec, 3)
    assert router.shards == 1
    row = {"rid": "a", "ts": T0, "sensor": "s", "value": 1.0, "ok": True}
    batch = decoded(spec, "readings", _lines([row]))
    pieces = router.pieces(0, batch)
    assert len(pieces) == 1 and pieces[0].rows is None and pieces[0].batch is batch


def test_a_stage_without_a_key_is_not_split() -> None:
    text = SPEC.replace(
        'name = "spikes"\nstream = "readings"\nkey = "sensor"\n',
        'name = "spikes"\nstream = "readings"\n',
    )
    spec = loads_spec(text)
    why = why_unsplit(spec)
    assert why is not None and "'readings'" in why
    assert Router(spec, 4).shards == 1
