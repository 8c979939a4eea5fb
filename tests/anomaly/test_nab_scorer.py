"""The project's NAB scorer reproduces the official scores of the reference detectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eddy.benchmarks.nab import prepare_file, score_corpus, score_results_dir

NAB = Path("/work/shared/benchdata/nab-dev")
if not NAB.exists():  # the repo copy used by CI
    NAB = Path(__file__).resolve().parents[2] / "benchdata" / "nab-dev"

EXPECTED = {
    "numenta": (77.37, 72.39, 80.99),
    "windowedGaussian": (51.31, 45.50, 59.31),
}


@pytest.mark.parametrize("detector", sorted(EXPECTED))
def test_reference_scores_reproduced(detector: str) -> None:
    res = score_results_dir(NAB / "reference", detector, NAB)
    got = tuple(
        round(res[p].score, 2) for p in ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
    )
    assert got == EXPECTED[detector]


def test_probation_and_window_rules() -> None:
    ts = np.arange(100, dtype=np.int64) * 60_000
    rows, parts = prepare_file(ts, [(ts[50], ts[59])])
    assert rows[0] == 15  # floor(0.15 * 100)
    assert parts.n_windows == 1
    inside = parts.window >= 0
    assert inside.sum() == 10
    # earliest row in the window is worth the most, right edge close to zero
    w = parts.in_worth[inside]
    assert np.all(np.diff(w) < 0) and w[0] == pytest.approx(1.0) and 0 < w[-1] < 0.3
    # rows before the first window cost the full fpWeight
    assert np.all(parts.out_worth[: 50 - 15] == -1.0)


def test_perfect_and_null_detectors() -> None:
    ts = np.arange(1000, dtype=np.int64) * 60_000
    windows = {"c/a.csv": [(int(ts[500]), int(ts[599]))]}
    perfect = np.zeros(1000)
    perfect[500] = 1.0
    res = score_corpus(
        {"c/a.csv": (ts, perfect)}, windows, {"p": {"tpWeight": 1, "fpWeight": 0.1, "fnWeight": 1}}
    )
    assert res["p"].score == pytest.approx(100 * (0.98661 / 0.98661 + 1) / 2, abs=0.01)
    null = score_corpus(
        {"c/a.csv": (ts, np.zeros(1000))},
        windows,
        {"p": {"tpWeight": 1, "fpWeight": 0.1, "fnWeight": 1}},
    )
    assert null["p"].score == 0.0


def test_ties_enter_the_sweep_together() -> None:
    ts = np.arange(1000, dtype=np.int64) * 60_000
    windows = {"c/a.csv": [(int(ts[500]), int(ts[599]))]}
    sc = np.zeros(1000)
    sc[[300, 500]] = 0.9  # a tie: the FP cannot be separated from the TP
    res = score_corpus(
        {"c/a.csv": (ts, sc)}, windows, {"p": {"tpWeight": 1, "fpWeight": 0.5, "fnWeight": 1}}
    )
    assert res["p"].raw == pytest.approx(1.0 - 0.5)
