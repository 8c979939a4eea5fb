"""A query to the endpoint over real HTTP, as ``eddy sql`` sends it."""

from __future__ import annotations

import http.client

import orjson

from eddy.sinks.query_server import QueryServer


def post_query(server: QueryServer, sql: str, timeout_s: float = 60.0) -> tuple[int, dict]:
    """``POST /query`` with the server's token; the HTTP status and the decoded answer."""
    conn = http.client.HTTPConnection(server.host, server.port, timeout=timeout_s)
    try:
        conn.request(
            "POST",
            "/query",
            body=orjson.dumps({"sql": sql}),
            headers={"Authorization": f"Bearer {server.token}"},
        )
        resp = conn.getresponse()
        return resp.status, orjson.loads(resp.read())
    finally:
        conn.close()
