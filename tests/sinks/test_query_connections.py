"""Connections that never finish a request cannot hold the endpoint: a deadline per request,
bounded request sizes, a bounded number of connections, and normal requests go on meanwhile."""

from __future__ import annotations

import http.client
import socket
import time

import orjson
import pytest

from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.query_server import QueryServer
from tests.sinks.endpoint_http import post_query

# Generous: the server's deadline below is 1 s; a loaded machine may be slow to notice.
CLOSE_WITHIN_S = 15.0


@pytest.fixture
def writer(tmp_path):
    w = DuckDBWriter(str(tmp_path / "eddy.duckdb"))
    yield w
    w.close()


def query(server: QueryServer) -> tuple[int, dict]:
    return post_query(server, "SELECT 42 AS answer", timeout_s=30)


def wait_closed(sock: socket.socket, within: float = CLOSE_WITHIN_S) -> tuple[float, bytes]:
    """Seconds until the server closes ``sock`` (reading whatever it sent first)."""
    t0 = time.monotonic()
    sock.settimeout(within)
    received = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return time.monotonic() - t0, received
        received += chunk


def trickle(sock: socket.socket, data: bytes, every_s: float = 0.2) -> tuple[float, int]:
    """Send ``data`` one byte at a time until the server closes; (seconds, bytes sent)."""
    t0 = time.monotonic()
    sock.settimeout(every_s)
    for i in range(len(data)):
        try:
            sock.sendall(data[i : i + 1])
            if sock.recv(65536) == b"":
                return time.monotonic() - t0, i + 1
        except TimeoutError:
            continue  # still open: next byte
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - t0, i
    return time.monotonic() - t0, len(data)


@pytest.fixture
def server(writer):
    with QueryServer(writer, request_timeout_s=1.0, advertise=False) as s:
        yield s


def test_an_idle_connection_is_closed_and_others_are_served_meanwhile(server):
    idle = socket.create_connection((server.host, server.port), timeout=5)
    try:
        status, data = query(server)
        assert (status, data["rows"]) == (200, [[42]])
        took, sent = wait_closed(idle)
        assert sent == b"" and took < CLOSE_WITHIN_S
    finally:
        idle.close()


def test_a_request_sent_one_byte_at_a_time_is_cut_off(server):
    head = (
        b"POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + b"X-Padding: "
        + b"p" * 200
        + b"\r\n\r\n"
    )
    slow = socket.create_connection((server.host, server.port), timeout=5)
    try:
        took, sent = trickle(slow, head)
        assert sent < len(head)  # 250 bytes at 5 per second would take 50 s
        assert took < CLOSE_WITHIN_S
        assert query(server)[1]["rows"] == [[42]]
    finally:
        slow.close()


def test_a_body_sent_one_byte_at_a_time_is_cut_off(server):
    body = orjson.dumps({"sql": "SELECT 1 AS " + "x" * 200})
    head = (
        f"POST /query HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    slow = socket.create_connection((server.host, server.port), timeout=5)
    try:
        slow.sendall(head)
        took, sent = trickle(slow, body)
        assert sent < len(body) and took < CLOSE_WITHIN_S
        assert query(server)[1]["rows"] == [[42]]
    finally:
        slow.close()


def test_a_kept_alive_connection_is_closed_when_idle_after_its_request(server):
    sock = socket.create_connection((server.host, server.port), timeout=5)
    try:
        body = orjson.dumps({"sql": "SELECT 7 AS seven"})
        sock.sendall(
            f"POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        took, received = wait_closed(sock)
        assert received.startswith(b"HTTP/1.1 200 ") and b'"rows":[[7]]' in received
        assert took < CLOSE_WITHIN_S
    finally:
        sock.close()


def test_request_sizes_are_bounded(server):
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:  # a body over 1 MiB is refused before it is read
        sock.sendall(
            f"POST /query HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {server.token}\r\n"
            f"Content-Length: {2 << 20}\r\n\r\n".encode()
        )
        _, received = wait_closed(sock)
        assert received.startswith(b"HTTP/1.1 413 ")
    finally:
        sock.close()
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:  # too many header lines
        headers = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
        _, received = wait_closed(sock)
        assert received.startswith(b"HTTP/1.1 431 ")
    finally:
        sock.close()
    sock = socket.create_connection((server.host, server.port), timeout=10)
    try:  # a request line over 64 KiB
        sock.sendall(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n")
        _, received = wait_closed(sock)
        assert received.startswith(b"HTTP/1.1 414 ")
    finally:
        sock.close()


def test_connections_beyond_the_bound_are_refused_at_once(writer):
    with QueryServer(writer, request_timeout_s=5.0, max_connections=2, advertise=False) as s:
        held = [socket.create_connection((s.host, s.port), timeout=5) for _ in range(2)]
        try:
            extra = socket.create_connection((s.host, s.port), timeout=5)
            _, received = wait_closed(extra)
            extra.close()
            assert received.startswith(b"HTTP/1.1 503 ") and b"busy" in received
            for sock in held:  # answered while both slots were still held
                sock.setblocking(False)
                with pytest.raises(BlockingIOError):
                    sock.recv(1)
                sock.setblocking(True)
            for sock in held:  # the server frees their slots at the deadline
                assert wait_closed(sock)[1] == b""
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + CLOSE_WITHIN_S
        while True:
            try:
                status, data = query(s)
            except (ConnectionError, http.client.HTTPException):
                status, data = 0, {}
            if status == 200 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert (status, data.get("rows")) == (200, [[42]])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"request_timeout_s": 0}, "request_timeout_s"),
        ({"request_timeout_s": float("nan")}, "request_timeout_s"),
        ({"timeout_s": float("inf")}, "timeout_s"),
        ({"max_connections": 0}, "max_connections"),
        ({"max_response_bytes": 0}, "max_response_bytes"),
    ],
)
def test_server_limits_are_validated(writer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        QueryServer(writer, **kwargs)
