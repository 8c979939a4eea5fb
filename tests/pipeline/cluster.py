"""Keyed shards and decide shards of one pipeline wired by hand, without a dataflow: the
messages between them delivered in an order a test chooses."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import numpy as np

from eddy.operators.engine import DecideEngine, KeyedEngine, PipelineEngine
from eddy.operators.engine.decide import resume_waiting
from eddy.operators.engine.exchange import MemoryBoard
from eddy.operators.engine.messages import DecideMessage
from eddy.operators.engine.routing import Router
from eddy.schemas.batch import EventBatch
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec
from tests.pipeline.conftest import NOW_NS, decoded, merged, simulator_of

__all__ = ["Box", "Cluster", "closed_loop", "recorded"]

Box = dict[tuple[str, int], list[DecideMessage]]


class Cluster:
    """Keyed shards and decide shards wired by hand: every keyed shard's messages are
    delivered per (stage, decide shard) in the order it sent them; keyed shard ``slow``'s
    reach the decide shards ``lag`` steps after the others' (None: only at the end)."""

    def __init__(
        self, spec: PipelineSpec, keyed_shards: int, decide_shards: int, slow: int, lag: int | None
    ) -> None:
        spec = replace(spec, decide=tuple(replace(d, shards=decide_shards) for d in spec.decide))
        self.spec = spec
        self.router = Router(spec, keyed_shards)
        assert self.router.shards == keyed_shards
        self.keyed = [KeyedEngine(spec, s, keyed_shards) for s in range(keyed_shards)]
        board = MemoryBoard()
        self.decide = {
            (d.name, s): DecideEngine(spec, d.name, s, keyed_shards, board)
            for d in spec.decide
            for s in range(d.shards)
        }
        self.slow, self.lag = slow, lag
        self.mail: list[deque[Box]] = [deque() for _ in range(keyed_shards)]
        self.outs: list[Results] = []
        self.rows_per_shard = np.zeros(keyed_shards, dtype=np.int64)
        self.scoreboard: dict[str, float] = {}  # the simulator's, after closed_loop()

    def step(self, items: list[tuple[int, EventBatch]]) -> list[Results]:
        pieces = [self.router.pieces(p, b) for p, b in items]
        for s, eng in enumerate(self.keyed):
            mine = [c[s] for c in pieces]
            self.rows_per_shard[s] += sum(len(p.batch) for p in mine)
            self.outs.append(eng.process_many(mine, NOW_NS, self.spec.batch_size))
            self.mail[s].append(eng.take_messages())
        return self.deliver()

    def deliver(self, everything: bool = False) -> list[Results]:
        got = []
        for sender, queue in enumerate(self.mail):
            keep = 0
            if sender == self.slow and not everything:
                keep = len(queue) if self.lag is None else self.lag
            while len(queue) > keep:
                got += self._accept(queue.popleft())
        return got

    def one_late(self) -> list[Results]:
        """The slow shard's oldest step (the simulator waits for its decisions)."""
        queue = self.mail[self.slow]
        assert queue, "the simulator waits for decisions no shard holds"
        return self._accept(queue.popleft())

    def _accept(self, box: Box) -> list[Results]:
        got = [self.decide[key].accept(messages, NOW_NS) for key, messages in box.items()]
        got += resume_waiting(list(self.decide.values()), NOW_NS)
        self.outs += got
        return got

    def finish(self) -> Results:
        for s, eng in enumerate(self.keyed):
            self.outs.append(eng.finish(NOW_NS))
            self.mail[s].append(eng.take_messages())
        self.deliver(everything=True)
        self.outs += [e.finish(NOW_NS) for e in self.decide.values()]
        return merged(self.outs)


def closed_loop(cluster: Cluster) -> tuple[Results, list[str]]:
    """The simulator against the cluster, decisions fed back as they come out."""
    spec = cluster.spec
    sim = simulator_of(spec)
    parts = {s.name: i * 1_000 for i, s in enumerate(spec.streams)}
    positions = dict.fromkeys(parts, 1)
    requests: list[str] = []

    def respond(outs: list[Results]) -> None:
        for res in outs:
            dec = res.tables.get("decisions")
            if dec is not None:
                sim.respond(np.asarray(dec["decision_id"]), np.asarray(dec["arm"]))

    while True:
        try:
            got = sim.next_batch(300)
        except StopIteration:
            break
        if got is None:  # waiting for decisions still in the slow shard's mail
            respond(cluster.one_late())
            continue
        items = []
        for stream, lines in got:
            batch = decoded(spec, stream, lines, positions[stream])
            positions[stream] += len(lines)
            items.append((parts[stream], batch))
            if stream == spec.decide[0].stream:
                requests += batch.ids.tolist()
        respond(cluster.step(items))
    total = cluster.finish()
    cluster.scoreboard = sim.scoreboard()
    return total, requests


def recorded(spec: PipelineSpec) -> list[list[tuple[int, EventBatch]]]:
    """The items of a closed-loop run of one engine, step by step."""
    sim = simulator_of(spec)
    eng = PipelineEngine(spec)
    parts = {s.name: i * 1_000 for i, s in enumerate(spec.streams)}
    positions = dict.fromkeys(parts, 1)
    steps = []
    while True:
        try:
            got = sim.next_batch(300)
        except StopIteration:
            return steps
        items = []
        for stream, lines in got or []:
            items.append((parts[stream], decoded(spec, stream, lines, positions[stream])))
            positions[stream] += len(lines)
        steps.append(items)
        dec = eng.process_many(items, NOW_NS).tables.get("decisions")
        if dec is not None:
            sim.respond(dec["decision_id"], dec["arm"])
