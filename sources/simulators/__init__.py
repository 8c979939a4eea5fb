"""Simulators a pipeline spec can name as its source: ``source = "simulator:NAME"``.

Each is a :class:`~sources.simulators.base.ClosedLoopSimulator` emitting JSON lines per stream
(see its ``STREAMS``) and configured by the spec's ``[simulator]`` table (see its ``OPTIONS``):

- ``adserving``: ad requests choosing a demand partner; outcomes ~1.5 s later (closed loop);
- ``logistics``: shipments choosing a carrier; deliveries hours later (closed loop);
- ``nab``: NAB labelled series replayed in event-time order (open loop).

:class:`~sources.simulators.source.ClosedLoopSource` plays any of them in a Bytewax dataflow.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from eddy.sources.simulators.adserving import AdServingSimulator
from eddy.sources.simulators.base import ClosedLoopSimulator, Incident, SimStream
from eddy.sources.simulators.logistics import LogisticsSimulator
from eddy.sources.simulators.nab import NabReplay

__all__ = [
    "SIMULATORS",
    "ClosedLoopSimulator",
    "Incident",
    "SimStream",
    "make_simulator",
]

SIMULATORS: Mapping[str, type[ClosedLoopSimulator]] = {
    cls.name: cls for cls in (AdServingSimulator, LogisticsSimulator, NabReplay)
}


def make_simulator(
    name: str,
    options: Mapping[str, Any] | None = None,
    seed: int | None = None,
    *,
    base_dir: Path | None = None,
) -> ClosedLoopSimulator:
    """The simulator ``name`` with ``options`` (a ``[simulator]`` table); ``seed``, when
    given, overrides ``options["seed"]``; relative paths in options are relative to
    ``base_dir`` (the spec's directory). Raises ``ValueError`` naming the problem."""
    cls = SIMULATORS.get(name)
    if cls is None:
        raise ValueError(f"simulator: unknown {name!r}; known: {', '.join(sorted(SIMULATORS))}")
    return cls(options or {}, seed, base_dir)
