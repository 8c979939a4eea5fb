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
"""

from __future__ import annotations

import contextlib
import queue
import re
import threading
from collections.abc import Mapping
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from eddy.schemas.tables import TABLES, Table, arrow_schema, ddl
from eddy.sinks.readonly_sql import check_read_only, fetch_rows

__all__ = [
    "DEFAULT_CHECKPOINT_THRESHOLD",
    "BatchError",
    "DuckDBWriter",
    "SchemaMismatch",
    "to_arrow",
]

_BATCH_VIEW = "__eddy_batch"
_SAFE_BATCHES = 16
# An automatic checkpoint blocks the writer (seconds once the file holds ~10^5 rows at DuckDB's
# default 16 MB threshold; benchmarks/duckdb_sink.py): checkpoint rarely, and on close().
DEFAULT_CHECKPOINT_THRESHOLD = "1GB"


class BatchError(ValueError):
    """A batch does not match its table (missing/unknown column, length, type)."""


class SchemaMismatch(ValueError):
    """The file holds a table of the same name with other columns."""


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
    ) -> None:
        if not isinstance(path, str) or not path:
            raise ValueError(f"DuckDBWriter path: expected a non-empty str, got {path!r}")
        if max_query_cursors < 1:
            raise ValueError(f"max_query_cursors: expected >= 1, got {max_query_cursors!r}")
        if checkpoint_threshold is not None and not re.fullmatch(
            r"\d+(\.\d+)?\s*[KMGT]i?B", checkpoint_threshold, flags=re.IGNORECASE
        ):
            raise ValueError(
                "checkpoint_threshold: expected a size such as '16MB' or '1GB', "
                f"got {checkpoint_threshold!r}"
            )
        self.path = path
        self.tables: dict[str, Table] = dict(TABLES if tables is None else tables)
        self.max_query_cursors = max_query_cursors
        self.checkpoint_threshold = checkpoint_threshold
        self._lock = threading.Lock()
        self._con: duckdb.DuckDBPyConnection | None = duckdb.connect(path)
        if checkpoint_threshold is not None:
            # WAL size that triggers an automatic checkpoint (None: DuckDB's 16 MB).
            self._con.execute(f"SET checkpoint_threshold = '{checkpoint_threshold}'")
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
        """Insert every batch in one transaction. Caller holds the lock.

        A plain INSERT is ~1.4x faster than ``ON CONFLICT DO NOTHING`` in DuckDB, so new keys
        take the plain path; a primary-key conflict rolls the transaction back and redoes it
        with ``ON CONFLICT DO NOTHING``, and that table stays on the conflict-tolerant path for
        the next ``_SAFE_BATCHES`` batches (a replay after a restart conflicts in a run).
        """
        con = self._connection()
        todo = {t: b for t, b in arrow.items() if b.num_rows}
        inserted = dict.fromkeys(arrow, 0)
        if not todo:
            return inserted
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
            return self._commit({table: batch})[table]

    def write_many(self, batches: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
        """Insert several tables' batches in ONE transaction (all or nothing).

        Returns rows inserted per table. Every batch is validated before anything is written.
        """
        arrow = {t: to_arrow(self._table(t), cols) for t, cols in batches.items()}
        with self._lock:
            return self._commit(arrow)

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
            self._connection().execute("CHECKPOINT")

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
        """Checkpoint and close the file (idempotent)."""
        with self._lock:
            con, self._con = self._con, None
            if con is None:
                return
            for cur in self._cursors:
                with contextlib.suppress(duckdb.Error):
                    cur.close()
            self._cursors.clear()
            with contextlib.suppress(duckdb.Error):
                con.execute("CHECKPOINT")
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
