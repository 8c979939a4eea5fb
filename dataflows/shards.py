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
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import chain
from typing import Generic, TypeVar

from bytewax.operators import StatefulBatchLogic

from eddy.dataflows.packet import Packet
from eddy.operators.engine import DecideEngine, KeyedEngine
from eddy.operators.engine.decide import resume_waiting
from eddy.operators.engine.exchange import StatsBoard
from eddy.operators.engine.messages import DecideMessage
from eddy.operators.partition_gate import PartitionGate
from eddy.operators.sequence import Resequencer
from eddy.operators.sharding import Piece
from eddy.operators.stats import RunStats
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec
from eddy.sources.base import RawBatch

__all__ = [
    "BatchNumbers",
    "DecideGroup",
    "DecideLogic",
    "DecodeLogic",
    "Decoded",
    "KeyedLogic",
    "KeyedOutput",
    "Numbered",
    "OpenedLogic",
    "Parcel",
    "TimedLogic",
    "timed",
]


class BatchNumbers:
    """Numbers each partition's raw batches in reading order, under a token of this reader
    (``operators/sequence.py``), and deals them out over the decoders' keys in turn:
    ``raw -> (decoder key, Packet(((token, n), raw)))``."""

    def __init__(self, decoders: list[str]) -> None:
        if not decoders:
            raise ValueError("BatchNumbers: expected at least one decoder key")
        self._decoders = decoders
        self._token = uuid.uuid4().hex[:12]
        self._next: dict[int, int] = {}
        self._dealt = 0

    def __call__(self, raw: RawBatch) -> tuple[str, Packet[Numbered]]:
        n = self._next.get(raw.partition, 0)
        self._next[raw.partition] = n + 1
        key = self._decoders[self._dealt % len(self._decoders)]
        self._dealt += 1
        return key, Packet(((self._token, n), raw))


V = TypeVar("V")
W = TypeVar("W")
S = TypeVar("S")
X = TypeVar("X")

Numbered = tuple[tuple[str, int] | None, RawBatch]  # a raw batch and its place (or None)
# a batch's report, or a piece for the keyed shard of that key
Decoded = Results | tuple[str, Packet[tuple[int, Piece]]]


class DecodeLogic(StatefulBatchLogic[Numbered, Decoded, None]):
    """Decodes numbered raw batches on the worker its key lands on; keeps nothing."""

    def __init__(self, decode: Callable[[Numbered], list[Decoded]]) -> None:
        self._decode = decode

    def on_batch(self, values: list[Numbered]) -> tuple[list[Decoded], bool]:
        return [x for v in values for x in self._decode(v)], StatefulBatchLogic.DISCARD

    def snapshot(self) -> None:
        return None


@contextmanager
def _cpu_time(stats: RunStats, step: str) -> Iterator[None]:
    """Adds the thread CPU time of the block to ``stats`` under ``step``, also when it raises."""
    start = time.thread_time()
    try:
        yield
    finally:
        stats.add_step_cpu(step, time.thread_time() - start)


class _AroundLogic(StatefulBatchLogic[X, W, S], Generic[X, V, W, S]):
    """A step's logic around ``logic``: the calls it leaves alone go to ``logic``, inside
    :meth:`_around`."""

    def __init__(self, logic: StatefulBatchLogic[V, W, S]) -> None:
        self.logic = logic

    def _around(self) -> AbstractContextManager[None]:
        return nullcontext()

    def on_notify(self) -> tuple[Iterable[W], bool]:
        with self._around():
            return self.logic.on_notify()

    def on_eof(self) -> tuple[Iterable[W], bool]:
        with self._around():
            return self.logic.on_eof()

    def notify_at(self) -> datetime | None:
        return self.logic.notify_at()

    def snapshot(self) -> S:
        return self.logic.snapshot()


class OpenedLogic(_AroundLogic[Packet[V], V, W, S]):
    """``logic`` fed the values of the packets its step receives (``dataflows/packet.py``)."""

    def on_batch(self, values: list[Packet[V]]) -> tuple[Iterable[W], bool]:
        return self.logic.on_batch([p.value for p in values])


class TimedLogic(_AroundLogic[V, V, W, S]):
    """``logic`` with the thread CPU time of its calls added to ``stats`` under ``step``: what
    each step of the engine costs on each worker (``RunResult.step_cpu_s``)."""

    def __init__(self, logic: StatefulBatchLogic[V, W, S], step: str, stats: RunStats) -> None:
        super().__init__(logic)
        self._step = step
        self._stats = stats

    def _around(self) -> AbstractContextManager[None]:
        return _cpu_time(self._stats, self._step)

    def on_batch(self, values: list[V]) -> tuple[Iterable[W], bool]:
        with self._around():
            return self.logic.on_batch(values)


