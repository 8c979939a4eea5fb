"""The engine's read-only SQL endpoint: HTTP on loopback, bearer token, JSON results.

The engine owns the DuckDB file (one writer process); this endpoint lets ``eddy sql`` (or any
HTTP client holding the token) query it while the pipeline writes::

    POST /query   {"sql": "SELECT ...", "max_rows": 1000, "timeout_s": 30}
        200 {"columns": [...], "rows": [[...]], "row_count": n, "truncated": false,
             "elapsed_ms": 1.2}
        400 bad SQL / unknown table, 401 missing or wrong token, 403 not a read statement,
        413 body too large, 503 busy or shutting down, 504 query timed out
    GET /health   {"ok": true, "db": ..., "pid": ...}

Every request needs ``Authorization: Bearer <token>``. The token (``secrets.token_urlsafe``)
and the port are advertised in ``<db>.endpoint.json`` (mode 0600, removed on stop), which is
how ``eddy sql`` finds a running engine. Only 127.0.0.1 and ::1 can be bound.

Queries run through :meth:`sinks.duckdb.DuckDBWriter.query`: the SQL guard admits one read
statement, and DuckDB runs it in a ``READ ONLY`` transaction on its own cursor, so readers see
committed batches without blocking the writer. The server is a ``ThreadingHTTPServer`` in a
background thread: a DuckDB query is a blocking call, so one thread per request is the
natural fit (an asyncio loop would hand every query to a thread pool anyway).
"""

from __future__ import annotations

import hmac
import logging
import os
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol

import duckdb
import orjson

from eddy.sinks.query_client import DEFAULT_MAX_ROWS, JSON_OPTIONS, endpoint_path, json_default
from eddy.sinks.readonly_sql import ReadOnlyViolation, SqlSyntaxError

__all__ = ["LOOPBACK_HOSTS", "QueryServer"]

LOOPBACK_HOSTS = ("127.0.0.1", "::1")
_MAX_BODY = 1 << 20
_log = logging.getLogger(__name__)


class _Queryable(Protocol):
    path: str

    def query(
        self, sql: str, *, max_rows: int | None = None, timeout_s: float | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]: ...


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    eddy: QueryServer


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = 30  # idle keep-alive connections are closed after this
    server_version = "eddy-query"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.client_address[0], *args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload, default=json_default, option=JSON_OPTIONS)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        if status == 401:
            self.send_header("WWW-Authenticate", 'Bearer realm="eddy"')
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message, "status": status})

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if not header:
            self._error(
                401,
                "missing token: send 'Authorization: Bearer <token>' (see the "
                "endpoint file next to the database)",
            )
            return False
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), self.server.eddy.token.encode()
        ):
            self._error(401, "wrong token")
            return False
        return True

    def _drain(self) -> bytes | None:
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            self._error(400, "Content-Length is not a number")
            return None
        if length < 0 or length > _MAX_BODY:
            self.close_connection = True
            self._error(413, f"request body must be at most {_MAX_BODY} bytes, got {length}")
            return None
        return self.rfile.read(length) if length else b""

    def do_GET(self) -> None:
        if not self._authorized():
            return
        if self.path.split("?", 1)[0] != "/health":
            self._error(404, f"no such endpoint: GET {self.path}; use POST /query or GET /health")
            return
        eddy = self.server.eddy
        self._send(200, {"ok": True, "db": eddy.db, "pid": os.getpid()})

    def do_POST(self) -> None:
        body = self._drain()
        if body is None or not self._authorized():
            return
        if self.path.split("?", 1)[0] != "/query":
            self._error(404, f"no such endpoint: POST {self.path}; use POST /query")
            return
        try:
            req = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            self._error(400, f"request body is not JSON: {e}")
            return
        if not isinstance(req, dict) or not isinstance(req.get("sql"), str):
            self._error(400, 'request body must be a JSON object {"sql": "SELECT ..."}')
            return
        eddy = self.server.eddy
        try:
            max_rows = min(int(req.get("max_rows", DEFAULT_MAX_ROWS)), eddy.max_rows_limit)
            timeout_s = min(float(req.get("timeout_s", eddy.timeout_s)), eddy.timeout_s)
        except (TypeError, ValueError):
            self._error(400, "max_rows must be an integer and timeout_s a number")
            return
        if max_rows < 0 or timeout_s <= 0:
            self._error(400, f"max_rows must be >= 0 and timeout_s > 0, got {req}")
            return
        self._send(*eddy.run(req["sql"], max_rows, timeout_s))


