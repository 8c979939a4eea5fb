"""Run a pipeline: open the DuckDB file, build the simulator if a stream asks for one, run
the Bytewax dataflow (one process, or one member of a cluster), and report what it did."""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.testing import cluster_main, run_main

from eddy.dataflows.flow import build_flow
from eddy.dataflows.run_options import RunOptions
from eddy.operators.stats import RunStats
from eddy.schemas.spec_load import as_mapping
from eddy.schemas.tables import pipeline_tables
from eddy.sinks.duckdb import DEFAULT_MEMORY_LIMIT, DuckDBWriter
from eddy.sources.simulators import SIMULATORS, make_simulator
from eddy.sources.simulators.base import ClosedLoopSimulator
from eddy.warmup import prime

__all__ = [
    "RunResult",
    "check_recovery_layout",
    "idle_streams",
    "local_addresses",
    "make_run_simulator",
    "open_writer",
    "prepare_recovery",
    "run_pipeline",
    "shard_layout",
    "simulator_streams",
]


@dataclass
class RunResult:
    run_id: str
    wall_s: float
    counters: dict[str, float]
    latency_ms: dict[str, float]
    scoreboard: dict[str, float] | None = None
    tables: dict[str, int] = field(default_factory=dict)
    # from the first results in a sink to the end: the run without its start-up
    busy_s: float | None = None
    # thread CPU seconds of each engine step in this process: decode, keyed, decide
    step_cpu_s: dict[str, float] = field(default_factory=dict)


def open_writer(opts: RunOptions) -> DuckDBWriter:
    """The DuckDB file with every table of the pipeline (``SchemaMismatch`` if it holds
    another pipeline's tables), DuckDB's memory held to the run's limit, rows past the spec's
    ``retention`` deleted as the run goes."""
    return DuckDBWriter(
        opts.db,
        tables=pipeline_tables(opts.spec),
        memory_limit=opts.duckdb_memory_limit or DEFAULT_MEMORY_LIMIT,
        retention_ms=opts.spec.retention_ms,
    )


def simulator_streams(opts: RunOptions) -> dict[str, str]:
    """Spec stream -> the simulator stream it reads (``simulator:NAME[/STREAM]`` sources)."""
    out = {}
    for s in opts.spec.streams:
        kind, _, target = opts.source_of(s.name).partition(":")
        if kind == "simulator":
            out[s.name] = target.partition("/")[2] or s.name
    return out


def idle_streams(opts: RunOptions) -> list[str]:
    """Simulator streams that get no input in this run: a closed-loop simulator answers
    decisions, so when its decision stream is read from elsewhere it cannot run."""
    read = simulator_streams(opts)
    if not read:
        return []
    name = opts.source_of(next(iter(read))).split(":", 1)[1].partition("/")[0]
    decides = SIMULATORS[name].decision_stream if name in SIMULATORS else None
    if decides is None or decides in read.values():
        return []
    return list(read)


def make_run_simulator(opts: RunOptions) -> ClosedLoopSimulator | None:
    """The simulator the spec's streams name (at most one), with the run's overrides; None
    when no stream reads from it, or it cannot run (see :func:`idle_streams`)."""
    names = {opts.source_of(s).split(":", 1)[1].partition("/")[0] for s in simulator_streams(opts)}
    if not names or idle_streams(opts):
        return None
    if len(names) > 1:
        raise ValueError(f"streams name several simulators ({', '.join(sorted(names))}); use one")
    options = dict(as_mapping(opts.spec.simulator))
    if opts.events is not None:
        options["events"] = opts.events
    if opts.forever:
        options["events"] = 0
    seed = int(options.pop("seed", opts.spec.seed))
    base = Path(opts.spec.path).parent if opts.spec.path else None
    return make_simulator(names.pop(), options, seed, base_dir=base)


# Young-generation collections every 50k allocations instead of 700: a batch allocates
# thousands of objects, and at the default the collector ran several times per batch.
_GC_THRESHOLD = (50_000, 20, 100)