def timed(fn: Callable[[V], W], step: str, stats: RunStats) -> Callable[[V], W]:
    """``fn`` with the thread CPU time of its calls added to ``stats`` under ``step``."""

    def call(value: V) -> W:
        with _cpu_time(stats, step):
            return fn(value)

    return call


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


class DecideGroup:
    """The decide shards of one process that share statistics, by worker thread.

    A shard whose messages wait for another shard's post (``operators/engine/exchange.py``)
    looks again every few milliseconds; a shard of the same worker that acts nudges it at
    once. Bytewax ends a worker's shards one after another on that worker's thread, where a
    shard cannot wait for one that ends after it: so the first of a worker's shards to end
    resumes all of them until none waits, polling for the posts of shards elsewhere for up to
    ``patience_s``. A shard keeps what another's call produced for it until its own next
    call (and in its snapshot)."""

    def __init__(self, board: StatsBoard | None, patience_s: float = 120.0) -> None:
        self.board = board
        self._patience_s = patience_s
        self._members: dict[int, list[DecideLogic]] = {}

    def join(self, logic: DecideLogic) -> None:
        self._members.setdefault(threading.get_ident(), []).append(logic)

    def nudge(self) -> bool:
        """A shard of this worker has acted (and maybe posted): resume the others that wait,
        now rather than at their next poll. Each keeps what it produced for its next call.
        Whether any still waits."""
        members = [
            m
            for m in self._members.get(threading.get_ident(), ())
            if not m.finished and m.engine is not None and m.engine.waiting
        ]
        engines = [m.engine for m in members if m.engine is not None]
        for member, out in zip(members, resume_waiting(engines, time.time_ns()), strict=True):
            member.kept.append(out)
        return any(e.waiting for e in engines)

    def settle(self) -> None:
        """Resume this worker's waiting shards until none waits (or patience runs out)."""
        deadline = time.monotonic() + self._patience_s
        while self.nudge() and time.monotonic() <= deadline:
            time.sleep(0.002)  # a shard in another process has not posted yet


_POLL = timedelta(milliseconds=2)  # how soon a waiting shard looks for its posts again


class DecideLogic(StatefulBatchLogic[Parcel, Results, bytes]):
    """A decide shard of one stage; the stage and shard come with the parcels."""

    def __init__(
        self,
        spec: PipelineSpec,
        keyed_shards: int,
        resume: bytes | None,
        keep_state: bool,
        group: DecideGroup | None = None,
    ) -> None:
        self._spec = spec
        self._keyed_shards = keyed_shards
        self._keep_state = keep_state
        self._group = group or DecideGroup(None)
        self.engine: DecideEngine | None = None
        self.kept: list[Results] = []  # produced when another shard of the worker resumed it
        self.finished = False
        if resume:
            state = pickle.loads(resume)
            stage, shard = state["stage"], state["shard"]
            self.engine = DecideEngine.restore(
                spec, stage, state["engine"], shard, keyed_shards, self._group.board
            )
            self.finished = state["finished"]
            self.kept = state.get("kept", [])
        self._group.join(self)

    def on_batch(self, values: list[Parcel]) -> tuple[list[Results], bool]:
        if self.engine is None:
            first = values[0]
            self.engine = DecideEngine(
                self._spec, first.stage, first.shard, self._keyed_shards, self._group.board
            )
        messages = chain.from_iterable(p.messages for p in values)
        out = [*self._take_kept(), self.engine.accept(messages, time.time_ns())]
        self._group.nudge()
        return out, StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        if self.kept:  # produced when another shard nudged this one: out at once
            return datetime.now(UTC)
        if self.engine is None or not self.engine.waiting:
            return None
        return datetime.now(UTC) + _POLL

    def on_notify(self) -> tuple[list[Results], bool]:
        if self.engine is None:
            return [], StatefulBatchLogic.RETAIN
        out = [*self._take_kept(), self.engine.resume(time.time_ns())]
        self._group.nudge()
        return out, StatefulBatchLogic.RETAIN

    def _take_kept(self) -> list[Results]:
        kept, self.kept = self.kept, []
        return kept

    def on_eof(self) -> tuple[list[Results], bool]:
        if self.finished or self.engine is None:
            return [], StatefulBatchLogic.RETAIN
        self._group.settle()
        self.finished = True
        out = [*self._take_kept(), self.engine.finish(time.time_ns())]
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        if not self._keep_state or self.engine is None:
            return b""
        e = self.engine
        state = {
            "engine": e.snapshot(),
            "stage": e.decide_spec.name,
            "shard": e.shard,
            "finished": self.finished,
            "kept": self.kept,  # produced, not yet emitted: the engine's state has them done
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
