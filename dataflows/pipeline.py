"""The reference pipeline wired in Bytewax: sources -> decode -> engine -> sinks.

    simulator | jsonl requests (+ jsonl outcomes)          micro-batches, never single events
        -> decode (stateless: RawBatch -> columnar batch + dead letters)
        -> engine (stateful_batch on one shard key: operators.adserving.AdServingEngine)
        -> DuckDB (one writer) [+ simulator feedback]

Only wiring lives here; the logic is in ``operators/`` and the I/O in ``sources/``/``sinks/``.
"""

from __future__ import annotations

import contextlib
import gc
import pickle
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main, run_main

from eddy.dataflows.config import Settings
from eddy.operators.adserving import AdServingEngine, EngineConfig
from eddy.operators.partition_gate import PartitionGate
from eddy.operators.stats import RunStats, lag_gauge
from eddy.schemas.events import OutcomeBatch, RequestBatch, decode_outcomes, decode_requests
from eddy.schemas.results import Results, dead_letter_results
from eddy.schemas.topics import OUTPUT_TOPICS
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.duckdb_sink import DuckDBSink
from eddy.sinks.kafka_fenced import FencedKafkaResultsSink
from eddy.sources.base import OUTCOMES, REQUESTS, RawBatch
from eddy.sources.jsonl import JsonlSource
from eddy.sources.kafka import KafkaSource, parse_kafka_spec, partitions_with_data
from eddy.sources.sim_source import SimulatorFeedbackSink, SimulatorSource
from eddy.sources.simulator import Simulator

__all__ = ["RunOptions", "RunResult", "build_flow", "run_pipeline"]

_SHARD = "engine"
_OUTCOME_PARTITIONS = 1_000  # outcome partitions are numbered from here (own watermark)
# A caught-up Kafka partition waits this long between polls: an engine call costs ~1-2 ms
# whatever its size, so fewer, larger batches; at 5,000 requests/s (+ outcomes) this cut the
# pipeline's CPU from ~0.5 to ~0.3 cores (benchmarks/kafka_latency.py).
_KAFKA_LINGER_S = 0.02


@dataclass
class RunOptions:
    """What ``eddy run`` asked for; ``source`` is ``simulator`` or ``jsonl:PATH``."""

    settings: Settings
    source: str = "simulator"
    rewards: str | None = None
    seconds: float | None = None
    follow: bool = False
    speed: float | None = None
    until_end: bool = False  # kafka: stop at the end of what the topics held at start
    kafka_out: str | None = None  # bootstrap to publish results to (None: no Kafka output)
    recovery: str | None = None  # Bytewax recovery directory
    snapshot_interval_s: float = 1.0
    processes: int = 1
    process_id: int = 0
    addresses: list[str] | None = None
    topic_prefix: str = ""  # output topics are named prefix + schemas.topics name
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])


@dataclass
class RunResult:
    run_id: str
    wall_s: float
    counters: dict[str, float]
    latency_ms: dict[str, float]
    scoreboard: Any = None
    tables: dict[str, int] = field(default_factory=dict)


class _EngineLogic(StatefulBatchLogic[Any, Results, bytes]):
    """The engine behind a start-up :class:`PartitionGate` (no partition starts late).

    Bytewax asks for a snapshot at every epoch end, with or without recovery; the engine's
    costs tens of milliseconds (a stall of the whole worker), so without recovery
    (``keep_state=False``) it is not taken."""

    def __init__(
        self,
        config: EngineConfig,
        resume: bytes | None,
        expected: Iterable[int],
        keep_state: bool,
        step_rows: int,
    ) -> None:
        self._keep_state = keep_state
        self._step_rows = step_rows  # the sources' batch size: a full batch is its own step
        self._gate = PartitionGate(expected)
        self._finished = False
        state = pickle.loads(resume) if resume else None
        if isinstance(state, dict) and "eddy_engine" in state:
            self._engine = AdServingEngine.restore(config, state["eddy_engine"])
            self._gate = state["gate"]
            self._finished = state["finished"]
        elif resume:  # a bare engine snapshot (before the gate existed)
            self._engine = AdServingEngine.restore(config, resume)
        else:
            self._engine = AdServingEngine(config)

    def _process(self, items: list[Any]) -> list[Results]:
        # what arrived together is one engine step (at live rates: several small batches)
        return [self._engine.process_many(items, self._step_rows)] if items else []

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
            out.append(self._engine.finish())
        return out, StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        if not self._keep_state:
            return b""
        state = {
            "eddy_engine": self._engine.snapshot(),
            "gate": self._gate,
            "finished": self._finished,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)


