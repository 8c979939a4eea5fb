"""`eddy sql` through the real CLI: via a live endpoint, via the file, refusals exit 2."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import orjson
import pytest

from eddy.dataflows.cli import main
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.query_client import endpoint_path
from eddy.sinks.query_server import QueryServer
from tests.sinks.conftest import make_batch


@pytest.fixture
def db(tmp_path) -> str:
    """A closed DuckDB file with 5 decisions and 2 dead letters."""
    path = str(tmp_path / "eddy.duckdb")
    with DuckDBWriter(path) as w:
        w.write("decisions", make_batch("decisions", 5))
        dl = make_batch("dead_letters", 2)
        dl["raw"] = [b"not json at all", b"\xff\xfe"]
        w.write("dead_letters", dl)
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["sql", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_output_from_the_file(db, capsys):
    code, out, err = run(
        capsys,
        "--duckdb",
        db,
        "SELECT decision_id, arm_index, event_time FROM decisions ORDER BY 1",
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split(" | ")[0].strip() == "decision_id"
    assert set(lines[1]) <= {"-", "+"}
    assert lines[2].startswith("decision_id-0 | ")
    assert lines[-1] == "(5 rows)"
    # numbers right-aligned under their header
    header_end = lines[0].index("arm_index") + len("arm_index")
    assert all(line[header_end - 1].isdigit() for line in lines[2:-1])


def test_csv_and_json_output(db, capsys):
    sql = "SELECT dead_letter_id, raw, position FROM dead_letters ORDER BY 1"
    code, out, _ = run(capsys, "--duckdb", db, "--format", "csv", sql)
    assert code == 0
    assert out.splitlines()[0] == "dead_letter_id,raw,position"
    assert out.splitlines()[1].startswith("dead_letter_id-0,not json at all,")
    code, out, _ = run(capsys, "--duckdb", db, "--format", "json", sql)
    rows = orjson.loads(out)
    assert code == 0 and len(rows) == 2
    assert rows[1]["raw"] == "base64://4="  # not UTF-8: base64, never lost
    assert set(rows[0]) == {"dead_letter_id", "raw", "position"}


def test_max_rows_truncates(db, capsys):
    code, out, _ = run(capsys, "--duckdb", db, "--max-rows", "2", "FROM decisions")
    assert code == 0 and out.splitlines()[-1] == "(2 rows, truncated at 2; use --max-rows)"


def test_query_from_stdin(db, capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdin", io.StringIO("SELECT count(*) AS n FROM decisions\n"))
    code, out, _ = run(capsys, "--duckdb", db, "--format", "csv", "-")
    assert (code, out) == (0, "n\n5\n")


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        (
            "INSERT INTO decisions SELECT * FROM decisions",
            "eddy sql is read-only: INSERT statements are refused",
        ),
        ("DROP TABLE decisions", "eddy sql is read-only: DROP statements are refused"),
        ("SELECT 1; DELETE FROM decisions", "exactly one statement is accepted"),
        ("SELEC 1", "Parser Error"),
        ("SELECT * FROM nope", "nope"),
    ],
)
def test_refusals_and_bad_sql_exit_2_with_one_line(db, capsys, sql, message):
    code, out, err = run(capsys, "--duckdb", db, sql)
    assert code == 2 and out == ""
    assert err.startswith("eddy sql: error: ") and message in err
    assert err.count("\n") == 1 and "Traceback" not in err
    code, out, _ = run(capsys, "--duckdb", db, "--format", "csv", "SELECT count(*) FROM decisions")
    assert out == "count_star()\n5\n"


def test_missing_file_exits_2(tmp_path, capsys):
    code, _, err = run(capsys, "--duckdb", str(tmp_path / "none.duckdb"), "SELECT 1")
    assert code == 2 and "no DuckDB file at" in err
    assert not (tmp_path / "none.duckdb").exists()  # read-only: never created


def test_through_the_live_endpoint_while_the_engine_owns_the_file(tmp_path, capsys):
    path = str(tmp_path / "live.duckdb")
    with DuckDBWriter(path) as w, QueryServer(w):
        w.write("decisions", make_batch("decisions", 7))
        # the writer holds the file: only the endpoint can answer
        code, out, err = run(
            capsys, "--duckdb", path, "-v", "--format", "csv", "SELECT count(*) AS n FROM decisions"
        )
        assert (code, out) == (0, "n\n7\n")
        assert "via endpoint http://127.0.0.1:" in err
        w.write("decisions", make_batch("decisions", 7, start=7))
        code, out, _ = run(capsys, "--duckdb", path, "SELECT count(*) AS n FROM decisions")
        assert code == 0 and out.splitlines()[2].strip() == "14"
        code, _, err = run(capsys, "--duckdb", path, "DELETE FROM decisions")
        assert code == 2 and "eddy sql is read-only: DELETE statements are refused" in err
        assert w.counts()["decisions"] == 14


def test_stale_endpoint_file_falls_back_to_the_file(db, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(endpoint_path(db), "wb") as f:
        f.write(orjson.dumps({"host": "127.0.0.1", "port": 9, "token": "t", "pid": dead.pid}))
    code, out, err = run(capsys, "--duckdb", db, "-v", "--format", "csv", "SELECT 1 AS a")
    assert (code, out) == (0, "a\n1\n")
    assert "via file" in err


def test_eddy_sql_does_not_import_the_streaming_stack(db):
    code = (
        "import sys; from dataflows.cli import main; rc = main(['sql', '--duckdb', sys.argv[1], "
        "'SELECT 1']); heavy = [m for m in ('bytewax', 'river', 'numba') if m in sys.modules]; "
        "print(heavy); sys.exit(rc)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, db],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    assert res.returncode == 0, res.stderr
    heavy = res.stdout.splitlines()[-1]
    assert heavy == "[]", (
        f"`eddy sql` imported {heavy}: some dataflows/commands/*.py add_parser() imports heavy "
        "modules at parser-build time (find it with python -X importtime -m eddy sql ...)"
    )
