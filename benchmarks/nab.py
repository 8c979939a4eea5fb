"""NAB scoring, written for eddy, plus a runner that streams NAB-layout data through a detector.

Scoring follows NAB (numenta/NAB, ``nab/sweeper.py`` + optimizer + normalisation):

- probation: the first ``min(floor(0.15 * rows), 0.15 * 5000)`` rows of a file are never scored;
- a window is entered at the row whose timestamp *equals* its start and left after the row whose
  timestamp equals its end (width = rows from start to end inclusive);
- a row inside a window at index ``i`` is worth ``tpWeight * sigma(-(right - i + 1) / width) /
  sigma(-1)``; a row outside windows is worth ``fpWeight * sigma(|i - prev_right| /
  (prev_width - 1))`` after a window and ``-fpWeight`` before any window, with
  ``sigma(y) = 2 / (1 + exp(5 y)) - 1`` (``-1`` for ``y >= 3``);
- for a threshold, a window counts its best (= earliest) detected row, else ``-fnWeight``; every
  detected row outside windows adds its (negative) worth;
- the threshold is swept over every distinct score of all files at once (descending; equal scores
  enter together; the first sweep point is 1.1 = nothing detected) and the best total is kept
  (on ties the higher threshold wins: Python's stable sort, as in NAB);
- normalised = ``100 * (raw - raw_null) / (perfect - raw_null)``, ``perfect = tpWeight *
  (windows in the label file)``, ``raw_null`` = the same optimisation for a constant detector.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "DEFAULT_PROFILES",
    "FileScoreParts",
    "NabResult",
    "load_profiles",
    "load_series",
    "load_windows",
    "main",
    "parse_ts",
    "prepare_file",
    "run_detector",
    "score_corpus",
    "score_results_dir",
    "write_results",
]

DEFAULT_PROFILES: dict[str, dict[str, float]] = {
    "standard": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11, "tnWeight": 1.0},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22, "tnWeight": 1.0},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11, "tnWeight": 1.0},
}
PROBATION_PERCENT = 0.15


def _sigma(y: float) -> float:
    if y >= 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * y)) - 1.0


def parse_ts(text: str) -> int:
    """NAB timestamp text -> epoch milliseconds (naive, treated as UTC)."""
    d = datetime.fromisoformat(text.strip())
    return round((d.replace(tzinfo=None) - datetime(1970, 1, 1)).total_seconds() * 1000)


def load_series(path: Path) -> tuple[list[str], NDArray[np.int64], NDArray[np.float64]]:
    """A NAB data or results file: raw timestamp text, epoch ms, value column."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    head, body = rows[0], [r for r in rows[1:] if r]
    ti, vi = head.index("timestamp"), head.index("value")
    texts = [r[ti] for r in body]
    ts = np.array([parse_ts(t) for t in texts], dtype=np.int64)
    vals = np.array([float(r[vi]) if r[vi].strip() else np.nan for r in body], dtype=np.float64)
    return texts, ts, vals


def load_scores(path: Path) -> NDArray[np.float64]:
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    ci = rows[0].index("anomaly_score")
    return np.array([float(r[ci]) for r in rows[1:] if r], dtype=np.float64)


def load_windows(path: Path) -> dict[str, list[tuple[int, int]]]:
    with open(path) as f:
        raw = json.load(f)
    return {k: [(parse_ts(a), parse_ts(b)) for a, b in v] for k, v in raw.items()}


def load_profiles(data_dir: Path) -> dict[str, dict[str, float]]:
    """``DIR/config/profiles.json`` if present, else NAB's built-in three profiles."""
    p = data_dir / "config" / "profiles.json"
    if not p.exists():
        return {k: dict(v) for k, v in DEFAULT_PROFILES.items()}
    with open(p) as f:
        raw = json.load(f)
    return {
        name: {k: float(v) for k, v in prof["CostMatrix"].items()} for name, prof in raw.items()
    }


@dataclass(frozen=True)
class FileScoreParts:
    """Per scorable row of one file: its weight-free position data for the sweep."""

    window: NDArray[np.int64]  # window id (global, >= 0) or -1 outside windows
    in_worth: NDArray[np.float64]  # sigma(position)/sigma(-1) inside windows (times tpWeight)
    out_worth: NDArray[np.float64]  # sigma(past previous window) outside (times fpWeight)
    n_windows: int


