"""Any pipeline spec wired in Bytewax: sources -> decode -> engine -> sinks.

    per stream: simulator | jsonl | csv | parquet | kafka     micro-batches, never single events
        -> decode (stateless: RawBatch -> EventBatch + dead letters; schemas.decode)
        -> engine (stateful_batch: operators.engine.PipelineEngine behind a start-up gate)
        -> DuckDB (one writer) [+ Kafka topics] [+ the simulator's feedback]
           DuckDB's per-second metrics rows -> [the Kafka metrics topic]

Only wiring lives here: the logic is in ``operators/``, the I/O in ``sources/`` and ``sinks/``.
Input partitions are numbered ``1000 * <stream index> + <partition>``, so every stream keeps
its own watermark over its own partitions.
"""

from __future__ import annotations

import pickle
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic

from eddy.dataflows import ops
from eddy.dataflows.run_options import RunOptions
from eddy.operators.engine import PipelineEngine
from eddy.operators.partition_gate import PartitionGate
from eddy.operators.stats import RunStats
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec
from eddy.schemas.topics import output_topics
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.duckdb_sink import DuckDBSink
from eddy.sinks.kafka import KafkaTablePublisher
from eddy.sinks.kafka_fenced import FencedKafkaResultsSink
from eddy.sources.jsonl import JsonlSource
from eddy.sources.kafka import KafkaSource, parse_kafka_spec, partitions_with_data
from eddy.sources.simulators.base import ClosedLoopSimulator
from eddy.sources.simulators.source import ClosedLoopFeedbackSink, ClosedLoopSource

__all__ = ["PARTITIONS_PER_STREAM", "build_flow"]

PARTITIONS_PER_STREAM = 1_000
_SHARD = "engine"
# A caught-up Kafka partition waits this long between polls: an engine call costs ~1-2 ms
# whatever its size, so fewer, larger batches (benchmarks/kafka_latency.py).
_KAFKA_LINGER_S = 0.02
_KAFKA_FENCE_FILE = "kafka-fence-starts.json"  # in the recovery directory
_KAFKA_PARTITIONS = 3  # of the output topics eddy creates


class _EngineLogic(StatefulBatchLogic[Any, Results, bytes]):
    """The engine behind a start-up :class:`PartitionGate` (no partition starts late).

    Bytewax asks for a snapshot at every epoch end, with or without recovery; the engine's
    costs milliseconds (a stall of the whole worker), so without recovery (``keep_state``
    false) it is not taken."""

    def __init__(
        self,
        spec: PipelineSpec,
        resume: bytes | None,
        expected: Iterable[int],
        keep_state: bool,
        step_rows: int,
    ) -> None:
        self._keep_state = keep_state
        self._step_rows = step_rows
        if resume:
            state = pickle.loads(resume)
            self._engine = PipelineEngine.restore(spec, state["engine"])
            self._gate: PartitionGate = state["gate"]
            self._finished: bool = state["finished"]
        else:
            self._engine = PipelineEngine(spec)
            self._gate = PartitionGate(expected)
            self._finished = False

    def _process(self, items: list[Any]) -> list[Results]:
        if not items:
            return []
        return [self._engine.process_many(items, time.time_ns(), self._step_rows)]

    def on_batch(self, values: list[Any]) -> tuple[list[Results], bool]:
        return self._process(self._gate.push(values, time.time())), StatefulBatchLogic.RETAIN

    def notify_at(self) -> datetime | None:
        deadline = self._gate.deadline()
        return None if deadline is None else datetime.fromtimestamp(deadline, UTC)

    def on_notify(self) -> tuple[list[Results], bool]:
        return self._process(self._gate.release_all()), StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Results], bool]:
        out = self._process(self._gate.release_all())
        if not self._finished:
            self._finished = True
            out.append(self._engine.finish(time.time_ns()))
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        if not self._keep_state:
            return b""
        state = {"engine": self._engine.snapshot(), "gate": self._gate, "finished": self._finished}
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def build_flow(
    opts: RunOptions,
    writer: DuckDBWriter | None,
    stats: RunStats,
    stop: threading.Event,
    sim: ClosedLoopSimulator | None = None,
    open_writer: Callable[[], DuckDBWriter] | None = None,
) -> Dataflow:
    """The dataflow of ``opts.spec``. The DuckDB file is written by ``writer`` (open, owned by
    the caller) or by one ``open_writer()`` opens when the dataflow starts and closes when it
    ends; cluster members other than process 0 pass neither."""
    spec = opts.spec
    flow = Dataflow(f"eddy-{spec.name}")
    deadline = None if opts.seconds is None else time.monotonic() + opts.seconds

    def should_stop() -> bool:
        return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    stop_flag = _StopFlag(should_stop)
    inputs = []
    sim_source = None
    sim_streams: dict[str, str] = {}
    for i, s in enumerate(spec.streams):
        source = opts.source_of(s.name)
        kind, _, target = source.partition(":")
        if kind == "simulator":  # one source for all of them, below (if it can run)
            sim_stream = target.partition("/")[2] or s.name
            sim_streams[sim_stream] = s.name
            continue
        base = i * PARTITIONS_PER_STREAM
        inputs.append(
            op.input(f"in_{s.name}", flow, _source(opts, source, s.name, stop_flag, base))
        )
    if sim_streams and sim is not None:
        sim_source = ClosedLoopSource(
            sim,
            {k: v for k, v in sim_streams.items()},
            partition_base={
                v: spec.streams.index(spec.stream(v)) * PARTITIONS_PER_STREAM
                for v in sim_streams.values()
            },
            batch_size=opts.batch,
            should_stop=should_stop,
            speed=opts.speed,
        )
        inputs.append(op.input("in_simulator", flow, sim_source))
    items = inputs[0] if len(inputs) == 1 else op.merge("inputs", *inputs)
    decoded = ops.decode("decode", items, spec)
    keyed = op.key_on("shard", decoded.oks, lambda _: _SHARD)
    expected = _partitions_with_data(opts)
    keep_state = opts.recovery is not None

    def logic(resume: bytes | None) -> _EngineLogic:
        return _EngineLogic(spec, resume, expected, keep_state, opts.batch)

    results = op.key_rm("unshard", op.stateful_batch("engine", keyed, logic))
    everything = op.merge("results", decoded.errs, results)
    topics = output_topics(spec.topics, opts.topic_prefix)
    # the DuckDB sink computes the metrics rows (once a second) and hands each batch to Kafka
    metrics_out = None
    if opts.kafka_out:
        metrics_out = KafkaTablePublisher(
            opts.kafka_out,
            "metrics",
            topics=topics,
            create_partitions=_KAFKA_PARTITIONS,
            linger_ms=1,
        )
    op.output(
        "duckdb",
        op.key_on("to_duckdb", everything, lambda _: "duckdb"),
        DuckDBSink(
            writer,
            stats,
            opts.run_id,
            local=writer is not None or open_writer is not None,
            drain_on_snapshot=keep_state,
            open_writer=open_writer,
            on_metrics=metrics_out,
        ),
    )
    if opts.kafka_out:
        sink = FencedKafkaResultsSink(
            opts.kafka_out,
            topics={t: name for t, name in topics.items() if t != "metrics"},
            create_partitions=_KAFKA_PARTITIONS,
            local=opts.process_id == 0,
            flush_on_snapshot=keep_state,
            start_file=Path(opts.recovery) / _KAFKA_FENCE_FILE if opts.recovery else None,
            linger_ms=1,  # what a consumer waits for a decision; load fills batches anyway
        )
        op.output("kafka", op.key_on("to_kafka", everything, lambda _: "kafka"), sink)
    if sim_source is not None and sim is not None and sim.decision_stream is not None:
        stream = sim_streams.get(sim.decision_stream)
        stages = {d.name for d in spec.decide if d.stream == stream}
        op.output("feedback", results, ClosedLoopFeedbackSink(sim_source, _decisions_of(stages)))
    return flow


