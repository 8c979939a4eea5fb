"""Leave-one-category-out (LOCO) evaluation of NAB: how much of a NAB score survives on a kind
of data nothing was tuned on. NAB sweeps one threshold per profile over the corpus and keeps the
best total, i.e. fits it in hindsight on the files it scores; choosing *which* detector to ship
the same way compounds that. A user deploying on a new kind of data gets neither.

Categories are ``data/<category>/`` folders. For every category with windows and every profile:

- ``fitted``: the candidate with the best normalised score on the category's own files, at its
  best threshold (``score_corpus`` restricted to them) -- the in-hindsight figure;
- ``left_out``: that choice made on the *other* categories pooled into one NAB corpus
  (anomaly-free categories included: their detections are false positives), then the category
  scored with exactly that candidate at exactly that threshold (detection: score >= threshold);
- ``drop`` = fitted - left_out: the price of not having seen the category;
- ``fixed``: the default candidate at a fixed threshold (0.99): no tuning at all.

Candidates whose raw totals agree to 1e-9 tie: the default candidate wins, then name order.
``raw_null`` is NAB's optimised constant detector on the scored files. ``overall`` sums raw,
raw_null and perfect over the categories with windows and normalises the sums as NAB does its
per-file totals, ``100 * (raw - raw_null) / (perfect - raw_null)``: a category weighs by its
windows. Anomaly-free categories have nothing to detect; for them the report gives the default
candidate's false alarms at the fixed threshold per 1,000 events, over every row after NAB's
probation period (the first ``min(15%, 750)`` rows of a file are never scored).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from functools import cache
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from eddy.benchmarks import nab
from eddy.benchmarks.nab import FileScoreParts

__all__ = [
    "FalseAlarms",
    "LocoResult",
    "Row",
    "Score",
    "check_candidates",
    "format_table",
    "loco",
    "main",
    "reference_scores",
    "run_candidates",
]

Series = tuple[NDArray[np.int64], NDArray[np.float64]]
Files = tuple[str, ...]


@dataclass(frozen=True)
class Score:
    """NAB totals of one scored set of files and their normalised ``score``."""

    raw: float
    raw_null: float
    perfect: float
    score: float = field(init=False)

    def __post_init__(self) -> None:
        d = self.perfect - self.raw_null
        object.__setattr__(self, "score", 100.0 * (self.raw - self.raw_null) / d if d else 0.0)

    def __add__(self, o: Score) -> Score:
        return Score(self.raw + o.raw, self.raw_null + o.raw_null, self.perfect + o.perfect)


@dataclass(frozen=True)
class Row:
    """A category with windows (or ``"overall"``) under a profile; ``*_by``: (candidate,
    threshold) behind the score, None for overall (threshold 1.1: nothing detected)."""

    category: str
    profile: str
    fitted: Score
    left_out: Score
    fixed: Score
    fitted_by: tuple[str, float] | None = None
    left_out_by: tuple[str, float] | None = None
    drop: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "drop", self.fitted.score - self.left_out.score)


@dataclass(frozen=True)
class FalseAlarms:
    """Detections of the default candidate on an anomaly-free category, rows after probation."""

    category: str
    detections: int
    rows: int
    per_1000: float


@dataclass(frozen=True)
class LocoResult:
    default_candidate: str
    fixed_threshold: float
    profiles: tuple[str, ...]
    rows: tuple[Row, ...]  # category-major, in profile order
    overall: tuple[Row, ...]  # one per profile
    false_alarms: tuple[FalseAlarms, ...]

    def row(self, category: str, profile: str) -> Row:
        rows = self.overall if category == "overall" else self.rows
        return next(r for r in rows if r.category == category and r.profile == profile)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _at(
    scores: NDArray[np.float64], parts: FileScoreParts, costs: dict[str, float], th: float | None
) -> tuple[float, float]:
    """(threshold, raw total): NAB's best threshold (``th`` None), or exactly at ``th``."""
    ths, tot = nab._sweep(scores, parts, costs)
    # ths is descending: its last point >= th detects exactly the rows scoring >= th
    k = int(np.argmax(tot)) if th is None else max(int(np.sum(ths >= th)) - 1, 0)
    return (float(ths[k]) if th is None else th), float(tot[k])


