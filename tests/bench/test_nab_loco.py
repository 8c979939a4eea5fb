"""Leave-one-category-out NAB protocol: choices, sums and false alarms on a hand-made corpus where
every number can be worked out on paper, plus `eddy eval nab --protocol loco`."""

from __future__ import annotations

import csv
import json
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eddy.benchmarks import nab
from eddy.benchmarks.nab_loco import format_table, loco, main, run_candidates
from eddy.dataflows.cli import main as cli

N = 200  # rows per file: probation = floor(0.15 * 200) = 30 rows
WIN = (100, 120)  # window rows, inclusive: width 21
LABELLED = ["catA/a1.csv", "catA/a2.csv", "catB/b1.csv", "catC/c1.csv"]
QUIET = "quiet/q1.csv"  # a category without windows
STD = {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0}


def _stamp(i: int) -> str:
    return (datetime(2020, 1, 1) + timedelta(minutes=5 * i)).strftime("%Y-%m-%d %H:%M:%S")


def _write_corpus(root: Path) -> None:
    rng = np.random.default_rng(0)
    windows: dict[str, list[list[str]]] = {}
    for rel in [*LABELLED, QUIET]:
        values = 50 + 10 * np.sin(2 * np.pi * np.arange(N) / 48) + rng.normal(0, 0.5, N)
        if rel != QUIET:
            values[WIN[0] + 5] += 60
        path = root / "data" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["timestamp", "value"])
            w.writerows((_stamp(i), f"{v:.3f}") for i, v in enumerate(values))
        windows[rel] = [] if rel == QUIET else [[_stamp(WIN[0]) + ".000000", _stamp(WIN[1])]]
    (root / "labels").mkdir()
    (root / "labels" / "combined_windows.json").write_text(json.dumps(windows))


def _pulses(**at: float) -> np.ndarray:
    s = np.zeros(N)
    for row, value in at.items():
        s[int(row[1:])] = value
    return s


# A: perfect on catA and catB (a 1.0 on the window's first row); on catC a 1.0 before the window
# (a false positive worth -fpWeight) and only 0.5 inside it. B: the reverse.
PERFECT, NOISY = _pulses(r100=1.0), _pulses(r60=1.0, r110=0.5)
# the default candidate's alarms on the anomaly-free file: row 10 is in probation, 0.98 < 0.99
QUIET_A = _pulses(r10=1.0, r50=1.0, r150=1.0, r160=0.99, r170=0.98)
SCORES = {
    "A": {"catA": PERFECT, "catB": PERFECT, "catC": NOISY, "quiet": QUIET_A},
    "B": {"catA": NOISY, "catB": NOISY, "catC": PERFECT, "quiet": np.zeros(N)},
}


Series = tuple[np.ndarray, np.ndarray]  # epoch ms, scores
Inputs = tuple[
    dict[str, dict[str, Series]], dict[str, list[tuple[int, int]]], dict[str, dict[str, float]]
]


def _inputs(root: Path, table: dict[str, dict[str, np.ndarray]] = SCORES) -> Inputs:
    _write_corpus(root)
    ts = {rel: nab.load_series(root / "data" / rel)[1] for rel in [*LABELLED, QUIET]}
    scores = {
        name: {rel: (ts[rel], by_cat[rel.split("/")[0]]) for rel in ts}
        for name, by_cat in table.items()
    }
    windows = nab.load_windows(root / "labels" / "combined_windows.json")
    return scores, windows, nab.load_profiles(root)


def _w() -> float:
    """NAB's worth of a detection on row 110 of the window (rows 100-120), from its formula."""

    def sigma(y: float) -> float:
        return 2 / (1 + math.exp(5 * y)) - 1

    return sigma(-(WIN[1] - 110 + 1) / (WIN[1] - WIN[0] + 1)) / sigma(-1)


def test_left_out_choice_comes_from_the_other_categories(tmp_path: Path) -> None:
    res = loco(*_inputs(tmp_path), default_candidate="A")
    assert [r.category for r in res.rows if r.profile == "standard"] == ["catA", "catB", "catC"]
    c = res.row("catC", "standard")
    assert c.fitted_by == ("B", 1.0) and c.fitted.score == pytest.approx(100.0)
    # tuned on catA + catB + quiet, A at 1.0 wins (3 windows, 2 false alarms on quiet); on catC
    # that threshold misses the window (0.5) and keeps the false positive
    assert c.left_out_by == ("A", 1.0)
    assert c.left_out.raw == pytest.approx(-1.11) and c.left_out.raw_null == pytest.approx(-1.0)
    assert c.left_out.score == pytest.approx(100 * (-1.11 + 1) / 2)
    assert c.left_out.score < c.fitted.score and c.drop == pytest.approx(105.5)
    a = res.row("catA", "standard")
    assert a.fitted_by == ("A", 1.0)
    assert a.left_out_by == ("B", 0.5)  # B at 0.5 on catB + catC beats A at any threshold
    assert a.left_out.raw == pytest.approx(2 * (_w() - 0.11))
    assert res.row("catB", "standard").left_out_by == ("B", 0.5)


