"""DuckDB writer: one file, a pipeline's tables (``schemas.tables``), idempotent batched inserts.

A batch is a ``{column: array}`` dict. It is validated (every column present, no unknown
columns, equal lengths), turned into one ``pyarrow.Table`` with the table's Arrow schema and
inserted in ONE statement::

    INSERT INTO "t" SELECT * FROM batch ON CONFLICT DO NOTHING

so a replay (same primary keys) inserts nothing twice, and duplicates inside one batch keep the
first row. Column conventions:

* ``TIMESTAMP`` columns: int64 epoch milliseconds (numpy or list; ``None`` is NULL),
  ``datetime64`` arrays, or float epoch ms (truncated to the millisecond; NaN is NULL).
* list columns (``FLOAT[]``, ``VARCHAR[]``): a 2-D array ``(n, d)`` or a list of lists.
* everything else: a numpy array or a list; values are converted with Arrow's safe casts
  (an int64 that does not fit an ``INTEGER`` is an error, never a silent wrap).

The writer owns the only connection to the file. :meth:`DuckDBWriter.query` runs read-only
SQL through cursors of the same database (DuckDB's MVCC lets readers see committed batches while
the pipeline thread writes); it is what the query endpoint calls.

When the file itself fails under a run (disk full, file size limit, I/O error, the file deleted
or replaced), the write raises :class:`WriteFailed` naming the file and the cause, the writer
refuses every later write, and the hooks of :meth:`DuckDBWriter.on_failure` are called once,
so that the run stops itself and reports one line instead of dying inside the dataflow.
"""

from __future__ import annotations

import contextlib
import errno
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from eddy.schemas.tables import TABLES, Table, arrow_schema, ddl
from eddy.sinks.readonly_sql import check_read_only, fetch_rows

__all__ = [
    "DEFAULT_CHECKPOINT_EVERY_S",
    "DEFAULT_CHECKPOINT_THRESHOLD",
    "DEFAULT_MEMORY_LIMIT",
    "SIZE_RE",
    "BatchError",
    "DuckDBWriter",
    "SchemaMismatch",
    "Upkeep",
    "WriteFailed",
    "retention_clock",
    "to_arrow",
]

_BATCH_VIEW = "__eddy_batch"
_SAFE_BATCHES = 16
# Long runs (docs/benchmarks.md#long-runs). Until a checkpoint, everything written since the last
# one is held in memory (the new rows and the primary-key index entries they add) and in the WAL,
# which a restart replays; a checkpoint that finds more new index than the memory limit holds
# fails and takes the database with it. So the sink's writer thread checkpoints often
# (maintain(): every DEFAULT_CHECKPOINT_EVERY_S, each a short pause of the writer), and DuckDB's
# automatic checkpoint, at DEFAULT_CHECKPOINT_THRESHOLD of WAL, bounds a burst in between.
DEFAULT_CHECKPOINT_EVERY_S = 10.0
DEFAULT_CHECKPOINT_THRESHOLD = "64MB"
# DuckDB's buffer manager (blocks of the file it has read or written, rows not checkpointed yet,
# index nodes, query intermediates) stays under this; beyond it DuckDB evicts blocks that are in
# the file and spills query intermediates to <db>.tmp. DuckDB's own default, 80% of RAM, lets its
# cache grow with the file for the whole run.
DEFAULT_MEMORY_LIMIT = "256MB"
# A retention pass deletes at most this many rows per table: deleting a row updates its
# primary-key index, and the pass holds the writer thread, so a second's worth of rows is
# deleted over a few flushes rather than in one long pause (a backlog continues at the next one).
_EXPIRE_ROWS = 5_000
#: a size DuckDB settings take: "256MB", "1.5GB", "512MiB"
SIZE_RE = r"\d+(\.\d+)?\s*[KMGT]i?B"


class BatchError(ValueError):
    """A batch does not match its table (missing/unknown column, length, type)."""


class SchemaMismatch(ValueError):
    """The file holds a table of the same name with other columns."""


class WriteFailed(RuntimeError):
    """The database file failed under the writer: ``writing <path>: <reason>``."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"writing {path}: {reason}")
        self.path = path
        self.reason = reason


# what the OS said, as strerror words ("No space left on device"), found in DuckDB's message
_OS_REASONS = tuple(
    os.strerror(code)
    for code in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO, errno.EROFS, errno.ENOENT)
)


def _reason(e: duckdb.Error) -> str:
    """The cause in a few words: the OS error when DuckDB's message carries one (``Failed to
    commit: Could not write file "x.wal": No space left on device`` -> the last part), else
    DuckDB's message on one line."""
    text = " ".join(str(e).split())
    for reason in _OS_REASONS:
        if reason in text:
            return reason
    return text


