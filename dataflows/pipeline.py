"""The reference pipeline wired in Bytewax: sources -> decode -> engine -> sinks.

    simulator | jsonl requests (+ jsonl outcomes)          micro-batches, never single events
        -> decode (stateless: RawBatch -> columnar batch + dead letters)
        -> engine (stateful_batch on one shard key: operators.adserving.AdServingEngine)
        -> DuckDB (one writer) [+ simulator feedback]

Only wiring lives here; the logic is in ``operators/`` and the I/O in ``sources/``/``sinks/``.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import bytewax.operators as op
from bytewax.dataflow import Dataflow
from bytewax.operators import StatefulBatchLogic
from bytewax.testing import run_main

from dataflows.config import Settings
from operators.adserving import AdServingEngine, EngineConfig
from operators.stats import RunStats
from schemas.events import OutcomeBatch, RequestBatch, decode_outcomes, decode_requests
from schemas.results import Results, dead_letter_results
from sinks.duckdb import DuckDBWriter
from sinks.duckdb_sink import DuckDBSink
from sources.base import REQUESTS, RawBatch
from sources.jsonl import JsonlSource
from sources.sim_source import SimulatorFeedbackSink, SimulatorSource
from sources.simulator import Simulator

__all__ = ["RunOptions", "RunResult", "build_flow", "run_pipeline"]

_SHARD = "engine"


@dataclass
class RunOptions:
    """What ``eddy run`` asked for; ``source`` is ``simulator`` or ``jsonl:PATH``."""

    settings: Settings
    source: str = "simulator"
    rewards: str | None = None
    seconds: float | None = None
    follow: bool = False
    speed: float | None = None
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
    def __init__(self, config: EngineConfig, resume: bytes | None) -> None:
        self._engine = (
            AdServingEngine(config) if resume is None else AdServingEngine.restore(config, resume)
        )
        self._finished = False

    def on_batch(self, values: list[Any]) -> tuple[list[Results], bool]:
        return [self._engine.process(b, p) for p, b in values], StatefulBatchLogic.RETAIN

    def on_eof(self) -> tuple[list[Results], bool]:
        if self._finished:
            return [], StatefulBatchLogic.RETAIN
        self._finished = True
        return [self._engine.finish()], StatefulBatchLogic.RETAIN

    def snapshot(self) -> bytes:
        return self._engine.snapshot()


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
        out: list[Any] = []
        if dead:
            out.append(dead_letter_results(dead, time.time_ns() // 1_000_000))
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
    writer: DuckDBWriter,
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

    if opts.source == "simulator":
        assert sim is not None
        sim_source = SimulatorSource(
            sim, batch_size=s.batch_size, should_stop=should_stop, speed=opts.speed
        )
        items = op.input("simulator", flow, sim_source)
    else:
        path = opts.source.removeprefix("jsonl:")
        stop_flag = _StopFlag(should_stop)
        items = op.input(
            "requests",
            flow,
            JsonlSource(
                [path], REQUESTS, batch_lines=s.batch_size, follow=opts.follow, stop=stop_flag
            ),
        )
        if opts.rewards:
            rpath = opts.rewards.removeprefix("jsonl:")
            outcomes = op.input(
                "outcomes",
                flow,
                JsonlSource(
                    [rpath],
                    "outcomes",
                    batch_lines=s.batch_size,
                    follow=opts.follow,
                    stop=stop_flag,
                    partition_base=1,
                ),
            )
            items = op.merge("inputs", items, outcomes)
    decoded = op.flat_map("decode", items, _decoder(s))
    routed = op.branch("route", decoded, lambda x: isinstance(x, Results))
    keyed = op.key_on("shard", routed.falses, lambda _: _SHARD)
    engine_config = s.engine
    results = op.key_rm(
        "unshard", op.stateful_batch("engine", keyed, lambda r: _EngineLogic(engine_config, r))
    )
    everything = op.merge("results", routed.trues, results)
    op.output(
        "duckdb",
        op.key_on("to_duckdb", everything, lambda _: "duckdb"),
        DuckDBSink(writer, stats, opts.run_id),
    )
    if sim_source is not None:
        op.output("feedback", results, SimulatorFeedbackSink(sim_source, _decisions_of))
    return flow


class _StopFlag(threading.Event):
    """An Event whose ``is_set`` also turns true when ``should_stop()`` does (deadline)."""

    def __init__(self, should_stop: Callable[[], bool]) -> None:
        super().__init__()
        self._should_stop = should_stop

    def is_set(self) -> bool:
        return super().is_set() or self._should_stop()


def run_pipeline(
    opts: RunOptions,
    *,
    stop: threading.Event | None = None,
    writer: DuckDBWriter | None = None,
    stats: RunStats | None = None,
    sim: Simulator | None = None,
) -> RunResult:
    """Run the pipeline in this thread until its input ends (or ``stop`` is set)."""
    stop = stop or threading.Event()
    stats = stats or RunStats()
    own_writer = writer is None
    writer = writer or DuckDBWriter(opts.settings.duckdb)
    if opts.source == "simulator" and sim is None:
        sim = Simulator(opts.settings.simulator)
    t0 = time.perf_counter()
    try:
        flow = build_flow(opts, writer, stats, stop, sim)
        run_main(flow, epoch_interval=None)
    finally:
        wall = time.perf_counter() - t0
        tables = writer.counts()
        if own_writer:
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
