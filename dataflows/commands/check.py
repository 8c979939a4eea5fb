"""`eddy check FILE`: validate a pipeline spec and print what it will compute."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser"]


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "check",
        help="validate a pipeline spec and print what it will compute",
        description="Validate a pipeline spec (TOML) and print its streams, stages and the "
        "tables they write. A bad spec prints one line naming the key and exits with code 2.",
    )
    p.add_argument("file", metavar="FILE", help="pipeline spec (TOML)")
    p.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    from eddy.dataflows.commands.run import load_pipeline
    from eddy.dataflows.plan import describe

    spec = load_pipeline(args.file)
    print(describe(spec))
    print(f"\n{args.file}: ok")
    return 0
