"""Play the simulator against the reference engine in-process (the dataflow's logic, no Bytewax).

Deterministic for a seed: the same order of batches as the dataflow's simulator source (due
outcomes, then the next requests). Used by evaluations and tests that need many runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from eddy.operators.adserving import AdServingEngine
from eddy.schemas.results import Results
from eddy.sources.simulator import Simulator

__all__ = ["play"]


def play(engine: AdServingEngine, sim: Simulator, batch: int = 1_000) -> Iterator[Results]:
    """Yield the engine's :class:`Results` batch by batch until the simulator is exhausted."""
    while not sim.exhausted:
        rb = sim.next_requests(batch)
        ob = sim.due_outcomes(int(rb.ts[-1]) + 1)
        for b in (ob, rb):
            res = engine.process(b)
            dec = res.tables.get("decisions")
            if dec is not None:
                sim.respond(dec["decision_id"], dec["arm"].astype(np.int64))
            yield res
    yield engine.process(sim.due_outcomes(np.iinfo(np.int64).max))
    yield engine.finish()
