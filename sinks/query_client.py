"""Client side of ad-hoc SQL (``eddy sql``): the running engine's endpoint, else the file.

:func:`run_query` first looks for ``<db>.endpoint.json`` (written by
:class:`sinks.query_server.QueryServer`); if its process is alive and the endpoint answers, the
query goes there (the engine owns the file, DuckDB allows one writer process). Otherwise the file
is opened directly with ``read_only=True``. Both paths accept only single read statements (the
same :mod:`sinks.readonly_sql`) and return the same JSON-shaped :class:`QueryResult`.

This module is on the ``eddy sql`` start-up path: it imports only the standard library and
orjson at import time; duckdb is imported only when the file is opened directly.
"""

from __future__ import annotations

import base64
import csv
import datetime as dt
import decimal
import http.client
import io
import json
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "DEFAULT_MAX_ROWS",
    "JSON_OPTIONS",
    "Endpoint",
    "QueryError",
    "QueryResult",
    "discover",
    "endpoint_path",
    "format_result",
    "json_default",
    "query_endpoint",
    "query_file",
    "run_query",
]

DEFAULT_MAX_ROWS = 10_000
_CELL_WIDTH = 60
JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class QueryError(Exception):
    """A query could not run: one readable line (bad SQL, refused statement, no file...)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    token: str
    pid: int
    db: str

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[list[Any]]
    truncated: bool = False
    via: str = ""
    elapsed_ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def endpoint_path(db_path: str) -> str:
    """Where the engine advertises its query endpoint for ``db_path``."""
    return os.path.realpath(db_path) + ".endpoint.json"


def json_default(value: Any) -> Any:
    """orjson ``default=`` (use with :data:`JSON_OPTIONS`): what DuckDB returns beyond JSON.

    Timestamps are written the way DuckDB prints them (``2024-05-01 12:00:00.250``, with an
    offset only when zoned), decimals as exact strings, BLOBs as text when they are UTF-8 else
    ``base64:...``.
    """
    if isinstance(value, dt.datetime):
        us = value.microsecond
        spec = "seconds" if us == 0 else "milliseconds" if us % 1000 == 0 else "microseconds"
        return value.isoformat(sep=" ", timespec=spec)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return "base64:" + base64.b64encode(raw).decode("ascii")
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    return str(value)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):
        return False
    return True


def discover(db_path: str) -> Endpoint | None:
    """The live endpoint advertised for ``db_path``, or None (no file, unreadable, dead pid)."""
    try:
        with open(endpoint_path(db_path), "rb") as f:
            info = orjson.loads(f.read())
        ep = Endpoint(
            host=str(info["host"]),
            port=int(info["port"]),
            token=str(info["token"]),
            pid=int(info["pid"]),
            db=str(info.get("db", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ep if _pid_alive(ep.pid) else None


def query_endpoint(
    ep: Endpoint, sql: str, *, max_rows: int = DEFAULT_MAX_ROWS, timeout_s: float = 60.0
) -> QueryResult:
    """POST the query to a running engine. Raises ConnectionError if nothing answers and
    :class:`QueryError` (with the HTTP status) if the engine refuses or the SQL fails."""
    body = orjson.dumps({"sql": sql, "max_rows": max_rows, "timeout_s": timeout_s})
    conn = http.client.HTTPConnection(ep.host, ep.port, timeout=timeout_s + 5)
    try:
        conn.request(
            "POST",
            "/query",
            body=body,
            headers={"Authorization": f"Bearer {ep.token}", "Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        status, payload = resp.status, resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise ConnectionError(f"query endpoint {ep.url} did not answer: {e}") from e
    finally:
        conn.close()
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        raise QueryError(
            f"query endpoint {ep.url} answered HTTP {status} with a body that is not JSON",
            status,
        ) from None
    if status != 200:
        raise QueryError(str(data.get("error", f"HTTP {status}")), status)
    return QueryResult(
        columns=list(data["columns"]),
        rows=list(data["rows"]),
        truncated=bool(data.get("truncated", False)),
        via=f"endpoint {ep.url} (pid {ep.pid})",
        elapsed_ms=float(data.get("elapsed_ms", 0.0)),
    )


def query_file(db_path: str, sql: str, *, max_rows: int = DEFAULT_MAX_ROWS) -> QueryResult:
    """Open ``db_path`` read-only and run one read statement."""
    import time

    import duckdb

    from eddy.sinks.readonly_sql import (
        ReadOnlyViolation,
        SqlSyntaxError,
        check_read_only,
        fetch_rows,
    )

    try:
        sql = check_read_only(sql)
    except (ReadOnlyViolation, SqlSyntaxError) as e:
        raise QueryError(str(e), 403 if isinstance(e, ReadOnlyViolation) else 400) from None
    if not os.path.exists(db_path):
        raise QueryError(f"no DuckDB file at {db_path!r} (run `eddy run` first, or pass --duckdb)")
    t0 = time.perf_counter()
    try:
        con = duckdb.connect(db_path, read_only=True)
    except duckdb.Error as e:
        msg = str(e).strip().splitlines()[0]
        if "lock" in msg.lower():
            ep = discover(db_path)
            who = f"process {ep.pid}" if ep else "another process"
            raise QueryError(
                f"{db_path!r} is in use by {who} and no query endpoint answered; "
                f"retry when it is up, or stop it ({msg})"
            ) from None
        raise QueryError(f"cannot open {db_path!r}: {msg}") from None
    try:
        columns, rows = fetch_rows(con, sql, max_rows + 1)
    except duckdb.Error as e:
        raise QueryError(str(e).strip(), 400) from None
    finally:
        con.close()
    truncated = len(rows) > max_rows
    rows = rows[:max_rows]
    # Same JSON shape as the endpoint, so both paths print identically.
    data = orjson.loads(orjson.dumps(rows, default=json_default, option=JSON_OPTIONS))
    return QueryResult(
        columns=columns,
        rows=data,
        truncated=truncated,
        via=f"file {db_path} (read-only)",
        elapsed_ms=(time.perf_counter() - t0) * 1e3,
    )


def run_query(
    db_path: str, sql: str, *, max_rows: int = DEFAULT_MAX_ROWS, timeout_s: float = 60.0
) -> QueryResult:
    """The running engine's endpoint if one answers for ``db_path``, else the file read-only."""
    ep = discover(db_path)
    if ep is not None:
        try:
            return query_endpoint(ep, sql, max_rows=max_rows, timeout_s=timeout_s)
        except ConnectionError:
            pass  # stale advertisement: fall back to the file (fails clearly if still locked)
    return query_file(db_path, sql, max_rows=max_rows)


