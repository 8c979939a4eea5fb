"""Fixtures for the pipeline tests: small settings and a closed-loop driver without Bytewax."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from dataflows.config import Settings, load_settings
from operators.adserving import AdServingEngine
from schemas.results import Results
from sources.simulator import Simulator


@pytest.fixture
def settings() -> Callable[..., Settings]:
    """``settings(events=N, **simulator_changes)``: the defaults with a small simulator."""

    def make(events: int = 6_000, **sim: object) -> Settings:
        s = load_settings()
        return replace(s, simulator=replace(s.simulator, n_events=events, **sim))

    return make


def drive(engine: AdServingEngine, sim: Simulator, batch: int = 500) -> list[Results]:
    """Play the simulator against the engine (what the dataflow does, minus Bytewax)."""
    outs: list[Results] = []
    while not sim.exhausted:
        rb = sim.next_requests(batch)
        ob = sim.due_outcomes(int(rb.ts[-1]) + 1)
        for b in (ob, rb):
            res = engine.process(b)
            outs.append(res)
            dec = res.tables.get("decisions")
            if dec is not None:
                sim.respond(dec["decision_id"], dec["arm"].astype(np.int64))
    outs.append(engine.process(sim.due_outcomes(np.iinfo(np.int64).max)))
    outs.append(engine.finish())
    return outs


def merged(outs: list[Results]) -> Results:
    total = Results()
    for r in outs:
        total.merge(r)
    return total