def _timestamps(name: str, values: Any, n: int) -> pa.Array:
    if isinstance(values, np.ndarray):
        if values.dtype.kind == "M":
            return pa.array(values.astype("datetime64[ms]"), type=pa.timestamp("ms"))
        if values.dtype.kind == "f":
            nan = np.isnan(values)
            ms = np.where(nan, 0, np.floor(values)).astype(np.int64)
            return pa.array(ms, type=pa.timestamp("ms"), mask=nan if nan.any() else None)
        if values.dtype.kind in "iu":
            return pa.array(values.astype(np.int64, copy=False), type=pa.timestamp("ms"))
    try:  # a list of ints (python or numpy scalars, None for NULL)
        return pa.array(values, type=pa.int64()).cast(pa.timestamp("ms"))
    except (pa.ArrowException, TypeError):  # datetimes
        return pa.array(values, type=pa.timestamp("ms"))


def _lists(name: str, values: Any, typ: pa.ListType, n: int) -> pa.Array:
    if isinstance(values, list) and values.count(None) == n:  # a column of NULLs, at once
        return pa.nulls(n, type=typ)
    if isinstance(values, np.ndarray) and values.ndim == 2:
        rows, d = values.shape
        flat = pa.array(np.ascontiguousarray(values).reshape(-1), type=typ.value_type)
        offsets = pa.array(np.arange(rows + 1, dtype=np.int32) * d, type=pa.int32())
        return pa.ListArray.from_arrays(offsets, flat, type=typ)
    if isinstance(values, np.ndarray):
        values = [None if v is None else list(v) for v in values]
    return pa.array(values, type=typ)


def _column(table: Table, name: str, typ: pa.DataType, values: Any, n: int) -> pa.Array:
    try:
        if pa.types.is_timestamp(typ):
            return _timestamps(name, values, n)
        if pa.types.is_list(typ):
            return _lists(name, values, typ, n)
        return pa.array(values, type=typ)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as e:
        sample = type(values).__name__
        if isinstance(values, np.ndarray):
            sample += f" dtype={values.dtype} shape={values.shape}"
        raise BatchError(
            f"table {table.name!r}, column {name!r}: cannot convert {sample} to {typ}: {e}"
        ) from None


def _length(values: Any) -> int:
    if isinstance(values, np.ndarray):
        return int(values.shape[0]) if values.ndim else -1
    try:
        return len(values)
    except TypeError:
        return -1