# ---------------------------------------------------------------------- formatting
def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, list | dict):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = str(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= _CELL_WIDTH else text[: _CELL_WIDTH - 1] + "…"


def _table(result: QueryResult) -> str:
    cols = result.columns
    cells = [[_cell(v) for v in row] for row in result.rows]
    numeric = [
        all(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in result.rows)
        and bool(result.rows)
        for i in range(len(cols))
    ]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]

    def line(values: list[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip()

    out = [line(cols), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    n = len(result.rows)
    tail = f"({n} row{'s' if n != 1 else ''}"
    tail += f", truncated at {n}; use --max-rows)" if result.truncated else ")"
    out.append(tail)
    return "\n".join(out) + "\n"


def _csv(result: QueryResult) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(result.columns)
    for row in result.rows:
        w.writerow(
            [
                ""
                if v is None
                else json.dumps(v, ensure_ascii=False)
                if isinstance(v, list | dict)
                else ("true" if v else "false")
                if isinstance(v, bool)
                else v
                for v in row
            ]
        )
    return buf.getvalue()


def format_result(result: QueryResult, fmt: str = "table") -> str:
    """Render as an aligned text table, CSV (header row) or JSON (an array of row objects)."""
    if fmt == "table":
        return _table(result)
    if fmt == "csv":
        return _csv(result)
    if fmt == "json":
        objs = [dict(zip(result.columns, row, strict=True)) for row in result.rows]
        return orjson.dumps(objs).decode() + "\n"
    raise ValueError(f"format: expected 'table', 'csv' or 'json', got {fmt!r}")
