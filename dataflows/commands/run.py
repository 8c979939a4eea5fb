"""`eddy run`: run the reference pipeline (simulator or JSONL) into DuckDB, with live status."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
from dataclasses import replace
from typing import Any

__all__ = ["add_parser"]

_EPILOG = """examples:
  eddy run                                   # ~1 minute of simulated traffic into eddy.duckdb
  eddy run --events 500000 --seed 7
  eddy run --forever                         # until Ctrl-C; query it live with `eddy sql`
  eddy run --source jsonl:requests.jsonl --rewards jsonl:outcomes.jsonl
"""


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "run",
        help="run the streaming pipeline (simulator or JSONL) into DuckDB",
        description="Run the reference ad-serving pipeline: features, anomaly detection, "
        "a contextual bandit per request, results into DuckDB.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", metavar="FILE", help="pipeline TOML (see dataflows/default.toml)")
    p.add_argument(
        "--source",
        default="simulator",
        metavar="SPEC",
        help="simulator (default) or jsonl:PATH (request events, one JSON object per line)",
    )
    p.add_argument("--rewards", metavar="SPEC", help="jsonl:PATH of outcome events")
    p.add_argument("--duckdb", metavar="PATH", help="results database (default eddy.duckdb)")
    p.add_argument("--seed", type=int, metavar="N", help="simulator and policy seed")
    p.add_argument("--events", type=int, metavar="N", help="simulated requests to generate")
    p.add_argument("--seconds", type=float, metavar="S", help="stop after S seconds wall clock")
    p.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    p.add_argument(
        "--speed", type=float, metavar="X", help="pace the simulator at X times real time"
    )
    p.add_argument("--follow", action="store_true", help="tail the JSONL files as they grow")
    p.add_argument("--batch-size", type=int, metavar="N", help="events per micro-batch")
    p.add_argument("--quiet", action="store_true", help="no live status line")
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on 127.0.0.1:PORT/metrics (0: any free port)",
    )
    k = p.add_argument_group("kafka, recovery and scale-out")
    k.add_argument(
        "--until-end",
        action="store_true",
        help="kafka sources: stop at the end of what the topics hold at start",
    )
    k.add_argument(
        "--kafka-out",
        metavar="HOST:PORT",
        help="publish decisions, anomalies, metrics, dead letters to Kafka "
        "(default: the source's cluster when reading from Kafka)",
    )
    k.add_argument("--no-kafka-out", action="store_true", help="do not publish to Kafka")
    k.add_argument(
        "--topic-prefix",
        default="",
        metavar="P",
        help="prefix for the output topic names (e.g. 'staging.' -> staging.eddy.decisions)",
    )
    k.add_argument(
        "--recovery", metavar="DIR", help="Bytewax recovery directory (resume on restart)"
    )
    k.add_argument(
        "--snapshot-interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between recovery snapshots (epoch length; default 1)",
    )
    k.add_argument("--processes", type=int, default=1, metavar="N", help="cluster processes")
    k.add_argument(
        "--addresses",
        metavar="A,B,...",
        help="HOST:PORT of every cluster process (several machines); with --process-id",
    )
    k.add_argument(
        "--process-id", type=int, metavar="I", help="this process's index in --addresses"
    )
    p.set_defaults(func=_run)


def _options(args: argparse.Namespace) -> Any:
    from eddy.dataflows.cli import UsageError
    from eddy.dataflows.config import ConfigError, load_settings
    from eddy.dataflows.pipeline import RunOptions

    try:
        settings = load_settings(args.config)
    except ConfigError as e:
        raise UsageError(str(e)) from None
    src = args.source
    if src != "simulator" and not src.startswith(("jsonl:", "kafka:")):
        raise UsageError(
            f"--source: expected 'simulator', 'jsonl:PATH' or 'kafka:HOST:PORT/TOPIC', got {src!r}"
        )
    for flag, spec in (("--source", src), ("--rewards", args.rewards)):
        if spec and spec.startswith("jsonl:") and not os.path.isfile(spec[6:]):
            raise UsageError(f"{flag}: no such file {spec[6:]!r}")
        if spec and spec.startswith("kafka:"):
            from eddy.sources.kafka import parse_kafka_spec

            try:
                parse_kafka_spec(spec)
            except ValueError as e:
                raise UsageError(f"{flag}: {e}") from None
    if args.rewards is not None:
        if not args.rewards.startswith(("jsonl:", "kafka:")):
            raise UsageError(
                f"--rewards: expected 'jsonl:PATH' or 'kafka:HOST:PORT/TOPIC', got {args.rewards!r}"
            )
        if src == "simulator":
            raise UsageError("--rewards: the simulator makes its own outcomes")
    if args.processes < 1:
        raise UsageError(f"--processes: expected a number >= 1, got {args.processes}")
    if args.snapshot_interval <= 0:
        raise UsageError(f"--snapshot-interval: expected seconds > 0, got {args.snapshot_interval}")
    addresses = args.addresses.split(",") if args.addresses else None
    if addresses is not None:
        if args.process_id is None or not 0 <= args.process_id < len(addresses):
            raise UsageError("--addresses needs --process-id between 0 and len(addresses) - 1")
        if args.processes not in (1, len(addresses)):
            raise UsageError("--processes must match the number of --addresses")
    processes = len(addresses) if addresses else args.processes
    if src == "simulator" and processes > 1:
        raise UsageError(
            "--processes: the simulator runs in one process; feed a cluster from Kafka"
        )
    if args.until_end and not src.startswith("kafka:"):
        raise UsageError("--until-end applies to kafka sources only")
    kafka_out = args.kafka_out
    if kafka_out is None and src.startswith("kafka:") and not args.no_kafka_out:
        from eddy.sources.kafka import parse_kafka_spec

        kafka_out = parse_kafka_spec(src)[0]
    if args.no_kafka_out:
        kafka_out = None
    if args.topic_prefix:
        from eddy.sources.kafka import parse_kafka_spec

        try:
            parse_kafka_spec(f"kafka:127.0.0.1:1/{args.topic_prefix}x")
        except ValueError:
            raise UsageError(
                f"--topic-prefix: expected characters from A-Z a-z 0-9 . _ -, "
                f"got {args.topic_prefix!r}"
            ) from None
    if args.forever and (args.events is not None or args.seconds is not None):
        raise UsageError("--forever cannot be combined with --events or --seconds")
    if src != "simulator" and (args.events is not None or args.speed is not None):
        raise UsageError("--events and --speed apply to the simulator only")
    if args.follow and not src.startswith("jsonl:"):
        raise UsageError("--follow applies to jsonl sources only")
    for name in ("events", "batch_size"):
        v = getattr(args, name)
        if v is not None and v < (0 if name == "events" else 1):
            raise UsageError(f"--{name.replace('_', '-')}: expected a positive number, got {v}")
    for name in ("seconds", "speed"):
        v = getattr(args, name)
        if v is not None and not v > 0:
            raise UsageError(f"--{name}: expected a number > 0, got {v}")
    sim = settings.simulator
    if args.seed is not None:
        sim = replace(sim, seed=args.seed)
        settings = replace(settings, engine=replace(settings.engine, seed=args.seed))
    if args.events is not None:
        sim = replace(sim, n_events=args.events)
    if args.forever:
        sim = replace(sim, n_events=None)
    settings = replace(
        settings,
        simulator=sim,
        duckdb=args.duckdb or settings.duckdb,
        batch_size=args.batch_size or settings.batch_size,
    )
    return RunOptions(
        settings=settings,
        source=src,
        rewards=args.rewards,
        seconds=args.seconds,
        follow=args.follow,
        speed=args.speed,
        until_end=args.until_end,
        kafka_out=kafka_out,
        recovery=args.recovery,
        snapshot_interval_s=args.snapshot_interval,
        processes=processes,
        process_id=args.process_id or 0,
        addresses=addresses,
        topic_prefix=args.topic_prefix,
    )


def _run(args: argparse.Namespace) -> int:
    from eddy.dataflows.cli import UsageError

    opts = _options(args)
    if opts.processes > 1 and opts.addresses is None:
        return _run_local_cluster(args, opts)
    if opts.process_id > 0:  # a cluster member: no file, no endpoint, no status
        from eddy.dataflows.pipeline import run_pipeline

        run_pipeline(opts)
        return 0
    import duckdb

    from eddy.dataflows.pipeline import run_pipeline
    from eddy.dataflows.status import StatusPrinter, format_summary
    from eddy.operators.stats import RunStats
    from eddy.sinks.duckdb import DuckDBWriter
    from eddy.sinks.query_server import QueryServer
    from eddy.sources.simulator import Simulator

    db = opts.settings.duckdb
    try:
        writer = DuckDBWriter(db)
    except duckdb.IOException as e:
        raise UsageError(f"--duckdb: cannot open {db!r} for writing ({e})") from None
    stats = RunStats()
    sim = Simulator(opts.settings.simulator) if opts.source == "simulator" else None
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
    status = None
    if not args.quiet:
        status = StatusPrinter(stats, lambda: None if sim is None else sim.scoreboard).start()
    try:
        result = run_pipeline(opts, stop=stop, writer=writer, stats=stats, sim=sim)
    finally:
        if status is not None:
            status.stop()
        server.stop()
        if metrics is not None:
            metrics.stop()
        writer.close()
        signal.signal(signal.SIGINT, previous)
    print(format_summary(result, db))
    sys.stdout.flush()
    return 0


def _member(addresses: str, i: int) -> list[str]:
    return ["--addresses", addresses, "--process-id", str(i)]


def _run_local_cluster(args: argparse.Namespace, opts: Any) -> int:
    """``--processes N`` on one machine: start members 1..N-1, run member 0 here."""
    from eddy.dataflows.pipeline import local_addresses, prepare_recovery

    if opts.recovery is not None:  # once, before the members race to create it
        prepare_recovery(opts.recovery, opts.processes)
    addresses = ",".join(local_addresses(opts.processes))
    base = [a for a in args.argv if a != "--quiet"]
    children = [
        subprocess.Popen([sys.executable, "-m", "eddy", *base, "--quiet", *_member(addresses, i)])
        for i in range(1, opts.processes)
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
