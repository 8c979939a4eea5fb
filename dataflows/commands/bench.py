"""`eddy bench SUITE [--quick] [--json FILE]`: run a benchmark suite, print/write JSON.

Suites are a name -> runner table (:data:`SUITES`); a runner takes ``quick`` and returns a
JSON-able dict. Add a suite by adding an entry.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

__all__ = ["SUITES", "add_parser"]


def _features(quick: bool) -> dict[str, Any]:
    from benchmarks.features import run

    return run(quick=quick)


#: suite name -> runner(quick) -> JSON-able results
SUITES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "features": _features,
}


def add_parser(sub: Any) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite and write JSON results")
    p.add_argument("suite", help=f"one of: {', '.join(SUITES)}")
    p.add_argument("--quick", action="store_true", help="smaller sizes (a quick check)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results here")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from dataflows.cli import UsageError

    runner = SUITES.get(args.suite)
    if runner is None:
        known = ", ".join(SUITES)
        raise UsageError(f"suite {args.suite!r} not available yet (available: {known})")
    result = runner(bool(args.quick))
    text = json.dumps(result, indent=2)
    if args.json:
        try:
            with open(args.json, "w") as f:
                f.write(text + "\n")
        except OSError as e:
            raise UsageError(f"cannot write --json {args.json!r}: {e}") from e
    print(text)
    return 0