def to_arrow(table: str | Table, columns: Mapping[str, Any]) -> pa.Table:
    """Validate a ``{column: values}`` batch and build its Arrow table (``schemas.tables``)."""
    if isinstance(table, str):
        if table not in TABLES:
            raise BatchError(f"unknown table {table!r}; tables are {sorted(TABLES)}")
        table = TABLES[table]
    if not isinstance(columns, Mapping):
        raise BatchError(
            f"table {table.name!r}: a batch must be a dict of columns, got {type(columns).__name__}"
        )
    expected = table.column_names
    missing = [c for c in expected if c not in columns]
    if missing:
        raise BatchError(f"table {table.name!r}: batch is missing columns {missing}")
    unknown = sorted(set(columns) - set(expected))
    if unknown:
        raise BatchError(f"table {table.name!r}: batch has unknown columns {unknown}")
    lengths = {c: _length(columns[c]) for c in expected}
    for c, m in lengths.items():
        if m < 0:
            raise BatchError(
                f"table {table.name!r}, column {c!r}: expected an array or list, "
                f"got {type(columns[c]).__name__}"
            )
    n = lengths[expected[0]]
    for c, m in lengths.items():
        if m != n:
            raise BatchError(
                f"table {table.name!r}: column {c!r} has {m} values but "
                f"{expected[0]!r} has {n}; all columns must have the same length"
            )
    schema = arrow_schema(table)
    if n == 0:
        return schema.empty_table()
    arrays = [_column(table, f.name, f.type, columns[f.name], n) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


class Upkeep(NamedTuple):
    """What one :meth:`DuckDBWriter.maintain` did: rows deleted by retention and the seconds
    that took, and the seconds its checkpoint took (None: no checkpoint)."""

    deleted: int
    delete_s: float
    checkpoint_s: float | None


class DuckDBWriter:
    """Owns one DuckDB file: creates every table, inserts batches idempotently, serves reads.

    ``write``/``write_many``/``counts``/``close`` may be called from any thread (they share
    one lock). ``query`` uses a pool of cursors and never waits for a write to finish.
    """

    def __init__(
        self,
        path: str,
        *,
        max_query_cursors: int = 4,
        checkpoint_threshold: str | None = DEFAULT_CHECKPOINT_THRESHOLD,
        tables: Mapping[str, Table] | None = None,
        memory_limit: str | None = DEFAULT_MEMORY_LIMIT,
        retention_ms: int | None = None,
        checkpoint_every_s: float | None = DEFAULT_CHECKPOINT_EVERY_S,
        expire_every_s: float = 1.0,
    ) -> None:
        if not isinstance(path, str) or not path:
            raise ValueError(f"DuckDBWriter path: expected a non-empty str, got {path!r}")
        if max_query_cursors < 1:
            raise ValueError(f"max_query_cursors: expected >= 1, got {max_query_cursors!r}")
        for name, size in (
            ("checkpoint_threshold", checkpoint_threshold),
            ("memory_limit", memory_limit),
        ):
            if size is not None and not (
                isinstance(size, str) and re.fullmatch(SIZE_RE, size, flags=re.IGNORECASE)
            ):
                raise ValueError(f"{name}: expected a size such as '16MB' or '1GB', got {size!r}")
        if retention_ms is not None and not retention_ms > 0:
            raise ValueError(f"retention_ms: expected > 0 or None, got {retention_ms!r}")
        if checkpoint_every_s is not None and not checkpoint_every_s > 0:
            raise ValueError(
                f"checkpoint_every_s: expected > 0 or None, got {checkpoint_every_s!r}"
            )
        self.path = path
        self.tables: dict[str, Table] = dict(TABLES if tables is None else tables)
        self.max_query_cursors = max_query_cursors
        self.checkpoint_threshold = checkpoint_threshold
        self.memory_limit = memory_limit
        self.retention_ms = retention_ms
        self.checkpoint_every_s = checkpoint_every_s
        self.expire_every_s = expire_every_s
        self._lock = threading.Lock()
        self._failure: WriteFailed | None = None
        self._failure_hooks: list[Callable[[WriteFailed], None]] = []
        self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(path)
        # which file was opened: a path that later names no file, or another one, means the
        # results go to a file nobody can open any more (see _check_file)
        self._file = os.path.abspath(path)
        self._identity = _identity(self._file)
        if checkpoint_threshold is not None:
            # WAL size that triggers an automatic checkpoint (None: DuckDB's 16 MB).
            self._con.execute(f"SET checkpoint_threshold = '{checkpoint_threshold}'")
        if memory_limit is not None:  # before the query endpoint locks the configuration
            self._con.execute(f"SET memory_limit = '{memory_limit}'")
        # No vacuum at checkpoints: DuckDB's vacuum merges the small row groups that frequent
        # checkpoints leave and rewrites partly deleted ones, a pause of the writer that grows
        # with the table (docs/benchmarks.md#long-runs). Without it a checkpoint writes what is
        # new; retention deletes the oldest rows first, so the row groups it empties are dropped
        # whole and their space is reused all the same.
        self._con.execute("SET max_vacuum_tasks = 0")
        # retention: table -> (its time column, "event" or "wall" clock); see expire()
        self._clocks = {n: c for n, t in self.tables.items() if (c := retention_clock(t))}
        self._newest_event_ms: int | None = None
        self._dirty = False  # written since the last checkpoint
        self._last_checkpoint = time.monotonic()
        self._last_expire = float("-inf")
        self._expire_backlog = False  # the last pass stopped at _EXPIRE_ROWS somewhere
        self._idle: queue.SimpleQueue[duckdb.DuckDBPyConnection] = queue.SimpleQueue()
        self._cursor_slots = threading.BoundedSemaphore(max_query_cursors)
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        with self._lock:
            for t in self.tables.values():
                self._check_existing(t)
                self._con.execute(ddl(t))
        self._safe_left: dict[str, int] = dict.fromkeys(self.tables, 0)

    def _check_existing(self, table: Table) -> None:
        """A table left by another pipeline must have this one's columns, or inserts would
        fail mid-run: refuse the file at once, naming the table."""
        assert self._con is not None
        rows = self._con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? AND schema_name = "
            "'main' ORDER BY column_index",
            [table.name],
        ).fetchall()
        have = [r[0] for r in rows]
        if have and have != table.column_names:
            self._con.close()
            self._con = None
            raise SchemaMismatch(
                f"{self.path}: table {table.name!r} has other columns than this pipeline "
                f"writes (it was made by another pipeline); use another DuckDB file"
            )

    # ------------------------------------------------------------------ failures
    @property
    def failure(self) -> WriteFailed | None:
        """How the file failed (None while it works)."""
        return self._failure

    def on_failure(self, hook: Callable[[WriteFailed], None]) -> None:
        """Call ``hook(failure)`` once when the file fails, from the thread that saw it
        (holding the writer's lock: the hook must be quick and must not use the writer)."""
        with self._lock:
            self._failure_hooks.append(hook)
            failure = self._failure
        if failure is not None:
            hook(failure)

    @property
    def failure_hooked(self) -> bool:
        """Someone acts on a failure (a run stops itself), so writers upstream need not
        raise it where it would do harm (inside a Bytewax sink it is a Rust panic)."""
        return bool(self._failure_hooks)

    def _fail(self, reason: str, cause: BaseException | None = None) -> WriteFailed:
        """Record the first failure and tell the hooks. Caller holds the lock."""
        if self._failure is None:
            failure = WriteFailed(self._file, reason)
            failure.__cause__ = cause
            self._failure = failure
            for hook in self._failure_hooks:
                hook(failure)
        return self._failure

    def _check_file(self) -> None:
        """Raise :class:`WriteFailed` if the file failed before, or if the path no longer
        names the file that was opened: DuckDB would go on writing to the deleted file
        (its descriptor stays open), and the rows would be lost at close. Caller holds the
        lock."""
        if self._failure is not None:
            raise self._failure
        if self._identity is None:
            return
        now = _identity(self._file)
        if now is None:
            raise self._fail("the file was deleted while the pipeline was writing it")
        if now != self._identity:
            raise self._fail("the file was replaced by another while the pipeline was writing it")

    # ------------------------------------------------------------------ writes
    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise RuntimeError(f"DuckDBWriter({self.path!r}) is closed")
        return self._con

    @staticmethod
    def _insert(con: duckdb.DuckDBPyConnection, table: str, batch: pa.Table, ignore: bool) -> int:
        sql = f'INSERT INTO "{table}" SELECT * FROM {_BATCH_VIEW}'
        con.register(_BATCH_VIEW, batch)
        try:
            row = con.execute(sql + " ON CONFLICT DO NOTHING" if ignore else sql).fetchone()
        finally:
            with contextlib.suppress(duckdb.Error):  # fails in an aborted transaction
                con.unregister(_BATCH_VIEW)
        return int(row[0]) if row else 0

    def _commit(self, arrow: Mapping[str, pa.Table]) -> dict[str, int]:
        """Insert every batch in one transaction; an error of the file (not of a batch) is a
        :class:`WriteFailed`, and every later write raises it too. Caller holds the lock."""
        con = self._connection()
        todo = {t: b for t, b in arrow.items() if b.num_rows}
        inserted = dict.fromkeys(arrow, 0)
        if not todo:
            return inserted
        self._check_file()
        try:
            return self._transaction(con, todo, inserted)
        except duckdb.ConstraintException:
            raise  # the batch's fault (a NULL key): the file is fine
        except duckdb.Error as e:  # the file's: full disk, I/O error, invalidated database
            raise self._fail(_reason(e), e) from e

    def _transaction(
        self,
        con: duckdb.DuckDBPyConnection,
        todo: dict[str, pa.Table],
        inserted: dict[str, int],
    ) -> dict[str, int]:
        """A plain INSERT is ~1.4x faster than ``ON CONFLICT DO NOTHING`` in DuckDB, so new keys
        take the plain path; a primary-key conflict rolls the transaction back and redoes it
        with ``ON CONFLICT DO NOTHING``, and that table stays on the conflict-tolerant path for
        the next ``_SAFE_BATCHES`` batches (a replay after a restart conflicts in a run).
        """
        for retry in (False, True):
            ignore = {t: retry or self._safe_left[t] > 0 for t in todo}
            con.execute("BEGIN TRANSACTION")
            try:
                for t, batch in todo.items():
                    inserted[t] = self._insert(con, t, batch, ignore[t])
                con.execute("COMMIT")
            except duckdb.ConstraintException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                if retry or all(ignore.values()):
                    raise  # not a key conflict (e.g. a NULL key): the caller must see it
                for t in todo:
                    if not ignore[t]:
                        self._safe_left[t] = _SAFE_BATCHES
                continue
            except BaseException:
                with contextlib.suppress(duckdb.Error):
                    con.execute("ROLLBACK")
                raise
            for t in todo:
                if ignore[t] and not retry:
                    self._safe_left[t] -= 1
            return inserted
        raise AssertionError("unreachable")  # pragma: no cover

    def write(self, table: str, columns: Mapping[str, Any]) -> int:
        """Insert one batch in one statement; return the number of rows actually inserted
        (rows whose primary key already exists, or repeats inside the batch, are skipped)."""
        batch = to_arrow(self._table(table), columns)
        if batch.num_rows == 0:
            return 0
        with self._lock:
            inserted = self._commit({table: batch})[table]
            self._written({table: batch})
            return inserted

    def write_many(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
        """Insert several tables' batches in ONE transaction (all or nothing).

        Returns rows inserted per table. Every batch is validated before anything is written.
        """
        arrow = {t: to_arrow(self._table(t), cols) for t, cols in batches.items()}
        with self._lock:
            inserted = self._commit(arrow)
            self._written(arrow)
            return inserted

    def _written(self, arrow: Mapping[str, pa.Table]) -> None:
        """Note committed batches: the newest event time (retention's clock). Caller holds
        the lock."""
        for name, batch in arrow.items():
            if not batch.num_rows:
                continue
            self._dirty = True
            column, clock = self._clocks.get(name, ("", "wall"))
            if clock == "event":
                newest = pc.max(batch.column(column)).value
                if newest is not None and (
                    self._newest_event_ms is None or newest > self._newest_event_ms
                ):
                    self._newest_event_ms = int(newest)

    def _table(self, name: str) -> Table:
        table = self.tables.get(name)
        if table is None:
            raise BatchError(f"unknown table {name!r}; tables are {sorted(self.tables)}")
        return table

    def counts(self) -> dict[str, int]:
        """Rows per table."""
        sql = " UNION ALL ".join(f"SELECT '{t}', count(*) FROM \"{t}\"" for t in self.tables)
        with self._lock:
            rows = self._connection().execute(sql).fetchall()
        return {str(t): int(c) for t, c in rows}

    def checkpoint(self) -> None:
        """Write the WAL into the database file now (blocks writes meanwhile; call it at a
        quiet moment, e.g. the end of a bounded input)."""
        with self._lock:
            con = self._connection()
            self._check_file()
            try:
                con.execute("CHECKPOINT")
            except duckdb.Error as e:
                raise self._fail(_reason(e), e) from e
            self._dirty = False
            self._last_checkpoint = time.monotonic()

    # ------------------------------------------------------------------ long runs
    def expire(self, max_rows: int = _EXPIRE_ROWS, now_ms: int | None = None) -> dict[str, int]:
        """Delete rows older than ``retention_ms``, at most ``max_rows`` per table (any of
        those past the bound). Returns rows deleted per table (tables with none left out).

        Event time is the clock where a table has one (``event_time``; ``window_end`` for
        windows): rows older than the newest event time this writer has written minus the
        retention go, so a replay of old data keeps its last stretch. Tables stamped only by
        the wall clock (``metrics``, ``dead_letters``) go by ``now_ms`` (default: now). The
        space is reused after the next checkpoint; the file does not shrink.
        """
        if self.retention_ms is None:
            return {}
        wall = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        deleted: dict[str, int] = {}
        for name, (column, clock) in self._clocks.items():
            newest = wall if clock == "wall" else self._newest_event_ms
            if newest is None:
                continue
            sql = (
                f'DELETE FROM "{name}" WHERE rowid IN (SELECT rowid FROM "{name}" '
                f'WHERE "{column}" < epoch_ms(?::BIGINT) LIMIT ?)'
            )
            with self._lock:  # per statement, not for the whole pass
                con = self._connection()
                self._check_file()
                try:
                    row = con.execute(sql, [newest - self.retention_ms, max_rows]).fetchone()
                except duckdb.Error as e:
                    raise self._fail(_reason(e), e) from e
                n = int(row[0]) if row else 0
                if n:
                    deleted[name] = n
                    self._dirty = True
        return deleted

    def maintain(self) -> Upkeep:
        """What a long run's writer calls between batches: :meth:`expire` every
        ``expire_every_s`` (at once again while a backlog is left), then a checkpoint every
        ``checkpoint_every_s`` when something changed."""
        now = time.monotonic()
        deleted, delete_s = 0, 0.0
        due = self._expire_backlog or now - self._last_expire >= self.expire_every_s
        if self.retention_ms is not None and due:
            self._last_expire = now
            t0 = time.perf_counter()
            counts = self.expire()
            delete_s = time.perf_counter() - t0
            self._expire_backlog = any(n >= _EXPIRE_ROWS for n in counts.values())
            deleted = sum(counts.values())
        every = self.checkpoint_every_s
        if every is None or not self._dirty or time.monotonic() - self._last_checkpoint < every:
            return Upkeep(deleted, delete_s, None)
        t0 = time.perf_counter()
        self.checkpoint()
        return Upkeep(deleted, delete_s, time.perf_counter() - t0)

    # ------------------------------------------------------------------ reads
    def _take_cursor(self) -> duckdb.DuckDBPyConnection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            cur = self._connection().cursor()
            self._cursors.append(cur)
        return cur

    def _drop_cursor(self, cur: duckdb.DuckDBPyConnection) -> None:
        with contextlib.suppress(duckdb.Error):
            cur.close()
        with self._lock, contextlib.suppress(ValueError):
            self._cursors.remove(cur)

    def query(
        self,
        sql: str,
        *,
        max_rows: int | None = None,
        timeout_s: float | None = None,
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Run ONE read statement; return ``(column_names, rows)``.

        Thread-safe and read-only: the statement must pass
        :func:`sinks.readonly_sql.check_read_only` and runs inside
        ``BEGIN TRANSACTION READ ONLY`` on a pooled cursor. At most ``max_rows`` rows are
        fetched; after ``timeout_s`` seconds the query is interrupted
        (``duckdb.InterruptException``)."""
        sql = check_read_only(sql)
        self._connection()  # closed: RuntimeError, not a DuckDB error about a cursor
        if max_rows is not None and max_rows < 0:
            raise ValueError(f"max_rows: expected >= 0 or None, got {max_rows!r}")
        if not self._cursor_slots.acquire(timeout=timeout_s if timeout_s else -1):
            raise TimeoutError(f"all {self.max_query_cursors} query cursors are busy")
        try:
            cur = self._take_cursor()
            timer = threading.Timer(timeout_s, cur.interrupt) if timeout_s else None
            try:
                cur.execute("BEGIN TRANSACTION READ ONLY")
                try:
                    if timer is not None:
                        timer.start()
                    names, rows = fetch_rows(cur, sql, max_rows)
                finally:
                    if timer is not None:
                        timer.cancel()
                    with contextlib.suppress(duckdb.Error):
                        cur.execute("ROLLBACK")
            except duckdb.Error:
                self._idle.put(cur)  # rolled back above: safe to reuse
                raise
            except BaseException:
                self._drop_cursor(cur)  # unknown state: never reused
                raise
            self._idle.put(cur)
            return names, rows
        finally:
            self._cursor_slots.release()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        """Checkpoint and close the file (idempotent). A failure of the file (also one only
        the checkpoint meets) does not raise here: it is in :attr:`failure`."""
        with self._lock:
            con, self._con = self._con, None
            if con is None:
                return
            for cur in self._cursors:
                with contextlib.suppress(duckdb.Error):
                    cur.close()
            self._cursors.clear()
            with contextlib.suppress(WriteFailed):
                self._check_file()
            if self._failure is None:
                try:
                    con.execute("CHECKPOINT")
                except duckdb.Error as e:
                    self._fail(_reason(e), e)
            with contextlib.suppress(duckdb.Error):
                con.close()

    @property
    def closed(self) -> bool:
        return self._con is None

    def __enter__(self) -> DuckDBWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DuckDBWriter({self.path!r}{', closed' if self.closed else ''})"


def retention_clock(table: Table) -> tuple[str, str] | None:
    """The column retention compares with, and its clock: a table's event time
    (``event_time``, or ``window_end`` for windows), else its first wall-clock timestamp
    (``metrics.ts``, ``dead_letters.received_at``); None without a timestamp."""
    names = table.column_names
    for column in ("event_time", "window_end"):
        if column in names:
            return column, "event"
    stamps = [c.name for c in table.columns if c.sql_type == "TIMESTAMP"]
    return (stamps[0], "wall") if stamps else None


def _identity(path: str) -> tuple[int, int] | None:
    """(device, inode) of ``path``; None when no such file (or ``:memory:``)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino
