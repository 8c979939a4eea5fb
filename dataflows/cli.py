"""The ``eddy`` command line. Each subcommand lives in ``dataflows/commands/<name>.py`` and
provides ``add_parser(subparsers)``; heavy imports happen inside the command, so ``eddy sql``
starts fast."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

__all__ = ["COMMANDS", "UsageError", "main"]

COMMANDS = ("run", "check", "sql", "eval", "bench", "ope")


class UsageError(Exception):
    """A bad argument or config: reported as one line, exit code 2, no traceback."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="eddy",
        description="Streaming analytics: event-time features, anomaly detection, bandits.",
    )
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"eddy.dataflows.commands.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    import eddy.operators  # noqa: F401 - pins BLAS to one thread before numpy loads (see there)

    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        code = args.func(args)
    except UsageError as e:
        print(f"eddy {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
