"""The engine's read-only SQL endpoint: HTTP on loopback, bearer token, JSON results.

The engine owns the DuckDB file (one writer process); this endpoint lets ``eddy sql`` (or any
HTTP client holding the token) query it while the pipeline writes::

    POST /query   {"sql": "SELECT ...", "max_rows": 1000, "timeout_s": 30}
        200 {"columns": [...], "rows": [[...]], "row_count": n, "truncated": false,
             "truncated_by": null | "max_rows" | "max_bytes", "elapsed_ms": 1.2}
        400 bad SQL / unknown table / bad max_rows or timeout_s, 401 missing or wrong token,
        403 not a read statement or reaches outside the database, 413 body too large or not
        one row fits the response cap, 503 busy or shutting down, 504 query timed out
    GET /health   {"ok": true, "db": ..., "pid": ...}

Every request needs ``Authorization: Bearer <token>``. The token (``secrets.token_urlsafe``)
and the port are advertised in ``<db>.endpoint.json`` (written 0600 and atomically, removed on
stop), which is how ``eddy sql`` finds a running engine. Only 127.0.0.1 and ::1 can be bound.

Queries run through :meth:`sinks.duckdb.DuckDBWriter.query`: the SQL guard admits one read
statement, and DuckDB runs it in a ``READ ONLY`` transaction on its own cursor, so readers see
committed batches without blocking the writer. Before serving, the database is confined to
itself (:func:`sinks.readonly_sql.lock_down`: no other file, no network, no extensions,
configuration locked). ``max_rows`` and ``timeout_s`` must be finite positive numbers and are
clamped to the server's caps; the rows of one answer stop at ``max_response_bytes`` of JSON.

The server is a ``ThreadingHTTPServer`` in a background thread: a DuckDB query is a blocking
call, so one thread per connection is the natural fit (an asyncio loop would hand every query
to a thread pool anyway). Because anyone on the machine can connect before authenticating,
connections are bounded: at most ``max_connections`` at once (more are answered 503 at once),
a whole request (headers and body, or the wait for the next one on a kept-alive connection)
must arrive within ``request_timeout_s``, and a body is at most 1 MiB.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import logging
import math
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
from eddy.sinks.readonly_sql import (
    DEFAULT_MAX_RESULT_BYTES,
    ReadOnlyViolation,
    ResultTooLarge,
    SqlSyntaxError,
    outside_access_message,
    result_byte_limit,
)

__all__ = ["LOOPBACK_HOSTS", "QueryServer"]

LOOPBACK_HOSTS = ("127.0.0.1", "::1")
_MAX_BODY = 1 << 20
# A response of up to max_response_bytes to a loopback client takes milliseconds; a client
# that stops reading must not hold its thread for longer than this.
_SEND_TIMEOUT_S = 30.0
_log = logging.getLogger(__name__)


class _Queryable(Protocol):
    path: str

    def query(
        self, sql: str, *, max_rows: int | None = None, timeout_s: float | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]: ...


def _busy_response() -> bytes:
    body = orjson.dumps(
        {"error": "busy: too many open connections to the query endpoint", "status": 503}
    )
    head = (
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    eddy: QueryServer
    slots: threading.BoundedSemaphore

    def process_request(self, request: Any, client_address: Any) -> None:
        # Runs on the accept thread: refusing must never block it.
        if not self.slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.setblocking(False)
                request.send(_busy_response())
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # a client that vanished mid-request is not the engine's error: no traceback on stderr
        _log.debug("query endpoint: connection from %s failed", client_address, exc_info=True)


class _HTTPServer6(_HTTPServer):
    address_family = socket.AF_INET6


class _DeadlineReader(io.RawIOBase):
    """Socket reads that must all finish by ``deadline`` (``time.monotonic``).

    A per-read socket timeout alone lets a client that sends one byte per second hold a
    thread forever; every read here waits at most until the request's deadline.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.deadline = math.inf

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request did not arrive in time")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"
    timeout = None  # reads follow the request deadline (_DeadlineReader), writes _send
    server_version = "eddy-query"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.rfile.close()  # an open makefile() would keep the socket open after close()
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)

    def handle_one_request(self) -> None:
        # One deadline per request: the wait for it (kept-alive), its headers and its body.
        self._reader.deadline = time.monotonic() + self.server.eddy.request_timeout_s
        super().handle_one_request()

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s " + format, self.client_address[0], *args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        body = orjson.dumps(payload, default=json_default, option=JSON_OPTIONS)
        self.connection.settimeout(_SEND_TIMEOUT_S)  # sendall: a bound on the whole answer
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
            self.close_connection = True
            self._error(400, "Content-Length is not a number")
            return None
        if length < 0 or length > _MAX_BODY:
            self.close_connection = True
            self._error(413, f"request body must be at most {_MAX_BODY} bytes, got {length}")
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client closed early
            self.close_connection = True
            return None
        return body

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
            max_rows = int(_bounded(req, "max_rows", DEFAULT_MAX_ROWS, eddy.max_rows_limit, True))
            timeout_s = _bounded(req, "timeout_s", eddy.timeout_s, eddy.timeout_s, False)
        except ValueError as e:
            self._error(400, str(e))
            return
        self._send(*eddy.run(req["sql"], max_rows, timeout_s))


