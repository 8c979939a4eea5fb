"""What one request may cost the engine: finite, capped max_rows and timeout_s, and a byte cap
on the rows of one answer (the endpoint and `eddy sql` on the file)."""

from __future__ import annotations

import http.client

import duckdb
import orjson
import pytest

from eddy.dataflows.cli import main
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.query_client import QueryError, query_file
from eddy.sinks.query_server import QueryServer
from eddy.sinks.readonly_sql import (
    DEFAULT_MAX_RESULT_BYTES,
    ResultTooLarge,
    fetch_rows,
    result_byte_limit,
)
from tests.sinks.conftest import make_batch

WIDE = "SELECT repeat('x', 1000000) AS x FROM range(100)"  # 100 MB of rows
# a cross product of 10^11 rows: no optimiser turns it into a fast join
SLOW = "SELECT sum(a.range * b.range) FROM range(1000000) a, range(100000) b"


@pytest.fixture
def writer(tmp_path):
    w = DuckDBWriter(str(tmp_path / "eddy.duckdb"))
    w.write("metrics", make_batch("metrics", 30))
    yield w
    w.close()


def post(server: QueryServer, body: object) -> tuple[int, dict, int]:
    """Status, JSON body and body size in bytes."""
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    conn = http.client.HTTPConnection(server.host, server.port, timeout=120)
    try:
        conn.request(
            "POST", "/query", body=raw, headers={"Authorization": f"Bearer {server.token}"}
        )
        resp = conn.getresponse()
        payload = resp.read()
        return resp.status, orjson.loads(payload), len(payload)
    finally:
        conn.close()


# ---------------------------------------------------------------------- max_rows, timeout_s
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_s", "nan"),
        ("timeout_s", "inf"),
        ("timeout_s", "30"),
        ("timeout_s", True),
        ("timeout_s", None),
        ("timeout_s", [1]),
        ("timeout_s", 0),
        ("timeout_s", -1),
        ("timeout_s", -0.0),
        ("max_rows", "nan"),
        ("max_rows", "10"),
        ("max_rows", True),
        ("max_rows", None),
        ("max_rows", 0),
        ("max_rows", -5),
        ("max_rows", 2.5),
        ("max_rows", {"n": 1}),
    ],
)
def test_bad_limits_are_refused_before_anything_runs(writer, field, value):
    with QueryServer(writer, timeout_s=0.5, advertise=False) as s:
        status, data, _ = post(s, {"sql": SLOW, field: value})
        assert status == 400, data
        assert data["error"].startswith(f"{field} must be "), data
        assert "\n" not in data["error"]


@pytest.mark.parametrize(
    "raw", [b'{"sql": "SELECT 1", "timeout_s": NaN}', b'{"sql": "SELECT 1", "timeout_s": 1e999}']
)
def test_non_finite_json_numbers_are_not_json(writer, raw):
    with QueryServer(writer, advertise=False) as s:
        status, data, _ = post(s, raw)
        assert status == 400 and data["error"].startswith("request body is not JSON")


def test_limits_above_the_caps_are_clamped(writer):
    with QueryServer(writer, timeout_s=0.3, max_rows_limit=7, advertise=False) as s:
        status, data, _ = post(s, {"sql": SLOW, "timeout_s": 1e300})
        assert status == 504 and data["error"] == "query interrupted after 0.3 s"
        status, data, _ = post(s, {"sql": "FROM metrics", "max_rows": 2**62})
        assert (status, data["row_count"], data["truncated"]) == (200, 7, True)
        assert data["truncated_by"] == "max_rows"
        status, data, _ = post(s, {"sql": "FROM metrics", "max_rows": 3.0, "timeout_s": 5})
        assert (status, data["row_count"]) == (200, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "nan"], "--timeout: expected a finite number"),
        (["--timeout", "inf"], "--timeout: expected a finite number"),
        (["--timeout", "0"], "--timeout: expected a finite number"),
        (["--max-rows", "0"], "--max-rows: expected >= 1"),
        (["--max-rows", "-1"], "--max-rows: expected >= 1"),
    ],
)
def test_eddy_sql_refuses_bad_limits(tmp_path, capsys, args, message):
    path = str(tmp_path / "c.duckdb")
    DuckDBWriter(path).close()
    code = main(["sql", "--duckdb", path, *args, "SELECT 1"])
    _, err = capsys.readouterr()
    assert code == 2 and message in err and err.count("\n") == 1


