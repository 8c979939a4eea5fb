"""The query endpoint over a real DuckDB file: auth, read-only refusal, reads during writes."""

from __future__ import annotations

import http.client
import os
import stat
import threading

import orjson
import pytest

from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.query_client import Endpoint, QueryError, discover, endpoint_path, query_endpoint
from eddy.sinks.query_server import QueryServer
from tests.sinks.conftest import make_batch


@pytest.fixture
def writer(tmp_path):
    w = DuckDBWriter(str(tmp_path / "eddy.duckdb"))
    yield w
    w.close()


@pytest.fixture
def server(writer):
    with QueryServer(writer) as s:
        yield s


def request(
    server: QueryServer,
    body: object,
    *,
    token: str | None = "right",
    method: str = "POST",
    path: str = "/query",
) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {server.token if token == 'right' else token}"
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        conn.request(method, path, body=raw if method == "POST" else None, headers=headers)
        resp = conn.getresponse()
        return resp.status, orjson.loads(resp.read())
    finally:
        conn.close()


def test_select_returns_columns_and_json_rows(writer, server):
    writer.write("decisions", make_batch("decisions", 5))
    sql = "SELECT decision_id, event_time, context, arm_index FROM decisions ORDER BY 1 LIMIT 2"
    status, data = request(server, {"sql": sql})
    assert status == 200
    assert data["columns"] == ["decision_id", "event_time", "context", "arm_index"]
    assert data["row_count"] == 2 and data["truncated"] is False
    first = data["rows"][0]
    assert first[0] == "decision_id-0"
    assert first[1].startswith("2023-11-14 ")  # DuckDB's own timestamp text
    assert len(first[2]) == 4 and isinstance(first[3], int)


def test_max_rows_truncates_and_says_so(writer, server):
    writer.write("metrics", make_batch("metrics", 30))
    status, data = request(server, {"sql": "SELECT * FROM metrics", "max_rows": 10})
    assert (status, data["row_count"], data["truncated"]) == (200, 10, True)
    status, data = request(server, {"sql": "SELECT * FROM metrics", "max_rows": 30})
    assert (status, data["row_count"], data["truncated"]) == (200, 30, False)


@pytest.mark.parametrize(
    ("sql", "kind"),
    [
        ("INSERT INTO metrics SELECT * FROM metrics", "INSERT"),
        ("UPDATE decisions SET arm = 1", "UPDATE"),
        ("DELETE FROM decisions", "DELETE"),
        ("CREATE TABLE evil (a INT)", "CREATE"),
        ("DROP TABLE decisions", "DROP"),
        ("ATTACH ':memory:' AS other", "ATTACH"),
        ("COPY decisions TO '/tmp/eddy-should-not-exist.csv'", "COPY"),
        ("EXPLAIN ANALYZE DELETE FROM decisions", "DELETE"),
    ],
)
def test_write_statements_are_refused_with_403(writer, server, sql, kind):
    writer.write("decisions", make_batch("decisions", 3))
    status, data = request(server, {"sql": sql})
    assert status == 403
    assert data["error"] == f"eddy sql is read-only: {kind} statements are refused"
    assert writer.counts()["decisions"] == 3
    assert "evil" not in str(writer.query("SHOW TABLES")[1])


def test_multi_statement_is_refused_with_403(writer, server):
    status, data = request(server, {"sql": "SELECT 1; DROP TABLE decisions"})
    assert status == 403
    assert "exactly one statement" in data["error"]
    assert "decisions" in writer.counts()


@pytest.mark.parametrize("token", [None, "wrong-token-wrong-token", ""])
def test_missing_or_wrong_token_is_401(server, token):
    status, data = request(server, {"sql": "SELECT 1"}, token=token)
    assert status == 401
    assert data["error"] in {"wrong token"} or data["error"].startswith("missing token")
    status, _ = request(server, None, token=token, method="GET", path="/health")
    assert status == 401


