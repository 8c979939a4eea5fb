"""`eddy run` when its DuckDB file fails mid-run: a full disk, a file size limit, the file
deleted. Each ends the run with one line naming the file and the cause, exit code 1, and the
query endpoint file removed (the run used to abort with pages of Rust panics, or exit 0 with a
summary of rows that no longer existed)."""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.sinks.small_disk import small_tmpfs

TIMEOUT_S = 300  # generous: the run fills the file within seconds


def _eddy_run(
    db: Path, *extra: str, preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eddy", "run", "--forever", "--quiet", "--duckdb", str(db), *extra],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=preexec_fn,
    )


def _endpoint(db: Path) -> Path:
    return Path(f"{db}.endpoint.json")


def test_a_full_disk_ends_the_run_with_one_line(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", 8) as small:
        db = small / "eddy.duckdb"
        proc = _eddy_run(db)
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert proc.stderr.splitlines() == [
            f"eddy run: error: writing {db}: No space left on device"
        ]
        assert not _endpoint(db).exists()


def test_a_full_disk_with_recovery_ends_with_the_line(tmp_path: Path) -> None:
    # With recovery the epoch's snapshot must fail (a committed one would let a restart skip
    # input whose results never reached the file), and Bytewax reports that as a panic first.
    with small_tmpfs(tmp_path / "small", 8) as small:
        db = small / "eddy.duckdb"
        proc = _eddy_run(db, "--recovery", str(tmp_path / "recovery"))
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert proc.stderr.strip().splitlines()[-1] == (
            f"eddy run: error: writing {db}: No space left on device"
        )
        assert "Traceback" not in proc.stderr
        assert not _endpoint(db).exists()


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG instead of killing
    # the process: the same path through DuckDB as a full disk, without mounting anything
    limit = 8 * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_file_size_limit_ends_the_run_with_one_line(tmp_path: Path) -> None:
    db = tmp_path / "eddy.duckdb"
    proc = _eddy_run(db, preexec_fn=_limit_file_size)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stderr.splitlines() == [f"eddy run: error: writing {db}: File too large"]
    assert not _endpoint(db).exists()


def test_deleting_the_database_mid_run_fails_the_run(tmp_path: Path) -> None:
    db = tmp_path / "gone.duckdb"
    run = subprocess.Popen(
        [sys.executable, "-m", "eddy", "run", "--forever", "--quiet", "--duckdb", str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT_S
        while not _endpoint(db).exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)  # the endpoint file appears once the database is open
        assert _endpoint(db).exists(), run.poll()
        db.unlink()
        out, err = run.communicate(timeout=TIMEOUT_S)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 1, err[-3000:]
    assert err.splitlines() == [
        f"eddy run: error: writing {db}: the file was deleted while the pipeline was writing it"
    ]
    assert "finished" not in out  # no summary of rows that are gone
    assert not _endpoint(db).exists()


def test_a_bounded_run_reports_a_full_disk_too(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", 8) as small:
        db = small / "eddy.duckdb"
        proc = subprocess.run(
            [sys.executable, "-m", "eddy", "run", "--events", "2000000", "--duckdb", str(db)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert proc.returncode == 1, proc.stderr[-3000:]
        assert proc.stderr.splitlines() == [
            f"eddy run: error: writing {db}: No space left on device"
        ]
        assert "finished" not in proc.stdout