def test_eddy_sql_timeout_interrupts_a_query_on_the_file(tmp_path, capsys):
    path = str(tmp_path / "t.duckdb")
    DuckDBWriter(path).close()
    code = main(["sql", "--duckdb", path, "--timeout", "0.3", SLOW])
    _, err = capsys.readouterr()
    assert code == 2 and "query interrupted after 0.3 s" in err


# ---------------------------------------------------------------------- response bytes
def test_a_wide_result_stops_at_the_response_byte_cap(writer):
    with QueryServer(writer, advertise=False) as s:
        status, data, size = post(s, {"sql": WIDE})
    assert status == 200
    assert data["truncated"] is True and data["truncated_by"] == "max_bytes"
    assert data["max_response_bytes"] == DEFAULT_MAX_RESULT_BYTES == 16 << 20
    assert 0 < data["row_count"] < 100 and len(data["rows"]) == data["row_count"]
    assert all(row == ["x" * 1_000_000] for row in data["rows"])
    assert DEFAULT_MAX_RESULT_BYTES - 1_000_100 < size <= DEFAULT_MAX_RESULT_BYTES + 1024


def test_the_byte_cap_is_configurable_and_a_row_too_wide_is_a_clear_error(writer):
    with QueryServer(writer, max_response_bytes=100_000, advertise=False) as s:
        status, data, size = post(s, {"sql": "SELECT repeat('y', 1000) AS y FROM range(1000)"})
        assert (status, data["truncated_by"]) == (200, "max_bytes")
        assert 90 <= data["row_count"] < 100 and size <= 100_000 + 1024
        status, data, _ = post(s, {"sql": "SELECT repeat('z', 200000) AS z"})
        assert status == 413 and "not even one row fits" in data["error"]
        assert "100000 bytes" in data["error"]
        # under the cap nothing changes
        status, data, _ = post(s, {"sql": "SELECT count(*) FROM metrics"})
        assert (status, data["rows"], data["truncated"]) == (200, [[30]], False)


def test_fetch_rows_keeps_what_fits_and_stops_reading():
    con = duckdb.connect()
    try:
        with pytest.raises(ResultTooLarge) as e:
            fetch_rows(
                con,
                "SELECT range AS i, repeat('w', 100) AS w FROM range(10000000)",
                max_bytes=10_000,
            )
        rows = e.value.rows
        assert e.value.columns == ["i", "w"] and e.value.limit == 10_000
        assert [r[0] for r in rows] == list(range(len(rows))) and 50 < len(rows) < 100
        assert len(orjson.dumps([list(r) for r in rows])) <= 10_000
        with result_byte_limit(500), pytest.raises(ResultTooLarge):
            fetch_rows(con, "SELECT repeat('v', 1000)")
        assert fetch_rows(con, "SELECT repeat('v', 1000) AS v")[1] == [("v" * 1000,)]
    finally:
        con.close()


def test_eddy_sql_on_the_file_stops_at_the_byte_cap(tmp_path, capsys):
    path = str(tmp_path / "w.duckdb")
    DuckDBWriter(path).close()
    result = query_file(path, WIDE)
    assert result.truncated and result.truncated_by == "max_bytes" and 0 < len(result.rows) < 100
    assert result.max_bytes == DEFAULT_MAX_RESULT_BYTES
    with pytest.raises(QueryError, match="not even one row fits") as e:
        query_file(path, "SELECT repeat('x', 2000)", max_bytes=1000)
    assert e.value.status == 413
    code = main(["sql", "--duckdb", path, "--format", "csv", WIDE])
    out, err = capsys.readouterr()
    assert code == 0 and 0 < out.count("\n") - 1 < 100
    assert err == (
        f"eddy sql: output truncated at {out.count(chr(10)) - 1}: the response reached "
        f"{DEFAULT_MAX_RESULT_BYTES} bytes; select fewer or narrower columns\n"
    )
