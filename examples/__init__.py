"""The shipped pipeline specs (``*.toml``), installed as package data; ``adserving.toml`` is
the reference pipeline that ``eddy run`` runs without ``--pipeline``."""
