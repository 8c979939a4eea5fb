"""The README's five-minute spec works as printed: checked, run on files of its declared
shape, with the results and the error message the README shows."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np

README = Path(__file__).parents[2] / "README.md"
T0 = 1_767_225_600_000


def _video_spec() -> str:
    text = README.read_text()
    m = re.search(r"Write `video.toml`:\n\n```toml\n(.*?)```", text, re.S)
    assert m, "the README's video.toml block"
    return m.group(1)


def _eddy(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eddy", *argv], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def _write_inputs(folder: Path, n: int = 3_000) -> None:
    rng = np.random.default_rng(5)
    cdns = ["cdn-a", "cdn-b", "cdn-c"]
    with (folder / "sessions.jsonl").open("w") as f:
        for i in range(n):
            allowed = sorted(rng.choice(cdns, size=int(rng.integers(1, 4)), replace=False))
            rec = {
                "session_id": f"s{i}",
                "started": T0 + 100 * i,
                "region": str(rng.choice(["eu", "us", "apac"])),
                "bitrate_kbps": float(rng.uniform(500, 8000)),
                "cdns": allowed,
            }
            f.write(json.dumps(rec) + "\n")
        f.write('{"session_id": "broken", "started": "yesterday"}\n')
    with (folder / "playback.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["session_id", "cdn", "rebuffered", "startup_ms", "ended"])
        for i in range(0, n, 2):  # half the sessions report back, one arm per report
            w.writerow(
                [f"s{i}", "cdn-a", "false", f"{rng.uniform(200, 900):.1f}", T0 + 100 * i + 3_000]
            )


def test_the_readme_spec_checks_and_runs(tmp_path: Path) -> None:
    (tmp_path / "video.toml").write_text(_video_spec())
    _write_inputs(tmp_path)
    check = _eddy("check", "video.toml", cwd=tmp_path)
    assert check.returncode == 0, check.stderr
    run = _eddy("run", "--pipeline", "video.toml", "--quiet", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    with duckdb.connect(str(tmp_path / "video.duckdb"), read_only=True) as con:
        n, wrong = con.execute(
            "SELECT count(*), count(*) FILTER (WHERE NOT list_contains(eligible_arms, arm)) "
            "FROM decisions"
        ).fetchone()  # type: ignore[misc]
        assert (n, wrong) == (3_000, 0)
        assert con.execute("SELECT count(*) FROM rewards").fetchone() == (3_000,)
        learned = con.execute(
            "SELECT count(*), max(abs(reward - (1 - rebuffered::INT - startup_ms / 5000))) "
            "FROM rewards WHERE NOT timed_out"
        ).fetchone()
        assert learned is not None and learned[0] > 0 and learned[1] < 1e-9
        # reports naming another CDN than the decision's are kept, not learned
        reasons = con.execute("SELECT DISTINCT reason FROM unmatched_outcomes").fetchall()
        assert {r[0] for r in reasons} <= {"field 'cdn' names another arm than the decision's"}
        dead = con.execute("SELECT stream, position, reason FROM dead_letters").fetchall()
        assert dead == [
            ("sessions", 3_001, "field 'started': 'yesterday' is not an ISO-8601 timestamp")
        ]
        assert con.execute("SELECT count(*) FROM window_aggregates").fetchone()[0] > 0  # type: ignore[index]


def test_the_readme_error_message_is_what_eddy_says(tmp_path: Path) -> None:
    readme = README.read_text()
    m = re.search(r"(eddy check: error: video.toml: key '([^']+)'[^\n]*)", readme)
    assert m, "the README's error example"
    shown, key = m.group(1), m.group(2)
    assert key == "decide[0].context.arm_features[0]"
    bad = _video_spec().replace("cdn_health.startup_ms_mean_2m", "cdn_health.startup_mean_2m")
    (tmp_path / "video.toml").write_text(bad)
    res = _eddy("check", "video.toml", cwd=tmp_path)
    assert res.returncode == 2
    said = res.stderr.strip()
    assert said.startswith(shown.split("...")[0].rstrip(", ")), (said, shown)
