"""A spec's simulator against :class:`PipelineEngine` in one process: the dataflow minus Bytewax.

Evaluations play thousands of simulated seconds per seed; without Bytewax's scheduling the run
is deterministic for a seed (the same batches, cut the same way, in the same order), so a
report can be compared across runs and asserted in tests.

:class:`SimFeed` turns a simulator's ``[(stream, lines)]`` batches into the engine's
``(partition, EventBatch)`` items exactly as the dataflow does: the spec's stream names
(``source = "simulator:NAME/STREAM"`` renames a simulator stream), the partition numbers of
``sources.simulators.source`` (``1000 * <spec stream index> + <sorted simulator stream
index>``), positions counted from 1 per stream, and :func:`schemas.decode.decode_lines`.
:func:`play` closes the loop: every decision of a decide stage on the simulator's decision
stream goes back through ``respond(ids, arm names)``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import numpy as np

from eddy.dataflows.flow import PARTITIONS_PER_STREAM
from eddy.dataflows.run_options import RunOptions
from eddy.dataflows.runner import make_run_simulator
from eddy.operators.engine import PipelineEngine
from eddy.schemas.batch import EventBatch
from eddy.schemas.decode import decode_lines
from eddy.schemas.records import DeadLetter
from eddy.schemas.results import Results, dead_letter_results
from eddy.schemas.spec import PipelineSpec
from eddy.schemas.spec_load import as_mapping
from eddy.sources.simulators.base import ClosedLoopSimulator

__all__ = ["SimFeed", "play", "spec_simulator", "with_simulator"]


def with_simulator(spec: PipelineSpec, **options: Any) -> PipelineSpec:
    """``spec`` with ``[simulator]`` options changed; ``seed`` also becomes the policy seed
    (what ``eddy run --seed`` does)."""
    merged = {**as_mapping(spec.simulator), **options}
    out = replace(spec, simulator=tuple(sorted(merged.items())))
    return replace(out, seed=int(options["seed"])) if "seed" in options else out


def spec_simulator(spec: PipelineSpec, events: int | None = None) -> ClosedLoopSimulator:
    """The simulator the spec's streams name, built as ``eddy run`` builds it."""
    sim = make_run_simulator(RunOptions(spec, events=events))
    if sim is None:
        raise ValueError(f"pipeline {spec.name!r}: no stream reads from a simulator")
    return sim


class SimFeed:
    """Decodes a simulator's batches into the engine's items (see the module docstring).

    ``decision_stream`` is the spec's name of the simulator's decision stream (None: the
    simulator decides nothing, or the spec does not read that stream)."""

    def __init__(self, spec: PipelineSpec, sim: ClosedLoopSimulator | None = None) -> None:
        self.spec = spec
        self.sim = sim = sim if sim is not None else spec_simulator(spec)
        self.names: dict[str, str] = {}  # simulator stream -> spec stream
        for s in spec.streams:
            kind, _, target = s.source.partition(":")
            if kind == "simulator":
                self.names[target.partition("/")[2] or s.name] = s.name
        order = sorted(sim.STREAMS)
        self.partitions = {
            sim_name: [x.name for x in spec.streams].index(name) * PARTITIONS_PER_STREAM
            + order.index(sim_name)
            for sim_name, name in self.names.items()
        }
        self.decision_stream = self.names.get(sim.decision_stream or "")
        self.last_ms: dict[str, int] = {}  # spec stream -> largest event time fed so far
        self._next_pos = dict.fromkeys(self.names, 1)

    def items(
        self, got: list[tuple[str, list[bytes]]], ingest_ns: int = 0
    ) -> tuple[list[tuple[int, EventBatch]], list[DeadLetter]]:
        """``(partition, batch)`` items of one simulator batch, and the lines that failed."""
        items: list[tuple[int, EventBatch]] = []
        dead: list[DeadLetter] = []
        for sim_stream, lines in got:
            name = self.names.get(sim_stream)
            if name is None or not lines:
                continue
            first = self._next_pos[sim_stream]
            self._next_pos[sim_stream] = first + len(lines)
            batch, bad = decode_lines(
                self.spec.stream(name),
                lines,
                range(first, first + len(lines)),
                f"simulator:{self.sim.name}/{sim_stream}",
                ingest_ns,
                self.spec.max_event_bytes,
            )
            dead += bad
            if len(batch):
                items.append((self.partitions[sim_stream], batch))
                top = int(batch.ts.max())
                self.last_ms[name] = max(self.last_ms.get(name, top), top)
        return items, dead

    def decisions(self, res: Results) -> tuple[np.ndarray, np.ndarray] | None:
        """``(ids, arm names)`` the simulator must hear: decisions of the decide stages on
        its decision stream."""
        dec = res.tables.get("decisions")
        if dec is None or self.decision_stream is None:
            return None
        stages = [d.name for d in self.spec.decide if d.stream == self.decision_stream]
        mine = np.isin(np.asarray(dec["decide"], dtype=object), stages)
        return np.asarray(dec["decision_id"])[mine], np.asarray(dec["arm"])[mine]


def play(
    feed: SimFeed,
    engine: PipelineEngine | None = None,
    *,
    batch: int | None = None,
    now_ns: int | None = None,
) -> Iterator[Results]:
    """Yield the engine's :class:`Results` step by step until the simulator's run is over,
    then :meth:`PipelineEngine.finish`'s.

    ``batch``: most new events of the simulator's driving stream per step (default: the
    spec's ``batch_size``); ``now_ns``: a fixed wall clock (default: the real one, read per
    step). Lines that fail to decode come out as ``dead_letters`` rows."""
    spec, sim = feed.spec, feed.sim
    engine = engine if engine is not None else PipelineEngine(spec)
    size = batch or spec.batch_size
    while True:
        try:
            got = sim.next_batch(size)
        except StopIteration:
            break
        if got is None:  # every decision went back at once: the simulator cannot wait on us
            raise RuntimeError(f"simulator {sim.name} waits for decisions the engine made")
        now = time.time_ns() if now_ns is None else now_ns
        items, dead = feed.items(got, now)
        res = engine.process_many(items, now, spec.batch_size)
        if dead:
            res.merge(dead_letter_results(dead, now // 1_000_000))
        answer = feed.decisions(res)
        if answer is not None and len(answer[0]):
            sim.respond(*answer)
        yield res
    yield engine.finish(time.time_ns() if now_ns is None else now_ns)
