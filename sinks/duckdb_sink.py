"""The DuckDB sink as one Bytewax partition: the single writer of the database file.

Items are :class:`schemas.results.Results`. They are buffered and written together, one
insert per table (Arrow, idempotent on the primary key), when the buffer holds ``max_rows``
rows or is ``max_delay_s`` old: a commit costs tens of milliseconds whatever its size, so a
few large ones beat many small ones, while the delay bounds what a reader waits for a row.
A writer thread does the inserts (and flushes a buffer no new item comes to push out);
Bytewax's epoch snapshot and ``close`` wait for it, so nothing acknowledged is left behind.
Each flush also updates the run statistics and, once per wall-clock second, writes them to
``metrics`` (the latency quantiles of that second, the counters since the start). Between
flushes the writer thread keeps a long run flat (``DuckDBWriter.maintain``): it deletes rows
past the retention and checkpoints every few seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from bytewax.outputs import FixedPartitionedSink, StatefulSinkPartition

from eddy.operators.stats import RunStats, split_metric_name
from eddy.schemas.batch import constant_column
from eddy.schemas.results import Results
from eddy.sinks.duckdb import DuckDBWriter, WriteFailed

__all__ = ["DuckDBSink", "metrics_rows"]

PART = "duckdb"


def metrics_rows(run_id: str, stats: RunStats, ts_ms: int, step: str = "pipeline") -> dict:
    """The current counters, and the latency quantiles of the interval since the previous
    call (``RunStats.take_interval``), as ``metrics`` table columns. An interval in which no
    event became readable has no latency rows (rather than NaN, which ``max()`` in SQL
    would return over any range that holds one)."""
    counters, _ = stats.view()
    hist = stats.take_interval()
    qualified = sorted(counters)
    values = [float(counters[n]) for n in qualified]
    for q in (0.5, 0.95, 0.99) if hist.total else ():
        qualified.append(f"{PART}.latency_p{round(q * 100)}_ms")  # ingest -> readable here
        values.append(hist.quantile(q))
    split = [split_metric_name(n, step) for n in qualified]  # empty before anything counted
    steps, names = [s for s, _ in split], [m for _, m in split]
    n = len(names)
    return {
        "run_id": constant_column(run_id, n),
        "ts": np.full(n, ts_ms, dtype=np.int64),
        "step": np.array(steps, dtype=object),
        "name": np.array(names, dtype=object),
        "value": np.array(values, dtype=np.float64),
    }


class _Partition(StatefulSinkPartition[Results, None]):
    """Buffers in the worker thread, writes in its own thread.

    DuckDB releases the GIL while it inserts, so the writer thread's inserts overlap with the
    dataflow's work on the other core. ``write_batch`` only appends (and waits when four
    buffers' worth are pending: backpressure); Bytewax's epoch ``snapshot`` and ``close``
    wait until everything handed over is in the file. After a failed write nothing more is
    written, and the failure is never dropped: either the run stops itself and reports it
    (the file failed and someone registered ``DuckDBWriter.on_failure``), or it is raised in
    the worker at its next call, once.
    """

    def __init__(
        self,
        writer: DuckDBWriter,
        stats: RunStats,
        run_id: str,
        on_write: Callable[[Results], None] | None,
        max_rows: int,
        max_delay_s: float,
        drain_on_snapshot: bool,
        close_writer: bool = False,
        on_metrics: Callable[[dict], None] | None = None,
    ) -> None:
        self._writer = writer
        self._on_metrics = on_metrics
        self._close_writer = close_writer
        self._drain_on_snapshot = drain_on_snapshot
        self._stats = stats
        self._run_id = run_id
        self._on_write = on_write
        self._max_rows = max_rows
        self._max_delay = max_delay_s
        self._buf: list[Results] = []
        self._rows = 0
        self._since = 0.0  # monotonic time of the oldest buffered item
        self._last_metrics = 0.0
        self._busy = False  # the writer thread holds a batch
        self._flush_now = False
        self._closed = False
        self._error: BaseException | None = None
        self._raised = False  # the error went up the worker once
        self._cv = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="eddy-duckdb-writer", daemon=True)
        self._thread.start()

    def write_batch(self, values: list[Results]) -> None:
        with self._cv:
            self._raise_failure()
            if self._error is not None:
                return  # the run is stopping on the file's failure: nothing can be written
            if not self._buf:
                self._since = time.monotonic()
            self._buf.extend(values)
            self._rows += sum(v.rows(t) for v in values for t in v.tables)
            if self._rows >= self._max_rows:
                self._cv.notify_all()
            while self._rows >= 4 * self._max_rows and self._error is None:
                self._cv.wait()
            self._raise_failure()

    def _due(self) -> bool:
        if not self._buf:
            return False
        old = time.monotonic() - self._since >= self._max_delay
        return self._flush_now or self._closed or old or self._rows >= self._max_rows

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._due() and not (self._closed and not self._buf):
                    self._cv.wait(self._max_delay / 2)
                    if time.monotonic() - self._last_metrics >= 1.0 and not self._buf:
                        break
                if self._closed and not self._buf:
                    return
                batch, self._buf, self._rows = self._buf, [], 0
                self._flush_now = False
                self._busy = True
                failed = self._error is not None
            try:
                if not failed:  # after a failure the batch is dropped: the run fails anyway
                    self._write(batch)
            except BaseException as e:  # surfaced in the worker thread
                with self._cv:
                    self._error = e
            with self._cv:
                self._busy = False
                self._cv.notify_all()

    def _write(self, batch: list[Results]) -> None:
        merged = Results.combine(batch)
        if merged.tables:
            written = self._writer.write_many(merged.tables)
            merged.count(f"{PART}.rows_written", sum(written.values()))
        now_ms = time.time_ns() / 1e6
        with self._stats.lock:
            self._stats.started()
            for k, v in merged.counters.items():
                self._stats.add(k, v)
            self._stats.set_gauges(merged.gauges)
            if merged.ingest:  # end to end: read -> its results readable in DuckDB
                read_ms, events = np.array(merged.ingest, dtype=np.float64).T
                self._stats.add_latency(now_ms - read_ms, events)
        if self._on_write is not None:
            self._on_write(merged)
        # a long run's upkeep between batches: retention deletes and regular checkpoints
        upkeep = self._writer.maintain()
        if upkeep.deleted or upkeep.checkpoint_s is not None:
            with self._stats.lock:
                if upkeep.deleted:
                    self._stats.add(f"{PART}.expired_rows", upkeep.deleted)
                    self._stats.add(f"{PART}.expire_ms", round(upkeep.delete_s * 1000, 1))
                if upkeep.checkpoint_s is not None:
                    self._stats.add(f"{PART}.checkpoints")
                    self._stats.add(f"{PART}.checkpoint_ms", round(upkeep.checkpoint_s * 1000, 1))
        if time.monotonic() - self._last_metrics >= 1.0:
            self._last_metrics = time.monotonic()
            rows = metrics_rows(self._run_id, self._stats, int(time.time() * 1000))
            self._writer.write("metrics", rows)
            if self._on_metrics is not None:  # the same rows to Kafka (<prefix>.metrics)
                self._on_metrics(rows)

    def _raise_failure(self, committing: bool = False) -> None:
        """Raise the writer thread's error in the worker, once: a second raise would come
        from ``close``, which Bytewax calls while unwinding the first, and a Python error
        there aborts the process (a Rust panic inside a panic).

        Not raised when the file failed and the run stops itself on it (``on_failure``): an
        error raised inside a Bytewax sink is a Rust panic with pages of backtrace, and the run
        reports the failure in one line. Except when ``committing`` an epoch's snapshot: with
        recovery on, the snapshot must not be committed for results not in the file."""
        e = self._error
        if e is None or self._raised:
            return
        stopping = isinstance(e, WriteFailed) and self._writer.failure_hooked
        if stopping and not committing:
            return
        self._raised = True
        if isinstance(e, WriteFailed):
            raise e
        raise RuntimeError(f"DuckDB sink: writing to {self._writer!r} failed") from e

    def _drain(self, committing: bool = False) -> None:
        with self._cv:
            self._flush_now = True
            self._cv.notify_all()
            while (self._buf or self._busy) and self._error is None:
                self._cv.wait()
            self._raise_failure(committing)

    def snapshot(self) -> None:
        # an epoch ends: with recovery, what it produced must be in the file before the
        # snapshot commits; without, waiting would only stall the worker once per epoch
        if self._drain_on_snapshot:
            self._drain(committing=True)
        return None

    def close(self) -> None:
        self._drain()
        with self._cv:
            self._closed = True
            self._last_metrics = 0.0  # one last metrics row
            self._buf.append(Results())
            self._cv.notify_all()
        self._thread.join()
        if self._close_writer:
            self._writer.close()
        self._raise_failure()


class DuckDBSink(FixedPartitionedSink[Results, None]):
    """Routes every item to the one partition that owns ``writer``.

    In a cluster every process builds the same flow; only the process that owns the file
    passes ``local=True`` (and a writer, or ``open_writer`` to open one when the partition is
    built and close it when the dataflow ends), so the partition, and the file, has one writer.
    ``drain_on_snapshot=False`` (runs without recovery) lets an epoch end without waiting
    for the writer; ``close`` still waits for everything. ``on_metrics`` gets each ``metrics``
    batch once it is in the file (in the writer thread; what it raises fails the sink).
    """

    def __init__(
        self,
        writer: DuckDBWriter | None,
        stats: RunStats,
        run_id: str,
        on_write: Callable[[Results], None] | None = None,
        *,
        local: bool = True,
        max_rows: int = 50_000,
        max_delay_s: float = 0.1,
        drain_on_snapshot: bool = True,
        open_writer: Callable[[], DuckDBWriter] | None = None,
        on_metrics: Callable[[dict], None] | None = None,
    ) -> None:
        self._local = local
        self._on_metrics = on_metrics
        self._open_writer = open_writer
        self._drain_on_snapshot = drain_on_snapshot
        self._writer = writer
        self._stats = stats
        self._run_id = run_id
        self._on_write = on_write
        self._max_rows = max_rows
        self._max_delay = max_delay_s

    def list_parts(self) -> list[str]:
        return [PART] if self._local else []

    def part_fn(self, item_key: str) -> int:
        return 0

    def build_part(self, step_id: str, for_part: str, resume_state: Any) -> _Partition:
        writer = self._writer
        if writer is None:
            assert self._open_writer is not None, "the DuckDB partition needs a writer"
            writer = self._open_writer()
        return _Partition(
            writer,
            self._stats,
            self._run_id,
            self._on_write,
            self._max_rows,
            self._max_delay,
            self._drain_on_snapshot,
            close_writer=self._writer is None,
            on_metrics=self._on_metrics,
        )