def prepare_file(
    ts: NDArray[np.int64], windows: Iterable[tuple[int, int]], window_base: int = 0
) -> tuple[NDArray[np.int64], FileScoreParts]:
    """Rows that are scored (after probation) and their window bookkeeping (NAB sweeper rules)."""
    n = ts.shape[0]
    pending = sorted(windows)
    index = {int(t): i for i, t in reversed(list(enumerate(ts.tolist())))}
    probation = min(math.floor(PROBATION_PERCENT * n), PROBATION_PERCENT * 5000)
    max_tp = _sigma(-1.0)
    win = np.full(n, -1, dtype=np.int64)
    in_w = np.zeros(n)
    out_w = np.zeros(n)
    cur_right = cur_end = -1
    cur_width = -1.0
    cur_id = -1
    prev_right = -1
    prev_width = 0.0
    wid = window_base
    for i in range(n):
        t = int(ts[i])
        if pending and t == pending[0][0]:
            start, end = pending.pop(0)
            if end in index:
                cur_right = index[end]
            else:  # NAB would raise; use the last row not after the end
                cur_right = int(np.searchsorted(ts, end, side="right")) - 1
            cur_end = end
            cur_width = float(cur_right - index[start] + 1)
            cur_id = wid
            wid += 1
        if cur_id >= 0:
            win[i] = cur_id
            in_w[i] = _sigma(-(cur_right - i + 1) / cur_width) / max_tp
        elif prev_right < 0:
            out_w[i] = _sigma(3.0)
        else:
            out_w[i] = _sigma(abs(prev_right - i) / float(prev_width - 1))
        if cur_id >= 0 and (t == cur_end or i == cur_right):
            prev_right, prev_width = i, cur_width
            cur_id = -1
    keep = np.arange(n) >= probation
    rows = np.nonzero(keep)[0]
    return rows, FileScoreParts(win[keep], in_w[keep], out_w[keep], wid - window_base)


