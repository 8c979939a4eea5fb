"""`eddy sql` sends the token only to an endpoint file it can trust: the current user's, mode
0600, a loopback host, a live pid. Anything else: one line saying why, then the file itself."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import threading

import orjson
import pytest

from eddy.dataflows.cli import main
from eddy.sinks import query_client
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.query_client import (
    Endpoint,
    UntrustedEndpoint,
    endpoint_path,
    endpoint_problem,
    is_loopback,
    load_endpoint,
)
from eddy.sinks.query_server import QueryServer
from tests.sinks.conftest import make_batch

GOOD = {"host": "127.0.0.1", "port": 41234, "token": "t" * 43, "pid": 4242, "db": "/x.duckdb"}


def fake_stat(*, mode: int = stat.S_IFREG | 0o600, uid: int | None = None) -> os.stat_result:
    uid = os.getuid() if uid is None else uid
    return os.stat_result((mode, 1, 1, 1, uid, 0, 200, 0, 0, 0))


def alive(pid: int) -> bool:
    return pid == 4242


def problem(st: os.stat_result | None = None, **changes: object) -> str | None:
    return endpoint_problem(st or fake_stat(), {**GOOD, **changes}, pid_alive=alive)


# ---------------------------------------------------------------------- the decision
def test_a_file_like_the_engine_writes_is_trusted():
    assert problem() is None
    assert problem(host="::1") is None
    assert problem(host="localhost") is None
    assert problem(host="127.8.9.10") is None


@pytest.mark.parametrize(
    "host", ["192.0.2.2", "0.0.0.0", "::", "10.0.0.1", "example.com", "::ffff:192.0.2.2", "", 7]
)
def test_a_host_off_loopback_is_refused(host):
    assert problem(host=host) == (
        f"its host {host!r} is not a loopback address (127.0.0.0/8, ::1, localhost)"
    )


def test_loopback_means_127_slash_8_ipv6_one_and_localhost():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.255.255.254", "::1", "LOCALHOST"))
    assert not any(is_loopback(h) for h in ("128.0.0.1", "::2", "localhost.example.com"))


def test_a_file_another_user_owns_is_refused():
    other = os.getuid() + 1
    assert problem(fake_stat(uid=other)) == (
        f"it is owned by uid {other}, not by you (uid {os.getuid()})"
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o666, 0o602, 0o620], ids=oct)
def test_a_file_other_users_can_read_or_write_is_refused(mode):
    assert problem(fake_stat(mode=stat.S_IFREG | mode)) == (
        f"other users can read or write it (mode {mode:04o}; the engine writes 0600)"
    )


def test_a_dead_pid_or_a_bad_field_is_refused():
    assert problem(pid=99) == "its process 99 is not running"
    assert problem(pid=True) == "its pid True is not a process id"
    assert problem(port=0) == "its port 0 is not a port number"
    assert problem(port="41234") == "its port '41234' is not a port number"
    assert problem(token="") == "it holds no token"
    assert problem(fake_stat(mode=stat.S_IFIFO | 0o600)) == "it is not a regular file"
    assert endpoint_problem(fake_stat(), [1, 2]) == "it does not hold a JSON object"


# ---------------------------------------------------------------------- the file on disk
@pytest.fixture
def db(tmp_path) -> str:
    """A closed DuckDB file with 3 decisions."""
    path = str(tmp_path / "eddy.duckdb")
    with DuckDBWriter(path) as w:
        w.write("decisions", make_batch("decisions", 3))
    return path


def forge(db: str, mode: int = 0o600, **changes: object) -> str:
    path = endpoint_path(db)
    info = {**GOOD, "pid": os.getpid(), "db": db, **changes}
    with open(path, "wb") as f:
        f.write(orjson.dumps(info))
    os.chmod(path, mode)
    return path


def test_load_endpoint_checks_the_file_it_reads(db, monkeypatch):
    assert load_endpoint(db) is None  # no file: nothing to say
    path = forge(db)
    assert load_endpoint(db) == Endpoint("127.0.0.1", 41234, "t" * 43, os.getpid(), db)
    os.chmod(path, 0o644)
    with pytest.raises(UntrustedEndpoint, match=r"mode 0644"):
        load_endpoint(db)
    os.chmod(path, 0o600)
    monkeypatch.setattr(query_client.os, "getuid", lambda: os.geteuid() + 1)
    with pytest.raises(UntrustedEndpoint, match=r"it is owned by uid \d+, not by you"):
        load_endpoint(db)


def test_a_symlink_or_garbage_is_refused(db, tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_bytes(orjson.dumps({**GOOD, "pid": os.getpid()}))
    os.chmod(target, 0o600)
    os.symlink(target, endpoint_path(db))
    with pytest.raises(UntrustedEndpoint, match="symbolic link"):
        load_endpoint(db)
    os.unlink(endpoint_path(db))
    with open(endpoint_path(db), "wb") as f:
        f.write(b"{not json")
    os.chmod(endpoint_path(db), 0o600)
    with pytest.raises(UntrustedEndpoint, match="not valid JSON"):
        load_endpoint(db)


# ---------------------------------------------------------------------- `eddy sql`
@pytest.fixture
def listener():
    """A TCP port on 127.0.0.1 that records whether anyone connected."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def connected(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return False
    conn.close()
    return True


