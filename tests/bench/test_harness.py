"""A tiny version of every benchmark suite, end to end: JSON fields, plots, markdown."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from eddy.benchmarks.baselines.common import make_stream
from eddy.benchmarks.harness import SUITES, run_suites
from eddy.benchmarks.throughput import VARIANTS
from eddy.schemas.events import decode_outcomes, decode_requests


def test_every_suite_runs_tiny_and_writes_json_plots_and_markdown(tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    logs: list[str] = []
    out = run_suites(list(SUITES), "tiny", tmp_path, out_json, log=logs.append)
    data = json.loads(out_json.read_text())
    assert set(data["throughput"]) == set(VARIANTS)
    for v in VARIANTS:
        assert "error" not in data["suites"]["throughput"]["variants"][v], v
        assert data["throughput"][v] > 0
        assert set(data["latency_ms"][v]) == {"p50", "p95", "p99"}
        assert data["latency_ms"][v]["p50"] <= data["latency_ms"][v]["p99"]
    tp = data["suites"]["throughput"]
    # the complete variants processed every line of the same stream
    for v in ("eddy", "floor"):
        assert tp["variants"][v]["events"] == tp["stream"]["n_events"]
    assert set(data["targets"]) >= {"met_200k", "met_10x_naive", "met_30pct_floor"}
    for run in data["suites"]["latency"]["runs"]:
        assert run["events"] > 0 and run["latency_ms"]["p99"] > 0
    for run in data["suites"]["scaling"]["runs"]:
        assert "error" not in run and run["events_per_s"] > 0
    for run in data["suites"]["memory"]["eddy_by_stream_length"]:
        assert "error" not in run and run["peak_rss_mb"] > 50
    q = data["suites"]["quality"]
    assert q["false_alerts_control_run"] == 0
    assert 0 < q["ratio_before_drift"] <= 1.0
    pngs = {Path(p).name for p in out["meta"]["plots"]}
    assert pngs == {"throughput.png", "latency.png", "scaling.png", "memory.png", "quality.png"}
    for p in out["meta"]["plots"]:
        assert Path(p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "bench.md").read_text()
    assert "| eddy |" in md and "| floor |" in md and "## Quality" in md
    assert len([m for m in logs if m.endswith("...")]) == len(SUITES)


def test_the_serialised_stream_decodes_cleanly_and_is_deterministic(tmp_path: Path) -> None:
    a = make_stream(tmp_path / "a", 3_000, seed=4)
    b = make_stream(tmp_path / "b", 3_000, seed=4)
    assert Path(a.requests).read_bytes() == Path(b.requests).read_bytes()
    assert Path(a.outcomes).read_bytes() == Path(b.outcomes).read_bytes()
    req = Path(a.requests).read_bytes().splitlines()
    out = Path(a.outcomes).read_bytes().splitlines()
    rb, dead_r = decode_requests(req, list(range(1, len(req) + 1)), "t", 0)
    ob, dead_o = decode_outcomes(out, list(range(1, len(out) + 1)), "t")
    assert (len(rb), len(dead_r), len(ob), len(dead_o)) == (3_000, 0, a.n_outcomes, 0)
    assert set(ob.decision_id.tolist()) <= set(rb.id.tolist())
    ts = [orjson.loads(x)["ts"] for x in out]
    assert ts == sorted(ts)


def test_unknown_suite_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown suite"):
        run_suites(["speed"], "tiny", tmp_path)
