"""End-to-end latency of ``eddy run`` on Kafka: request produced -> decision readable in Kafka.

    python -m eddy.benchmarks.kafka_latency [--quick] [--rates 5000,20000,50000] [--seconds S]
                                       [--no-outcomes] [--recovery] [--bootstrap HOST:PORT]
                                       [--json FILE]

Without ``--bootstrap`` a private broker is started (``scripts/kafka.sh up``) and stopped at
the end. For each offered rate (requests/s) it creates fresh 3-partition request and outcome
topics, starts ``python -m eddy run --source kafka:... --rewards kafka:... --topic-prefix ...``
(the reference spec: ``--source`` is its ``requests`` stream, ``--rewards`` its ``outcomes``;
following the topics, DuckDB output on, ``--recovery`` only if asked), waits until a probe
request's decision comes back, then:

* a producer thread offers the ``adserving`` simulator's requests at the rate (open loop,
  its JSON lines, ``linger.ms=5``, librdkafka's and the Java client's default: the linger
  counts in the latency; with 1 ms its many small produce requests kept the broker busier, on
  the cores eddy shares), stamping each with its produce time
  (``time.time_ns()`` just before the ``produce`` call of its batch; batches are what is
  due every ~0.5 ms), and the outcomes at their event time (the simulator's delays, median
  1.5 s; ``--no-outcomes``: requests only);
* a consumer thread reads the decisions topic; a decision's latency is its receive time minus
  its request's produce time. The first ``warmup`` second is left out.

Then it bisects (``--search-steps``, default 3 runs) between the highest sustained rate and the
next one up. Per rate: p50/p95/p99/max ms, decisions missing after a drain wait, the backlog
(requests produced but not yet decided) over time and whether the rate was sustained: the mean
backlog over the last quarter of the run is under 0.25 s worth of requests and everything
drained within ``drain_s``. From the decision payload (``decided_at``, ``latency_ms`` = source
read -> decided) a sample of decisions is split into: Kafka in (produce -> read by the source),
engine (read -> decided, including queueing behind other batches) and Kafka out (decided ->
readable). CPU use while requests are offered (outcomes arrive for a while after the last
request, at a falling rate) is reported in cores: the ``eddy run`` process, the broker (when
this command started it), this load generator, and the whole machine, with eddy's run-queue
wait (seconds per second its threads were ready to run but had no CPU).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from confluent_kafka import Consumer, Producer, TopicPartition

from eddy.benchmarks.kafka_events import EventRecords, open_loop_events
from eddy.benchmarks.kafka_io import _start_broker, _stop_broker
from eddy.sinks.kafka import ensure_topics

__all__ = ["main", "run_rate"]

_ROOT = Path(__file__).resolve().parent.parent
_PARTS = 3
_TICKS = os.sysconf("SC_CLK_TCK")


def _runqueue_s(pid: int) -> float:
    """Seconds the process's threads spent runnable but waiting for a CPU (all threads)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            total += int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _machine_busy_s() -> float:
    """CPU-seconds all CPUs of the machine spent not idle (``/proc/stat``), since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / _TICKS


class _CpuMeter:
    """Cores used between ``mark()`` calls: eddy, the broker (when its PID is known), this
    load generator (its producer and consumer threads) and the whole machine; plus eddy's
    run-queue wait (seconds per second its threads were runnable but had no CPU)."""

    def __init__(self, eddy_pid: int, broker_pid: int | None) -> None:
        self._eddy, self._broker = eddy_pid, broker_pid
        self._marks: list[tuple[float, ...]] = []

    def mark(self) -> None:
        broker = _cpu_s(self._broker) if self._broker else float("nan")
        self._marks.append(
            (
                time.monotonic(),
                _cpu_s(self._eddy),
                _runqueue_s(self._eddy),
                broker,
                time.process_time(),
                _machine_busy_s(),
            )
        )

    def cores(self) -> dict[str, float | None]:
        (t0, *a), (t1, *b) = self._marks[0], self._marks[-1]
        names = ("eddy", "eddy_runqueue_wait", "broker", "load_generator", "machine")
        out = {k: round((y - x) / (t1 - t0), 2) for k, x, y in zip(names, a, b, strict=True)}
        return {k: None if v != v else v for k, v in out.items()}  # NaN: broker unknown


class _Decisions:
    """Follows the decisions topic: receive time per request index (first copy wins)."""

    def __init__(self, bootstrap: str, topic: str, n: int, sample_every: int = 20) -> None:
        self.recv_ns = np.zeros(n, np.int64)
        self.parts: list[tuple[int, int, float, int]] = []  # index, decided_at ms, latency, recv
        self.count = 0
        self._sample = sample_every
        self._stop = threading.Event()
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": "eddy-latency-bench",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 5,
            }
        )
        self._consumer.assign([TopicPartition(topic, p, 0) for p in range(_PARTS)])
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        recv = self.recv_ns
        while not self._stop.is_set():
            # timeout 0: consume(n, t) waits for n messages or t, which would add up to t
            msgs = self._consumer.consume(10_000, 0)
            now = time.time_ns()
            if not msgs:
                time.sleep(0.0005)
                continue
            for m in msgs:
                if m.error() is not None:
                    continue
                i = int((m.key() or b"-0").rsplit(b"-", 1)[1])
                if recv[i] == 0:
                    recv[i] = now
                    self.count += 1
                    if i % self._sample == 0:
                        d = orjson.loads(m.value() or b"{}")
                        self.parts.append((i, int(d["decided_at"]), float(d["latency_ms"]), now))
        self._consumer.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def _producer(bootstrap: str) -> Producer:
    return Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "linger.ms": 5,
            "queue.buffering.max.messages": 1_000_000,
        }
    )


def _offer(
    producer: Producer,
    req_topic: str,
    out_topic: str,
    requests: EventRecords,
    outcomes: EventRecords | None,
    rate: float,
    sent_ns: np.ndarray,
    progress: list[int],
) -> None:
    """Produce requests 1.. at ``rate``/s and outcomes at their event time (request 0 is the
    probe, already sent); ``progress[0]`` is the number of requests produced."""
    n = len(requests)
    t0 = time.perf_counter()
    ts0 = int(requests.ts[0])
    out_due = np.zeros(0) if outcomes is None else (outcomes.ts - ts0) / 1000.0
    i, j = 1, 0
    rk, rv, rp = requests.keys, requests.values, requests.partitions.tolist()
    while i < n or (outcomes is not None and j < len(outcomes)):
        now = time.perf_counter() - t0
        due = min(n, 1 + int(now * rate))
        if due > i:
            sent_ns[i:due] = time.time_ns()
            for k in range(i, due):
                _produce(producer, req_topic, rk[k], rv[k], rp[k])
            i = due
            progress[0] = i
        if outcomes is not None:
            j_due = int(np.searchsorted(out_due, now, side="right"))
            for k in range(j, j_due):
                _produce(
                    producer,
                    out_topic,
                    outcomes.keys[k],
                    outcomes.values[k],
                    int(outcomes.partitions[k]),
                )
            j = max(j, j_due)
        producer.poll(0)
        time.sleep(0.0005)
    producer.flush(30)


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, part: int) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, partition=part)
            return
        except BufferError:
            producer.poll(0.01)


def _q(a: np.ndarray, q: float) -> float:
    return round(float(np.quantile(a, q)), 2) if len(a) else float("nan")


def run_rate(
    bootstrap: str,
    rate: int,
    seconds: float,
    *,
    outcomes: bool = True,
    recovery: bool = False,
    warmup_s: float = 1.0,
    drain_s: float = 10.0,
    seed: int = 5,
    keep: bool = False,
    profile: str | None = None,
    broker_pid: int | None = None,
) -> dict[str, Any]:
    """One measured run at ``rate`` requests/s for ``seconds``; see the module docstring
    (``broker_pid``: the broker's process, for its CPU use)."""
    tag = f"lat{rate}-{uuid.uuid4().hex[:6]}"
    req_topic, out_topic, prefix = f"{tag}.requests", f"{tag}.outcomes", f"{tag}."
    dec_topic = prefix + "eddy.decisions"
    ensure_topics(bootstrap, {req_topic: _PARTS, out_topic: _PARTS, dec_topic: _PARTS})
    n = int(rate * seconds) + 1
    reqs, outs = open_loop_events(n, seed=seed, rate_per_s=rate, partitions=_PARTS)
    work = Path(tempfile.mkdtemp(prefix="eddy-latency-"))
    prof = ["-m", "cProfile", "-o", f"{profile}.{rate}"] if profile else []
    cmd = [
        sys.executable,
        *prof,
        "-m",
        "eddy",
        "run",
        "--source",
        f"kafka:{bootstrap}/{req_topic}",
        "--duckdb",
        str(work / "eddy.duckdb"),
        "--quiet",
        "--topic-prefix",
        prefix,
    ]
    if outcomes:
        cmd += ["--rewards", f"kafka:{bootstrap}/{out_topic}"]
    if recovery:
        cmd += ["--recovery", str(work / "recovery")]
    log = open(work / "eddy.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(cmd, cwd=_ROOT, stdout=log, stderr=log)
    dec = _Decisions(bootstrap, dec_topic, n)
    producer = _producer(bootstrap)
    sent = np.zeros(n, np.int64)
    try:
        sent[0] = time.time_ns()
        _produce(producer, req_topic, reqs.keys[0], reqs.values[0], int(reqs.partitions[0]))
        producer.flush(10)
        deadline = time.monotonic() + 120
        while dec.count < 1:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"eddy run did not answer the probe; log in {work}")
            time.sleep(0.02)
        progress = [1]
        meter = _CpuMeter(proc.pid, broker_pid)
        meter.mark()
        t0 = time.monotonic()
        offer = threading.Thread(
            target=_offer,
            args=(producer, req_topic, out_topic, reqs, outs if outcomes else None, rate, sent),
            kwargs={"progress": progress},
            daemon=True,
        )
        offer.start()
        backlog: list[tuple[float, int]] = []
        t_req = 0.0
        while offer.is_alive():
            time.sleep(0.1)
            if progress[0] < n:
                backlog.append((time.monotonic() - t0, progress[0] - dec.count))
            elif not t_req:  # every request offered; CPU use is measured up to here
                t_req = time.monotonic() - t0
                meter.mark()
        if not t_req:
            t_req = time.monotonic() - t0
            meter.mark()
        end = time.monotonic() + drain_s
        while dec.count < n and time.monotonic() < end:
            time.sleep(0.05)
        drained = dec.count == n
    finally:
        dec.stop()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
    measured = np.arange(n) >= int(warmup_s * rate) + 1
    got = measured & (dec.recv_ns > 0)
    lat = (dec.recv_ns[got] - sent[got]) / 1e6
    bl = np.array([b for t, b in backlog if t >= 0.75 * t_req], dtype=float)
    tail_backlog_s = float(bl.mean()) / rate if len(bl) else float("nan")
    parts = np.array([p for p in dec.parts if measured[p[0]]], dtype=float).reshape(-1, 4)
    breakdown = {}
    if len(parts):
        idx = parts[:, 0].astype(np.int64)
        ingest_ms = parts[:, 1] - parts[:, 2]
        k_in = ingest_ms - sent[idx] / 1e6
        k_out = parts[:, 3] / 1e6 - parts[:, 1]
        for name, v in (("kafka_in", k_in), ("engine", parts[:, 2]), ("kafka_out", k_out)):
            breakdown[name] = {"p50": _q(v, 0.5), "p99": _q(v, 0.99)}
    result: dict[str, Any] = {
        "rate": rate,
        "requests": n,
        "outcomes": len(outs) if outcomes else 0,
        "recovery": recovery,
        "p50_ms": _q(lat, 0.5),
        "p95_ms": _q(lat, 0.95),
        "p99_ms": _q(lat, 0.99),
        "max_ms": round(float(lat.max()), 2) if len(lat) else None,
        "missing": int(measured.sum() - got.sum()),
        "offered_per_s": round((n - 1) / t_req, 1),
        "tail_backlog_s": round(tail_backlog_s, 3),
        "sustained": bool(drained and tail_backlog_s < 0.25),
        "cpu_cores": meter.cores(),
        "breakdown_ms": breakdown,
    }
    if keep:
        result["work_dir"] = str(work)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(
        prog="python -m eddy.benchmarks.kafka_latency", description=__doc__.split("\n")[0]
    )
    p.add_argument("--quick", action="store_true", help="5 s per rate instead of 20 s")
    p.add_argument("--rates", default="5000,20000,50000", help="requests/s, comma separated")
    p.add_argument("--seconds", type=float, help="seconds offered per rate")
    p.add_argument(
        "--search-steps",
        type=int,
        default=3,
        metavar="K",
        help="bisection runs for the highest sustained rate (default 3)",
    )
    p.add_argument("--no-outcomes", action="store_true", help="offer requests only")
    p.add_argument("--recovery", action="store_true", help="run eddy with --recovery")
    p.add_argument("--profile", metavar="PREFIX", help="cProfile eddy run into PREFIX.<rate>")
    p.add_argument("--keep", action="store_true", help="keep each run's eddy log and DuckDB")
    p.add_argument("--bootstrap", help="use this broker instead of starting a private one")
    p.add_argument("--json", help="also write the JSON result here")
    args = p.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    seconds = args.seconds or (5.0 if args.quick else 20.0)
    state: Path | None = None
    broker_pid: int | None = None
    try:
        if args.bootstrap:
            bootstrap = args.bootstrap
        else:
            state = Path(tempfile.mkdtemp(prefix="eddy-kafka-bench-"))
            bootstrap, _ = _start_broker(state)
            broker_pid = int((state / "pid").read_text())
        runs: list[dict[str, Any]] = []

        def measure(rate: int, search: bool = False) -> bool:
            load = os.getloadavg()[0]
            r = run_rate(
                bootstrap,
                rate,
                seconds,
                outcomes=not args.no_outcomes,
                recovery=args.recovery,
                keep=args.keep,
                profile=args.profile,
                broker_pid=broker_pid,
            )
            r["load_avg_1m_before"] = round(load, 2)
            r["search"] = search
            print(orjson.dumps(r).decode(), file=sys.stderr)
            runs.append(r)
            return bool(r["sustained"])

        ok = {rate: measure(rate) for rate in rates}
        # the highest sustained rate: bisect between the best sustained and the next rate up
        lo = max([r for r, good in ok.items() if good], default=0)
        hi = min([r for r, good in ok.items() if not good and r > lo], default=0)
        for _ in range(args.search_steps if hi else 0):
            mid = int(round((lo + hi) / 2, -2))
            if mid in (lo, hi):
                break
            lo, hi = (mid, hi) if measure(mid, search=True) else (lo, mid)
    finally:
        if state is not None:
            _stop_broker(state)
            shutil.rmtree(state, ignore_errors=True)
    sustained = [r["rate"] for r in runs if r["sustained"]]
    result = {
        "command": "python -m eddy.benchmarks.kafka_latency " + " ".join(argv or sys.argv[1:]),
        "cpus": os.cpu_count(),
        "runs": runs,
        "max_sustained_rate": max(sustained) if sustained else None,
    }
    out = orjson.dumps(result, option=orjson.OPT_INDENT_2).decode()
    print(out)
    if args.json:
        Path(args.json).write_text(out + "\n")
    return result


if __name__ == "__main__":
    main()
