"""Client side of ad-hoc SQL (``eddy sql``): the running engine's endpoint, else the file.

:func:`run_query` first looks for ``<db>.endpoint.json`` (written by
:class:`sinks.query_server.QueryServer`); if the file can be trusted and the endpoint answers,
the query goes there (the engine owns the file, DuckDB allows one writer process). Otherwise the
file is opened directly with ``read_only=True``. Both paths accept only single read statements
(the same :mod:`sinks.readonly_sql`), read nothing but the database, and return the same
JSON-shaped :class:`QueryResult`.

The endpoint file carries the bearer token, and whoever can write it decides where the token is
sent. It is trusted only if it is a regular file owned by the current user that no other user
can read or write (the engine writes it 0600), it names a loopback host (127.0.0.0/8, ::1,
``localhost``) and its pid is alive (:func:`endpoint_problem`); otherwise no connection is made.

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
import ipaddress
import json
import math
import os
import stat
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = [
    "DEFAULT_MAX_ROWS",
    "JSON_OPTIONS",
    "Endpoint",
    "QueryError",
    "QueryResult",
    "UntrustedEndpoint",
    "discover",
    "endpoint_path",
    "endpoint_problem",
    "format_result",
    "is_loopback",
    "json_default",
    "load_endpoint",
    "query_endpoint",
    "query_file",
    "run_query",
    "truncation",
]

DEFAULT_MAX_ROWS = 10_000
_CELL_WIDTH = 60
_MAX_ENDPOINT_FILE = 64 << 10  # the engine writes ~200 bytes
JSON_OPTIONS = orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS


class QueryError(Exception):
    """A query could not run: one readable line (bad SQL, refused statement, no file...)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UntrustedEndpoint(Exception):
    """An endpoint file exists but must not receive the token; ``reason`` says why."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


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
    # "max_rows", or "max_bytes" when the rows reached the response size cap (max_bytes)
    truncated_by: str | None = None
    max_bytes: int | None = None


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


def is_loopback(host: str) -> bool:
    """True for ``localhost``, 127.0.0.0/8 and ::1 (the only hosts a token is sent to)."""
    if host.lower() == "localhost":
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv4Address):
        return ip in ipaddress.IPv4Network("127.0.0.0/8")
    return ip == ipaddress.IPv6Address("::1")


def endpoint_problem(
    st: os.stat_result,
    info: object,
    *,
    uid: int | None = None,
    pid_alive: Callable[[int], bool] = _pid_alive,
) -> str | None:
    """Why an endpoint file (its ``stat`` and parsed JSON) must not get the token, or None.

    Another user who could write the file would choose where the token goes, and one who
    could read it would hold the token; a non-loopback host would send it off the machine; a
    dead pid means the port may now be anyone's.
    """
    me = os.getuid() if uid is None else uid
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_uid != me:
        return f"it is owned by uid {st.st_uid}, not by you (uid {me})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o077:
        return f"other users can read or write it (mode {mode:04o}; the engine writes 0600)"
    if not isinstance(info, Mapping):
        return "it does not hold a JSON object"
    host, port, token, pid = (info.get(k) for k in ("host", "port", "token", "pid"))
    if not isinstance(host, str) or not is_loopback(host):
        return f"its host {host!r} is not a loopback address (127.0.0.0/8, ::1, localhost)"
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return f"its port {port!r} is not a port number"
    if not isinstance(token, str) or not token:
        return "it holds no token"
    if isinstance(pid, bool) or not isinstance(pid, int) or pid <= 0:
        return f"its pid {pid!r} is not a process id"
    if not pid_alive(pid):
        return f"its process {pid} is not running"
    return None


def load_endpoint(db_path: str) -> Endpoint | None:
    """The endpoint advertised for ``db_path``; None when there is no endpoint file.

    Raises :class:`UntrustedEndpoint` when a file exists but :func:`endpoint_problem` refuses
    it. The file is opened without following a symlink and checked through the open
    descriptor, so what is checked is what is read.
    """
    path = endpoint_path(db_path)
    try:
        # O_NONBLOCK: a FIFO planted at the path must not hang the open
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as e:
        reason = "it is a symbolic link" if os.path.islink(path) else f"cannot open it ({e})"
        raise UntrustedEndpoint(path, reason) from None
    try:
        st = os.fstat(fd)
        info: object = None
        if stat.S_ISREG(st.st_mode) and st.st_size <= _MAX_ENDPOINT_FILE:
            with os.fdopen(fd, "rb", closefd=False) as f:
                raw = f.read(_MAX_ENDPOINT_FILE + 1)
            try:
                info = orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise UntrustedEndpoint(path, "it is not valid JSON") from None
    finally:
        os.close(fd)
    problem = endpoint_problem(st, info)
    if problem is not None:
        raise UntrustedEndpoint(path, problem)
    assert isinstance(info, Mapping)
    return Endpoint(
        host=info["host"],
        port=info["port"],
        token=info["token"],
        pid=info["pid"],
        db=str(info.get("db", "")),
    )


def discover(db_path: str) -> Endpoint | None:
    """The trusted endpoint advertised for ``db_path``, or None (no file, or untrusted)."""
    try:
        return load_endpoint(db_path)
    except UntrustedEndpoint:
        return None


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
    if not isinstance(data, dict):
        raise QueryError(f"query endpoint {ep.url} answered HTTP {status} with {data!r}", status)
    if status != 200:
        raise QueryError(str(data.get("error", f"HTTP {status}")), status)
    return QueryResult(
        columns=list(data["columns"]),
        rows=list(data["rows"]),
        truncated=bool(data.get("truncated", False)),
        via=f"endpoint {ep.url} (pid {ep.pid})",
        elapsed_ms=float(data.get("elapsed_ms", 0.0)),
        truncated_by=data.get("truncated_by"),
        max_bytes=data.get("max_response_bytes"),
    )


def query_file(
    db_path: str,
    sql: str,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float | None = None,
    max_bytes: int | None = None,
) -> QueryResult:
    """Open ``db_path`` read-only, confine it to itself and run one read statement.

    ``timeout_s`` interrupts a long query; ``max_bytes`` caps the rows' JSON size (default
    :data:`sinks.readonly_sql.DEFAULT_MAX_RESULT_BYTES`).
    """
    import time

    import duckdb

    from eddy.sinks.readonly_sql import (
        LockdownError,
        ReadOnlyViolation,
        ResultTooLarge,
        SqlSyntaxError,
        check_read_only,
        fetch_rows,
        lock_down,
        outside_access_message,
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
    truncated_by = None
    timer = threading.Timer(timeout_s, con.interrupt) if timeout_s else None
    try:
        lock_down(con)  # before any user SQL, even the guard-approved kind
        if timer is not None:
            timer.start()
        columns, rows = fetch_rows(con, sql, max_rows + 1, max_bytes=max_bytes)
    except ResultTooLarge as e:
        if not e.rows:
            msg = f"{e}: not even one row fits; select fewer or narrower columns"
            raise QueryError(msg, 413) from None
        columns, rows, truncated_by = e.columns, e.rows, "max_bytes"
        max_bytes = e.limit
    except duckdb.PermissionException as e:
        raise QueryError(outside_access_message(e), 403) from None
    except duckdb.InterruptException:
        after = f" after {timeout_s:g} s (--timeout)" if timeout_s else ""
        raise QueryError(f"query interrupted{after}", 504) from None
    except duckdb.Error as e:
        raise QueryError(str(e).strip(), 400) from None
    except LockdownError as e:
        raise QueryError(str(e), 503) from None
    finally:
        if timer is not None:
            timer.cancel()
        con.close()
    if len(rows) > max_rows:
        rows, truncated_by = rows[:max_rows], "max_rows"
    # Same JSON shape as the endpoint, so both paths print identically.
    data = orjson.loads(orjson.dumps(rows, default=json_default, option=JSON_OPTIONS))
    return QueryResult(
        columns=columns,
        rows=data,
        truncated=truncated_by is not None,
        via=f"file {db_path} (read-only)",
        elapsed_ms=(time.perf_counter() - t0) * 1e3,
        truncated_by=truncated_by,
        max_bytes=max_bytes if truncated_by == "max_bytes" else None,
    )


def run_query(
    db_path: str,
    sql: str,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = 60.0,
    warn: Callable[[str], None] | None = None,
) -> QueryResult:
    """The running engine's endpoint if a trusted one answers for ``db_path``, else the file
    read-only. ``warn`` gets one line when an endpoint file is not used, saying why."""
    if not (isinstance(timeout_s, int | float) and math.isfinite(timeout_s) and timeout_s > 0):
        raise QueryError(f"timeout: expected a finite number of seconds > 0, got {timeout_s!r}")
    try:
        ep = load_endpoint(db_path)
    except UntrustedEndpoint as e:
        if warn is not None:
            warn(f"not using the query endpoint in {e.path}: {e.reason}; reading the file")
        ep = None
    if ep is not None:
        try:
            return query_endpoint(ep, sql, max_rows=max_rows, timeout_s=timeout_s)
        except ConnectionError as e:
            # a stale advertisement: the file fails clearly if the engine still holds it
            if warn is not None:
                warn(f"{e}; reading the file")
    return query_file(db_path, sql, max_rows=max_rows, timeout_s=timeout_s)


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
    tail += f", {truncation(result)})" if result.truncated else ")"
    out.append(tail)
    return "\n".join(out) + "\n"


def truncation(result: QueryResult) -> str:
    """How a truncated result was cut, for a person."""
    n = len(result.rows)
    if result.truncated_by == "max_bytes":
        cap = f"{result.max_bytes} bytes" if result.max_bytes else "its size cap"
        return f"truncated at {n}: the response reached {cap}; select fewer or narrower columns"
    return f"truncated at {n}; use --max-rows"


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
