"""`eddy bench soak`: a few seconds of the reference pipeline run --forever, sampled; what a
broken soak would get wrong (no samples, no memory, time going backwards, no throughput, no
per-interval latency, a file that is not a PNG)."""

from __future__ import annotations

import itertools
import json
import struct
from pathlib import Path

import pytest

from eddy.dataflows.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_short_soak_records_the_curves_and_plots_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "soak"
    assert main(["bench", "soak", "--minutes", "0.2", "--every", "1", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    data = json.loads((out / "soak.json").read_text())
    assert data["summary"] == summary
    samples = data["samples"]
    assert len(samples) >= 5
    times = [s["t_s"] for s in samples]
    assert all(b > a for a, b in itertools.pairwise(times)) and times[0] > 0
    assert all(s["rss_mb"] > 0 for s in samples)
    assert all(s["wal_mb"] >= 0 and s["db_mb"] >= 0 for s in samples)
    assert any((s["events_per_s"] or 0) > 0 for s in samples)
    assert summary["events_per_s_mean"] > 0
    assert summary["rss_mb"]["min"] <= summary["rss_mb"]["end"] <= summary["rss_mb"]["max"]
    # per-interval latency rows came from the run's own metrics table
    p99 = [r["p99_ms"] for r in data["per_second"] if r.get("p99_ms") is not None]
    assert p99 and all(v > 0 for v in p99)
    assert summary["db_mb_after_stop"] > 0
    # and the decisions' own latency (read to decided) per second, from the file
    assert data["decide_per_second"] and summary["decide_p99_ms_per_second"]["max"] > 0
    png = (out / "soak.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and png[12:16] == b"IHDR"
    width, height = struct.unpack(">II", png[16:24])
    assert width > 100 and height > 100


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["bench", "soak"], "--minutes: expected a number of minutes > 0"),
        (["bench", "soak", "--minutes", "1", "--rate", "0"], "--rate: expected a number > 0"),
        (
            ["bench", "soak", "--minutes", "1", "--rate", "100", "--pipeline"],
            "sets no rate_per_s or rate_per_h",
        ),
    ],
)
def test_bad_soak_arguments_are_usage_errors(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    if argv[-1] == "--pipeline":
        argv = [*argv, str(EXAMPLES / "sensors.toml")]
    assert main([*argv, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
