"""The reference pipeline as a real Bytewax dataflow into a real DuckDB file."""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import duckdb
import orjson

from eddy.dataflows.run_options import RunOptions
from eddy.dataflows.runner import run_pipeline
from eddy.schemas.records import DEAD_LETTER_RAW_BYTES

T0 = 1_767_225_600_000


def _count(db: Path, sql: str) -> int:
    with duckdb.connect(str(db), read_only=True) as con:
        return int(con.execute(sql).fetchone()[0])  # type: ignore[index]


def test_simulator_run_fills_every_result_table(tmp_path: Path, reference) -> None:
    db = tmp_path / "sim.duckdb"
    spec = reference(events=40_000, rate_per_s=250.0, incident_every="8s")
    result = run_pipeline(RunOptions(spec, duckdb=str(db), batch_size=500))
    assert result.counters["decisions"] == 40_000
    for table in ("decisions", "rewards", "anomalies", "window_aggregates", "metrics"):
        assert _count(db, f"select count(*) from {table}") > 0, table
    assert _count(db, "select count(*) from decisions") == 40_000
    assert _count(db, "select count(distinct decision_id) from rewards") == 40_000
    assert result.scoreboard is not None
    assert result.scoreboard["chosen"] > 1.3 * result.scoreboard["random"]
    lat = result.latency_ms
    assert 0 < lat["p50"] <= lat["p99"]


def test_rerun_of_the_same_input_writes_nothing_twice(tmp_path: Path, reference) -> None:
    db = tmp_path / "twice.duckdb"
    spec = reference(events=3_000)
    run_pipeline(RunOptions(spec, duckdb=str(db)))
    first = _count(db, "select count(*) from decisions")
    windows = _count(db, "select count(*) from window_aggregates")
    run_pipeline(RunOptions(spec, duckdb=str(db)))
    assert _count(db, "select count(*) from decisions") == first == 3_000
    assert _count(db, "select count(*) from window_aggregates") == windows


def _request(i: int) -> dict:
    return {
        "id": f"req-{i}",
        "ts": T0 + i * 2,
        "placement": f"pl{i % 5}",
        "device": ("mobile", "desktop")[i % 2],
        "geo": ("us", "de", "jp")[i % 3],
        "floor_price": round(0.1 + (i % 7) / 10, 2),
    }


BAD_KINDS = [
    lambda i: b"{this is not json",
    lambda i: b'{"id": "x\xff\xfe"}',
    lambda i: b"[1, 2, 3]",
    lambda i: orjson.dumps({k: v for k, v in _request(i).items() if k != "geo"}),
    lambda i: orjson.dumps({**_request(i), "floor_price": "free"}),
    lambda i: orjson.dumps(_request(i)).replace(b'"floor_price":', b'"floor_price":NaN,"x":'),
    lambda i: orjson.dumps({**_request(i), "floor_price": 1e200}),
    lambda i: orjson.dumps({**_request(i), "ts": 12}),
    lambda i: orjson.dumps({**_request(i), "pad": "z" * 70_000}),
    lambda i: orjson.dumps({**_request(i), "ts": "2026-13-45T99:00:00Z"}),
]


def test_jsonl_with_bad_lines_dead_letters_exactly_the_bad_ones(tmp_path: Path, reference) -> None:
    rng = random.Random(7)
    n_good, n_bad = 99_000, 1_000
    bad_at = set(rng.sample(range(n_good + n_bad), n_bad))
    lines, good_i, bad_lines = [], 0, {}
    for pos in range(n_good + n_bad):
        if pos in bad_at:
            raw = BAD_KINDS[len(bad_lines) % len(BAD_KINDS)](pos)
            bad_lines[pos + 1] = raw
        else:
            raw = orjson.dumps(_request(good_i))
            good_i += 1
        lines.append(raw)
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    db = tmp_path / "jsonl.duckdb"
    run_pipeline(RunOptions(reference(), {"requests": f"jsonl:{path}"}, duckdb=str(db)))
    assert _count(db, "select count(*) from dead_letters") == n_bad
    assert _count(db, "select count(*) from decisions") == n_good
    with duckdb.connect(str(db), read_only=True) as con:
        rows = con.execute("select position, raw, reason, source from dead_letters").fetchall()
    # a line over max_event_bytes keeps a bounded prefix (its reason gives the true size)
    kept = {pos: line[:DEAD_LETTER_RAW_BYTES] for pos, line in bad_lines.items()}
    assert {r[0]: bytes(r[1]) for r in rows} == kept
    assert all(r[2] and r[3] == f"jsonl:{path}" for r in rows)
    reasons = {r[2].split(":")[0] for r in rows}
    assert len(reasons) >= 6, reasons


def test_jsonl_requests_with_outcomes_file_join_rewards(tmp_path: Path, reference) -> None:
    n = 2_000
    req = tmp_path / "req.jsonl"
    out = tmp_path / "out.jsonl"
    req.write_bytes(b"\n".join(orjson.dumps(_request(i)) for i in range(n)) + b"\n")
    outcomes = [
        {
            "decision_id": f"req-{i}",
            "ts": T0 + i * 2 + 700,
            "partner": "alpha",
            "filled": i % 3 == 0,
            "revenue": 1.0 if i % 3 == 0 else 0.0,
            "latency_ms": 100.0,
            "error": False,
        }
        for i in range(0, n, 2)
    ]
    outcomes.append({**outcomes[0], "decision_id": "never-decided"})
    out.write_bytes(b"\n".join(orjson.dumps(o) for o in outcomes) + b"\n")
    db = tmp_path / "joined.duckdb"
    sources = {"requests": f"jsonl:{req}", "outcomes": f"jsonl:{out}"}
    spec = reference()
    # these outcomes all name one partner: join them by id alone (no arm check)
    decide = replace(spec.decide[0], reward=replace(spec.decide[0].reward, arm=None))
    run_pipeline(RunOptions(replace(spec, decide=(decide,)), sources, duckdb=str(db)))
    assert _count(db, "select count(*) from decisions") == n
    assert _count(db, "select count(*) from rewards where not timed_out") == n // 2
    assert _count(db, "select count(*) from rewards where timed_out") == n // 2
    assert _count(db, "select count(*) from unmatched_outcomes") == 1