class QueryServer:
    """Serve read-only SQL over ``writer`` on loopback; advertise it next to the database.

    ``port=0`` picks a free port. ``token=None`` makes a random one. ``max_rows_limit`` caps
    the rows any one answer carries (the answer says ``truncated``); ``timeout_s`` interrupts
    long queries.
    """

    def __init__(
        self,
        writer: _Queryable,
        host: str = "127.0.0.1",
        port: int = 0,
        token: str | None = None,
        *,
        timeout_s: float = 30.0,
        max_rows_limit: int = 1_000_000,
        advertise: bool = True,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"QueryServer host: expected a loopback address {LOOPBACK_HOSTS}, got {host!r}; "
                "the query endpoint is local-only"
            )
        if not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"QueryServer port: expected 0..65535, got {port!r}")
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ValueError("QueryServer token: expected a str of at least 16 characters")
        if timeout_s <= 0:
            raise ValueError(f"QueryServer timeout_s: expected > 0, got {timeout_s!r}")
        if max_rows_limit < 1:
            raise ValueError(f"QueryServer max_rows_limit: expected >= 1, got {max_rows_limit!r}")
        self.writer = writer
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(32)
        self.timeout_s = timeout_s
        self.max_rows_limit = max_rows_limit
        self.advertise = advertise
        self.db = os.path.realpath(writer.path) if writer.path != ":memory:" else ":memory:"
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._endpoint_file: str | None = None

    # ------------------------------------------------------------------ requests
    def run(self, sql: str, max_rows: int, timeout_s: float) -> tuple[int, dict[str, Any]]:
        """Execute one request's SQL: ``(http_status, json_payload)``."""
        t0 = time.perf_counter()
        try:
            columns, rows = self.writer.query(sql, max_rows=max_rows + 1, timeout_s=timeout_s)
        except ReadOnlyViolation as e:
            return 403, {"error": str(e), "status": 403}
        except SqlSyntaxError as e:
            return 400, {"error": str(e), "status": 400}
        except duckdb.InterruptException:
            return 504, {"error": f"query interrupted after {timeout_s:g} s", "status": 504}
        except duckdb.Error as e:
            return 400, {"error": str(e).strip(), "status": 400}
        except (TimeoutError, RuntimeError) as e:  # cursors busy, writer closed
            return 503, {"error": str(e), "status": 503}
        truncated = len(rows) > max_rows
        rows = rows[:max_rows]
        return 200, {
            "columns": columns,
            "rows": rows,
            "row_count": len(rows),
            "truncated": truncated,
            "elapsed_ms": round((time.perf_counter() - t0) * 1e3, 3),
        }

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> QueryServer:
        """Bind, serve in a daemon thread, write the endpoint file. Returns self."""
        if self._httpd is not None:
            return self
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self.port), _Handler)
        httpd.eddy = self
        self.port = int(httpd.server_address[1])
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="eddy-query-server",
            daemon=True,
        )
        self._thread.start()
        if self.advertise and self.db != ":memory:":
            self._endpoint_file = self._write_endpoint_file()
        _log.info("query endpoint on %s", self.url)
        return self

    def _write_endpoint_file(self) -> str:
        path = endpoint_path(self.db)
        info = {
            "host": self.host,
            "port": self.port,
            "token": self.token,
            "pid": os.getpid(),
            "db": self.db,
        }
        tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(info, option=orjson.OPT_INDENT_2) + b"\n")
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        return path

    def _remove_endpoint_file(self) -> None:
        path, self._endpoint_file = self._endpoint_file, None
        if path is None:
            return
        try:  # remove only our own advertisement
            with open(path, "rb") as f:
                info = orjson.loads(f.read())
            if info.get("pid") == os.getpid() and info.get("port") == self.port:
                os.unlink(path)
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        """Stop serving and remove the endpoint file (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._remove_endpoint_file()
        httpd.shutdown()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> QueryServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = self.url if self.running else "stopped"
        return f"QueryServer({self.db!r}, {state})"
