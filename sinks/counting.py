"""A sink that only counts: results stay where they were computed.

For runs whose results go to Kafka alone (the scalable output) or nowhere (a benchmark that
measures the stages, not a database): every worker adds the counters of its own results to
the process's :class:`~eddy.operators.stats.RunStats`, and nothing crosses workers.
"""

from __future__ import annotations

from bytewax.outputs import DynamicSink, StatelessSinkPartition

from eddy.operators.stats import RunStats
from eddy.schemas.results import Results

__all__ = ["CountingSink"]


class _Partition(StatelessSinkPartition[Results]):
    def __init__(self, stats: RunStats) -> None:
        self._stats = stats

    def write_batch(self, items: list[Results]) -> None:
        merged = Results.combine(items)
        with self._stats.lock:
            self._stats.started()
            for k, v in merged.counters.items():
                self._stats.add(k, v)
            self._stats.set_gauges(merged.gauges)


class CountingSink(DynamicSink[Results]):
    """Counters of the results into ``stats``, on every worker."""

    def __init__(self, stats: RunStats) -> None:
        self._stats = stats

    def build(self, step_id: str, worker_index: int, worker_count: int) -> _Partition:
        return _Partition(self._stats)
