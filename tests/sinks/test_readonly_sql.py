"""The read-only guard: DuckDB's parser decides the statement type; only single reads pass."""

from __future__ import annotations

import duckdb
import pytest

from eddy.sinks.readonly_sql import ReadOnlyViolation, SqlSyntaxError, check_read_only, fetch_rows

ALLOWED = [
    "SELECT 1",
    "  select 1 ;  ",
    "WITH x AS (SELECT 1 AS a) SELECT * FROM x",
    "FROM decisions",
    "VALUES (1), (2)",
    "DESCRIBE decisions",
    "SHOW TABLES",
    "SUMMARIZE decisions",
    "EXPLAIN SELECT 1",
    "EXPLAIN ANALYZE SELECT count(*) FROM decisions",
    "/* note */ EXPLAIN SELECT 1",
    "-- comment\nSELECT 1",
    "PRAGMA table_info('decisions')",
    "pragma show_tables",
    "PRAGMA version",
    "SELECT 1 UNION ALL SELECT 2",
]

REFUSED = [
    ("INSERT INTO decisions SELECT * FROM decisions", "INSERT statements are refused"),
    ("UPDATE decisions SET arm = 0", "UPDATE statements are refused"),
    ("DELETE FROM decisions", "DELETE statements are refused"),
    ("CREATE TABLE x (a INT)", "CREATE statements are refused"),
    ("CREATE TEMP TABLE x AS SELECT 1", "CREATE statements are refused"),
    ("DROP TABLE decisions", "DROP statements are refused"),
    ("ALTER TABLE decisions ADD COLUMN z INT", "ALTER statements are refused"),
    ("ATTACH 'other.duckdb' AS o", "ATTACH statements are refused"),
    ("DETACH o", "DETACH statements are refused"),
    ("COPY decisions TO 'out.csv'", "COPY statements are refused"),
    ("EXPORT DATABASE 'dir'", "EXPORT statements are refused"),
    ("INSTALL httpfs", "LOAD statements are refused"),
    ("LOAD httpfs", "LOAD statements are refused"),
    ("SET threads = 1", "SET statements are refused"),
    ("USE memory", "SET statements are refused"),
    ("CHECKPOINT", "CALL statements are refused"),
    ("CALL pragma_version()", "CALL statements are refused"),
    ("BEGIN TRANSACTION", "TRANSACTION statements are refused"),
    ("VACUUM", "VACUUM statements are refused"),
    ("PRAGMA enable_profiling", "PRAGMA enable_profiling is refused"),
    ("EXPLAIN ANALYZE DELETE FROM decisions", "DELETE statements are refused"),
    ("EXPLAIN INSERT INTO decisions SELECT * FROM decisions", "INSERT statements are refused"),
    ("/* hidden */ INSERT INTO decisions SELECT * FROM decisions", "INSERT statements"),
    ("SELECT 1; DROP TABLE decisions", "exactly one statement is accepted, got 2"),
    ("SELECT 1; SELECT 2", "exactly one statement is accepted, got 2"),
]


@pytest.mark.parametrize("sql", ALLOWED)
def test_reads_are_accepted(sql):
    assert check_read_only(sql) == sql.strip()


@pytest.mark.parametrize(("sql", "message"), REFUSED)
def test_writes_and_session_changes_are_refused(sql, message):
    with pytest.raises(ReadOnlyViolation, match=r"^eddy sql is read-only: ") as e:
        check_read_only(sql)
    assert message in str(e.value)


@pytest.mark.parametrize("sql", ["", "   ", ";", "SELEC 1", "SELECT (1"])
def test_empty_or_unparseable_sql_is_a_syntax_error(sql):
    with pytest.raises(SqlSyntaxError):
        check_read_only(sql)


def test_fetch_rows_caps_rows_and_converts_awkward_types():
    con = duckdb.connect()
    names, rows = fetch_rows(con, "SELECT range AS i FROM range(1000000)", max_rows=3)
    assert names == ["i"] and rows == [(0,), (1,), (2,)]
    names, rows = fetch_rows(
        con,
        "SELECT TIMESTAMPTZ '2024-01-01 10:00:00+02' AS tz, 'infinity'::TIMESTAMP AS inf, "
        "INTERVAL '1 month 2 days 3 seconds' AS iv, MAP {1: 2} AS m",
    )
    tz, inf, iv, m = rows[0]
    assert (tz.year, tz.hour, tz.utcoffset().total_seconds()) == (2024, 8, 0)
    assert (inf, iv, m) == ("infinity", "1 month 2 days 0:00:03", {1: 2})
    assert fetch_rows(con, "SELECT 1 AS a WHERE false") == (["a"], [])
