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

A read can still reach past the database (``read_blob('/etc/shadow')``, ``glob('/root/**')``,
an https URL, an extension download), so user SQL runs only on a database that
:func:`lock_down` has confined with DuckDB's own settings: no external access, no extension
install or autoload, no Python variables as tables, and the configuration locked so no
statement can undo it. :func:`fetch_rows` confines the database before it runs anything.

:func:`fetch_rows` also stops at a byte budget (the size of the rows as JSON), so one wide
query cannot fill the engine's memory: :class:`ResultTooLarge` carries the rows that fit.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import threading
import weakref
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import duckdb
import orjson
import pyarrow as pa

from eddy.sinks.query_client import JSON_OPTIONS, json_default

__all__ = [
    "DEFAULT_MAX_RESULT_BYTES",
    "LOCKDOWN_SETTINGS",
    "READ_PRAGMAS",
    "LockdownError",
    "ReadOnlyViolation",
    "ResultTooLarge",
    "SqlSyntaxError",
    "check_read_only",
    "fetch_rows",
    "lock_down",
    "outside_access_message",
    "result_byte_limit",
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


class LockdownError(RuntimeError):
    """The database could not be confined (its configuration was locked open elsewhere)."""


class ResultTooLarge(Exception):
    """The rows passed the byte budget; ``rows`` holds those that fit (possibly none)."""

    def __init__(self, columns: list[str], rows: list[tuple[Any, ...]], limit: int) -> None:
        super().__init__(
            f"the result passed the response size cap of {limit} bytes after {len(rows)} rows"
        )
        self.columns = columns
        self.rows = rows
        self.limit = limit


# Applied in this order with SET GLOBAL on an open database, then ``lock_configuration``.
# Disabling external access after the file is open keeps the database itself (its file, WAL
# and temp directory stay reachable) and refuses every other path and URL. Extensions that
# are not installed could otherwise be downloaded (autoinstall) or loaded from disk
# (autoload) by a query that names a URL or a format. Python replacement scans would let SQL
# read any DataFrame or Arrow table that happens to be a variable in a calling frame.
LOCKDOWN_SETTINGS: tuple[tuple[str, bool], ...] = (
    ("enable_external_access", False),
    ("autoinstall_known_extensions", False),
    ("autoload_known_extensions", False),
    ("allow_community_extensions", False),
    ("allow_unsigned_extensions", False),
    ("allow_persistent_secrets", False),
    ("python_enable_replacements", False),
)
_LOCKED = {**dict(LOCKDOWN_SETTINGS), "lock_configuration": True}
# A locked configuration cannot be unlocked, so a connection seen locked once stays so;
# remembering it saves a settings query per request.
_confined: weakref.WeakKeyDictionary[duckdb.DuckDBPyConnection, bool] = weakref.WeakKeyDictionary()
_lockdown_guard = threading.Lock()


def _drift(con: duckdb.DuckDBPyConnection) -> tuple[dict[str, bool], list[str]]:
    """The database's current values of the lockdown settings, and those that differ."""
    rows = con.execute(
        "SELECT name, lower(value) = 'true' FROM duckdb_settings() WHERE list_contains(?, name)",
        [list(_LOCKED)],
    ).fetchall()
    have = {str(name): bool(on) for name, on in rows}
    return have, [name for name, want in _LOCKED.items() if have.get(name) is not want]


def lock_down(con: duckdb.DuckDBPyConnection) -> None:
    """Confine ``con``'s database for user SQL (idempotent, thread-safe).

    The settings are global: every connection and cursor of the database is confined,
    including the engine's writer, which needs none of what is turned off. Raises
    :class:`LockdownError` when the database was locked with other values, because then user
    SQL cannot be confined and must not run.
    """
    if con in _confined:
        return
    with _lockdown_guard:
        have, wrong = _drift(con)
        if wrong and not have.get("lock_configuration"):
            for name, value in LOCKDOWN_SETTINGS:
                con.execute(f"SET GLOBAL {name} = {str(value).lower()}")
            con.execute("SET GLOBAL lock_configuration = true")
            have, wrong = _drift(con)
        if wrong:
            raise LockdownError(
                "refusing to run the query: the database's configuration is locked with "
                f"{', '.join(f'{n}={have.get(n)}' for n in wrong)}"
            )
        _confined[con] = True


def outside_access_message(error: duckdb.Error) -> str:
    """One line for a query DuckDB refused because it reached outside the database."""
    first = next((ln.strip() for ln in str(error).splitlines() if ln.strip()), "refused")
    return (
        "eddy sql reads only the pipeline's database (no other files, URLs or extensions): " + first
    )


DEFAULT_MAX_RESULT_BYTES = 16 << 20
_byte_limit: ContextVar[int] = ContextVar(
    "eddy_result_byte_limit", default=DEFAULT_MAX_RESULT_BYTES
)


@contextlib.contextmanager
def result_byte_limit(max_bytes: int) -> Iterator[None]:
    """Make :func:`fetch_rows` calls in this context stop at ``max_bytes`` of JSON rows.

    The query endpoint reaches :func:`fetch_rows` through ``DuckDBWriter.query``, whose
    signature carries no byte budget; a context variable reaches it in the same thread.
    """
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes: expected an int >= 1, got {max_bytes!r}")
    token = _byte_limit.set(max_bytes)
    try:
        yield
    finally:
        _byte_limit.reset(token)


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


def _json_size(value: Any) -> int:
    return len(orjson.dumps(value, default=json_default, option=JSON_OPTIONS))


# Rows per Arrow batch: small enough that wide rows meet the byte budget after a few MB rather
# than after a whole DuckDB vector, large enough that narrow rows convert as fast as in bigger
# batches.
_BATCH_ROWS = 256


def fetch_rows(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    max_rows: int | None = None,
    *,
    max_bytes: int | None = None,
) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Run ``sql`` (already checked) on ``con`` and fetch at most ``max_rows`` rows.

    ``con``'s database is confined first (:func:`lock_down`). Streams through Arrow, so
    ``SELECT * FROM big`` with a row cap reads only what it returns, and zoned timestamps come
    back as ``datetime`` with ``zoneinfo`` (no pytz). Fetching stops once the rows, encoded as
    the endpoint sends them, pass ``max_bytes`` (default: :func:`result_byte_limit`'s, else
    :data:`DEFAULT_MAX_RESULT_BYTES`); then :class:`ResultTooLarge` carries the rows that fit.
    """
    lock_down(con)
    limit = _byte_limit.get() if max_bytes is None else max_bytes
    rel = con.sql(sql)
    if rel is None:
        return [], []
    batch_rows = _BATCH_ROWS if max_rows is None else max(1, min(max_rows, _BATCH_ROWS))
    reader = rel.to_arrow_reader(batch_rows)
    try:
        names = list(reader.schema.names)
        rows: list[tuple[Any, ...]] = []
        used = _json_size(names) + 2  # the column names and the rows' brackets
        if max_rows == 0:
            return names, rows
        for batch in reader:
            if max_rows is not None:
                batch = batch.slice(0, max_rows - len(rows))
            table = pa.Table.from_batches([batch], schema=reader.schema)
            part = list(zip(*[_pylist(c) for c in table.columns], strict=True))
            size = _json_size(part) - 2 + (1 if rows and part else 0)
            if used + size > limit:
                for row in part:  # keep the rows of this batch that still fit
                    size = _json_size(row) + (1 if rows else 0)
                    if used + size > limit:
                        break
                    rows.append(row)
                    used += size
                raise ResultTooLarge(names, rows, limit)
            rows.extend(part)
            used += size
            if max_rows is not None and len(rows) >= max_rows:
                break
        return names, rows
    finally:
        reader.close()  # an unfinished result would block the cursor's next statement
