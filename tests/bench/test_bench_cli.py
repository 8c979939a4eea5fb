"""`eddy bench`: argument handling, and `eddy bench throughput --pipeline` on a spec other than
the reference (the suites themselves run in test_harness.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from eddy.dataflows.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_unknown_suite_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "warp-speed"]) == 2
    assert "suite 'warp-speed' not available" in capsys.readouterr().err


def test_help_lists_the_suites_and_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for word in ("throughput", "latency", "batch_size", "features", "--quick", "--json"):
        assert word in text
    for word in ("--pipeline", "soak", "scaling", "--workers", "--repeat", "--shards"):
        assert word in text


def test_no_suite_runs_every_harness_suite_and_neither_long_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import eddy.benchmarks.harness as harness
    import eddy.benchmarks.report as report

    seen: dict[str, list[str]] = {}

    def run_suites(names: list[str], *args: object, extra: dict, **kw: object) -> dict:
        seen["names"], seen["extra"] = list(names), list(extra)
        return {}

    monkeypatch.setattr(harness, "run_suites", run_suites)
    monkeypatch.setattr(report, "markdown", lambda out: "")
    assert main(["bench", "--out", str(tmp_path)]) == 0
    assert seen["names"] == ["throughput", "latency", "batch_size", "memory", "quality"]
    assert "scaling" not in seen["extra"] and "soak" not in seen["extra"]


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "latency", "--pipeline", "x.toml"], "--pipeline applies to the throughput"),
        (["bench", "--pipeline", "x.toml"], "--pipeline applies to the throughput"),
        (["bench", "batch_size", "--pipeline", "x.toml"], "--pipeline applies to the throughput"),
        (["bench", "throughput", "--workers", "2"], "--workers applies to the scaling suite"),
        (["bench", "throughput", "--pipeline", "/nonexistent.toml"], "file not found"),
    ],
)
def test_pipeline_is_for_the_throughput_suite_and_must_load(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_throughput_of_an_open_loop_spec_against_its_floor(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tp.json"
    spec = str(EXAMPLES / "sensors.toml")
    argv = ["bench", "throughput", "--quick", "--pipeline", spec, "--json", str(out)]
    assert main([*argv, "--out", str(tmp_path / "res")]) == 0
    assert "## Throughput: pipeline sensors" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert data["pipeline"] == "sensors" and set(data["throughput"]) == {"eddy", "floor"}
    tp = data["suites"]["throughput"]
    eddy, floor = tp["variants"]["eddy"], tp["variants"]["floor"]
    n = tp["stream"]["lines"]["readings"]
    assert n > 0 and eddy["events"] == floor["events"] == n
    assert eddy["rows"]["features_series_stats"] == floor["rows"]["events_readings"] == n
    assert eddy["rows"]["anomalies"] > 0  # the detectors ran on the replay
