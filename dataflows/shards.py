"""The engine's two stateful steps, as Bytewax logic: keyed shards and decide shards.

:class:`KeyedLogic` holds a :class:`~eddy.operators.engine.KeyedEngine` per shard behind a
start-up :class:`~eddy.operators.partition_gate.PartitionGate`; what it hands the decide stages
leaves as :class:`Parcel` items, one per decide shard; :class:`DecideLogic` holds a
:class:`~eddy.operators.engine.DecideEngine` per (stage, shard). Bytewax asks for a snapshot at
every epoch end, with or without recovery; an engine's costs milliseconds (a stall of the
whole worker), so without recovery (``keep_state`` false) none is taken.
"""

from __future__ import annotations

import pickle
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain

from bytewax.operators import StatefulBatchLogic

from eddy.operators.engine import DecideEngine, KeyedEngine
from eddy.operators.engine.messages import DecideMessage
from eddy.operators.partition_gate import PartitionGate
from eddy.operators.sequence import Resequencer
from eddy.operators.sharding import Piece
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec
from eddy.sources.base import RawBatch

__all__ = ["BatchNumbers", "DecideLogic", "KeyedLogic", "KeyedOutput", "Parcel"]


class BatchNumbers:
    """Numbers each partition's raw batches in reading order, under a token of this reader
    (``operators/sequence.py``): ``raw -> ((token, n), raw)``."""

    def __init__(self) -> None:
        self._token = uuid.uuid4().hex[:12]
        self._next: dict[int, int] = {}

    def __call__(self, raw: RawBatch) -> tuple[tuple[str, int], RawBatch]:
        n = self._next.get(raw.partition, 0)
        self._next[raw.partition] = n + 1
        return (self._token, n), raw


@dataclass(frozen=True)
class Parcel:
    """Messages for decide shard ``shard`` of ``stage``, in order."""

    stage: str
    shard: int
    messages: list[DecideMessage]


@dataclass(frozen=True)
class KeyedOutput:
    """What one call of a keyed shard produced."""

    results: Results
    parcels: list[Parcel]


class KeyedLogic(StatefulBatchLogic[tuple[int, Piece], KeyedOutput, bytes]):
    """A keyed shard; its items are ``(shard, piece)`` (Bytewax gives a step's logic its state,
    not its key: the shard number comes with the items and the snapshot)."""

    def __init__(
        self,
        spec: PipelineSpec,
        shards: int,
        resume: bytes | None,
        expected: Iterable[int],
        keep_state: bool,
        step_rows: int,
    ) -> None:
        self._spec = spec
        self._shards = shards
        self._keep_state = keep_state
        self._step_rows = step_rows
        self._engine: KeyedEngine | None = None
        self._order = Resequencer()
        self._gate = PartitionGate(expected)
        self._finished = False
        if resume:
            state = pickle.loads(resume)
            self._engine = KeyedEngine.restore(spec, state["engine"], state["shard"], shards)
            self._order = state["order"]
            self._gate = state["gate"]
            self._finished = state["finished"]

    def _output(self, engine: KeyedEngine, results: Results) -> KeyedOutput:
        parcels = [Parcel(stage, s, msgs) for (stage, s), msgs in engine.take_messages().items()]
        return KeyedOutput(results, parcels)

    def _process(self, pieces: list[Piece]) -> list[KeyedOutput]:
        if not pieces or self._engine is None:
            return []
        res = self._engine.process_many(pieces, time.time_ns(), self._step_rows)
        return [self._output(self._engine, res)]

    def on_batch(self, values: list[tuple[int, Piece]]) -> tuple[list[KeyedOutput], bool]:
        if self._engine is None:
            self._engine = KeyedEngine(self._spec, values[0][0], self._shards)
        pieces = self._order.push([p for _, p in values])
        return self._process(self._gate.push(pieces, time.time())), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        deadline = self._gate.deadline()
        return None if deadline is None else datetime.fromtimestamp(deadline, UTC)

    def on_notify(self) -> tuple[list[KeyedOutput], bool]:
        return self._process(self._gate.release_all()), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[KeyedOutput], bool]:
        out = self._process(self._gate.release_all())
        if not self._finished and self._engine is not None:
            self._finished = True
            out.append(self._output(self._engine, self._engine.finish(time.time_ns())))
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        if not self._keep_state or self._engine is None:
            return b""
        state = {
            "engine": self._engine.snapshot(),
            "shard": self._engine.shard,
            "order": self._order,
            "gate": self._gate,
            "finished": self._finished,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


class DecideLogic(StatefulBatchLogic[Parcel, Results, bytes]):
    """A decide shard of one stage; the stage and shard come with the parcels."""

    def __init__(
        self, spec: PipelineSpec, keyed_shards: int, resume: bytes | None, keep_state: bool
    ) -> None:
        self._spec = spec
        self._keyed_shards = keyed_shards
        self._keep_state = keep_state
        self._engine: DecideEngine | None = None
        self._finished = False
        if resume:
            state = pickle.loads(resume)
            stage, shard = state["stage"], state["shard"]
            self._engine = DecideEngine.restore(spec, stage, state["engine"], shard, keyed_shards)
            self._finished = state["finished"]

    def on_batch(self, values: list[Parcel]) -> tuple[list[Results], bool]:
        if self._engine is None:
            first = values[0]
            self._engine = DecideEngine(self._spec, first.stage, first.shard, self._keyed_shards)
        messages = chain.from_iterable(p.messages for p in values)
        return [self._engine.accept(messages, time.time_ns())], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Results], bool]:
        if self._finished or self._engine is None:
            return [], StatefulBatchLogic.RETAIN
        self._finished = True
        return [self._engine.finish(time.time_ns())], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        if not self._keep_state or self._engine is None:
            return b""
        e = self._engine
        state = {
            "engine": e.snapshot(),
            "stage": e.decide_spec.name,
            "shard": e.shard,
            "finished": self._finished,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
