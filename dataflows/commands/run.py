"""`eddy run`: run a pipeline spec (default: the reference ad-serving spec) into DuckDB."""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from eddy.sinks.duckdb import WriteFailed
    from eddy.sinks.query_server import QueryServer

__all__ = ["add_parser", "load_pipeline", "reference_spec_path"]

_EPILOG = """examples:
  eddy run                                   # the reference pipeline: simulated ad traffic
  eddy run --pipeline examples/sensors.toml  # any spec
  eddy run --pipeline my.toml --source readings=csv:today.csv --duckdb today.duckdb
  eddy run --forever                         # until Ctrl-C; query it live with `eddy sql`
  eddy run --source jsonl:requests.jsonl --rewards jsonl:outcomes.jsonl
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run a pipeline spec into DuckDB (default: the reference ad-serving pipeline)",
        description="Run a pipeline spec: its features, detectors and decisions, results into "
        "DuckDB (and Kafka).",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pipeline", metavar="FILE", help="pipeline spec (TOML); default: reference")
    p.add_argument(
        "--source",
        action="append",
        default=[],
        metavar="[STREAM=]SPEC",
        help="read STREAM from SPEC (jsonl:PATH, csv:PATH, parquet:PATH, kafka:HOST:PORT/TOPIC, "
        "simulator:NAME); without STREAM=: the pipeline's decision stream or only stream",
    )
    p.add_argument("--rewards", metavar="SPEC", help="source of the first decide stage's outcomes")
    p.add_argument("--duckdb", metavar="PATH", help="results database (default: the spec's)")
    p.add_argument("--seed", type=int, metavar="N", help="simulator and policy seed")
    p.add_argument("--events", type=int, metavar="N", help="simulated events to generate")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds wall clock")
    p.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    p.add_argument("--speed", type=float, metavar="X", help="pace a simulator at X times real time")
    p.add_argument("--follow", action="store_true", help="tail JSONL files as they grow")
    p.add_argument("--batch-size", type=int, metavar="N", help="most events per micro-batch")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port)",
    )
    p.add_argument(
        "--retention",
        metavar="DURATION",
        help="delete result rows older than this as the run goes, e.g. 1h (default: the "
        "spec's [pipeline] retention; none: keep everything)",
    )
    p.add_argument(
        "--duckdb-memory-limit",
        metavar="SIZE",
        help="most memory DuckDB may hold, e.g. 512MB (default 256MB)",
    )
    k = p.add_argument_group("kafka, recovery and scale-out")
    k.add_argument("--until-end", action="store_true", help="kafka: stop at the topics' end")
    k.add_argument(
        "--kafka-out",
        metavar="HOST:PORT",
        help="publish decisions, anomalies, metrics, dead letters, drift alerts to Kafka "
        "(default: the cluster of a Kafka source)",
    )
    k.add_argument("--no-kafka-out", action="store_true", help="do not publish to Kafka")
    k.add_argument("--topic-prefix", default="", metavar="P", help="prefix of output topics")
    k.add_argument("--recovery", metavar="DIR", help="Bytewax recovery directory")
    k.add_argument(
        "--snapshot-interval", type=float, default=1.0, metavar="S", help="epoch length (s)"
    )
    k.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="worker processes on this machine (one Bytewax worker each: Python threads would "
        "share one core); keyed state is split into --shards shards",
    )
    k.add_argument(
        "--shards",
        type=int,
        metavar="N",
        help="shards of keyed state (default: [pipeline] shards, else one per worker)",
    )
    k.add_argument(
        "--processes", type=int, default=1, metavar="N", help="cluster processes (as --workers)"
    )
    k.add_argument("--addresses", metavar="A,B,...", help="HOST:PORT of every cluster process")
    k.add_argument("--process-id", type=int, metavar="I", help="this process's index")
    k.add_argument(
        "--exchange-dir",
        metavar="DIR",
        help="a new directory every cluster process reaches, where the shards of a decide "
        "stage share what they learned (default: in --recovery; one machine: a temporary one)",
    )
    p.set_defaults(func=_run)


def reference_spec_path() -> Path:
    """The reference pipeline shipped with the package (``examples/adserving.toml``)."""
    from importlib.resources import files

    return Path(str(files("eddy.examples") / "adserving.toml"))


def load_pipeline(path: str | None) -> Any:
    """Parse and check a spec file (or the reference); a bad one is a ``UsageError``."""
    from eddy.dataflows.cli import UsageError
    from eddy.dataflows.plan import check_engine
    from eddy.schemas.spec import SpecError
    from eddy.schemas.spec_load import load_spec

    try:
        spec = load_spec(path or reference_spec_path())
        check_engine(spec)
    except SpecError as e:
        raise UsageError(str(e)) from None
    return spec


# -- argument rules: (applies, message) ------------------------------------------------------
_Rule = tuple[Callable[[argparse.Namespace, Any], bool], str]
_RULES: tuple[_Rule, ...] = (
    (lambda a, s: a.processes < 1, "--processes: expected a number >= 1"),
    (lambda a, s: a.workers is not None and a.workers < 1, "--workers: expected a number >= 1"),
    (
        lambda a, s: a.workers is not None and a.processes not in (1, a.workers),
        "--workers and --processes: give one of them (both count worker processes)",
    ),
    (
        lambda a, s: a.shards is not None and not 1 <= a.shards <= 256,
        "--shards: expected a number from 1 to 256",
    ),
    (  # NaN and inf pass a "<= 0" test, then fail in Bytewax's timedelta
        lambda a, s: not 0 < a.snapshot_interval <= 86_400,
        "--snapshot-interval: expected seconds > 0, at most 86400 (a day)",
    ),
    (
        lambda a, s: a.forever and (a.events is not None or a.seconds is not None),
        "--forever cannot be combined with --events or --seconds",
    ),
    # a simulator takes 0 events as "no end": --events 0 would run until Ctrl-C
    (
        lambda a, s: a.events is not None and a.events < 1,
        "--events: expected a number >= 1 (--forever runs without end)",
    ),
    (
        lambda a, s: a.batch_size is not None and a.batch_size < 1,
        "--batch-size: expected a number >= 1",
    ),
    (lambda a, s: a.seconds is not None and not a.seconds > 0, "--seconds: expected a number > 0"),
    (  # event time runs speed x wall time ahead: a huge factor overflows the simulator
        lambda a, s: a.speed is not None and not 0 < a.speed <= 1e6,
        "--speed: expected a number > 0, at most 1000000 (without --speed: as fast as it goes)",
    ),
    (
        lambda a, s: a.seed is not None and not 0 <= a.seed < 2**63,
        "--seed: expected a number from 0 to 2**63 - 1 (as [pipeline] seed)",
    ),
    (
        lambda a, s: (
            a.addresses is not None
            and (a.process_id is None or not 0 <= a.process_id < len(a.addresses.split(",")))
        ),
        "--addresses needs --process-id between 0 and the number of addresses - 1",
    ),
    (
        lambda a, s: (
            a.addresses is not None and a.processes not in (1, len(a.addresses.split(",")))
        ),
        "--processes must match the number of --addresses",
    ),
    (
        lambda a, s: a.kafka_out is not None and a.no_kafka_out,
        "--kafka-out and --no-kafka-out exclude each other",
    ),
)


def _sources(args: argparse.Namespace, spec: Any) -> dict[str, str]:
    """``--source``/``--rewards`` as stream -> source (checked: streams exist, kinds known)."""
    from eddy.dataflows.cli import UsageError
    from eddy.schemas.spec import SpecError
    from eddy.schemas.spec_load import check_source

    names = [s.name for s in spec.streams]
    out: dict[str, str] = {}
    default = spec.decide[0].stream if spec.decide else (names[0] if len(names) == 1 else None)
    for value in args.source:
        stream, sep, src = value.partition("=")
        if not sep or stream not in names:
            if value == "simulator":  # the spec's own simulator (the default)
                continue
            stream, src = default or "", value
            if not stream:
                raise UsageError(
                    f"--source {value!r}: the pipeline has streams {', '.join(names)}; "
                    "name one as --source STREAM=SPEC"
                )
        out[stream] = src
    if args.rewards is not None:
        if not spec.decide:
            raise UsageError("--rewards: the pipeline has no decide stage")
        out[spec.decide[0].reward.stream] = args.rewards
    for stream, src in out.items():
        try:
            check_source(src, f"--source {stream}")
        except SpecError as e:
            message = str(e).replace("key '--source", "--source").replace("':", ":", 1)
            raise UsageError(message) from None
    return out


def _options(args: argparse.Namespace) -> Any:
    from eddy.dataflows.cli import UsageError
    from eddy.dataflows.run_options import RunOptions

    spec = load_pipeline(args.pipeline)
    for applies, message in _RULES:
        if applies(args, spec):
            raise UsageError(message)
    if args.workers is not None:
        args.processes = args.workers
    if args.seed is not None:
        spec = replace(spec, seed=args.seed, simulator=_with(spec.simulator, "seed", args.seed))
    if args.retention is not None:
        spec = replace(spec, retention_ms=_retention(args.retention))
    sources = _sources(args, spec)
    opts = RunOptions(
        spec=spec,
        sources=sources,
        duckdb=args.duckdb,
        batch_size=args.batch_size,
        events=args.events,
        forever=args.forever,
        seconds=args.seconds,
        follow=args.follow,
        speed=args.speed,
        until_end=args.until_end,
        recovery=args.recovery,
        exchange_dir=args.exchange_dir,
        snapshot_interval_s=args.snapshot_interval,
        topic_prefix=args.topic_prefix,
        duckdb_memory_limit=_memory_limit(args.duckdb_memory_limit),
        shards=args.shards,
    )
    kinds = {opts.source_of(s.name).split(":", 1)[0] for s in spec.streams}
    _check_run(args, opts, kinds)
    addresses = args.addresses.split(",") if args.addresses else None
    opts.addresses = addresses
    opts.processes = len(addresses) if addresses else args.processes
    opts.process_id = args.process_id or 0
    kafka = [src for s in spec.streams if (src := opts.source_of(s.name)).startswith("kafka:")]
    if args.kafka_out is not None:
        opts.kafka_out = args.kafka_out
    elif kafka and not args.no_kafka_out:
        from eddy.sources.kafka import parse_kafka_spec

        opts.kafka_out = parse_kafka_spec(kafka[0])[0]
    from eddy.dataflows.runner import check_recovery_layout

    try:
        check_recovery_layout(opts)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if opts.processes > 1 and "simulator" in kinds:
        raise UsageError(
            "--workers/--processes: a simulator runs in one process; feed several workers "
            "from files or Kafka (--source STREAM=jsonl:PATH)"
        )
    from eddy.dataflows.stats_board import EXCHANGE_DIR_NEEDED, needs_exchange_dir

    # a local cluster (no --addresses) makes its own directory
    if addresses is not None and needs_exchange_dir(opts):
        raise UsageError(EXCHANGE_DIR_NEEDED)
    return opts


def _retention(value: str) -> int:
    from eddy.dataflows.cli import UsageError
    from eddy.schemas.durations import parse_duration

    try:
        ms = parse_duration(value)
    except ValueError as e:
        raise UsageError(f"--retention: {e}") from None
    if ms <= 0:
        raise UsageError(f"--retention: expected a duration > 0, got {value!r}")
    return ms


def _memory_limit(value: str | None) -> str | None:
    import re

    from eddy.dataflows.cli import UsageError
    from eddy.sinks.duckdb import SIZE_RE

    if value is not None and not re.fullmatch(SIZE_RE, value, flags=re.IGNORECASE):
        raise UsageError(
            f"--duckdb-memory-limit: expected a size such as 512MB or 2GB, got {value!r}"
        )
    return value


def _with(params: tuple[tuple[str, Any], ...], key: str, value: Any) -> tuple[tuple[str, Any], ...]:
    return tuple(sorted({**dict(params), key: value}.items()))


def _check_run(args: argparse.Namespace, opts: Any, kinds: set[str]) -> None:
    """Flags that only make sense for some sources, and files that must exist."""
    from eddy.dataflows.cli import UsageError

    if args.until_end and "kafka" not in kinds:
        raise UsageError("--until-end applies to kafka sources only")
    if args.follow and "jsonl" not in kinds:
        raise UsageError("--follow applies to jsonl sources only")
    if (args.events is not None or args.speed is not None or args.forever) and (
        "simulator" not in kinds
    ):
        raise UsageError("--events, --speed and --forever apply to simulator sources only")
    if args.recovery is not None and "simulator" in kinds:
        # the closed loop cannot resume: a restart would replay the simulator from its start
        # against stages restored past it, and wait forever for decisions on repeated ids
        raise UsageError(
            "--recovery: a simulator input cannot resume after a restart; recover runs that "
            "read files or Kafka (--source STREAM=jsonl:PATH)"
        )
    if args.topic_prefix and not all(c.isalnum() or c in "._-" for c in args.topic_prefix):
        raise UsageError(
            f"--topic-prefix: expected characters from A-Z a-z 0-9 . _ -, got {args.topic_prefix!r}"
        )
    import glob

    for s in opts.spec.streams:
        src = opts.source_of(s.name)
        kind, _, path = src.partition(":")
        if kind in ("jsonl", "csv", "parquet") and not glob.glob(path):
            flag = f"--source {s.name}" if s.name in opts.sources else f"streams.{s.name}.source"
            raise UsageError(f"{flag}: no such file {path!r}")


def _run(args: argparse.Namespace) -> int:
    from eddy.dataflows.cli import UsageError

    opts = _options(args)
    if opts.processes > 1 and opts.addresses is None:
        return _run_local_cluster(args, opts)
    from eddy.dataflows.runner import idle_streams, make_run_simulator, open_writer, run_pipeline
    from eddy.warmup import ensure_compiled

    ensure_compiled()  # before any input is read: compile time stays out of the latency

    for stream in idle_streams(opts) if opts.process_id == 0 else ():
        print(
            f"eddy run: stream {stream!r} gets no input: its simulator answers the decisions "
            "of a stream now read from elsewhere (give it a --source too)",
            file=sys.stderr,
        )

    if opts.process_id > 0:  # a cluster member: no file, no endpoint, no status
        run_pipeline(opts)
        return 0
    import duckdb

    from eddy.dataflows.status import StatusPrinter, format_summary
    from eddy.operators.stats import RunStats
    from eddy.sinks.duckdb import SchemaMismatch, WriteFailed
    from eddy.sinks.query_server import QueryServer

    try:
        writer = open_writer(opts)
    except SchemaMismatch as e:
        raise UsageError(f"--duckdb: {e}") from None
    except duckdb.IOException as e:
        raise UsageError(f"--duckdb: cannot open {opts.db!r} for writing ({e})") from None
    stats = RunStats()
    try:
        sim = make_run_simulator(opts)
    except ValueError as e:
        writer.close()
        raise UsageError(str(e)) from None
    stop = threading.Event()

    def on_sigint(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    metrics = None
    if args.metrics_port is not None:
        from eddy.sinks.prometheus import start_metrics_server

        try:
            metrics = start_metrics_server(stats, args.metrics_port, run_id=opts.run_id)
        except (OSError, ValueError) as e:
            writer.close()
            raise UsageError(f"--metrics-port {args.metrics_port}: {e}") from None
        print(f"metrics: {metrics.url}", flush=True)
    previous = signal.signal(signal.SIGINT, on_sigint)
    server = QueryServer(writer).start()
    if opts.recovery is not None and opts.processes == 1:
        writer.on_failure(lambda failure: _halt(failure, server))
    status = None
    if not args.quiet:
        status = StatusPrinter(stats, lambda: None if sim is None else sim.scoreboard()).start()
    result = None
    try:
        result = run_pipeline(opts, stop=stop, writer=writer, stats=stats, sim=sim)
    except WriteFailed:
        pass  # in writer.failure, reported below once everything is shut down
    finally:
        if status is not None:
            status.stop()
        server.stop()
        if metrics is not None:
            metrics.stop()
        writer.close()
        signal.signal(signal.SIGINT, previous)
    if writer.failure is not None or result is None:
        # a runtime failure, not bad input: exit 1 (the last checkpoint can fail too)
        sys.stdout.flush()
        print(f"eddy run: error: {writer.failure}", file=sys.stderr)
        return 1
    print(format_summary(result, opts.db, opts.spec))
    sys.stdout.flush()
    return 0


def _member(addresses: str, i: int) -> list[str]:
    return ["--addresses", addresses, "--process-id", str(i)]


def _run_local_cluster(args: argparse.Namespace, opts: Any) -> int:
    """``--processes N`` on one machine: start members 1..N-1, run member 0 here."""
    from eddy.dataflows.runner import local_addresses, prepare_recovery, shard_layout
    from eddy.dataflows.stats_board import needs_exchange_dir

    if opts.recovery is not None:  # once, before the members race to create it
        prepare_recovery(opts.recovery, opts.processes, shard_layout(opts))
    addresses = ",".join(local_addresses(opts.processes))
    base = [a for a in args.argv if a != "--quiet"]
    made = tempfile.mkdtemp(prefix="eddy-exchange-") if needs_exchange_dir(opts) else None
    if made is not None:  # decide shards in several processes share statistics there
        args.exchange_dir = made
        base += ["--exchange-dir", made]
    try:
        return _start_members(args, base, addresses, opts.processes)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)


def _start_members(args: argparse.Namespace, base: list[str], addresses: str, n: int) -> int:
    children = [
        subprocess.Popen([sys.executable, "-m", "eddy", *base, "--quiet", *_member(addresses, i)])
        for i in range(1, n)
    ]
    args.addresses, args.process_id = addresses, 0
    try:
        code = _run(args)
    except BaseException:
        dead = [f"{i} (exit {c.poll()})" for i, c in enumerate(children, 1) if c.poll()]
        for c in children:
            c.kill()
        if dead:  # the cluster's own error ("Send thread panic") does not say who died
            print(f"eddy run: cluster member {', '.join(dead)} died first", file=sys.stderr)
        raise
    codes = [c.wait() for c in children]
    return code or next((c for c in codes if c), 0)


def _halt(failure: WriteFailed, server: QueryServer) -> None:
    """With recovery, a failed file ends the process at once, as a kill would: the epoch whose
    results did not reach the file is then never committed, and a restart (with space again)
    replays it. Stopping the dataflow instead would make Bytewax commit or panic on the way."""
    sys.stdout.flush()
    print(f"eddy run: error: {failure}", file=sys.stderr, flush=True)
    server.withdraw()
    os._exit(1)