def loco(
    scores: Mapping[str, Mapping[str, Series]],
    windows: Mapping[str, list[tuple[int, int]]],
    profiles: Mapping[str, dict[str, float]],
    default_candidate: str,
    fixed_threshold: float = 0.99,
) -> LocoResult:
    """The LOCO report from per-candidate per-file scores (``{candidate: {"cat/file.csv": (epoch
    ms, scores)}}``, every candidate over the same rows). Only files the labels list count."""
    if default_candidate not in scores:
        raise ValueError(f"default candidate {default_candidate!r} has no scores")
    first = scores[default_candidate]
    rels = sorted(r for r in first if r in windows)
    for name, files in scores.items():
        for rel in rels:
            if rel not in files or not np.array_equal(files[rel][0], first[rel][0]):
                raise ValueError(f"candidate {name!r}: no scores for the rows of {rel}")
    prep = {rel: nab.prepare_file(first[rel][0], windows[rel]) for rel in rels}
    by_cat = {c: tuple(g) for c, g in groupby(rels, key=lambda r: r.split("/", 1)[0])}
    if len(by_cat) < 2:
        raise ValueError("leave-one-category-out needs at least two labelled categories")

    @cache
    def corpus(files: Files) -> FileScoreParts:  # one NAB corpus: window ids unique across files
        parts, win, base = [prep[rel][1] for rel in files], [], 0
        for p in parts:
            win.append(np.where(p.window >= 0, p.window + base, -1))
            base += p.n_windows
        ins, outs = (
            np.concatenate([getattr(p, k) for p in parts]) for k in ("in_worth", "out_worth")
        )
        return FileScoreParts(np.concatenate(win), ins, outs, base)

    @cache
    def null(files: Files, profile: str) -> float:  # NAB's null: a constant detector
        parts = corpus(files)
        return _at(np.full(parts.window.size, 0.5), parts, profiles[profile], None)[1]

    def rows_of(name: str, files: Files) -> NDArray[np.float64]:
        return np.concatenate([np.asarray(scores[name][r][1], float)[prep[r][0]] for r in files])

    def evaluate(name: str, files: Files, profile: str, th: float | None) -> tuple[float, Score]:
        parts, costs = corpus(files), profiles[profile]
        th, raw = _at(rows_of(name, files), parts, costs, th)
        return th, Score(raw, null(files, profile), costs["tpWeight"] * parts.n_windows)

    def best(files: Files, profile: str) -> tuple[str, float, Score]:
        tried = [(n, *evaluate(n, files, profile, None)) for n in scores]
        return min(tried, key=lambda c: (-round(c[2].raw, 9), c[0] != default_candidate, c[0]))

    def row(cat: str, profile: str) -> Row:
        fit_name, fit_th, fit = best(by_cat[cat], profile)
        name, th, _ = best(tuple(r for r in rels if r not in by_cat[cat]), profile)
        _, out = evaluate(name, by_cat[cat], profile, th)
        _, fixed = evaluate(default_candidate, by_cat[cat], profile, fixed_threshold)
        return Row(cat, profile, fit, out, fixed, (fit_name, fit_th), (name, th))

    labelled = [c for c, fs in by_cat.items() if sum(prep[r][1].n_windows for r in fs)]
    rows = tuple(row(cat, profile) for cat in labelled for profile in profiles)
    overall = []
    for profile in profiles:  # NAB's normalisation of the summed totals
        mine, zero = [r for r in rows if r.profile == profile], Score(0.0, 0.0, 0.0)
        fit, out, fix = (
            sum((getattr(r, k) for r in mine), zero) for k in ("fitted", "left_out", "fixed")
        )
        overall.append(Row("overall", profile, fit, out, fix))
    alarms = []
    for cat in [c for c in by_cat if c not in labelled]:
        hits = rows_of(default_candidate, by_cat[cat]) >= fixed_threshold
        n = int(np.sum(hits))
        alarms.append(FalseAlarms(cat, n, hits.size, 1000.0 * n / hits.size if hits.size else 0.0))
    res = (rows, tuple(overall), tuple(alarms))
    return LocoResult(default_candidate, fixed_threshold, tuple(profiles), *res)


def run_candidates(
    data_dir: Path, names: Iterable[str], registry: Mapping[str, Callable[[], Any]] | None = None
) -> dict[str, dict[str, Series]]:
    """Stream every ``data_dir/data/<cat>/<file>.csv`` through a fresh detector per file and
    candidate (``registry[name]()``, default ``DETECTORS``); scores clipped to [0, 1]."""
    if registry is None:
        from eddy.operators.anomaly.registry import DETECTORS

        registry = DETECTORS
    out: dict[str, dict[str, Series]] = {name: {} for name in names}
    for p in sorted((data_dir / "data").glob("*/*.csv")):
        _, ts, vals = nab.load_series(p)
        for name, files in out.items():
            raw = np.asarray(registry[name]().score_learn(ts, vals), dtype=np.float64)
            files[f"{p.parent.name}/{p.name}"] = (ts, np.clip(np.nan_to_num(raw), 0.0, 1.0))
    return out


