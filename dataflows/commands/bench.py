"""`eddy bench SUITE [--quick] [--json FILE]`: run a benchmark suite, print/write JSON.

Suites are a name -> runner table (:data:`SUITES`); a runner takes ``quick`` and returns a
JSON-able dict. Add a suite by adding an entry. ``eddy bench throughput --pipeline FILE``
measures any spec against its floor (``benchmarks/throughput.py``). ``eddy bench soak --minutes
M [--rate R] [--pipeline FILE] [--out DIR]`` runs a pipeline ``--forever`` and records memory,
WAL and file size, throughput and per-second p99 over time (``benchmarks/soak.py``); it takes
minutes, so it is never part of "all suites".
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any

__all__ = ["HARNESS_SUITES", "SUITES", "add_parser"]


def _features(quick: bool) -> dict[str, Any]:
    from eddy.benchmarks.features import run

    return run(quick=quick)


#: the suites of benchmarks/harness.py (they also write PNG plots and bench.md to --out)
HARNESS_SUITES = ("throughput", "latency", "scaling", "memory", "quality")


def _harness(name: str) -> Callable[[bool], dict[str, Any]]:
    def runner(quick: bool) -> dict[str, Any]:
        from eddy.benchmarks.harness import run_suites

        return dict(run_suites([name], quick, log=lambda _: None)["suites"][name])

    return runner


#: suite name -> runner(quick) -> JSON-able results
SUITES: dict[str, Callable[[bool], dict[str, Any]]] = {
    "features": _features,
    **{name: _harness(name) for name in HARNESS_SUITES},
}


def add_parser(sub: Any) -> None:
    from eddy.benchmarks.soak import add_arguments

    p = sub.add_parser("bench", help="run a benchmark suite and write JSON results")
    p.add_argument(
        "suite",
        nargs="?",
        default=None,
        help=f"one of: {', '.join(SUITES)} (default: all), or soak (a long run: --minutes M)",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes (a quick check)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results here")
    p.add_argument("--out", metavar="DIR", default="bench-results", help="PNG plots, bench.md")
    p.add_argument(
        "--pipeline",
        metavar="FILE",
        help="throughput only: measure this spec against its floor (default: the reference, "
        "against every baseline); soak: the spec to run",
    )
    add_arguments(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from eddy.dataflows.cli import UsageError

    if args.suite == "soak":
        return _run_soak(args)
    if args.pipeline is not None and args.suite != "throughput":
        raise UsageError("--pipeline applies to the throughput suite: eddy bench throughput ...")
    if args.suite is None or args.suite in HARNESS_SUITES:
        return _run_harness(args)
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


def _run_soak(args: argparse.Namespace) -> int:
    """``eddy bench soak``: soak.json and soak.png to --out (--json: a copy of the JSON), the
    summary on stdout, progress on stderr."""
    from eddy.benchmarks.soak import run, settings_from
    from eddy.dataflows.cli import UsageError

    try:
        result = run(settings_from(args))
    except ValueError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write results ({e})") from e
    except RuntimeError as e:  # the run under test failed: its log says why
        import sys

        print(f"eddy bench soak: error: {e}", file=sys.stderr)
        return 1
    if args.json:
        try:
            with open(args.json, "w") as f:
                f.write(json.dumps(result, indent=1) + "\n")
        except OSError as e:
            raise UsageError(f"cannot write --json {args.json!r}: {e}") from e
    print(json.dumps(result["summary"], indent=2))
    return 0


def _run_harness(args: argparse.Namespace) -> int:
    """All suites (no name) or one harness suite: JSON to --json and --out/bench.json, PNGs and
    bench.md to --out; the markdown report on stdout, progress on stderr."""
    import sys

    from eddy.benchmarks.harness import run_suites
    from eddy.benchmarks.report import markdown
    from eddy.dataflows.cli import UsageError
    from eddy.dataflows.commands.run import load_pipeline

    spec = None if args.pipeline is None else load_pipeline(args.pipeline)
    names = [args.suite] if args.suite else list(HARNESS_SUITES)
    extra = {} if args.suite else {n: r for n, r in SUITES.items() if n not in HARNESS_SUITES}
    try:
        out = run_suites(
            names,
            bool(args.quick),
            args.out,
            args.json,
            log=lambda m: print(m, file=sys.stderr),
            extra=extra,
            pipeline=spec,
        )
    except OSError as e:
        raise UsageError(f"cannot write results ({e})") from e
    except ValueError as e:  # a spec whose input cannot be recorded (a Kafka stream)
        raise UsageError(str(e)) from None
    print(markdown(out))
    return 0
