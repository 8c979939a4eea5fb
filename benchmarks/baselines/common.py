"""What every throughput variant shares: the serialised stream, the result record, timing.

The simulated stream is serialised ONCE to two JSONL files (requests, outcomes; each in event
time order) and every variant decodes exactly those bytes. Outcomes answer a seeded uniformly
random logging policy, so the stream does not depend on any variant's choices (a variant that
picks a different arm still joins the outcome by ``decision_id`` and learns its reward).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from eddy.operators.stats import LatencyHistogram
from eddy.sources.simulator import SimConfig, Simulator

__all__ = [
    "ARMS",
    "Stream",
    "VariantResult",
    "latency_quantiles",
    "make_stream",
    "peak_rss_mb",
    "reward_of",
]

ARMS: tuple[str, ...] = SimConfig().partners
LATENCY_PENALTY_PER_S = 1.0


@dataclass(frozen=True)
class Stream:
    """Two JSONL files of the same simulated run, and how many lines each holds."""

    requests: str
    outcomes: str
    n_requests: int
    n_outcomes: int
    seed: int

    @property
    def n_events(self) -> int:
        return self.n_requests + self.n_outcomes

    def head(self, directory: str | Path, n_requests: int) -> Stream:
        """The first ``n_requests`` requests and the outcomes up to the last one's time."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        req_lines = _read_lines(self.requests)[:n_requests]
        last_ts = orjson.loads(req_lines[-1])["ts"] if req_lines else 0
        out_lines = [ln for ln in _read_lines(self.outcomes) if orjson.loads(ln)["ts"] <= last_ts]
        rp, op_ = d / "requests.jsonl", d / "outcomes.jsonl"
        rp.write_bytes(b"".join(req_lines))
        op_.write_bytes(b"".join(out_lines))
        return Stream(str(rp), str(op_), len(req_lines), len(out_lines), self.seed)


def _read_lines(path: str) -> list[bytes]:
    with open(path, "rb") as fh:
        return fh.readlines()


@dataclass
class VariantResult:
    """One variant's run: events processed (request + outcome lines), wall time, latency."""

    variant: str
    events: int
    wall_s: float
    latency_ms: dict[str, float]
    rows: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: float = 0.0
    complete: bool = True
    notes: str = ""
    cpu_s: float = 0.0

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def events_per_cpu_s(self) -> float:
        """Events per second of this process's CPU time (all threads): robust to a busy host."""
        return self.events / self.cpu_s if self.cpu_s > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["events_per_s"] = self.events_per_s
        d["events_per_cpu_s"] = self.events_per_cpu_s
        return d


def make_stream(directory: str | Path, n_requests: int, seed: int = 0) -> Stream:
    """Simulate ``n_requests`` requests (random logging policy) and write both JSONL files."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    sim = Simulator(SimConfig(seed=seed, n_events=n_requests))
    rng = np.random.default_rng([seed, 99])
    req_chunks: list[bytes] = []
    out_chunks: list[bytes] = []
    while not sim.exhausted:
        rb = sim.next_requests(10_000)
        arms = rng.integers(0, len(sim.partners), len(rb))
        sim.respond(rb.id, arms)
        rows = zip(
            rb.id.tolist(),
            rb.ts.tolist(),
            rb.placement.tolist(),
            rb.device.tolist(),
            rb.geo.tolist(),
            rb.floor_price.tolist(),
            strict=True,
        )
        req_chunks.extend(
            orjson.dumps(
                {"id": i, "ts": t, "placement": p, "device": dv, "geo": g, "floor_price": f}
            )
            + b"\n"
            for i, t, p, dv, g, f in rows
        )
        out_chunks.extend(_outcome_lines(sim, int(rb.ts[-1])))
    out_chunks.extend(_outcome_lines(sim, 2**62))
    rp, op_ = d / "requests.jsonl", d / "outcomes.jsonl"
    rp.write_bytes(b"".join(req_chunks))
    op_.write_bytes(b"".join(out_chunks))
    return Stream(str(rp), str(op_), len(req_chunks), len(out_chunks), seed)


def _outcome_lines(sim: Simulator, until_ms: int) -> list[bytes]:
    ob = sim.due_outcomes(until_ms)
    rows = zip(
        ob.decision_id.tolist(),
        ob.ts.tolist(),
        ob.partner.tolist(),
        ob.filled.tolist(),
        ob.revenue.tolist(),
        ob.latency_ms.tolist(),
        ob.error.tolist(),
        strict=True,
    )
    return [
        orjson.dumps(
            {
                "decision_id": d,
                "ts": t,
                "partner": p,
                "filled": f,
                "revenue": r,
                "latency_ms": la,
                "error": e,
            }
        )
        + b"\n"
        for d, t, p, f, r, la, e in rows
    ]


def reward_of(revenue: float, latency_ms: float) -> float:
    return revenue - LATENCY_PENALTY_PER_S * latency_ms / 1000.0


def latency_quantiles(hist: LatencyHistogram) -> dict[str, float]:
    return {f"p{round(q * 100)}": hist.quantile(q) for q in (0.5, 0.95, 0.99)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MB.

    Linux ``VmHWM`` (the high-water mark of this address space, which starts afresh at
    ``exec``); ``ru_maxrss`` is not used there because Linux carries it across ``execve``, so a
    spawned child would report its parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Deadline:
    """``expired()`` turns true ``seconds`` after creation (``None``: never)."""

    def __init__(self, seconds: float | None) -> None:
        self._end = None if seconds is None else time.perf_counter() + seconds

    def expired(self) -> bool:
        return self._end is not None and time.perf_counter() >= self._end


def db_path(workdir: str | Path, variant: str) -> str:
    p = Path(workdir) / f"{variant}.duckdb"
    for suffix in ("", ".wal"):
        q = Path(str(p) + suffix)
        if q.exists():
            os.remove(q)
    return str(p)


Runner = Callable[[Stream, str, float | None], VariantResult]
