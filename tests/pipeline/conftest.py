"""Fixtures for the pipeline tests: the reference spec with a small simulator, and a
closed-loop driver of the engine without Bytewax."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from eddy.dataflows.commands.run import reference_spec_path
from eddy.operators.engine import PipelineEngine
from eddy.schemas.batch import EventBatch
from eddy.schemas.decode import decode_lines
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec
from eddy.schemas.spec_load import as_mapping, load_spec
from eddy.sources.simulators import make_simulator
from eddy.sources.simulators.base import ClosedLoopSimulator

NOW_NS = 1_800_000_000_000_000_000  # a fixed wall clock: outputs depend on the input only


@pytest.fixture
def reference() -> Callable[..., PipelineSpec]:
    """``reference(events=N, **simulator_options)``: the reference spec, a small simulator."""

    def make(events: int = 6_000, **sim: Any) -> PipelineSpec:
        spec = load_spec(reference_spec_path())
        options = {**as_mapping(spec.simulator), "events": events, **sim}
        return replace(spec, simulator=tuple(sorted(options.items())))

    return make


def simulator_of(spec: PipelineSpec) -> ClosedLoopSimulator:
    options = dict(as_mapping(spec.simulator))
    return make_simulator(spec.streams[0].source_target, options, options.pop("seed", 0))


def decoded(spec: PipelineSpec, stream: str, lines: list[bytes], start: int = 1) -> EventBatch:
    batch, dead = decode_lines(
        spec.stream(stream), lines, list(range(start, start + len(lines))), f"test:{stream}"
    )
    assert not dead, dead[0].reason
    return batch


def play(
    spec: PipelineSpec, sim: ClosedLoopSimulator, engine: PipelineEngine, batch: int = 500
) -> Iterator[Results]:
    """The simulator against the engine, decisions fed back (what the dataflow does)."""
    streams = {s.name: i * 1_000 for i, s in enumerate(spec.streams)}
    positions = dict.fromkeys(streams, 1)
    while True:
        try:
            got = sim.next_batch(batch)
        except StopIteration:
            break
        if got is None:
            raise AssertionError("the simulator waits for decisions the engine already made")
        items = []
        for stream, lines in got:
            items.append((streams[stream], decoded(spec, stream, lines, positions[stream])))
            positions[stream] += len(lines)
        res = engine.process_many(items, NOW_NS, spec.batch_size)
        dec = res.tables.get("decisions")
        if dec is not None:
            sim.respond(np.asarray(dec["decision_id"]), np.asarray(dec["arm"]))
        yield res
    yield engine.finish(NOW_NS)


def drive(spec: PipelineSpec, batch: int = 500) -> tuple[Results, ClosedLoopSimulator]:
    sim = simulator_of(spec)
    return merged(list(play(spec, sim, PipelineEngine(spec), batch))), sim


def merged(outs: list[Results]) -> Results:
    total = Results()
    for r in outs:
        total.merge(r)
    return total
