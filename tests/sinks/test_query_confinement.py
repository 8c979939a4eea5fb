"""User SQL reads the pipeline's database and nothing else: no other file, no URL, no extension,
no configuration change, through the HTTP endpoint and through `eddy sql` on the file."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from eddy.dataflows.cli import main
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.query_client import endpoint_path
from eddy.sinks.query_server import QueryServer
from eddy.sinks.readonly_sql import LockdownError, fetch_rows, lock_down
from tests.sinks.conftest import make_batch
from tests.sinks.endpoint_http import post_query

SECRET = "top-secret-line"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the database holding files user SQL must not see."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "secret.csv").write_text(f"a,b\n{SECRET},2\n")
    with duckdb.connect(str(d / "other.duckdb")) as con:
        con.execute("CREATE TABLE t AS SELECT 'other-db-row' AS v")
    return d


# Statements that reach past the database ({d}: a directory next to it), with the file or
# directory each must not create, if any.
ESCAPES: list[tuple[str, str | None]] = [
    ("SELECT * FROM read_blob('{d}/secret.csv')", None),
    ("SELECT * FROM read_csv('{d}/secret.csv')", None),
    ("SELECT * FROM read_text('{d}/secret.csv')", None),
    ("SELECT * FROM '{d}/secret.csv'", None),
    ("SELECT * FROM glob('{d}/*')", None),
    ("SELECT * FROM glob('/root/**')", None),
    ("SELECT * FROM read_blob('/etc/passwd')", None),
    ("SELECT * FROM read_csv('https://127.0.0.1:9/x.csv')", None),
    ("SELECT * FROM read_parquet('https://example.com/x.parquet')", None),
    ("COPY (SELECT 1) TO '{d}/copied.csv'", "copied.csv"),
    ("COPY decisions TO '{d}/decisions.csv'", "decisions.csv"),
    ("ATTACH '{d}/other.duckdb' AS o", None),
    ("ATTACH '{d}/new.duckdb' AS n", "new.duckdb"),
    ("EXPORT DATABASE '{d}/export'", "export"),
    ("INSTALL httpfs", None),
    ("LOAD httpfs", None),
    ("SET enable_external_access = true", None),
    ("SET lock_configuration = false", None),
    ("RESET lock_configuration", None),
    ("PRAGMA threads = 1", None),
    ("PRAGMA enable_profiling", None),
    ("PRAGMA disable_checkpoint_on_shutdown", None),
]
IDS = [sql for sql, _ in ESCAPES]


def escape(outside: Path, template: str, created: str | None) -> tuple[str, Path | None]:
    return template.format(d=outside), None if created is None else outside / created


def _assert_refusal_line(message: str) -> None:
    assert message and "\n" not in message.strip() and "Traceback" not in message
    assert SECRET not in message and "other-db-row" not in message
    assert message.startswith("eddy sql reads only the pipeline's database") or message.startswith(
        "eddy sql is read-only: "
    ), message


# ---------------------------------------------------------------------- the HTTP endpoint
@pytest.fixture
def live(tmp_path):
    w = DuckDBWriter(str(tmp_path / "eddy.duckdb"))
    w.write("decisions", make_batch("decisions", 5))
    with QueryServer(w) as s:
        yield w, s
    w.close()


@pytest.mark.parametrize(("template", "creates"), ESCAPES, ids=IDS)
def test_endpoint_refuses_what_reaches_past_the_database(live, outside, template, creates):
    writer, server = live
    sql, created = escape(outside, template, creates)
    status, data = post_query(server, sql)
    assert status == 403, data
    _assert_refusal_line(data["error"])
    if created is not None:
        assert not created.exists()
    # the endpoint and the writer both keep working afterwards
    writer.write("decisions", make_batch("decisions", 1, start=100))
    status, data = post_query(server, "SELECT count(*) AS n FROM decisions")
    assert (status, data["rows"]) == (200, [[6]])


def test_endpoint_cannot_read_its_own_token_file(live):
    _, server = live
    status, data = post_query(server, f"SELECT * FROM read_text('{endpoint_path(server.db)}')")
    assert status == 403 and server.token not in data["error"]


def test_starting_the_endpoint_confines_the_whole_database_and_writes_go_on(live):
    writer, _ = live
    _, rows = writer.query(
        "SELECT current_setting('enable_external_access'), "
        "current_setting('autoinstall_known_extensions'), "
        "current_setting('autoload_known_extensions'), "
        "current_setting('allow_community_extensions'), "
        "current_setting('lock_configuration')"
    )
    assert rows == [(False, False, False, False, True)]
    # the pipeline's writes and checkpoints need nothing that was turned off
    assert writer.write("decisions", make_batch("decisions", 5, start=5)) == 5
    writer.checkpoint()
    assert writer.counts()["decisions"] == 10


# ---------------------------------------------------------------------- `eddy sql` on the file
@pytest.fixture
def db(tmp_path) -> str:
    path = str(tmp_path / "eddy.duckdb")
    with DuckDBWriter(path) as w:
        w.write("decisions", make_batch("decisions", 5))
    return path


@pytest.mark.parametrize(("template", "creates"), ESCAPES, ids=IDS)
def test_eddy_sql_on_the_file_refuses_what_reaches_past_the_database(
    db, outside, capsys, template, creates
):
    sql, created = escape(outside, template, creates)
    code = main(["sql", "--duckdb", db, sql])
    out, err = capsys.readouterr()
    assert (code, out) == (2, ""), err
    assert err.startswith("eddy sql: error: ") and err.count("\n") == 1
    _assert_refusal_line(err.removeprefix("eddy sql: error: "))
    if created is not None:
        assert not created.exists()
    code = main(["sql", "--duckdb", db, "--format", "csv", "SELECT count(*) AS n FROM decisions"])
    assert (code, capsys.readouterr().out) == (0, "n\n5\n")


# ---------------------------------------------------------------------- DuckDB's own refusal
def test_the_database_refuses_escapes_even_without_the_statement_guard(db, outside):
    """The guard refuses COPY, ATTACH, SET...; DuckDB must refuse them too, in case a
    statement ever slips past the guard."""
    con = duckdb.connect(db, read_only=True)
    try:
        lock_down(con)
        for template, _ in ESCAPES:
            sql = template.format(d=outside)
            with pytest.raises(duckdb.Error) as e:
                con.execute(sql).fetchall()
            assert isinstance(e.value, duckdb.PermissionException | duckdb.InvalidInputException)
            assert SECRET not in str(e.value)
        assert con.execute("SELECT count(*) FROM decisions").fetchall() == [(5,)]
    finally:
        con.close()
    assert not (outside / "copied.csv").exists() and not (outside / "new.duckdb").exists()


def test_fetch_rows_confines_a_connection_before_running_anything(db, outside):
    con = duckdb.connect(db, read_only=True)
    try:
        with pytest.raises(duckdb.PermissionException):
            fetch_rows(con, f"SELECT * FROM read_csv('{outside}/secret.csv')")
        assert fetch_rows(con, "SELECT current_setting('lock_configuration')")[1] == [(True,)]
    finally:
        con.close()


def test_a_database_locked_open_refuses_user_sql():
    con = duckdb.connect()
    con.execute("SET lock_configuration = true")  # locked with external access still on
    with pytest.raises(LockdownError, match="enable_external_access"):
        fetch_rows(con, "SELECT 1")
    with pytest.raises(LockdownError):
        lock_down(con)
    con.close()
