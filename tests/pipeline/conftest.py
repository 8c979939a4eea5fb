"""Fixtures for the pipeline tests: small settings and a closed-loop driver without Bytewax."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from eddy.benchmarks.closed_loop import play
from eddy.dataflows.config import Settings, load_settings
from eddy.operators.adserving import AdServingEngine
from eddy.schemas.results import Results
from eddy.sources.simulator import Simulator


@pytest.fixture
def settings() -> Callable[..., Settings]:
    """``settings(events=N, **simulator_changes)``: the defaults with a small simulator."""

    def make(events: int = 6_000, **sim: object) -> Settings:
        s = load_settings()
        return replace(s, simulator=replace(s.simulator, n_events=events, **sim))

    return make


def drive(engine: AdServingEngine, sim: Simulator, batch: int = 500) -> list[Results]:
    """Play the simulator against the engine (what the dataflow does, minus Bytewax)."""
    return list(play(engine, sim, batch))


def merged(outs: list[Results]) -> Results:
    total = Results()
    for r in outs:
        total.merge(r)
    return total
