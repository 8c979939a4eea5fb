"""`eddy sql`: ad-hoc read-only SQL over the results, also while a run is going on.

If a running engine advertises a query endpoint for the file (``<db>.endpoint.json``) and
the advertisement can be trusted (ours, private, loopback, live pid), the query goes there;
otherwise the file is opened read-only, and a file that is present but not trusted is named on
stderr with the reason. Only single read statements run, and they read nothing but the
database. Start-up stays fast: nothing from bytewax/river/numba is imported on this path.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

__all__ = ["DEFAULT_DUCKDB", "add_parser"]

DEFAULT_DUCKDB = "eddy.duckdb"

_EPILOG = """examples:
  eddy sql "SELECT arm, count(*) AS n, avg(propensity) FROM decisions GROUP BY ALL"
  eddy sql --format csv "SELECT * FROM anomalies ORDER BY event_time DESC LIMIT 20"
  echo "SHOW TABLES" | eddy sql -
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "sql",
        help="run one read-only SQL query on the results (works while `eddy run` is running)",
        description=(
            "Run one read-only SQL statement (SELECT, WITH, DESCRIBE, SHOW, SUMMARIZE, EXPLAIN) "
            "on the DuckDB results. While `eddy run` owns the file, the query goes through its "
            "local query endpoint; otherwise the file is opened read-only."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("query", help='the SQL statement, or "-" to read it from stdin')
    p.add_argument(
        "--duckdb",
        default=DEFAULT_DUCKDB,
        metavar="PATH",
        help=f"the DuckDB file (default: {DEFAULT_DUCKDB})",
    )
    p.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="output: aligned table (default), CSV with a header, or a JSON array of objects",
    )
    p.add_argument(
        "--max-rows",
        type=int,
        default=10_000,
        metavar="N",
        help="print at most N >= 1 rows (default: 10000; the table says when it truncated)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="give up on a query after this long (default: 60; the engine caps it at 30)",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="say on stderr where the query ran and how long",
    )
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from eddy.dataflows.cli import UsageError
    from eddy.sinks.query_client import QueryError, format_result, run_query, truncation

    if args.max_rows < 1:
        raise UsageError(f"--max-rows: expected >= 1, got {args.max_rows}")
    if not math.isfinite(args.timeout) or args.timeout <= 0:
        raise UsageError(f"--timeout: expected a finite number of seconds > 0, got {args.timeout}")
    sql = sys.stdin.read() if args.query == "-" else args.query

    def warn(message: str) -> None:
        print(f"eddy sql: {message}", file=sys.stderr)

    try:
        result = run_query(
            args.duckdb, sql, max_rows=args.max_rows, timeout_s=args.timeout, warn=warn
        )
    except QueryError as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), "query failed")
        raise UsageError(first) from None
    sys.stdout.write(format_result(result, args.format))
    if args.verbose:
        print(f"-- via {result.via}, {result.elapsed_ms:.1f} ms", file=sys.stderr)
    if result.truncated and args.format != "table":
        print(f"eddy sql: output {truncation(result)}", file=sys.stderr)
    return 0
