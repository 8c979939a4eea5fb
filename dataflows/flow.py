"""Any pipeline spec wired in Bytewax: sources -> decode -> engine -> sinks.

    per stream: simulator | jsonl | csv | parquet | kafka     micro-batches, never single events
        -> decode (stateless: RawBatch -> EventBatch + dead letters; schemas.decode)
        -> keyed shards (stateful_batch: operators.engine.KeyedEngine behind a start-up gate;
           rows routed by their stage key) -> decide shards (DecideEngine; by decision id)
        -> DuckDB (one writer) [+ Kafka topics] [+ the simulator's feedback]
           DuckDB's per-second metrics rows -> [the Kafka metrics topic]

Only wiring lives here: the logic is in ``operators/``, the I/O in ``sources/`` and ``sinks/``.
Input partitions are numbered ``1000 * <stream index> + <partition>``, so every stream keeps
its own watermark over its own partitions.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeGuard, cast

import bytewax.operators as op
from bytewax.dataflow import Dataflow, Stream
from bytewax.operators import KeyedStream

from eddy.dataflows.ops import raw_decoder
from eddy.dataflows.packet import Packet
from eddy.dataflows.routing import decoder_keys, shard_names
from eddy.dataflows.run_options import RunOptions
from eddy.dataflows.shards import (
    BatchNumbers,
    DecideGroup,
    DecideLogic,
    Decoded,
    DecodeLogic,
    KeyedLogic,
    KeyedOutput,
    Numbered,
    OpenedLogic,
    Parcel,
    TimedLogic,
    timed,
)
from eddy.dataflows.stats_board import stats_board
from eddy.operators.engine.routing import Router
from eddy.operators.sharding import Piece
from eddy.operators.stats import RunStats
from eddy.schemas.results import Results
from eddy.schemas.topics import output_topics
from eddy.sinks.counting import CountingSink
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.duckdb_sink import DuckDBSink
from eddy.sinks.kafka import KafkaTablePublisher
from eddy.sinks.kafka_fenced import FencedKafkaResultsSink
from eddy.sources.base import RawBatch
from eddy.sources.jsonl import JsonlSource
from eddy.sources.kafka import KafkaSource, parse_kafka_spec, partitions_with_data
from eddy.sources.simulators.base import ClosedLoopSimulator
from eddy.sources.simulators.source import ClosedLoopFeedbackSink, ClosedLoopSource

__all__ = ["PARTITIONS_PER_STREAM", "build_flow"]

PARTITIONS_PER_STREAM = 1_000
# A caught-up Kafka partition waits this long between polls: an engine call costs ~1-2 ms
# whatever its size, so fewer, larger batches (benchmarks/kafka_latency.py).
_KAFKA_LINGER_S = 0.02
_KAFKA_FENCE_FILE = "kafka-fence-starts.json"  # in the recovery directory
_KAFKA_PARTITIONS = 3  # of the output topics eddy creates


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
    dead, results = _engine(items, opts, stats)
    keep_state = opts.recovery is not None
    everything = op.merge("results", dead, results)
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
    if opts.no_duckdb:  # counted where computed: Kafka (below) is the only output
        op.output("count", everything, CountingSink(stats))
    else:
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


def _engine(
    items: Stream[RawBatch], opts: RunOptions, stats: RunStats
) -> tuple[Stream[Results], Stream[Results]]:
    """Decode, then keyed shards, then decide shards (``dataflows/shards.py``): the dead
    letters and decode counters, and the stages' results (each step's CPU time goes to
    ``stats``). Shard ``i`` of each step lives on
    worker ``i % workers``. With several workers, raw batches are numbered where they are read
    and dealt out to the workers that decode (``routing.decoder_keys``: those without a decide
    shard, when there are any); each keyed shard puts its pieces back in order
    (``operators/sequence.py``). What goes to a stateful step travels in a ``Packet``, pickled
    once if it crosses to another process (``dataflows/packet.py``)."""
    spec = opts.spec
    router = Router(spec, opts.n_shards)
    workers = opts.processes
    keyed_keys = shard_names("keyed-", router.shards, workers)
    # decide stages start from the last worker (the first one reads most of the input when a
    # spec has few input partitions), the next stage from the one before
    decide_keys = {
        d.name: shard_names(f"{d.name}-", d.shards, workers, start=workers - 1 - j)
        for j, d in enumerate(spec.decide)
    }
    expected = _partitions_with_data(opts)
    keep_state = opts.recovery is not None
    decode = raw_decoder(spec)

    def decode_and_split(item: Numbered) -> list[Decoded]:
        order, raw = item
        report, batch = decode(raw)
        if not len(batch) and order is None:
            return [report]
        pieces = router.pieces(raw.partition, batch, order)
        return [report, *((keyed_keys[i], Packet((i, piece))) for i, piece in enumerate(pieces))]

    decode_timed = timed(decode_and_split, "decode", stats)
    if workers > 1:
        numbered = op.map("number", items, BatchNumbers(decoder_keys(workers, decide_keys)))
        spread = op.key_rm(
            "decoded_out",
            op.stateful_batch("decode", numbered, lambda _: OpenedLogic(DecodeLogic(decode_timed))),
        )
    else:
        spread = op.flat_map("decode", op.map("unnumbered", items, _unnumbered), decode_timed)
    decoded = op.branch("decoded", spread, _is_report)
    # the rest: keyed pieces
    pieces = cast(KeyedStream[Packet[tuple[int, Piece]]], decoded.falses)

    def keyed_logic(resume: bytes | None) -> OpenedLogic[tuple[int, Piece], KeyedOutput, bytes]:
        logic = KeyedLogic(spec, router.shards, resume, expected, keep_state, opts.batch)
        return OpenedLogic(TimedLogic(logic, "keyed", stats))

    group = DecideGroup(stats_board(opts))

    def decide_logic(resume: bytes | None) -> OpenedLogic[Parcel, Results, bytes]:
        logic = DecideLogic(spec, router.shards, resume, keep_state, group)
        return OpenedLogic(TimedLogic(logic, "decide", stats))

    keyed = op.key_rm("keyed_out", op.stateful_batch("engine", pieces, keyed_logic))
    results = op.map("keyed_results", keyed, lambda k: k.results)
    if not spec.decide:
        return decoded.trues, results
    parcels = op.flat_map(
        "parcels", keyed, lambda k: [(decide_keys[p.stage][p.shard], Packet(p)) for p in k.parcels]
    )
    decided = op.key_rm("decided", op.stateful_batch("decide", parcels, decide_logic))
    return decoded.trues, op.merge("engine_results", results, decided)


def _is_report(item: Decoded) -> TypeGuard[Results]:
    return isinstance(item, Results)


def _unnumbered(raw: RawBatch) -> Numbered:
    return None, raw


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
