"""Any simulator as a Bytewax source of raw JSON lines, closed into a loop by a feedback sink.

:class:`ClosedLoopSource` has one partition that plays the simulator and emits
:class:`sources.base.RawBatch` items, exactly what a file or Kafka input emits, so decoding,
dead letters and everything downstream are shared. Per batch: ``stream`` is the spec's name for
the simulator stream (``stream_names`` maps simulator stream -> spec stream; a simulator stream
left out is not emitted), ``source`` is ``simulator:<name>/<stream>``, ``partition`` is
``partition_base[spec stream]`` (default 0) plus the index of the simulator stream in its
simulator's sorted stream names (stable however the spec names them),
``positions`` count each stream's lines from 1 (so ``source#position`` names a line forever),
``ingest_ns`` is the wall clock at emission.

The partition never blocks the worker: while the simulator waits for decisions still in flight
(``next_batch`` answers None) it returns ``[]``, and :class:`ClosedLoopFeedbackSink` hands the
decisions back (``extract(item)`` -> ``(ids, arm names)`` or None). What is emitted therefore
depends only on the options and the decisions, not on timing. With ``speed`` the replay is
paced: event time advances ``speed`` times as fast as the wall clock from ``sim.start_ms``
(the tail of outcomes after the last decision event is emitted at once, as before).

Source and sink share the simulator object and one lock, so the loop runs in one process (any
number of worker threads); a multi-process cluster reads from Kafka instead.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition
from bytewax.outputs import DynamicSink, StatelessSinkPartition

from eddy.sources.base import RawBatch
from eddy.sources.simulators.base import ClosedLoopSimulator

__all__ = ["ClosedLoopFeedbackSink", "ClosedLoopSource"]

_MAX_NAP_S = 0.05


class _Partition(StatefulSourcePartition[RawBatch, None]):
    def __init__(self, source: ClosedLoopSource) -> None:
        self._src = source
        self._t0 = time.monotonic()
        self._awake: datetime | None = None

    def next_batch(self) -> list[RawBatch]:
        src, sim = self._src, self._src.sim
        self._awake = None
        with src.lock:
            if not src.stopped and src.should_stop():
                src.stopped = True
                sim.stop()
            until = None
            if src.speed is not None:
                until = sim.start_ms + int((time.monotonic() - self._t0) * 1000.0 * src.speed) + 1
            got = sim.next_batch(src.batch_size, until)  # StopIteration ends the partition
            if got == [] and until is not None and src.speed is not None:
                nxt = sim.peek_ms()
                wait = _MAX_NAP_S if nxt is None else (nxt - until + 1) / 1000.0 / src.speed
                self._awake = datetime.now(UTC) + timedelta(seconds=min(max(wait, 0.0), _MAX_NAP_S))
            if not got:
                return []  # None: decisions in flight; []: nothing due yet
            now = time.time_ns()
            out = []
            for stream, lines in got:
                name = src.stream_names.get(stream)
                if name is None or not lines:
                    continue
                first = src.emitted[stream] + 1
                src.emitted[stream] += len(lines)
                out.append(
                    RawBatch(
                        stream=name,
                        source=f"simulator:{sim.name}/{stream}",
                        partition=src.partitions[stream],
                        positions=list(range(first, first + len(lines))),
                        lines=lines,
                        ingest_ns=now,
                    )
                )
        return out

    def next_awake(self) -> datetime | None:
        return self._awake

    def snapshot(self) -> None:
        return None


class ClosedLoopSource(FixedPartitionedSource[RawBatch, None]):
    """One partition that plays ``sim``; ``should_stop()`` turning true calls ``sim.stop()``.

    ``batch_size`` is the most new events of the driving stream per batch (outcomes that
    became due ride along). Not resumable: a restart replays from the start."""

    def __init__(
        self,
        sim: ClosedLoopSimulator,
        stream_names: Mapping[str, str],
        *,
        partition_base: Mapping[str, int] | None = None,
        batch_size: int = 1_000,
        should_stop: Callable[[], bool] = lambda: False,
        speed: float | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        unknown = sorted(set(stream_names) - set(sim.STREAMS))
        if unknown:
            raise ValueError(
                f"simulator {sim.name}: no stream {unknown[0]!r}; streams: {sorted(sim.STREAMS)}"
            )
        if batch_size < 1:
            raise ValueError(f"ClosedLoopSource batch_size: expected >= 1, got {batch_size}")
        if speed is not None and not speed > 0:
            raise ValueError(f"ClosedLoopSource speed: expected > 0 or None, got {speed}")
        self.sim = sim
        self.stream_names = dict(stream_names)
        base = partition_base or {}
        self.partitions = {
            s: base.get(self.stream_names.get(s, ""), 0) + i
            for i, s in enumerate(sorted(sim.STREAMS))
        }
        self.batch_size = batch_size
        self.should_stop = should_stop
        self.speed = speed
        self.lock = lock or threading.Lock()
        self.stopped = False
        self.emitted = dict.fromkeys(sim.STREAMS, 0)  # lines per simulator stream so far

    def list_parts(self) -> list[str]:
        return [f"simulator:{self.sim.name}"]

    def build_part(self, step_id: str, for_part: str, resume_state: None) -> _Partition:
        return _Partition(self)


class _FeedbackPartition(StatelessSinkPartition[Any]):
    def __init__(self, source: ClosedLoopSource, extract: Callable[[Any], Any]) -> None:
        self._source = source
        self._extract = extract

    def write_batch(self, items: Iterable[Any]) -> None:
        for item in items:
            got = self._extract(item)
            if got is not None:
                ids, arms = got
                with self._source.lock:
                    self._source.sim.respond(ids, arms)


class ClosedLoopFeedbackSink(DynamicSink[Any]):
    """Hands decisions back to the source's simulator. ``extract(item)`` returns ``(ids, arm
    names)`` (object arrays) or None for items that carry no decisions."""

    def __init__(self, source: ClosedLoopSource, extract: Callable[[Any], Any]) -> None:
        self._source = source
        self._extract = extract

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _FeedbackPartition:
        return _FeedbackPartition(self._source, self._extract)