def sql(capsys, db: str, query: str = "SELECT count(*) AS n FROM decisions"):
    code = main(["sql", "--duckdb", db, "--format", "csv", query])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_file_others_can_read_gets_no_connection_and_the_file_answers(db, listener, capsys):
    path = forge(db, mode=0o644, port=listener.getsockname()[1])
    code, out, err = sql(capsys, db)
    assert not connected(listener)  # the token never left
    assert (code, out) == (0, "n\n3\n")
    assert err == (
        f"eddy sql: not using the query endpoint in {path}: other users can read or write it "
        "(mode 0644; the engine writes 0600); reading the file\n"
    )


def test_the_same_file_made_private_is_used(db, listener, capsys):
    forge(db, port=listener.getsockname()[1])
    listener.setblocking(True)
    listener.settimeout(30)
    got: list[bytes] = []

    def serve() -> None:  # prove the check above is what kept the token home
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            got.append(data)
            body = b'{"columns": ["n"], "rows": [[99]], "truncated": false}'
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    t = threading.Thread(target=serve)
    t.start()
    code, out, _ = sql(capsys, db)
    t.join(timeout=60)
    assert (code, out) == (0, "n\n99\n")
    assert b"Authorization: Bearer " + b"t" * 43 in got[0]


def test_a_forged_remote_host_is_never_contacted(db, capsys, monkeypatch):
    path = forge(db, host="192.0.2.2", port=80)
    dialled: list[object] = []

    class NoConnection:
        def __init__(self, *args: object, **kwargs: object) -> None:
            dialled.append(args)
            raise AssertionError("eddy sql tried to connect")

    monkeypatch.setattr(query_client.http.client, "HTTPConnection", NoConnection)
    code, out, err = sql(capsys, db)
    assert dialled == [] and (code, out) == (0, "n\n3\n")
    assert err == (
        f"eddy sql: not using the query endpoint in {path}: its host '192.0.2.2' is not a "
        "loopback address (127.0.0.0/8, ::1, localhost); reading the file\n"
    )


def test_a_dead_pid_is_reported_and_the_file_answers(db, listener, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = forge(db, pid=dead.pid, port=listener.getsockname()[1])
    code, out, err = sql(capsys, db)
    assert not connected(listener)
    assert (code, out) == (0, "n\n3\n")
    assert err == (
        f"eddy sql: not using the query endpoint in {path}: its process {dead.pid} is not "
        "running; reading the file\n"
    )


def test_another_users_file_is_refused_through_eddy_sql(db, listener, capsys, monkeypatch):
    forge(db, port=listener.getsockname()[1])
    monkeypatch.setattr(query_client.os, "getuid", lambda: os.geteuid() + 1)
    code, out, err = sql(capsys, db)
    assert not connected(listener)
    assert (code, out) == (0, "n\n3\n") and "not by you" in err


def test_untrusted_file_and_no_database_exits_2(tmp_path, capsys):
    db = str(tmp_path / "gone.duckdb")
    forge(db, host="192.0.2.2")
    code, out, err = sql(capsys, db)
    lines = err.splitlines()
    assert (code, out, len(lines)) == (2, "", 2)
    assert "its host '192.0.2.2' is not a loopback address" in lines[0]
    assert lines[1].startswith("eddy sql: error: no DuckDB file at")


def test_untrusted_file_while_the_engine_holds_the_database_exits_2(tmp_path, capsys):
    path = str(tmp_path / "held.duckdb")
    with DuckDBWriter(path) as w, QueryServer(w):
        os.chmod(endpoint_path(path), 0o644)
        code, out, err = sql(capsys, path)
        lines = err.splitlines()
        assert (code, out, len(lines)) == (2, "", 2)
        assert "mode 0644" in lines[0] and lines[1].startswith("eddy sql: error: ")


def test_the_engine_writes_its_file_0600_atomically_whatever_the_umask(tmp_path):
    path = str(tmp_path / "u.duckdb")
    old = os.umask(0o000)
    try:
        with DuckDBWriter(path) as w, QueryServer(w) as s:
            st = os.stat(endpoint_path(path))
            assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.getuid()
            assert load_endpoint(path) == Endpoint(
                "127.0.0.1", s.port, s.token, os.getpid(), os.path.realpath(path)
            )
            # written through a temporary file renamed into place: no leftovers
            assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    finally:
        os.umask(old)