@contextlib.contextmanager
def _streaming_gc() -> Iterator[None]:
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
    sim: ClosedLoopSimulator | None = None,
) -> RunResult:
    """Run until the input ends (or ``stop`` is set). With ``processes > 1`` this process is
    member ``process_id`` of a cluster over ``addresses``; process 0 owns the DuckDB file.

    Raises :class:`~eddy.sinks.duckdb.WriteFailed` when the DuckDB file fails during the run
    (disk full, I/O error, the file deleted)."""
    stop = stop or threading.Event()
    stats = stats or RunStats()
    owner = opts.process_id == 0
    own_writer = writer is None and owner and not opts.no_duckdb
    if own_writer:
        writer = open_writer(opts)
    if writer is not None and opts.processes == 1:
        # the file failed (disk full, deleted): end the input like Ctrl-C and report it below.
        # A cluster cannot stop this way (the other members' inputs go on), so there the
        # sink raises and the failure takes the cluster down.
        stopping = stop
        writer.on_failure(lambda _failure: stopping.set())
    if sim is None:
        sim = make_run_simulator(opts)
    recovery = None
    if opts.recovery is not None:
        check_recovery_layout(opts)
        layout = shard_layout(opts)
        recovery = RecoveryConfig(str(prepare_recovery(opts.recovery, opts.processes, layout)))
    epoch = timedelta(seconds=opts.snapshot_interval_s)
    prime()
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
    except Exception:
        failure = writer.failure if writer is not None else None
        if failure is not None:  # what Bytewax's error wraps, without Bytewax's wrapping
            raise failure from failure.__cause__
        raise
    finally:
        end = time.perf_counter()
        wall = end - t0
        failed = writer is not None and writer.failure is not None
        tables = writer.counts() if writer is not None and not failed else {}
        if own_writer and writer is not None:
            writer.close()
    if writer is not None and writer.failure is not None:
        raise writer.failure
    counters, hist = stats.view()
    return RunResult(
        run_id=opts.run_id,
        wall_s=wall,
        counters=counters,
        latency_ms={f"p{round(q * 100)}": hist.quantile(q) for q in (0.5, 0.95, 0.99)},
        scoreboard=None if sim is None else _scoreboard(sim),
        tables=tables,
        busy_s=None if stats.first_result_s is None else end - stats.first_result_s,
        step_cpu_s=dict(stats.step_cpu),
    )


def _scoreboard(sim: ClosedLoopSimulator) -> dict[str, float] | None:
    board: Any = sim.scoreboard()
    return dict(board) if board and board.get("decisions") else None


_LAYOUT_FILE = "eddy-shards.json"  # in the recovery directory


def shard_layout(opts: RunOptions) -> dict[str, Any]:
    """How a run splits its state: what a restart from its snapshots must split the same way."""
    from eddy.operators.engine.routing import Router

    return {
        "keyed_shards": Router(opts.spec, opts.n_shards).shards,
        "decide_shards": {d.name: d.shards for d in opts.spec.decide},
    }


def check_recovery_layout(opts: RunOptions) -> None:
    """Raise ``ValueError`` when ``opts.recovery`` holds snapshots of a run split otherwise
    (a shard's state would be lost or read by the wrong shard)."""
    if opts.recovery is None:
        return
    path = Path(opts.recovery) / _LAYOUT_FILE
    if not path.exists():
        return
    saved, now = json.loads(path.read_text()), shard_layout(opts)
    if saved != now:
        raise ValueError(
            f"--recovery: {opts.recovery!r} holds the state of a run split as "
            f"{json.dumps(saved, sort_keys=True)}; this run is split as "
            f"{json.dumps(now, sort_keys=True)} (keyed shards: --shards, else one per worker): "
            "restart with the same split, or use a new recovery directory"
        )


def prepare_recovery(directory: str, processes: int, layout: dict[str, Any] | None = None) -> Path:
    """Create Bytewax's recovery partitions in ``directory`` unless they exist (one per
    process; a restart reuses them and resumes from the last complete snapshot), and record
    ``layout`` (:func:`shard_layout`) beside them."""
    path = Path(directory)
    if not any(path.glob("part-*.sqlite3")):
        path.mkdir(parents=True, exist_ok=True)
        init_db_dir(path, processes)
        if layout is not None:
            (path / _LAYOUT_FILE).write_text(json.dumps(layout, sort_keys=True))
    return path


def local_addresses(n: int) -> list[str]:
    """``n`` loopback addresses for a one-machine cluster (free ports from the OS)."""
    socks = []
    for _ in range(n):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        socks.append(sock)
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return [f"127.0.0.1:{p}" for p in ports]
