"""Read-only SQL shared by the query endpoint and ``eddy sql``: the statement guard and
result fetching (:func:`fetch_rows`).

DuckDB parses the text itself (``duckdb.extract_statements``), so the decision is made on the
statement type DuckDB will execute, not on a regex over the text. Accepted: exactly one
statement that is a ``SELECT`` (which in DuckDB includes ``WITH``, ``FROM t``, ``VALUES``,
``DESCRIBE``, ``SHOW``, ``SUMMARIZE``), an ``EXPLAIN`` of such a statement (``EXPLAIN ANALYZE``
executes its statement, so the inner statement is checked too), or a ``PRAGMA`` from a short
list of catalogue reads (``table_info``, ``show_tables``, ...). Everything else is refused
with :class:`ReadOnlyViolation`, e.g. ``eddy sql is read-only: INSERT statements are refused``.

The guard is one of two layers: the endpoint also runs every query inside a
``BEGIN TRANSACTION READ ONLY`` transaction and ``eddy sql`` opens files with
``read_only=True``, so DuckDB itself refuses writes the guard might miss.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import duckdb
import pyarrow as pa

__all__ = [
    "READ_PRAGMAS",
    "ReadOnlyViolation",
    "SqlSyntaxError",
    "check_read_only",
    "fetch_rows",
]

READ_PRAGMAS = frozenset(
    {
        "table_info",
        "show",
        "show_tables",
        "show_tables_expanded",
        "show_databases",
        "database_list",
        "database_size",
        "storage_info",
        "metadata_info",
        "version",
        "platform",
        "functions",
        "collations",
        "user_agent",
    }
)

_PREFIX = "eddy sql is read-only"
_EXPLAIN = re.compile(r"^\s*explain\s+(?:analy[sz]e\s+|\([^)]*\)\s*)?", re.IGNORECASE)
_PRAGMA = re.compile(r"^\s*pragma\s+([a-z_][a-z0-9_]*)", re.IGNORECASE)
_MAX_DEPTH = 3


class ReadOnlyViolation(ValueError):
    """The SQL is well formed but is not a single read statement."""


class SqlSyntaxError(ValueError):
    """DuckDB could not parse the SQL."""


def _type_name(stmt: duckdb.Statement) -> str:
    return str(stmt.type).rsplit(".", 1)[-1].upper()


def _strip_comments(sql: str) -> str:
    # Enough for the prefix checks below (EXPLAIN/PRAGMA keyword); DuckDB parsed it already.
    sql = re.sub(r"/\*.*?\*/", " ", sql, flags=re.DOTALL)
    return re.sub(r"--[^\n]*", " ", sql)


def _check_one(sql: str, depth: int) -> None:
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as e:
        raise SqlSyntaxError(str(e).strip()) from None
    if not statements:
        raise SqlSyntaxError("no SQL statement given")
    if len(statements) > 1:
        raise ReadOnlyViolation(
            f"{_PREFIX}: exactly one statement is accepted, got {len(statements)}"
        )
    stmt = statements[0]
    kind = _type_name(stmt)
    if kind == "SELECT":
        return
    text = _strip_comments(stmt.query)
    if kind == "EXPLAIN" and depth < _MAX_DEPTH:
        inner = _EXPLAIN.sub("", text, count=1)
        if inner == text or not inner.strip():
            raise ReadOnlyViolation(f"{_PREFIX}: could not read the statement under EXPLAIN")
        _check_one(inner, depth + 1)
        return
    if kind == "PRAGMA":
        m = _PRAGMA.match(text)
        name = m.group(1).lower() if m else "?"
        if name in READ_PRAGMAS:
            return
        raise ReadOnlyViolation(
            f"{_PREFIX}: PRAGMA {name} is refused (allowed: {', '.join(sorted(READ_PRAGMAS))})"
        )
    raise ReadOnlyViolation(f"{_PREFIX}: {kind} statements are refused")


def check_read_only(sql: str) -> str:
    """Return ``sql`` stripped if it is exactly one read statement, else raise.

    Raises :class:`SqlSyntaxError` when DuckDB cannot parse it and :class:`ReadOnlyViolation`
    when it is not a single read statement (the message names the refused statement type).
    """
    if not isinstance(sql, str):
        raise SqlSyntaxError(f"SQL must be a string, got {type(sql).__name__}")
    sql = sql.strip()
    if not sql.rstrip(";").strip():
        raise SqlSyntaxError("no SQL statement given")
    _check_one(sql, 0)
    return sql


def _interval(v: Any) -> str | None:
    if v is None:
        return None
    parts = []
    if v.months:
        parts.append(f"{v.months} month{'s' if abs(v.months) != 1 else ''}")
    if v.days:
        parts.append(f"{v.days} day{'s' if abs(v.days) != 1 else ''}")
    if v.nanoseconds or not parts:
        parts.append(str(dt.timedelta(microseconds=v.nanoseconds // 1000)))
    return " ".join(parts)


def _pylist(col: pa.ChunkedArray) -> list[Any]:
    """Python values for one result column; values Python cannot hold (e.g. an infinite
    timestamp) become Arrow's text for them rather than an error."""
    if pa.types.is_interval(col.type):
        return [_interval(v) for v in col.to_pylist()]
    try:
        return col.to_pylist(maps_as_pydicts="lossy")
    except (ValueError, OverflowError, pa.ArrowException):
        out: list[Any] = []
        for chunk in col.chunks:
            for scalar in chunk:
                try:
                    out.append(scalar.as_py())
                except (ValueError, OverflowError, pa.ArrowException):
                    out.append(_unrepresentable(scalar))
        return out


_INT64_MAX = 2**63 - 1


def _unrepresentable(scalar: pa.Scalar) -> str:
    raw = getattr(scalar, "value", None)
    if isinstance(raw, int) and abs(raw) in (_INT64_MAX, 2**31 - 1):
        return "infinity" if raw > 0 else "-infinity"  # DuckDB's infinite timestamps/dates
    return f"<{scalar.type} value {raw!r} out of Python's range>"


def fetch_rows(
    con: duckdb.DuckDBPyConnection, sql: str, max_rows: int | None = None
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` (already checked) on ``con`` and fetch at most ``max_rows`` rows.

    Streams through Arrow, so ``SELECT * FROM big`` with a row cap reads only what it
    returns, and zoned timestamps come back as ``datetime`` with ``zoneinfo`` (no pytz).
    """
    rel = con.sql(sql)
    if rel is None:
        return [], []
    batch_rows = 100_000 if max_rows is None else max(1, min(max_rows, 100_000))
    reader = rel.to_arrow_reader(batch_rows)
    batches: list[pa.RecordBatch] = []
    n = 0
    for batch in reader:
        batches.append(batch)
        n += batch.num_rows
        if max_rows is not None and n >= max_rows:
            break
    table = pa.Table.from_batches(batches, schema=reader.schema)
    if max_rows is not None:
        table = table.slice(0, max_rows)
    columns = [_pylist(c) for c in table.columns]
    return list(table.column_names), list(zip(*columns, strict=True))