def test_fitted_is_nab_score_corpus_on_the_category(tmp_path: Path) -> None:
    scores, windows, profiles = _inputs(tmp_path)
    res = loco(scores, windows, profiles, "A")
    assert len(res.rows) == 9
    for r in res.rows:
        assert r.fitted_by is not None
        name, threshold = r.fitted_by
        own = {k: v for k, v in windows.items() if k.startswith(r.category + "/")}
        ref = nab.score_corpus(scores[name], own, profiles)[r.profile]
        assert (r.fitted.score, r.fitted.raw_null) == pytest.approx((ref.score, ref.raw_null))
        assert threshold == ref.threshold


def test_overall_sums_raw_null_and_perfect_by_hand(tmp_path: Path) -> None:
    res = loco(*_inputs(tmp_path), default_candidate="A")
    o = res.row("overall", "standard")
    w = _w()
    left_out_raw = 2 * (w - 0.11) + (w - 0.11) + (-1.11)  # catA, catB with B@0.5; catC A@1.0
    assert o.left_out.raw == pytest.approx(left_out_raw)
    assert (o.left_out.raw_null, o.left_out.perfect) == pytest.approx((-4.0, 4.0))
    assert o.left_out.score == pytest.approx(100 * (left_out_raw + 4) / 8)
    assert o.fitted.raw == pytest.approx(4.0) and o.fitted.score == pytest.approx(100.0)
    fixed_raw = 2 + 1 - 1.11  # A at 0.99: catA, catB perfect, catC as left out
    assert o.fixed.score == pytest.approx(100 * (fixed_raw + 4) / 8)
    assert o.drop == pytest.approx(o.fitted.score - o.left_out.score)
    # reward_low_FN_rate: a miss costs 2, so the null total doubles
    fn = res.row("overall", "reward_low_FN_rate")
    assert (fn.fitted.raw_null, fn.fitted.perfect) == pytest.approx((-8.0, 4.0))


def test_false_alarms_per_1000_count_rows_after_probation(tmp_path: Path) -> None:
    res = loco(*_inputs(tmp_path), default_candidate="A")
    (fa,) = res.false_alarms
    assert (fa.category, fa.detections, fa.rows) == ("quiet", 3, N - 30)
    assert fa.per_1000 == pytest.approx(3000 / 170)
    assert "quiet" not in {r.category for r in res.rows}
    res_b = loco(*_inputs(tmp_path / "b"), default_candidate="B")
    assert res_b.false_alarms[0].detections == 0
    assert res_b.row("catC", "standard").fixed.score == pytest.approx(100.0)


def test_ties_go_to_the_default_then_to_name_order(tmp_path: Path) -> None:
    table = {**SCORES, "A2": SCORES["A"]}
    res = loco(*_inputs(tmp_path, table), default_candidate="A2")
    assert res.row("catA", "standard").fitted_by == ("A2", 1.0)
    res = loco(*_inputs(tmp_path / "b", table), default_candidate="B")
    assert res.row("catA", "standard").fitted_by == ("A", 1.0)


def test_bad_inputs_are_value_errors(tmp_path: Path) -> None:
    scores, windows, profiles = _inputs(tmp_path)
    with pytest.raises(ValueError, match="default candidate"):
        loco(scores, windows, profiles, "nope")
    short = {**scores, "B": {k: v for k, v in scores["B"].items() if k != "catB/b1.csv"}}
    with pytest.raises(ValueError, match=r"catB/b1\.csv"):
        loco(short, windows, profiles, "A")
    only_a = {k: v for k, v in windows.items() if k.startswith("catA/")}
    with pytest.raises(ValueError, match="two labelled categories"):
        loco(scores, only_a, profiles, "A")


def test_table_and_json_carry_the_numbers(tmp_path: Path) -> None:
    res = loco(*_inputs(tmp_path), default_candidate="A")
    text = format_table(res)
    assert "| catC | 100.00 | -5.50 | 105.50 |" in text
    assert "| catC | B @ 1.000000 | A @ 1.000000 |" in text
    assert "- quiet: 17.65 per 1,000 events (3 of 170 rows)" in text
    doc = json.loads(json.dumps(res.as_dict()))
    assert doc["overall"][0]["profile"] == "standard"
    assert doc["rows"][0]["left_out_by"] == ["B", 0.5]


