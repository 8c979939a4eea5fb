"""One module per ``eddy`` subcommand, each exposing ``add_parser(subparsers)``."""