def _bounded(req: dict[str, Any], key: str, default: float, cap: float, whole: bool) -> float:
    """``req[key]`` (else ``default``) as a finite number > 0, clamped to ``cap``.

    Only JSON numbers count: ``float("nan")`` of a string once slipped past the cap.
    """
    value = req.get(key, default)
    shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key} must be a JSON number, got {shown}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{key} must be a finite number > 0, got {shown}")
    if whole and not float(value).is_integer():
        raise ValueError(f"{key} must be a whole number, got {shown}")
    return min(value, cap)


def _positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"QueryServer {name}: expected a number, got {value!r}")
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"QueryServer {name}: expected a finite number > 0, got {value!r}")


class QueryServer:
    """Serve read-only SQL over ``writer`` on loopback; advertise it next to the database.

    ``port=0`` picks a free port. ``token=None`` makes a random one. ``max_rows_limit`` caps
    the rows and ``max_response_bytes`` the JSON size of the rows any one answer carries (the
    answer says ``truncated`` and by which); ``timeout_s`` interrupts long queries and caps what
    a request may ask for. ``request_timeout_s`` bounds how long a connection may take to send
    a request (or stay idle between two) and ``max_connections`` how many are served at once.

    Starting confines ``writer``'s database to itself for good
    (:func:`sinks.readonly_sql.lock_down`): the setting is database-wide in DuckDB.
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
        max_response_bytes: int = DEFAULT_MAX_RESULT_BYTES,
        request_timeout_s: float = 5.0,
        max_connections: int = 16,
        advertise: bool = True,
    ) -> None:
        if host not in LOOPBACK_HOSTS:
            raise ValueError(
                f"QueryServer host: expected a loopback address {LOOPBACK_HOSTS}, got {host!r}; "
                "the query endpoint is local-only"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"QueryServer port: expected 0..65535, got {port!r}")
        if token is not None and (not isinstance(token, str) or len(token) < 16):
            raise ValueError("QueryServer token: expected a str of at least 16 characters")
        _positive("timeout_s", timeout_s)
        _positive("request_timeout_s", request_timeout_s)
        for name, value in (
            ("max_rows_limit", max_rows_limit),
            ("max_response_bytes", max_response_bytes),
            ("max_connections", max_connections),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"QueryServer {name}: expected an int >= 1, got {value!r}")
        self.writer = writer
        self.host = host
        self.port = port
        self.token = token or secrets.token_urlsafe(32)
        self.timeout_s = float(timeout_s)
        self.max_rows_limit = max_rows_limit
        self.max_response_bytes = max_response_bytes
        self.request_timeout_s = float(request_timeout_s)
        self.max_connections = max_connections
        self.advertise = advertise
        self.db = os.path.realpath(writer.path) if writer.path != ":memory:" else ":memory:"
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._endpoint_file: str | None = None

    # ------------------------------------------------------------------ requests
    def run(self, sql: str, max_rows: int, timeout_s: float) -> tuple[int, dict[str, Any]]:
        """Execute one request's SQL: ``(http_status, json_payload)``."""
        t0 = time.perf_counter()
        truncated_by = None
        try:
            with result_byte_limit(self.max_response_bytes):
                columns, rows = self.writer.query(sql, max_rows=max_rows + 1, timeout_s=timeout_s)
        except ResultTooLarge as e:
            if not e.rows:
                msg = f"{e}: not even one row fits; select fewer or narrower columns"
                return 413, {"error": msg, "status": 413}
            columns, rows, truncated_by = e.columns, e.rows, "max_bytes"
        except ReadOnlyViolation as e:
            return 403, {"error": str(e), "status": 403}
        except SqlSyntaxError as e:
            return 400, {"error": str(e), "status": 400}
        except duckdb.PermissionException as e:  # a file, URL or extension outside the database
            return 403, {"error": outside_access_message(e), "status": 403}
        except duckdb.InterruptException:
            return 504, {"error": f"query interrupted after {timeout_s:g} s", "status": 504}
        except duckdb.Error as e:
            return 400, {"error": str(e).strip(), "status": 400}
        except (TimeoutError, RuntimeError) as e:  # cursors busy, writer closed, not confined
            return 503, {"error": str(e), "status": 503}
        if len(rows) > max_rows:
            rows, truncated_by = rows[:max_rows], truncated_by or "max_rows"
        payload: dict[str, Any] = {
            "columns": columns,
            "rows": rows,
            "row_count": len(rows),
            "truncated": truncated_by is not None,
            "truncated_by": truncated_by,
            "elapsed_ms": round((time.perf_counter() - t0) * 1e3, 3),
        }
        if truncated_by == "max_bytes":
            payload["max_response_bytes"] = self.max_response_bytes
        return 200, payload

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._httpd is not None

    def start(self) -> QueryServer:
        """Confine the database, bind, serve in a daemon thread, write the endpoint file."""
        if self._httpd is not None:
            return self
        # Every query goes through readonly_sql.fetch_rows, which confines the database before
        # it runs anything; one query now does it before a request can arrive.
        self.writer.query("SELECT 1", max_rows=1, timeout_s=self.timeout_s)
        cls = _HTTPServer6 if ":" in self.host else _HTTPServer
        httpd = cls((self.host, self.port), _Handler)
        httpd.eddy = self
        httpd.slots = threading.BoundedSemaphore(self.max_connections)
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
            try:
                self._endpoint_file = self._write_endpoint_file()
            except OSError as e:
                _log.warning(
                    "query endpoint %s is not advertised (cannot write %s: %s); "
                    "`eddy sql` will not find it",
                    self.url,
                    endpoint_path(self.db),
                    e,
                )
        _log.info("query endpoint on %s", self.url)
        return self

    def _write_endpoint_file(self) -> str:
        """Write ``<db>.endpoint.json`` 0600, atomically: readers see the old file or the
        whole new one, never a partial token, and never a moment of wider permissions."""
        path = endpoint_path(self.db)
        info = {
            "host": self.host,
            "port": self.port,
            "token": self.token,
            "pid": os.getpid(),
            "db": self.db,
        }
        tmp = f"{path}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)  # the umask may only remove bits; be exact anyway
            with os.fdopen(fd, "wb") as f:
                f.write(orjson.dumps(info, option=orjson.OPT_INDENT_2) + b"\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path

    def withdraw(self) -> None:
        """Remove the endpoint file and nothing else: quick and lock-free, for a process about
        to exit at once (``stop`` also shuts the server down)."""
        self._remove_endpoint_file()

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