def _decisions_of(stages: set[str]) -> Callable[[Any], Any]:
    def extract(res: Any) -> Any:
        dec = res.tables.get("decisions") if isinstance(res, Results) else None
        if dec is None:
            return None
        ids, arms, decide = dec["decision_id"], dec["arm"], dec["decide"]
        if len(stages) == 1 and next(iter(stages)) == decide[0] and (decide == decide[0]).all():
            return ids, arms
        mine = [d in stages for d in decide.tolist()]
        return ids[mine], arms[mine]

    return extract


def _partitions_with_data(opts: RunOptions) -> list[int]:
    """Input partitions that hold data now: the start-up gate waits for each (Kafka only; a
    file is one partition)."""
    out: list[int] = []
    for i, s in enumerate(opts.spec.streams):
        source = opts.source_of(s.name)
        if source.startswith("kafka:"):
            base = i * PARTITIONS_PER_STREAM
            out.extend(base + p for p in partitions_with_data(*parse_kafka_spec(source)))
    return out


def _source(opts: RunOptions, spec: str, stream: str, stop: threading.Event, base: int) -> Any:
    batch = opts.batch
    if spec.startswith("kafka:"):
        bootstrap, topic = parse_kafka_spec(spec)
        return KafkaSource(
            bootstrap,
            topic,
            stream=stream,
            batch_size=batch,
            stop=stop,
            stop_at_end=opts.until_end,
            partition_base=base,
            linger_s=_KAFKA_LINGER_S,
        )
    kind, _, path = spec.partition(":")
    if kind == "jsonl":
        return JsonlSource(
            [path],
            stream,
            batch_lines=batch,
            follow=opts.follow,
            stop=stop,
            partition_base=base,
            max_line_bytes=opts.spec.max_event_bytes,  # a longer line is a dead letter anyway
        )
    from eddy.sources.files import FrameSource

    return FrameSource(
        path, kind, opts.spec.stream(stream), batch_rows=batch, stop=stop, partition_base=base
    )


class _StopFlag(threading.Event):
    """An Event whose ``is_set`` also turns true when ``should_stop()`` does (deadline)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        super().__init__()
        self._should_stop = should_stop

    def is_set(self) -> bool:
        return super().is_set() or self._should_stop()
