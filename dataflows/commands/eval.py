"""`eddy eval` — quality evaluations, as sub-subcommands.

``eddy eval nab --data DIR --out DIR [--detector NAME]`` streams every series under
``DIR/data/<category>/*.csv`` through the same streaming detector code the pipeline uses, writes
NAB-format results (``<out>/<detector>/<category>/<detector>_<file>.csv``) and prints the NAB
profile scores of the series that ``DIR/labels/combined_windows.json`` labels.

``eddy eval nab --protocol loco --data DIR [--candidates a,b] [--detector NAME] [--json FILE]``
prints the leave-one-category-out report instead (``benchmarks/nab_loco.py``): per category, the
score when the candidate and threshold are tuned on the other categories, next to the in-hindsight
score and to ``--detector`` untuned. It writes no results files, so it takes no ``--out``.

``eddy eval incidents [--pipeline FILE] [--events N] [--seeds 0,1,2] [--grace D] [--warmup D]
[--json FILE]`` plays a spec (default: the reference) against its simulator (in-process,
deterministic per seed) and prints the detection precision, recall and median delay of its
detect stages on the simulator's labelled incidents (``benchmarks/incidents.py`` documents the
matching rule).

Evaluations register themselves in ``_SUBCOMMANDS``. Building the parser imports nothing heavy
(no numba, no bytewax): ``eddy sql`` shares it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


# keep in step with operators.anomaly.registry.DETECTORS (checked at run time and by a test);
# importing the registry here would pull numba into every `eddy` command
_NAB_DETECTORS = ("eddy", "eddy_hst", "eddy_novelty", "hst")


def _add_nab(sub: Any) -> None:
    p = sub.add_parser("nab", help="run a detector over a NAB-layout directory and score it")
    p.add_argument("--data", required=True, type=Path, help="NAB-layout directory (data/, labels/)")
    p.add_argument(
        "--protocol",
        choices=("single", "loco"),
        default="single",
        help="single: score one detector over every category (default); loco: "
        "leave-one-category-out, tuning the candidate and threshold on the other categories",
    )
    p.add_argument("--out", type=Path, help="results directory to write (--protocol single)")
    p.add_argument(
        "--detector",
        default="eddy",
        help=f"detector name: one of {', '.join(_NAB_DETECTORS)} (default: eddy); with "
        "--protocol loco, the default candidate scored untuned",
    )
    p.add_argument(
        "--candidates",
        metavar="A,B",
        help="--protocol loco: comma-separated detector names to choose from (default: all)",
    )
    p.add_argument("--json", type=Path, help="--protocol loco: also write the numbers as JSON here")
    p.set_defaults(func=_run_nab)


def _run_nab(args: argparse.Namespace) -> int:
    from eddy.benchmarks.nab import run_detector
    from eddy.dataflows.cli import UsageError
    from eddy.operators.anomaly.registry import DETECTORS

    data: Path = args.data
    if not (data / "data").is_dir():
        raise UsageError(f"--data {data}: expected a NAB-layout directory with a data/ folder")
    if args.detector not in DETECTORS:
        raise UsageError(
            f"--detector {args.detector!r}: expected one of {', '.join(sorted(DETECTORS))}"
        )
    if not any((data / "data").glob("*/*.csv")):
        raise UsageError(f"--data {data}: no data/<category>/*.csv files found")
    if args.protocol == "loco":
        return _run_nab_loco(args)
    for flag, value in (("--candidates", args.candidates), ("--json", args.json)):
        if value is not None:
            raise UsageError(f"{flag} applies to --protocol loco")
    if args.out is None:
        raise UsageError("--out: required with --protocol single (the results directory to write)")
    results = run_detector(data, args.out, args.detector, DETECTORS[args.detector])
    print(f"results written to {args.out / args.detector}")
    if not results:
        print("no labels/combined_windows.json: nothing scored")
        return 0
    print(f"{'profile':<22}{'score':>8}  threshold")
    for name, r in results.items():
        print(f"{name:<22}{r.score:>8.2f}  {r.threshold:.9f}")
    return 0


def _run_nab_loco(args: argparse.Namespace) -> int:
    from eddy.benchmarks import nab
    from eddy.benchmarks.nab_loco import check_candidates, format_table, loco, run_candidates
    from eddy.dataflows.cli import UsageError
    from eddy.operators.anomaly.registry import DETECTORS

    data: Path = args.data
    if args.out is not None:
        raise UsageError("--out applies to --protocol single (loco writes no results files)")
    try:
        names = check_candidates(
            ",".join(DETECTORS) if args.candidates is None else args.candidates,
            args.detector,
            DETECTORS,
            "--detector",
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    labels = data / "labels" / "combined_windows.json"
    if not labels.exists():
        raise UsageError(f"--data {data}: --protocol loco needs labels/combined_windows.json")
    windows = nab.load_windows(labels)
    files = [(p.parent.name, p.name) for p in (data / "data").glob("*/*.csv")]
    cats = {c for c, f in files if f"{c}/{f}" in windows}
    if len(cats) < 2:
        found = ", ".join(sorted(cats)) or "none"
        raise UsageError(
            f"--data {data}: --protocol loco needs 2+ labelled categories; has {found}"
        )
    res = loco(run_candidates(data, names), windows, nab.load_profiles(data), args.detector)
    print(format_table(res))
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(res.as_dict(), indent=2) + "\n", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--json {args.json}: cannot write: {e}") from None
        print(f"report written to {args.json}")
    return 0


def _add_incidents(sub: Any) -> None:
    p = sub.add_parser(
        "incidents",
        help="detection precision, recall and delay on a simulator's labelled incidents",
        description="Play a pipeline spec against its simulator, once per seed, and score the "
        "anomalies of its detect stages against the incidents the simulator labelled.",
    )
    p.add_argument("--pipeline", metavar="FILE", help="pipeline spec (TOML); default: reference")
    p.add_argument(
        "--events",
        type=int,
        metavar="N",
        help="the simulator's events per seed (default: the spec's [simulator] events)",
    )
    p.add_argument(
        "--seeds", default="0,1,2", help="comma-separated simulator seeds (default 0,1,2)"
    )
    p.add_argument(
        "--grace",
        default="10s",
        metavar="DURATION",
        help="an anomaly up to this long after an incident's end still detects it "
        '(default "10s"; hours for hourly detectors: "6h")',
    )
    p.add_argument(
        "--warmup",
        default="20s",
        metavar="DURATION",
        help='incidents starting this soon after the start are not scored (default "20s")',
    )
    p.add_argument("--json", type=Path, help="also write the full report (per seed) as JSON here")
    p.set_defaults(func=_run_incidents)


def _seeds(text: str) -> list[int]:
    from eddy.dataflows.cli import UsageError

    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or any(s < 0 for s in seeds):
        raise UsageError(f"--seeds {text!r}: expected comma-separated integers >= 0, e.g. 0,1,2")
    return seeds


def _duration(flag: str, text: str) -> int:
    from eddy.dataflows.cli import UsageError
    from eddy.schemas.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as e:
        raise UsageError(f"{flag}: {e}") from None


def _run_incidents(args: argparse.Namespace) -> int:
    from eddy.dataflows.cli import UsageError
    from eddy.dataflows.commands.run import load_pipeline

    if args.events is not None and args.events < 1:
        raise UsageError(f"--events {args.events}: expected an integer >= 1")
    seeds = _seeds(args.seeds)
    grace, warmup = _duration("--grace", args.grace), _duration("--warmup", args.warmup)
    spec = load_pipeline(args.pipeline)
    if not spec.detect:
        raise UsageError(f"pipeline {spec.name!r} has no [[detect]] stage: nothing to score")
    if not any(s.source_kind == "simulator" for s in spec.streams):
        raise UsageError(
            f"pipeline {spec.name!r}: no stream reads from a simulator, so no incident is labelled"
        )
    from eddy.benchmarks.incidents import evaluate_seeds

    try:
        report = evaluate_seeds(spec, args.events, seeds, grace_ms=grace, warmup_ms=warmup)
    except ValueError as e:  # the simulator refused its options
        raise UsageError(str(e)) from None
    print("\n".join(report.lines()))
    if not any(r.scored for r in report.reports):
        print(
            "warning: no incident was scored (the run is too short for the warm-up, or none "
            "was injected): more --events, a shorter --warmup, or a simulator option"
        )
    if args.json is not None:
        text = json.dumps(report.as_dict(), indent=2, allow_nan=False)  # null, never NaN
        try:
            args.json.write_text(text + "\n", encoding="utf-8")
        except OSError as e:
            raise UsageError(f"--json {args.json}: cannot write: {e}") from None
        print(f"report written to {args.json}")
    return 0


_SUBCOMMANDS: dict[str, Callable[[Any], None]] = {"nab": _add_nab, "incidents": _add_incidents}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="quality evaluations (NAB, simulator incidents)")
    evals = p.add_subparsers(dest="eval_command", required=True, parser_class=type(p))
    for add in _SUBCOMMANDS.values():
        add(evals)
