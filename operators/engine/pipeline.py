"""`PipelineEngine`: every stage of a pipeline spec over decoded micro-batches, in one place.

``process_many(items, now_ns)`` takes ``(partition, EventBatch)`` items in arrival order and
returns :class:`~eddy.schemas.results.Results`: columns per output table (names from
``schemas.tables``) plus counters. The wall clock is an argument (``decided_at``,
``detected_at``, latency); event time drives everything else, so the same input in the same
order, cut the same way, gives the same rows.

It is the keyed part (:class:`~.keyed.KeyedEngine`, one shard) and a
:class:`~.decide.DecideEngine` per decide stage and shard, the messages between them handed
over at once: what a dataflow spreads over workers (``dataflows/flow.py``), run in one call.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

from eddy.operators.engine.decide import DecideEngine, resume_waiting
from eddy.operators.engine.exchange import MemoryBoard
from eddy.operators.engine.keyed import KeyedEngine
from eddy.schemas.batch import EventBatch
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec

__all__ = ["PipelineEngine"]


class PipelineEngine:
    """See the module docstring. ``snapshot()`` / ``restore(snap)`` are exact."""

    def __init__(self, spec: PipelineSpec) -> None:
        self.spec = spec
        self._keyed = KeyedEngine(spec)
        self._board = MemoryBoard()
        self._decide = {
            (d.name, i): DecideEngine(spec, d.name, i, board=self._board)
            for d in spec.decide
            for i in range(d.shards)
        }

    @property
    def pending_decisions(self) -> int:
        return sum(d.pending for d in self._decide.values())

    def process_many(
        self, items: Sequence[tuple[int, EventBatch]], now_ns: int, step_rows: int = 4_000
    ) -> Results:
        """``(partition, batch)`` items in arrival order (partition numbers distinct across
        streams)."""
        out = self._keyed.process_many(items, now_ns, step_rows)
        return self._decided(out, now_ns)

    def finish(self, now_ns: int) -> Results:
        """End of bounded input: learn every held outcome, close every window, flush the
        detectors, time out every waiting decision."""
        out = self._decided(self._keyed.finish(now_ns), now_ns)
        for engine in self._decide.values():
            out.merge(engine.finish(now_ns))
        return out

    def snapshot(self) -> bytes:
        state = {
            "keyed": self._keyed.snapshot(),
            "decide": [(k, e.snapshot()) for k, e in self._decide.items()],
            "board": self._board,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(cls, spec: PipelineSpec, snap: bytes) -> PipelineEngine:
        eng = cls(spec)
        state = pickle.loads(snap)
        eng._keyed = KeyedEngine.restore(spec, state["keyed"])
        eng._board = state.get("board") or MemoryBoard()
        eng._decide = {
            (stage, i): DecideEngine.restore(spec, stage, snap, i, board=eng._board)
            for (stage, i), snap in state["decide"]
        }
        return eng

    def _decided(self, out: Results, now_ns: int) -> Results:
        for key, messages in self._keyed.take_messages().items():
            out.merge(self._decide[key].accept(messages, now_ns))
        for res in resume_waiting(list(self._decide.values()), now_ns):
            out.merge(res)
        return out