def reference_scores(data_dir: Path, name: str) -> dict[str, Series]:
    """A published detector's per-row results, ``data_dir/reference/<name>/<cat>/<name>_<file>``
    (NAB's layout), for every data file that has one."""
    out: dict[str, Series] = {}
    for p in sorted((data_dir / "data").glob("*/*.csv")):
        ref = data_dir / "reference" / name / p.parent.name / f"{name}_{p.name}"
        if ref.exists():
            _, ts, _ = nab.load_series(ref)
            out[f"{p.parent.name}/{p.name}"] = (ts, nab.load_scores(ref))
    if not out:
        raise ValueError(f"--reference: no results of {name!r} under {data_dir / 'reference'}")
    return out


def check_candidates(text: str, default: str, known: Iterable[str], default_flag: str) -> list[str]:
    """``--candidates`` text -> names; ValueError (one line naming the flag) if unusable."""
    known = sorted(known)
    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    bad = [n for n in names if n not in known]
    if not names or bad:
        what = f"unknown {', '.join(map(repr, bad))}" if bad else "no name given"
        raise ValueError(f"--candidates: {what}; expected some of {', '.join(known)}")
    if default not in names:
        raise ValueError(f"{default_flag} {default!r}: the default candidate must be a candidate")
    return names


def _table(
    res: LocoResult, cats: list[str], kinds: tuple[str, ...], cells: Callable[[Row], list[str]]
) -> list[str]:
    head = ["category"] + [f"{p} {k}" for p in res.profiles for k in kinds]
    body = [[c] + [x for p in res.profiles for x in cells(res.row(c, p))] for c in cats]
    out = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    return out + ["| " + " | ".join(row) + " |" for row in body]


def _numbers(r: Row) -> list[str]:
    return [f"{v:.2f}" for v in (r.fitted.score, r.left_out.score, r.drop, r.fixed.score)]


def _choices(r: Row) -> list[str]:
    return [f"{b[0]} @ {b[1]:.6f}" for b in (r.fitted_by, r.left_out_by) if b]


def format_table(res: LocoResult) -> str:
    """Markdown: scores per category and overall, the choices behind them, false alarms."""
    cats = list(dict.fromkeys(r.category for r in res.rows))
    kinds = ("fitted", "left-out", "drop", f"fixed@{res.fixed_threshold:g}")
    out = _table(res, [*cats, "overall"], kinds, _numbers)
    note = "Choices (candidate @ threshold): fitted on the category itself; left-out tuned on"
    out += ["", note + " the other categories (anomaly-free ones included).", ""]
    out += _table(res, cats, ("fitted", "left-out"), _choices)
    if res.false_alarms:
        note = f"False alarms of {res.default_candidate} at {res.fixed_threshold:g} on"
        out += ["", note + " anomaly-free categories (every row after NAB's probation):", ""]
    out += [
        f"- {f.category}: {f.per_1000:.2f} per 1,000 events ({f.detections} of {f.rows} rows)"
        for f in res.false_alarms
    ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """``python -m eddy.benchmarks.nab_loco --data DIR [--candidates a,b] [--default eddy]
    [--json OUT]``: run the candidates over a NAB-layout directory, print the LOCO report."""
    from eddy.operators.anomaly.registry import DETECTORS

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--candidates", default=",".join(DETECTORS), help="comma-separated names")
    p.add_argument("--default", default="eddy", help="the untuned candidate (default: eddy)")
    p.add_argument("--json", type=Path, help="also write the numbers as JSON here")
    p.add_argument(
        "--reference",
        default="",
        help="comma-separated published detectors under DATA/reference/ to put through the "
        "same protocol, each on its own",
    )
    a = p.parse_args(argv)
    try:  # one line naming the bad flag or file, exit code 2
        names = check_candidates(a.candidates, a.default, DETECTORS, "--default")
        windows = nab.load_windows(a.data / "labels" / "combined_windows.json")
        refs = {r: reference_scores(a.data, r) for r in a.reference.split(",") if r}
    except (OSError, ValueError) as e:
        p.error(str(e))
    profiles = nab.load_profiles(a.data)
    results = {}
    try:
        results[a.default] = loco(run_candidates(a.data, names), windows, profiles, a.default)
        for r, scores in refs.items():
            results[r] = loco({r: scores}, windows, profiles, r)
    except ValueError as e:
        p.error(f"--data {a.data}: {e}")
    for i, (name, res) in enumerate(results.items()):
        if i:
            print(f"\n### {name} (published results, same protocol)\n")
        print(format_table(res))
    if a.json is not None:
        doc = results.pop(a.default).as_dict()
        doc["references"] = {name: res.as_dict() for name, res in results.items()}
        a.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
