"""`eddy eval` — quality evaluations, as sub-subcommands.

``eddy eval nab --data DIR --out DIR [--detector NAME]`` streams every series under
``DIR/data/<category>/*.csv`` through the same streaming detector code the pipeline uses, writes
NAB-format results (``<out>/<detector>/<category>/<detector>_<file>.csv``) and prints the NAB
profile scores of the series that ``DIR/labels/combined_windows.json`` labels.
Further evaluations (e.g. ``incidents``) register themselves in ``_SUBCOMMANDS``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]


def _add_nab(sub: Any) -> None:
    from operators.anomaly.registry import DETECTORS

    p = sub.add_parser("nab", help="run a detector over a NAB-layout directory and score it")
    p.add_argument("--data", required=True, type=Path, help="NAB-layout directory (data/, labels/)")
    p.add_argument("--out", required=True, type=Path, help="results directory to write")
    p.add_argument(
        "--detector",
        default="eddy",
        help=f"detector name: one of {', '.join(sorted(DETECTORS))} (default: eddy)",
    )
    p.set_defaults(func=_run_nab)


def _run_nab(args: argparse.Namespace) -> int:
    from benchmarks.nab import run_detector
    from dataflows.cli import UsageError
    from operators.anomaly.registry import DETECTORS

    data: Path = args.data
    if not (data / "data").is_dir():
        raise UsageError(f"--data {data}: expected a NAB-layout directory with a data/ folder")
    if args.detector not in DETECTORS:
        raise UsageError(
            f"--detector {args.detector!r}: expected one of {', '.join(sorted(DETECTORS))}"
        )
    if not any((data / "data").glob("*/*.csv")):
        raise UsageError(f"--data {data}: no data/<category>/*.csv files found")
    results = run_detector(data, args.out, args.detector, DETECTORS[args.detector])
    print(f"results written to {args.out / args.detector}")
    if not results:
        print("no labels/combined_windows.json: nothing scored")
        return 0
    print(f"{'profile':<22}{'score':>8}  threshold")
    for name, r in results.items():
        print(f"{name:<22}{r.score:>8.2f}  {r.threshold:.9f}")
    return 0


_SUBCOMMANDS: dict[str, Callable[[Any], None]] = {"nab": _add_nab}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("eval", help="quality evaluations (NAB, ...)")
    evals = p.add_subparsers(dest="eval_command", required=True, parser_class=type(p))
    for add in _SUBCOMMANDS.values():
        add(evals)
