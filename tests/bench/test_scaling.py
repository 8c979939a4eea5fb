"""`eddy bench scaling`: events/s of a spec by worker count, as a user types it (a subprocess:
the worker processes are spawned), and its bad flags: exit 2, one line naming the flag."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from eddy.dataflows.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_sensors_on_one_and_two_workers(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    spec = str(EXAMPLES / "sensors.toml")
    argv = ["--pipeline", spec, "--workers", "1,2", "--events", "30000", "--repeat", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "eddy", "bench", "scaling", *argv, "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads(out.read_text())
    assert set(data["scaling"]) == {"1", "2"}
    for eps in data["scaling"].values():
        assert isinstance(eps, float) and eps > 0
    assert data["same_results"] is True, data["compare"]
    assert data["pipeline"] == "sensors" and data["events"] > 0
    # rounds of 1 and 2 workers, each 2-worker run against the 1-worker run of its round
    busy = {r["workers"]: r["busy_s"] for r in data["runs"]}
    assert len(busy[1]) == len(busy[2]) == 2
    ratios = [a / b for a, b in zip(busy[1], busy[2], strict=True)]
    assert data["round_speedups"] == {"2": ratios}
    assert data["median_round_speedup"]["2"] == pytest.approx(sum(ratios) / 2)
    for run in data["runs"]:  # every round, every worker: the CPU time of its steps
        assert len(run["step_cpu_s"]) == 2
        for members in run["step_cpu_s"]:
            assert len(members) == run["workers"]
            assert all(m["decode"] > 0 and m["keyed"] > 0 for m in members), members
    assert "worker 1 in the fastest round, CPU per step: decode" in proc.stderr
    rows = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    assert rows["1"][2] == "1.00x" and len(rows["1"]) == 3  # workers, events/s, speedup
    assert rows["2"][2].endswith("x") and rows["2"][3].endswith("x")  # and the rounds' median
    assert "same_results: true" in proc.stdout


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--workers", "1,two"], "--workers: expected a comma list"),
        (["--workers", "0,1"], "--workers: expected a comma list"),
        (["--workers", ""], "--workers: expected a comma list"),
        (["--workers", "2,2"], "--workers: expected a comma list"),
        (["--events", "0"], "--events: expected a number >= 1"),
        (["--events", "many"], "argument --events: invalid int value"),
        (["--repeat", "0"], "--repeat: expected a number >= 1"),
        (["--shards", "0"], "--shards: expected a number from 1 to 256"),
        (["--shards", "257"], "--shards: expected a number from 1 to 256"),
        (["--pipeline", "/nonexistent.toml"], "--pipeline: /nonexistent.toml: file not found"),
    ],
)
def test_bad_scaling_flags_are_usage_errors(
    flags: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["bench", "scaling", *flags])
    except SystemExit as e:  # argparse's own checks (a flag's type)
        code = e.code
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
