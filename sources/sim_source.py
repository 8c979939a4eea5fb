"""The simulator as a Bytewax source, closed into a loop by a feedback sink.

Each ``next_batch`` emits the outcomes that became due plus the next micro-batch of requests.
Outcomes are due ``min_delay_ms`` or more after their request, so before emitting a batch the
source waits (returning nothing, never blocking the worker) until every decision it needs has
come back through :class:`SimulatorFeedbackSink`. The items it emits therefore depend only on
the seed and the decisions, not on timing: the run is deterministic.

Source and feedback sink share the simulator object, so this loop runs in one process (any
number of worker threads); a multi-process cluster reads from Kafka instead.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from eddy.schemas.events import OutcomeBatch, RequestBatch
from eddy.sources.simulator import Simulator

__all__ = ["SimulatorFeedbackSink", "SimulatorSource"]

_BIG = np.iinfo(np.int64).max


class _SimPartition(StatefulSourcePartition[Any, None]):
    def __init__(
        self,
        sim: Simulator,
        lock: threading.Lock,
        batch_size: int,
        should_stop: Callable[[], bool],
        speed: float | None,
    ) -> None:
        self._sim = sim
        self._lock = lock
        self._batch = batch_size
        self._should_stop = should_stop
        self._speed = speed
        self._t0 = time.monotonic()
        self._awake: datetime | None = None
        self._stopped = False

    def next_batch(self) -> list[RequestBatch | OutcomeBatch]:
        sim, cfg = self._sim, self._sim.config
        self._awake = None
        with self._lock:
            if not self._stopped and self._should_stop():
                self._stopped = True
            if self._stopped or sim.exhausted:
                if sim.answered < sim.generated:
                    return []  # decisions still in flight: their outcomes are not drawn yet
                last = sim.due_outcomes(_BIG)
                if len(last):
                    return [last]
                raise StopIteration
            n = self._batch
            if cfg.n_events is not None:
                n = min(n, cfg.n_events - sim.generated)
            until = int(sim.ts_of(sim.generated + n - 1)) + 1
            if self._speed is not None:
                allowed = cfg.start_ms + (time.monotonic() - self._t0) * 1000.0 * self._speed
                if until > allowed:
                    wait_s = (until - allowed) / 1000.0 / self._speed
                    self._awake = datetime.now(UTC) + timedelta(seconds=min(wait_s, 0.05))
                    return []
            needed = math.ceil((until - cfg.min_delay_ms - cfg.start_ms) * cfg.rate_per_s / 1000)
            if sim.answered < min(max(needed, 0), sim.generated):
                return []
            requests = sim.next_requests(n, ingest_ns=time.time_ns())
            outcomes = sim.due_outcomes(until)
        out: list[RequestBatch | OutcomeBatch] = []
        if len(outcomes):
            out.append(outcomes)
        if len(requests):
            out.append(requests)
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> None:
        return None


class SimulatorSource(FixedPartitionedSource[Any, None]):
    """One partition that plays the simulator; stops when ``should_stop()`` turns true."""

    def __init__(
        self,
        sim: Simulator,
        *,
        batch_size: int = 1_000,
        should_stop: Callable[[], bool] = lambda: False,
        speed: float | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.sim = sim
        self.lock = lock or threading.Lock()
        self._batch = batch_size
        self._should_stop = should_stop
        self._speed = speed

    def list_parts(self) -> list[str]:
        return ["simulator"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _SimPartition:
        return _SimPartition(self.sim, self.lock, self._batch, self._should_stop, self._speed)


class _FeedbackPartition(StatelessSinkPartition[Any]):
    def __init__(self, source: SimulatorSource, extract: Callable[[Any], Any]) -> None:
        self._source = source
        self._extract = extract

    def write_batch(self, items: Iterable[Any]) -> None:
        for item in items:
            got = self._extract(item)
            if got is not None:
                ids, arms = got
                with self._source.lock:
                    self._source.sim.respond(ids, arms)


class SimulatorFeedbackSink(DynamicSink[Any]):
    """Hands decisions back to the simulator. ``extract(item)`` returns ``(ids, arms)`` or None."""

    def __init__(self, source: SimulatorSource, extract: Callable[[Any], Any]) -> None:
        self._source = source
        self._extract = extract

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FeedbackPartition:
        return _FeedbackPartition(self._source, self._extract)
