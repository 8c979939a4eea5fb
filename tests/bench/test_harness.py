"""A tiny version of every benchmark suite, end to end: what each run did, JSON, plots,
markdown; and the recorded input every throughput variant reads."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from eddy.benchmarks.baselines.common import reference_recording
from eddy.benchmarks.harness import SUITES, run_suites
from eddy.benchmarks.recording import record
from eddy.benchmarks.throughput import VARIANTS
from eddy.schemas.decode import decode_lines
from eddy.schemas.spec_load import load_spec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_every_suite_runs_tiny_and_writes_json_plots_and_markdown(tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    logs: list[str] = []
    out = run_suites(list(SUITES), "tiny", tmp_path, out_json, log=logs.append)
    data = json.loads(out_json.read_text())
    assert data["pipeline"] == "adserving" and set(data["throughput"]) == set(VARIANTS)
    tp = data["suites"]["throughput"]
    lines = tp["stream"]["lines"]
    for v in VARIANTS:
        run = tp["variants"][v]
        assert "error" not in run, run
        assert data["throughput"][v] > 0
        assert data["latency_ms"][v]["p50"] <= data["latency_ms"][v]["p99"]
        if v != "floor" and run["complete"]:  # read everything: decided every request once
            assert run["rows"]["decisions"] == lines["requests"], v
    # eddy and the floor read every line of the same input, and wrote a row per event
    for v in ("eddy", "floor"):
        assert tp["variants"][v]["events"] == tp["stream"]["n_events"], v
    eddy, floor = tp["variants"]["eddy"]["rows"], tp["variants"]["floor"]["rows"]
    assert eddy["rewards"] == lines["requests"]  # every decision learned: matched or timed out
    # the floor writes the rows any pipeline of the spec must: a decision per request, a
    # reward row per outcome
    assert (floor["decisions"], floor["rewards"]) == (lines["requests"], lines["outcomes"])
    assert data["throughput"]["floor"] > 0.5 * data["throughput"]["eddy"]  # it does far less
    assert data["targets"]["eddy_over_floor"] == pytest.approx(
        data["throughput"]["eddy"] / data["throughput"]["floor"]
    )
    for run in data["suites"]["latency"]["runs"]:  # paced: never much faster than offered
        assert "error" not in run and run["events"] > 0
        assert run["achieved_requests_per_s"] <= 1.2 * run["offered_requests_per_s"]
    n_batch = data["suites"]["batch_size"]["n_events"]
    for run in data["suites"]["batch_size"]["runs"]:
        assert "error" not in run and run["events"] == n_batch and run["events_per_s"] > 0
    for run in data["suites"]["memory"]["eddy_by_stream_length"]:
        assert "error" not in run and run["peak_rss_mb"] > 50
    q = data["suites"]["quality"]
    assert q["false_alerts_control_run"] == 0
    assert 0 < q["ratio_before_drift"] <= 1.0
    pngs = {Path(p).name for p in out["meta"]["plots"]}
    assert pngs == {"throughput.png", "latency.png", "batch_size.png", "memory.png", "quality.png"}
    for p in out["meta"]["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "bench.md").read_text()
    assert "| eddy |" in md and "| floor |" in md and "## Quality" in md
    assert "## Batch size" in md and "## Scaling" not in md
    assert len([m for m in logs if m.endswith("...")]) == len(SUITES)


def test_throughput_of_another_spec_is_eddy_against_its_floor(tmp_path: Path) -> None:
    spec = load_spec(EXAMPLES / "logistics.toml")
    out = run_suites(["throughput"], "tiny", pipeline=spec, log=lambda _: None)
    tp = out["suites"]["throughput"]
    assert out["pipeline"] == "logistics" and set(out["throughput"]) == {"eddy", "floor"}
    lines = tp["stream"]["lines"]
    assert lines["shipments"] > 0 and lines["deliveries"] > 0
    eddy, floor = tp["variants"]["eddy"], tp["variants"]["floor"]
    assert eddy["events"] == floor["events"] == tp["stream"]["n_events"]
    assert eddy["rows"]["decisions"] == eddy["rows"]["features_route_load"] == lines["shipments"]
    assert floor["rows"]["rewards"] == lines["deliveries"]
    assert out["targets"]["met_200k"] is None and out["targets"]["eddy_over_naive"] is None
    with pytest.raises(ValueError, match="throughput suite only"):
        run_suites(["batch_size"], "tiny", pipeline=spec, log=lambda _: None)


def test_the_recording_decodes_cleanly_and_is_deterministic(tmp_path: Path) -> None:
    a = reference_recording(tmp_path / "a", 3_000, seed=4)
    b = reference_recording(tmp_path / "b", 3_000, seed=4)
    for s in ("requests", "outcomes"):
        assert Path(a.path(s)).read_bytes() == Path(b.path(s)).read_bytes()
    got = {}
    for s in ("requests", "outcomes"):
        raw = Path(a.path(s)).read_bytes().splitlines()
        batch, dead = decode_lines(a.spec.stream(s), raw, range(1, len(raw) + 1), s)
        assert not dead and len(batch) == a.lines[s]
        got[s] = batch
    assert a.lines["requests"] == 3_000 and 0 < a.lines["outcomes"] <= 3_000
    assert set(got["outcomes"].columns["decision_id"].tolist()) <= set(got["requests"].ids)
    assert (got["outcomes"].ts[1:] >= got["outcomes"].ts[:-1]).all()
    head = a.head(tmp_path / "head", 500)  # the warm-up: 500 requests and their outcomes
    assert head.lines["requests"] == 500 and 0 < head.lines["outcomes"] <= 500


def test_a_closed_loop_recording_answers_every_decision_among_its_eligible_arms(
    tmp_path: Path,
) -> None:
    spec = load_spec(EXAMPLES / "logistics.toml")
    rec = record(spec, tmp_path, events=2_000)
    ships = {
        (o := orjson.loads(x))["shipment_id"]: o["carriers"]
        for x in Path(rec.path("shipments")).read_bytes().splitlines()
    }
    deliveries = [orjson.loads(x) for x in Path(rec.path("deliveries")).read_bytes().splitlines()]
    assert len(ships) == 2_000 and len(deliveries) == 2_000
    assert all(d["carrier"] in ships[d["shipment_id"]] for d in deliveries)
    assert len({d["carrier"] for d in deliveries}) > 2  # spread over the carriers, not one


def test_unknown_suite_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown suite"):
        run_suites(["speed"], "tiny", tmp_path)