def _decoder(settings: Settings) -> Callable[[Any], list[Any]]:
    def decode(item: Any) -> list[Any]:
        if not isinstance(item, RawBatch):
            return [(0, item)]  # the simulator: one partition, already decoded
        if item.stream == REQUESTS:
            batch: RequestBatch | OutcomeBatch
            batch, dead = decode_requests(
                item.lines,
                item.positions,
                item.source,
                item.ingest_ns,
                settings.max_event_bytes,
                settings.time_field,
            )
        else:
            batch, dead = decode_outcomes(
                item.lines,
                item.positions,
                item.source,
                settings.max_event_bytes,
                settings.time_field,
            )
        report = dead_letter_results(dead, time.time_ns() // 1_000_000)
        report.count("decode.events_in", len(item))
        report.count("decode.events_out", len(batch))
        report.count("decode.dead_letters", len(dead))
        if item.lag >= 0:  # what the partition still holds (Kafka records, file bytes)
            report.gauges[lag_gauge(item.stream, item.partition, item.lag_unit)] = item.lag
        out: list[Any] = [report]
        if len(batch):
            out.append((item.partition, batch))
        return out

    return decode


def _decisions_of(res: Any) -> Any:
    dec = res.tables.get("decisions") if isinstance(res, Results) else None
    if dec is None:
        return None
    return dec["decision_id"], dec["arm"].astype("int64")


def build_flow(
    opts: RunOptions,
    writer: DuckDBWriter | None,
    stats: RunStats,
    stop: threading.Event,
    sim: Simulator | None = None,
) -> Dataflow:
    s = opts.settings
    flow = Dataflow("eddy")
    sim_source = None
    deadline = None if opts.seconds is None else time.monotonic() + opts.seconds

    def should_stop() -> bool:
        return stop.is_set() or (deadline is not None and time.monotonic() >= deadline)

    stop_flag = _StopFlag(should_stop)
    if opts.source == "simulator":
        assert sim is not None
        sim_source = SimulatorSource(
            sim, batch_size=s.batch_size, should_stop=should_stop, speed=opts.speed
        )
        items = op.input("simulator", flow, sim_source)
    else:
        items = op.input("requests", flow, _source(opts, opts.source, REQUESTS, stop_flag, 0))
        if opts.rewards:
            outcomes = _source(opts, opts.rewards, OUTCOMES, stop_flag, _OUTCOME_PARTITIONS)
            items = op.merge("inputs", items, op.input("outcomes", flow, outcomes))
    decoded = op.flat_map("decode", items, _decoder(s))
    routed = op.branch("route", decoded, lambda x: isinstance(x, Results))
    keyed = op.key_on("shard", routed.falses, lambda _: _SHARD)
    engine_config = s.engine
    expected = _partitions_with_data(opts)
    keep_state = opts.recovery is not None

    def logic(resume: bytes | None) -> _EngineLogic:
        return _EngineLogic(engine_config, resume, expected, keep_state, s.batch_size)

    results = op.key_rm("unshard", op.stateful_batch("engine", keyed, logic))
    everything = op.merge("results", routed.trues, results)
    op.output(
        "duckdb",
        op.key_on("to_duckdb", everything, lambda _: "duckdb"),
        DuckDBSink(
            writer, stats, opts.run_id, local=writer is not None, drain_on_snapshot=keep_state
        ),
    )
    if opts.kafka_out:
        topics = {table: opts.topic_prefix + t for table, t in OUTPUT_TOPICS.items()}
        sink = FencedKafkaResultsSink(
            opts.kafka_out,
            topics=topics,
            create_partitions=3,
            local=opts.process_id == 0,
            flush_on_snapshot=keep_state,
            linger_ms=1,  # what a consumer waits for a decision; load fills batches anyway
        )
        op.output("kafka", op.key_on("to_kafka", everything, lambda _: "kafka"), sink)
    if sim_source is not None:
        op.output("feedback", results, SimulatorFeedbackSink(sim_source, _decisions_of))
    return flow


def _partitions_with_data(opts: RunOptions) -> list[int]:
    """Input partitions (as the engine numbers them) that hold data now: the start-up gate
    waits for each of them (Kafka only; a file is one partition per stream)."""
    out: list[int] = []
    for spec, base in ((opts.source, 0), (opts.rewards, _OUTCOME_PARTITIONS)):
        if spec and spec.startswith("kafka:"):
            out.extend(base + p for p in partitions_with_data(*parse_kafka_spec(spec)))
    return out


def _source(opts: RunOptions, spec: str, stream: str, stop: threading.Event, base: int) -> Any:
    batch = opts.settings.batch_size
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
    path = spec.removeprefix("jsonl:")
    return JsonlSource(
        [path], stream, batch_lines=batch, follow=opts.follow, stop=stop, partition_base=base
    )


class _StopFlag(threading.Event):
    """An Event whose ``is_set`` also turns true when ``should_stop()`` does (deadline)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        super().__init__()
        self._should_stop = should_stop

    def is_set(self) -> bool:
        return super().is_set() or self._should_stop()


# Young-generation collections every 50k allocations instead of 700: a batch allocates
# thousands of objects, and at the default the collector ran several times per batch (the
# engine alone replayed 400k events ~5 % faster with this). Reference cycles still go.
_GC_THRESHOLD = (50_000, 20, 100)


@contextlib.contextmanager
def _streaming_gc() -> Iterator[None]:
    """Collect the young generation rarely while the run lasts."""
    before = gc.get_threshold()
    gc.set_threshold(*_GC_THRESHOLD)
    try:
        yield
    finally:
        gc.set_threshold(*before)


def run_pipeline(
    opts: RunOptions,
    *,
    stop: threading.Event | None = None,
    writer: DuckDBWriter | None = None,
    stats: RunStats | None = None,
    sim: Simulator | None = None,
) -> RunResult:
    """Run the pipeline until its input ends (or ``stop`` is set).

    With ``processes > 1`` this process is one member (``process_id``) of a Bytewax cluster over
    ``addresses``; process 0 owns the DuckDB file (pass ``writer=None`` elsewhere)."""
    stop = stop or threading.Event()
    stats = stats or RunStats()
    owner = opts.process_id == 0
    own_writer = writer is None and owner
    if own_writer:
        writer = DuckDBWriter(opts.settings.duckdb)
    if opts.source == "simulator" and sim is None:
        sim = Simulator(opts.settings.simulator)
    recovery = None
    if opts.recovery is not None:
        recovery = RecoveryConfig(str(prepare_recovery(opts.recovery, opts.processes)))
    epoch = timedelta(seconds=opts.snapshot_interval_s)
    t0 = time.perf_counter()
    try:
        with _streaming_gc():
            flow = build_flow(opts, writer, stats, stop, sim)
            if opts.processes > 1:
                addresses = opts.addresses or local_addresses(opts.processes)
                cluster_main(
                    flow, addresses, opts.process_id, epoch_interval=epoch, recovery_config=recovery
                )
            else:
                run_main(flow, epoch_interval=epoch, recovery_config=recovery)
    finally:
        wall = time.perf_counter() - t0
        tables = writer.counts() if writer is not None else {}
        if own_writer and writer is not None:
            writer.close()
    counters, hist = stats.view()
    return RunResult(
        run_id=opts.run_id,
        wall_s=wall,
        counters=counters,
        latency_ms={f"p{round(q * 100)}": hist.quantile(q) for q in (0.5, 0.95, 0.99)},
        scoreboard=None if sim is None else sim.scoreboard,
        tables=tables,
    )


def prepare_recovery(directory: str, processes: int) -> Path:
    """Create Bytewax's recovery partitions in ``directory`` unless they exist (one per
    process; a restart reuses them and resumes from the last complete snapshot)."""
    path = Path(directory)
    if not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, processes)
    return path


def local_addresses(n: int, base_port: int | None = None) -> list[str]:
    """``n`` loopback addresses for a one-machine cluster (free ports from the OS)."""
    if base_port is not None:
        return [f"127.0.0.1:{base_port + i}" for i in range(n)]
    ports = []
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
        ports.append(sock.getsockname()[1])
    for sock in socks:
        sock.close()
    return [f"127.0.0.1:{p}" for p in ports]
