"""`eddy eval nab` on a NAB-layout directory it has never seen (own category, no profiles)."""

from __future__ import annotations

import csv
import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from eddy.dataflows.cli import main


def _write_corpus(root: Path) -> None:
    rng = np.random.default_rng(0)
    start = datetime(2020, 1, 1)
    windows = {}
    for name, spike in (("a.csv", 700), ("b.csv", None)):
        rows = []
        for i in range(1000):
            v = 50 + 10 * np.sin(2 * np.pi * i / 288) + rng.normal(0, 1)
            if spike is not None and i == spike:
                v += 80
            rows.append(((start + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S"), v))
        d = root / "data" / "brandNewCategory"
        d.mkdir(parents=True, exist_ok=True)
        with open(d / name, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "value"])
            w.writerows(rows)
        key = f"brandNewCategory/{name}"
        windows[key] = (
            [[rows[650][0] + ".000000", rows[750][0] + ".000000"]] if spike is not None else []
        )
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def test_eval_nab_writes_results_and_scores(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_corpus(tmp_path / "nab")
    out = tmp_path / "out"
    assert main(["eval", "nab", "--data", str(tmp_path / "nab"), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert profile in text
    res = out / "eddy" / "brandNewCategory" / "eddy_a.csv"
    with open(res, newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert len(rows) == 1001
    assert all(len(r[2].split(".")[1]) == 9 for r in rows[1:])
    scores = np.array([float(r[2]) for r in rows[1:]])
    assert scores.argmax() == 700
    assert (out / "eddy" / "brandNewCategory" / "eddy_b.csv").exists()
    std = float(next(line for line in text.splitlines() if line.startswith("standard")).split()[1])
    assert std > 90.0  # one clean spike in one window, nothing else


def test_eval_nab_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "nab", "--data", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "NAB-layout" in capsys.readouterr().err
    _write_corpus(tmp_path / "nab")
    code = main(
        [
            "eval",
            "nab",
            "--data",
            str(tmp_path / "nab"),
            "--out",
            str(tmp_path),
            "--detector",
            "nope",
        ]
    )
    assert code == 2
    with pytest.raises(SystemExit) as e:
        main(["eval"])
    assert e.value.code == 2


def test_eval_help_names_every_registered_detector() -> None:
    from eddy.dataflows.commands.eval import _NAB_DETECTORS
    from eddy.operators.anomaly.registry import DETECTORS

    assert sorted(_NAB_DETECTORS) == sorted(DETECTORS)