def test_closed_writer_answers_503(tmp_path):
    w = DuckDBWriter(str(tmp_path / "closing.duckdb"))
    with QueryServer(w, advertise=False) as s:
        assert request(s, {"sql": "SELECT 1"})[0] == 200
        w.close()
        status, data = request(s, {"sql": "SELECT 1"})
        assert status == 503 and "closed" in data["error"]


def test_health_and_errors(server):
    status, data = request(server, None, method="GET", path="/health")
    assert (status, data["ok"], data["pid"]) == (200, True, os.getpid())
    assert request(server, {"sql": "SELECT * FROM nope"})[0] == 400
    assert request(server, {"sql": "SELEC 1"})[0] == 400
    assert request(server, b"{not json")[0] == 400
    assert request(server, {"query": "SELECT 1"})[0] == 400
    assert request(server, {"sql": "SELECT 1"}, path="/other")[0] == 404
    status, data = request(server, {"sql": "SELECT 1 AS one"})
    assert (status, data["rows"]) == (200, [[1]])


def test_long_query_is_interrupted_with_504(writer):
    with QueryServer(writer, timeout_s=0.3, advertise=False) as s:
        # a cross product of 10^11 rows: no optimiser turns it into a fast join
        slow = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(100000) b"
        status, data = request(s, {"sql": slow})
        assert status == 504 and "interrupted" in data["error"]
        assert request(s, {"sql": "SELECT 1"})[0] == 200


def test_select_while_another_thread_keeps_writing(writer, server):
    stop = threading.Event()
    errors: list[BaseException] = []

    def pump() -> None:
        i = 0
        try:
            while not stop.is_set():
                writer.write("decisions", make_batch("decisions", 1000, start=i * 1000))
                i += 1
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=pump)
    t.start()
    counts: list[int] = []
    try:
        while len(counts) < 300 and (not counts or counts[-1] < 10_000):
            status, data = request(server, {"sql": "SELECT count(*) FROM decisions"})
            assert status == 200, data
            counts.append(data["rows"][0][0])
    finally:
        stop.set()
        t.join()
    assert not errors
    assert counts == sorted(counts) and counts[-1] > counts[0]


def test_endpoint_file_is_private_and_removed_on_stop(writer):
    path = endpoint_path(writer.path)
    s = QueryServer(writer).start()
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        with open(path, "rb") as f:
            info = orjson.loads(f.read())
        assert info == {
            "host": "127.0.0.1",
            "port": s.port,
            "token": s.token,
            "pid": os.getpid(),
            "db": os.path.realpath(writer.path),
        }
        ep = discover(writer.path)
        assert ep == Endpoint("127.0.0.1", s.port, s.token, os.getpid(), info["db"])
        assert query_endpoint(ep, "SELECT 2 AS two").rows == [[2]]
    finally:
        s.stop()
    assert not os.path.exists(path)
    assert discover(writer.path) is None
    s.stop()  # idempotent


def test_ipv6_loopback_works(writer):
    with QueryServer(writer, host="::1", advertise=False) as s:
        ep = Endpoint("::1", s.port, s.token, os.getpid(), s.db)
        assert query_endpoint(ep, "SELECT 3 AS three").rows == [[3]]


@pytest.mark.parametrize("host", ["0.0.0.0", "localhost", "192.168.1.10", "::"])
def test_only_loopback_can_be_bound(writer, host):
    with pytest.raises(ValueError, match="loopback"):
        QueryServer(writer, host=host)


def test_client_raises_query_error_with_status(writer, server):
    ep = discover(writer.path)
    assert ep is not None
    with pytest.raises(QueryError, match="INSERT statements are refused") as e:
        query_endpoint(ep, "INSERT INTO metrics SELECT * FROM metrics")
    assert e.value.status == 403
    bad = Endpoint(ep.host, ep.port, "x" * 43, ep.pid, ep.db)
    with pytest.raises(QueryError, match="wrong token") as e:
        query_endpoint(bad, "SELECT 1")
    assert e.value.status == 401
