"""`eddy eval incidents` on runs too short to score: a warning instead of "precision 1.000
recall nan", summaries over the seeds that were scored, and JSON without a bare NaN."""

from __future__ import annotations

import json
import math
from pathlib import Path

from eddy.benchmarks.incidents import SeedsReport, score
from eddy.dataflows.cli import main
from eddy.sources.simulators.base import Incident

# at 2,000 requests/s, 45,000 events are 22 simulated seconds: past the 20 s warm-up, no
# incident both starts after it and ends before the run does, yet a few anomaly records of
# incidents in the warm-up are written (precision 1.0 over them, recall undefined)
SHORT = ["eval", "incidents", "--events", "45000", "--seeds", "0,1"]


def test_a_run_too_short_to_score_is_a_warning_not_nan(tmp_path: Path, capsys) -> None:
    out = tmp_path / "report.json"
    assert main([*SHORT, "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nan" not in text.lower(), text
    assert "not scored" in text and "warning: no incident was scored" in text
    assert "precision 1.000" not in text
    data = json.loads(out.read_text(), parse_constant=_refuse)
    assert data["scored_seeds"] == [] and data["recall_mean"] is None
    assert data["precision_mean"] is None and data["median_delay_s"] is None
    assert all(r["recall"] is None and r["median_delay_s"] is None for r in data["runs"])
    assert sum(r["anomalies"] for r in data["runs"]) > 0  # records there were, nothing scored


def _refuse(name: str) -> float:
    raise AssertionError(f"the JSON holds a bare {name}")


def test_the_summary_is_over_the_scored_seeds_only() -> None:
    inc = [Incident("alpha", "outage", 30_000, 35_000)]
    scored = score([("alpha", "filled", 31_000), ("alpha", "filled", 90_000)], inc)
    unscored = score([("alpha", "filled", 31_000)], inc, scored=[False])
    quiet = score([], inc)  # scored, nothing detected: precision undefined, recall 0
    rep = SeedsReport((0, 1, 2), (scored, unscored, quiet))
    assert rep.recall == (0.5, 0.0)
    assert rep.precision == (0.5, 0.5)  # the quiet seed has no record to be precise about
    lines = rep.lines()
    assert lines[-1].endswith("(2 of 3 seeds scored)"), lines
    assert not any("nan" in line for line in lines), lines
    assert "precision n/a (no anomaly record)" in "\n".join(lines)
    text = json.dumps(rep.as_dict(), allow_nan=False)  # raises on any NaN or inf
    data = json.loads(text)
    assert data["scored_seeds"] == [0, 2]
    assert data["runs"][2]["precision"] is None and data["runs"][1]["recall"] is None
    assert math.isclose(data["recall_mean"], 0.5) and data["recall_min"] == 0.0
