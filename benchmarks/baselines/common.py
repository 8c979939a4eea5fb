"""What every throughput variant shares: the result record, timing, and the reference spec.

Every variant of a run reads the same recorded JSONL files (``benchmarks.recording``: a
simulator played once, its decisions taken by a seeded uniformly random policy, so the lines do
not depend on any variant's choices). ``naive`` and ``bytewax_idiomatic`` reimplement the
reference spec by hand, so they read :func:`reference_spec` for its arms and tables, and
:func:`reward_of` is its reward expression (``revenue - latency_ms / 1000``).
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from eddy.benchmarks.recording import Recording, record
from eddy.operators.stats import LatencyHistogram
from eddy.schemas.spec import PipelineSpec

__all__ = [
    "LATENCY_PENALTY_PER_S",
    "Deadline",
    "Recording",
    "Runner",
    "VariantResult",
    "arms",
    "db_path",
    "latency_quantiles",
    "peak_rss_mb",
    "reference_recording",
    "reference_spec",
    "reward_of",
]

LATENCY_PENALTY_PER_S = 1.0


@cache
def reference_spec() -> PipelineSpec:
    """The reference pipeline (``examples/adserving.toml``): what the baselines reimplement."""
    from eddy.dataflows.commands.run import reference_spec_path
    from eddy.schemas.spec_load import load_spec

    return load_spec(reference_spec_path())


def arms() -> tuple[str, ...]:
    """The reference decide stage's arms (the demand partners)."""
    return reference_spec().decide[0].arms


def reference_recording(directory: str | Path, n_requests: int, seed: int = 0) -> Recording:
    """``n_requests`` requests of the reference simulator and their outcomes, as JSONL."""
    return record(reference_spec(), directory, events=n_requests, seed=seed)


@dataclass
class VariantResult:
    """One variant's run: events processed (input lines), wall time, latency."""

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


Runner = Callable[[Recording, str, float | None], VariantResult]
