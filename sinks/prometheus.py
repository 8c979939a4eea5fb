"""The Prometheus ``/metrics`` endpoint: serves a running pipeline's :class:`RunStats`.

The numbers are read on every scrape (``RunStats.view()`` under its lock), nothing is copied
per event. Counter names map to Prometheus series as follows:

* ``"<step>.<name>"`` -> ``eddy_<name>{step="<step>"}``; a name without a dot belongs to the
  step ``pipeline`` (``"decisions"`` -> ``eddy_decisions_total{step="pipeline"}``);
* names ending in ``_ms``, ``_s``, ``_lag``, ``_watermark`` or ``_gauge`` (and ``reward_mean``)
  are gauges; all others are counters (exposed with the ``_total`` suffix);
* input lag gauges ``source.<stream>_p<N>_<unit>_lag`` become one series per partition:
  ``eddy_requests_records_lag{step="source", partition="0"}``;
* the end-to-end latency histogram is a summary ``eddy_latency_ms`` with quantiles 0.5, 0.95,
  0.99 (plus ``_count``), and ``eddy_latency_ms_bucket``-style detail is left out on purpose
  (1,400 log buckets would swamp a scrape).

The server binds 127.0.0.1 by default; ``port=0`` picks a free port (read it back from
``server.port``). ``stop()`` shuts it down and frees the port.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import start_wsgi_server
from prometheus_client.registry import Collector

from eddy.operators.stats import _GROWTH, _LO_MS, LatencyHistogram, RunStats, split_metric_name

__all__ = ["MetricsServer", "StatsCollector", "split_metric_name", "start_metrics_server"]

_GAUGE_SUFFIXES = ("_ms", "_s", "_lag", "_watermark", "_gauge", "reward_mean")
_BAD = re.compile(r"[^a-zA-Z0-9_]")
# ``operators.stats.lag_gauge`` names: <stream>_p<partition>_<unit>_lag
_PARTITIONED = re.compile(r"(?P<stream>\w+?)_p(?P<partition>\d+)_(?P<rest>\w+_lag)")
QUANTILES = (0.5, 0.95, 0.99)


def _metric_name(name: str) -> str:
    clean = _BAD.sub("_", name).strip("_") or "unnamed"
    return f"eddy_{clean}"


class StatsCollector(Collector):
    """A prometheus_client collector over a :class:`RunStats`, read at scrape time."""

    def __init__(self, stats: RunStats, run_id: str = "") -> None:
        self._stats = stats
        self._run_id = run_id

    def collect(self) -> Iterator[Metric]:
        counters, hist = self._stats.view()
        families: dict[str, CounterMetricFamily | GaugeMetricFamily] = {}
        for full, value in sorted(counters.items()):
            step, name = split_metric_name(full)
            part = _PARTITIONED.fullmatch(name)
            if part is not None:  # input lag: one series per partition, with a label
                metric = _metric_name(f"{part['stream']}_{part['rest']}")
                fam = families.get(metric)
                if fam is None:
                    fam = families[metric] = GaugeMetricFamily(
                        metric,
                        f"eddy gauge {part['stream']}_{part['rest']}",
                        labels=["step", "partition"],
                    )
                fam.add_metric([step, part["partition"]], float(value))
                continue
            metric = _metric_name(name)
            fam = families.get(metric)
            if fam is None:
                if name.endswith(_GAUGE_SUFFIXES):
                    fam = GaugeMetricFamily(metric, f"eddy gauge {name}", labels=["step"])
                else:
                    fam = CounterMetricFamily(metric, f"eddy counter {name}", labels=["step"])
                families[metric] = fam
            fam.add_metric([step], float(value))
        yield from families.values()
        total = hist.total
        summary = SummaryMetricFamily(
            "eddy_latency_ms",
            "end-to-end latency, ingest to readable in the sink (milliseconds)",
            labels=["step"],
        )
        # the sum is not kept by the histogram; estimate it from bucket midpoints
        summary.add_metric(["pipeline"], count_value=total, sum_value=_approx_sum(hist))
        yield summary
        q = GaugeMetricFamily(
            "eddy_latency_quantile_ms",
            "end-to-end latency quantiles (milliseconds)",
            labels=["step", "quantile"],
        )
        for p in QUANTILES:
            q.add_metric(["pipeline", str(p)], hist.quantile(p) if total else float("nan"))
        yield q
        info = GaugeMetricFamily("eddy_up", "1 while the pipeline runs", labels=["run_id"])
        info.add_metric([self._run_id], 1.0)
        yield info


def _approx_sum(hist: LatencyHistogram) -> float:
    """Sum of the latencies, from bucket midpoints (the histogram does not keep the sum)."""
    counts = hist.counts
    if not counts.any():
        return 0.0
    mids = _LO_MS * _GROWTH ** (np.arange(len(counts)) + 0.5)
    return float((counts * mids).sum())


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP server (daemon thread)."""

    host: str
    port: int
    _httpd: object
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def stop(self) -> None:
        self._httpd.shutdown()  # type: ignore[attr-defined]
        self._httpd.server_close()  # type: ignore[attr-defined]
        self._thread.join(timeout=5)


def start_metrics_server(
    stats: RunStats, port: int, host: str = "127.0.0.1", run_id: str = ""
) -> MetricsServer:
    """Serve ``stats`` on ``http://host:port/metrics``; ``port=0`` picks a free port."""
    if not 0 <= port <= 65_535:
        raise ValueError(f"metrics port: expected 0..65535, got {port}")
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, run_id))
    httpd, thread = start_wsgi_server(port, addr=host, registry=registry)
    return MetricsServer(host, int(httpd.server_port), httpd, thread)