def _sweep(
    scores: NDArray[np.float64], parts: FileScoreParts, costs: dict[str, float]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Thresholds (descending, starting at 1.1) and the total score at each."""
    tp_w, fp_w, fn_w = costs["tpWeight"], costs["fpWeight"], costs["fnWeight"]
    order = np.argsort(-scores, kind="stable")
    sc = scores[order]
    win = parts.window[order]
    in_w = parts.in_worth[order] * tp_w
    out_w = parts.out_worth[order] * fp_w
    present = np.unique(parts.window[parts.window >= 0])
    best = {int(w): -fn_w for w in present}
    total = -fn_w * len(present)
    fp_sum = 0.0
    thresholds = [1.1]
    totals = [total]
    cur = 1.1
    for k in range(sc.shape[0]):
        if sc[k] != cur:
            thresholds.append(float(sc[k]))
            totals.append(0.0)
            cur = sc[k]
        w = int(win[k])
        if w < 0:
            fp_sum += out_w[k]
            total += out_w[k]
        elif in_w[k] > best[w]:
            total += in_w[k] - best[w]
            best[w] = in_w[k]
        totals[-1] = total
    del fp_sum
    return np.array(thresholds), np.array(totals)


@dataclass(frozen=True)
class NabResult:
    profile: str
    threshold: float
    raw: float
    raw_null: float
    perfect: float
    score: float


def score_corpus(
    files: dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]],
    windows: dict[str, list[tuple[int, int]]],
    profiles: dict[str, dict[str, float]],
) -> dict[str, NabResult]:
    """NAB scores per profile. ``files``: relative path -> (epoch ms, scores); only paths that
    the label file lists are scored; ``perfect`` counts every window of the label file."""
    all_scores, all_win, all_in, all_out = [], [], [], []
    base = 0
    for rel in sorted(files):
        if rel not in windows:
            continue
        ts, sc = files[rel]
        rows, parts = prepare_file(ts, windows[rel], base)
        base += parts.n_windows
        all_scores.append(np.asarray(sc, dtype=np.float64)[rows])
        all_win.append(parts.window)
        all_in.append(parts.in_worth)
        all_out.append(parts.out_worth)
    cat = FileScoreParts(
        np.concatenate(all_win) if all_win else np.zeros(0, np.int64),
        np.concatenate(all_in) if all_in else np.zeros(0),
        np.concatenate(all_out) if all_out else np.zeros(0),
        base,
    )
    scores = np.concatenate(all_scores) if all_scores else np.zeros(0)
    n_label_windows = sum(len(v) for v in windows.values())
    out = {}
    for name, costs in profiles.items():
        th, tot = _sweep(scores, cat, costs)
        k = int(np.argmax(tot))  # first maximum = highest threshold among ties
        _, tot0 = _sweep(np.full_like(scores, 0.5), cat, costs)
        raw_null = float(np.max(tot0))
        perfect = costs["tpWeight"] * n_label_windows
        denom = perfect - raw_null
        norm = 100.0 * (float(tot[k]) - raw_null) / denom if denom else 0.0
        out[name] = NabResult(name, float(th[k]), float(tot[k]), raw_null, perfect, norm)
    return out


def score_results_dir(results_dir: Path, detector: str, data_dir: Path) -> dict[str, NabResult]:
    """Score ``<results_dir>/<detector>/<cat>/<detector>_<file>.csv`` against ``data_dir``."""
    windows = load_windows(data_dir / "labels" / "combined_windows.json")
    files = {}
    for rel in windows:
        cat, fname = rel.split("/", 1)
        p = results_dir / detector / cat / f"{detector}_{fname}"
        if p.exists():
            _, ts, _ = load_series(p)
            files[rel] = (ts, load_scores(p))
    return score_corpus(files, windows, load_profiles(data_dir))


def write_results(
    path: Path, texts: list[str], values: NDArray[np.float64], scores: NDArray[np.float64]
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["timestamp", "value", "anomaly_score"])
        for t, v, s in zip(texts, values.tolist(), scores.tolist(), strict=True):
            w.writerow([t, repr(v) if not float(v).is_integer() else int(v), f"{s:.9f}"])


def run_detector(
    data_dir: Path,
    out_dir: Path,
    detector: str,
    make: Callable[[], object],
) -> dict[str, NabResult]:
    """Stream every ``data_dir/data/<cat>/<file>.csv`` through a fresh detector (``make()``
    returns an object with ``score_learn(ts_ms, values) -> scores``), write NAB-format results,
    and score the labelled files."""
    files = {}
    for p in sorted((data_dir / "data").glob("*/*.csv")):
        rel = f"{p.parent.name}/{p.name}"
        texts, ts, vals = load_series(p)
        det = make()
        scores = np.asarray(det.score_learn(ts, vals), dtype=np.float64)  # type: ignore[attr-defined]
        scores = np.clip(np.nan_to_num(scores, nan=0.0), 0.0, 1.0)
        write_results(
            out_dir / detector / p.parent.name / f"{detector}_{p.name}", texts, vals, scores
        )
        files[rel] = (ts, scores)
    labels = data_dir / "labels" / "combined_windows.json"
    if not labels.exists():
        return {}
    return score_corpus(files, load_windows(labels), load_profiles(data_dir))


def main(argv: list[str] | None = None) -> int:
    """``python -m eddy.benchmarks.nab --data DIR --out DIR [--detectors eddy,hst]``: run detectors,
    score them and any reference results under ``DIR/reference/``; print a Markdown table."""
    import argparse
    import time

    from eddy.operators.anomaly.registry import DETECTORS

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--detectors", default="eddy", help="comma-separated registry names")
    a = p.parse_args(argv)
    rows: list[tuple[str, dict[str, NabResult], float]] = []
    for name in [d for d in a.detectors.split(",") if d]:
        if name not in DETECTORS:
            p.error(f"--detectors: unknown {name!r}; expected some of {sorted(DETECTORS)}")
        t0 = time.perf_counter()
        res = run_detector(a.data, a.out, name, DETECTORS[name])
        rows.append((name, res, time.perf_counter() - t0))
    ref = a.data / "reference"
    if ref.is_dir():
        for d in sorted(x.name for x in ref.iterdir() if x.is_dir()):
            rows.append((f"{d} (reference file)", score_results_dir(ref, d, a.data), float("nan")))
    profiles = list(load_profiles(a.data))
    print("| detector | " + " | ".join(profiles) + " | run time (s) |")
    print("|---" * (len(profiles) + 2) + "|")
    for name, res, secs in rows:
        cells = " | ".join(f"{res[pr].score:.2f}" for pr in profiles)
        print(f"| {name} | {cells} | {'' if secs != secs else f'{secs:.1f}'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
