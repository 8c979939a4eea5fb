"""`eddy bench SUITE [--quick] [--json FILE]`: run a benchmark suite, print/write JSON.

Suites are a name -> runner table (:data:`SUITES`); a runner takes ``quick`` and returns a
JSON-able dict. Add a suite by adding an entry. ``eddy bench throughput --pipeline FILE``
measures any spec against its floor (``benchmarks/throughput.py``). ``eddy bench soak --minutes
M [--rate R] [--pipeline FILE] [--out DIR]`` runs a pipeline ``--forever`` and records memory,
WAL and file size, throughput and per-second p99 over time (``benchmarks/soak.py``). ``eddy
bench scaling [--pipeline FILE] [--workers 1,2] [--events N] [--repeat R] [--shards N]`` measures
events/s of a spec with 1, 2, ... worker processes on one recorded input and checks they compute
the same results (``benchmarks/scaling.py``). Both take minutes, so neither is part of "all
suites".
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
HARNESS_SUITES = ("throughput", "latency", "batch_size", "memory", "quality")


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
        help=f"one of: {', '.join(SUITES)} (default: all), soak (a long run: --minutes M) or "
        "scaling (events/s by worker count: --workers 1,2)",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes (a quick check)")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the results here")
    p.add_argument("--out", metavar="DIR", default="bench-results", help="PNG plots, bench.md")
    p.add_argument(
        "--pipeline",
        metavar="FILE",
        help="throughput: measure this spec against its floor (default: the reference, "
        "against every baseline); soak, scaling: the spec to run",
    )
    add_arguments(p)
    p.add_argument(
        "--workers", metavar="N,M", help="scaling: worker counts to compare (default: 1,2)"
    )
    p.add_argument(
        "--events", type=int, metavar="N", help="scaling: events to record (default: the spec's)"
    )
    p.add_argument(
        "--repeat", type=int, metavar="R", help="scaling: timed runs per count, best kept (2)"
    )
    p.add_argument(
        "--shards", type=int, metavar="N", help="scaling: keyed-state shards (one per worker)"
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from eddy.dataflows.cli import UsageError

    if args.suite != "scaling":
        for flag in _SCALING_FLAGS:
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag} applies to the scaling suite: eddy bench scaling ...")
    if args.suite == "soak":
        return _run_soak(args)
    if args.suite == "scaling":
        return _run_scaling(args)
    if args.pipeline is not None and args.suite != "throughput":
        raise UsageError(
            "--pipeline applies to the throughput, scaling and soak suites: "
            "eddy bench throughput --pipeline FILE ..."
        )
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


_SCALING_FLAGS = ("workers", "events", "repeat", "shards")


def _worker_counts(text: str | None) -> list[int]:
    """``--workers 1,2,4`` -> ``[1, 2, 4]`` (default ``[1, 2]``); distinct numbers >= 1."""
    from eddy.dataflows.cli import UsageError

    if text is None:
        return [1, 2]
    try:
        counts = [int(x) for x in text.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or len(set(counts)) != len(counts):
        raise UsageError(
            f"--workers: expected a comma list of distinct numbers >= 1 (like 1,2,4), got {text!r}"
        )
    return counts


def _run_scaling(args: argparse.Namespace) -> int:
    """``eddy bench scaling``: events/s by worker count and ``same_results`` on stdout, the
    JSON of ``run_scaling`` to --json, progress on stderr."""
    import sys
    from pathlib import Path

    from eddy.benchmarks.scaling import run_scaling
    from eddy.dataflows.cli import UsageError
    from eddy.dataflows.commands.run import load_pipeline

    workers = _worker_counts(args.workers)
    if args.events is not None and args.events < 1:
        raise UsageError("--events: expected a number >= 1")
    repeat = 2 if args.repeat is None else args.repeat
    if repeat < 1:
        raise UsageError("--repeat: expected a number >= 1")
    if args.shards is not None and not 1 <= args.shards <= 256:
        raise UsageError("--shards: expected a number from 1 to 256")
    if args.json and not Path(args.json).resolve().parent.is_dir():
        raise UsageError(f"cannot write --json {args.json!r}: no such directory")
    try:
        spec = load_pipeline(args.pipeline)
    except UsageError as e:
        raise UsageError(f"--pipeline: {e}") from None
    try:
        result = run_scaling(
            spec,
            workers,
            events=args.events,
            repeat=repeat,
            shards=args.shards,
            log=lambda m: print(m, file=sys.stderr),
        )
    except ValueError as e:  # a spec whose input cannot be recorded (a Kafka stream)
        raise UsageError(str(e)) from None
    except (RuntimeError, OSError) as e:  # a run failed (or timed out): its error says why
        print(f"eddy bench scaling: error: {e}", file=sys.stderr)
        return 1
    rates = result["scaling"]
    base = rates[str(workers[0])]
    print(f"scaling of {result['pipeline']} ({result['events']:,} events, best of {repeat})")
    print(f"{'workers':>7}  {'events/s':>12}  {'speedup':>7}  {'median of rounds':>16}")
    medians = result["median_round_speedup"]
    for n in workers:
        eps = rates[str(n)]
        median = f"{medians[str(n)]:>15.2f}x" if str(n) in medians else f"{'':>16}"
        print(f"{n:>7}  {eps:>12,.0f}  {eps / base:>6.2f}x  {median}")
    print(f"same_results: {json.dumps(result['same_results'])}")
    if args.json:  # after the table: a failed write loses no figure
        try:
            with open(args.json, "w") as f:
                f.write(json.dumps(result, indent=2) + "\n")
        except OSError as e:
            raise UsageError(f"cannot write --json {args.json!r}: {e}") from e
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
