"""Read-only SQL guard shared by the query endpoint and ``eddy sql``.

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

import re

import duckdb

__all__ = ["READ_PRAGMAS", "ReadOnlyViolation", "SqlSyntaxError", "check_read_only"]

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
