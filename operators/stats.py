"""Run statistics: counters and a log-bucket latency histogram, cheap to update per batch.

The histogram has fixed log-spaced buckets (about 2% wide) from 1 microsecond to about 28 hours,
so quantiles carry at most ~2% relative error, updates are one ``np.bincount`` per batch and two
histograms merge by addition.

:class:`RunStats` keeps two: the whole run's (the end-of-run summary, the status line,
Prometheus) and the current interval's, which :meth:`RunStats.take_interval` hands out and
restarts. A ``metrics`` row reports the interval since the previous row, so a stall shows in
the rows of the seconds it happened and not, diluted, in every later one.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LatencyHistogram", "RunStats", "lag_gauge", "shard_gauge", "split_metric_name"]

_LO_MS = 1e-3
_GROWTH = 1.02
_N_BUCKETS = 1400


@dataclass
class LatencyHistogram:
    """Latencies in milliseconds; ``quantile(q)`` returns the bucket's geometric midpoint."""

    counts: np.ndarray = field(default_factory=lambda: np.zeros(_N_BUCKETS, np.int64))

    @staticmethod
    def bucket_counts(values_ms: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """How many of ``values_ms`` fall in each bucket (what :meth:`add` adds); with
        ``weights``, value ``i`` counts ``weights[i]`` times."""
        v = np.asarray(values_ms, dtype=np.float64).reshape(-1)
        b = np.log(np.maximum(v, _LO_MS) / _LO_MS) / np.log(_GROWTH)
        idx = np.minimum(b.astype(np.int64), _N_BUCKETS - 1)
        if weights is None:
            return np.bincount(idx, minlength=_N_BUCKETS)
        w = np.asarray(weights, dtype=np.float64).reshape(-1)
        return np.rint(np.bincount(idx, weights=w, minlength=_N_BUCKETS)).astype(np.int64)

    def add(self, values_ms: np.ndarray) -> None:
        if np.size(values_ms):
            self.counts += self.bucket_counts(values_ms)

    @property
    def total(self) -> int:
        return int(self.counts.sum())

    def quantile(self, q: float) -> float:
        n = self.total
        if n == 0:
            return float("nan")
        i = int(np.searchsorted(np.cumsum(self.counts), max(1, int(np.ceil(q * n)))))
        return float(_LO_MS * _GROWTH ** (i + 0.5))

    def merge(self, other: LatencyHistogram) -> None:
        self.counts += other.counts

    def reset(self) -> None:
        self.counts[:] = 0


@dataclass
class RunStats:
    """Counters and latency of a running pipeline, shared with the status line and metrics.

    Written by the pipeline thread, read by the status and metrics threads: readers take
    ``lock`` to get a consistent view. ``latency`` covers the whole run, ``interval`` the
    latencies recorded since the last :meth:`take_interval`; :meth:`add_latency` feeds both.
    """

    counters: dict[str, float] = field(default_factory=dict)
    first_result_s: float | None = None  # perf_counter() when a sink first took results
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)
    interval: LatencyHistogram = field(default_factory=LatencyHistogram)
    # thread CPU seconds of each engine step in this process (decode, keyed, decide)
    step_cpu: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def started(self) -> None:
        """A sink took its first results (a cluster's start-up, imports and connections are
        behind); the caller holds ``lock``."""
        if self.first_result_s is None:
            self.first_result_s = time.perf_counter()

    def add(self, name: str, value: float = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + value

    def add_step_cpu(self, step: str, seconds: float) -> None:
        with self.lock:
            self.step_cpu[step] = self.step_cpu.get(step, 0.0) + seconds

    def get(self, name: str) -> float:
        return self.counters.get(name, 0)

    def set_gauges(self, gauges: dict[str, float]) -> None:
        """Set gauges (the latest value wins); a gauge a shard reports for itself
        (:func:`shard_gauge`) also updates the total of its name over the shards."""
        self.counters.update(gauges)
        for total in {name.partition("@")[0] for name in gauges if "@" in name}:
            prefix = total + "@"
            self.counters[total] = sum(v for k, v in self.counters.items() if k.startswith(prefix))

    def add_latency(self, values_ms: np.ndarray, weights: np.ndarray | None = None) -> None:
        """Record latencies (ms; value ``i`` ``weights[i]`` times) in the run's and the
        interval's histogram; the caller holds ``lock``."""
        if np.size(values_ms):
            counts = LatencyHistogram.bucket_counts(values_ms, weights)
            self.latency.counts += counts
            self.interval.counts += counts

    def view(self) -> tuple[dict[str, float], LatencyHistogram]:
        with self.lock:
            return dict(self.counters), LatencyHistogram(self.latency.counts.copy())

    def take_interval(self) -> LatencyHistogram:
        """The latencies recorded since the previous call (or the start), and start a new
        interval."""
        with self.lock:
            taken = LatencyHistogram(self.interval.counts.copy())
            self.interval.reset()
        return taken


def shard_gauge(name: str, stage: str, shard: int) -> str:
    """Name of a gauge one shard of a stage reports (``bandit_updates@pick#0``): the run's
    ``name`` is the sum over them."""
    return f"{name}@{stage}#{shard}"


def lag_gauge(stream: str, partition: int, unit: str) -> str:
    """Name of an input partition's lag gauge: ``source.requests_p0_records_lag``."""
    return f"source.{stream}_p{partition}_{unit}_lag"


def split_metric_name(counter: str, default_step: str = "pipeline") -> tuple[str, str]:
    """Counters are named ``"<step>.<name>"``: ``"engine.events_in" -> ("engine", "events_in")``;
    a name without a dot belongs to ``default_step``."""
    step, dot, name = counter.partition(".")
    return (step, name) if dot and name else (default_step, counter)
