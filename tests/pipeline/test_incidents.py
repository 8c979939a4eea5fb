"""Detection of the simulator's labelled incidents by the reference spec, and `eddy eval
incidents` (the benchmark itself, 10 simulated minutes per seed, is in docs/benchmarks.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eddy.benchmarks.closed_loop import with_simulator
from eddy.benchmarks.incidents import evaluate, evaluate_seeds, score
from eddy.dataflows.cli import main
from eddy.dataflows.commands.run import reference_spec_path
from eddy.schemas.spec import PipelineSpec
from eddy.schemas.spec_load import load_spec
from eddy.sources.simulators.base import Incident


def _frequent(rate: float = 1_000.0, every: str = "8s") -> PipelineSpec:
    return with_simulator(load_spec(reference_spec_path()), rate_per_s=rate, incident_every=every)


def test_detects_frequent_incidents_with_high_precision_and_recall() -> None:
    # two seeds x 150 simulated seconds at 1,000 requests/s, an incident every ~15 s
    rep = evaluate_seeds(_frequent(), events=150_000, seeds=(0, 1))
    assert sum(r.incidents for r in rep.reports) >= 12
    _, pmin = rep.precision
    _, rmin = rep.recall
    assert pmin >= 0.8, rep.lines()
    assert rmin >= 0.8, rep.lines()
    assert 0.0 < rep.median_delay_s < 6.0
    kinds = {k for r in rep.reports for k in r.by_kind}
    assert kinds == {"outage", "latency_spike", "price_drop", "error_burst"}


def test_no_incidents_no_anomaly_records() -> None:
    rep = evaluate(_frequent(every="0s"), events=120_000, seed=2)
    assert rep.anomalies == 0


def test_same_seed_same_report() -> None:
    a = evaluate(_frequent(), events=60_000, seed=4)
    b = evaluate(_frequent(), events=60_000, seed=4)
    assert a == b and a.anomalies > 0


def test_matching_rule() -> None:
    inc = [
        Incident("alpha", "outage", 10_000, 15_000),
        Incident("bravo", "price_drop", 30_000, 35_000),
        Incident("alpha", "error_burst", 1_000, 4_000),  # during warm-up: not scored
    ]
    found = [
        ("alpha", "error", 12_000),  # TP (first detection: delay 2 s)
        ("alpha", "filled", 24_000),  # TP within the grace after the end
        ("alpha", "filled", 25_000),  # FP: grace over
        ("bravo", "revenue", 29_000),  # FP: before the start
        ("alpha", "error", 3_000),  # TP of the unscored incident: not a false alarm
    ]
    r = score(found, inc, grace_ms=10_000, scored=[True, True, False])
    assert (r.anomalies, r.true_positives) == (5, 3)
    assert r.precision == pytest.approx(3 / 5)
    assert (r.incidents, r.detected, r.recall) == (2, 1, 0.5)
    assert r.delays_s == (2.0,) and r.median_delay_s == 2.0
    assert [m.key for m in r.missed] == ["bravo"]
    assert {f[2] for f in r.false_alarms} == {25_000, 29_000}
    assert r.by_kind == {"outage": (1, 1), "price_drop": (0, 1)}


def _spec_file(tmp_path: Path, old: str, new: str) -> Path:
    text = reference_spec_path().read_text()
    assert old in text
    path = tmp_path / "spec.toml"
    path.write_text(text.replace(old, new))
    return path


def test_eval_incidents_cli_prints_and_writes_json(tmp_path: Path, capsys) -> None:
    spec = _spec_file(tmp_path, 'incident_every = "20s"', 'incident_every = "8s"')
    out = tmp_path / "report.json"
    args = ["eval", "incidents", "--pipeline", str(spec), "--events", "60000", "--seeds", "0,1"]
    assert main([*args, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "seed 0:" in text and "seed 1:" in text and "precision mean" in text
    data = json.loads(out.read_text())
    assert data["seeds"] == [0, 1] and len(data["runs"]) == 2
    assert sum(r["incidents"] for r in data["runs"]) >= 1
    assert {"precision_mean", "recall_min", "median_delay_s"} <= set(data)


def test_eval_incidents_warmup_leaves_early_incidents_unscored(capsys) -> None:
    base = ["eval", "incidents", "--events", "60000", "--seeds", "0"]
    assert main([*base, "--warmup", "1h"]) == 0
    assert "no incident was scored" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--seeds", "a,b"], "--seeds"),
        (["--seeds", "-1"], "--seeds"),
        (["--events", "0"], "--events"),
        (["--grace", "soon"], "--grace"),
        (["--pipeline", "/nonexistent/eddy.toml"], "file not found"),
    ],
)
def test_eval_incidents_cli_rejects_bad_arguments(extra, needle, capsys) -> None:
    assert main(["eval", "incidents", *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_eval_incidents_needs_a_detect_stage(tmp_path: Path, capsys) -> None:
    text = reference_spec_path().read_text()
    no_detect = text[: text.index("[[detect]]")] + text[text.index("[[decide]]") :]
    (tmp_path / "spec.toml").write_text(no_detect)
    assert main(["eval", "incidents", "--pipeline", str(tmp_path / "spec.toml")]) == 2
    assert "no [[detect]] stage" in capsys.readouterr().err