class _Fake:
    made = 0

    def __init__(self) -> None:
        type(self).made += 1
        self.calls = 0

    def score_learn(self, ts_ms: Any, values: Any) -> np.ndarray:
        self.calls += 1
        assert self.calls == 1  # a fresh detector for every file
        out = np.asarray(values, dtype=np.float64) / 50.0  # values over 50 score above 1
        out[0] = np.nan
        return out


def test_run_candidates_streams_every_file_through_a_fresh_detector(tmp_path: Path) -> None:
    _write_corpus(tmp_path)
    _Fake.made = 0
    scores = run_candidates(tmp_path, ["f"], {"f": _Fake})
    assert _Fake.made == 5 and sorted(scores["f"]) == sorted([*LABELLED, QUIET])
    ts, s = scores["f"]["catA/a1.csv"]
    assert ts.shape == s.shape == (N,) and s[0] == 0.0 and s.max() == 1.0 and s.min() >= 0.0


def test_module_main_with_registered_detectors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from eddy.operators.anomaly.registry import DETECTORS

    monkeypatch.setitem(DETECTORS, "fake", _Fake)
    _write_corpus(tmp_path)
    out = tmp_path / "loco.json"
    argv = ["--data", str(tmp_path), "--candidates", "fake", "--default", "fake"]
    assert main([*argv, "--json", str(out)]) == 0
    assert "| overall |" in capsys.readouterr().out
    assert json.loads(out.read_text())["default_candidate"] == "fake"


def test_published_results_go_through_the_same_protocol(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from eddy.operators.anomaly.registry import DETECTORS

    monkeypatch.setitem(DETECTORS, "fake", _Fake)
    _write_corpus(tmp_path)
    for rel in [*LABELLED, QUIET]:  # published results: candidate B's rows
        cat, name = rel.split("/")
        texts, _, values = nab.load_series(tmp_path / "data" / rel)
        out = tmp_path / "reference" / "pub" / cat / f"pub_{name}"
        nab.write_results(out, texts, values, SCORES["B"][cat])
    doc_path = tmp_path / "loco.json"
    argv = ["--data", str(tmp_path), "--candidates", "fake", "--default", "fake"]
    assert main([*argv, "--reference", "pub", "--json", str(doc_path)]) == 0
    assert "### pub (published results, same protocol)" in capsys.readouterr().out
    pub = json.loads(doc_path.read_text())["references"]["pub"]
    alone = loco(*_inputs(tmp_path / "b", {"B": SCORES["B"]}), default_candidate="B")
    assert [r["left_out"]["score"] for r in pub["rows"]] == pytest.approx(
        [r.left_out.score for r in alone.rows]
    )
    assert len(pub["rows"]) == len(alone.rows) > 0
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--reference", "nobody"])
    assert exc.value.code == 2


def test_cli_protocol_loco_prints_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_corpus(tmp_path)
    out = tmp_path / "loco.json"
    argv = ["eval", "nab", "--protocol", "loco", "--data", str(tmp_path)]
    assert cli([*argv, "--candidates", "eddy,eddy_novelty", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    for needle in ("| catA |", "| catC |", "| overall |", "standard left-out", "- quiet:"):
        assert needle in text
    doc = json.loads(out.read_text())
    assert {r["category"] for r in doc["rows"]} == {"catA", "catB", "catC"}
    chosen = {r["left_out_by"][0] for r in doc["rows"]}
    assert chosen <= {"eddy", "eddy_novelty"}


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--protocol", "loco", "--candidates", "eddy,nope"], "--candidates: unknown 'nope'"),
        (["--protocol", "loco", "--candidates", ","], "--candidates: no name given"),
        (["--protocol", "loco", "--candidates", "hst"], "--detector 'eddy'"),
        (["--protocol", "loco", "--out", "x"], "--out applies to --protocol single"),
        (["--candidates", "eddy"], "--candidates applies to --protocol loco"),
        ([], "--out: required with --protocol single"),
    ],
)
def test_cli_bad_arguments_are_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], needle: str
) -> None:
    _write_corpus(tmp_path)
    assert cli(["eval", "nab", "--data", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and len(err.strip().splitlines()) == 1


def test_cli_loco_needs_two_labelled_categories(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write_corpus(tmp_path)
    labels = tmp_path / "labels" / "combined_windows.json"
    only_a = {k: v for k, v in json.loads(labels.read_text()).items() if k.startswith("catA/")}
    labels.write_text(json.dumps(only_a))
    assert cli(["eval", "nab", "--protocol", "loco", "--data", str(tmp_path)]) == 2
    assert "2+ labelled categories; has catA" in capsys.readouterr().err
