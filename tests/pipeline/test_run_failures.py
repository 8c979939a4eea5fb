"""`eddy run` when its DuckDB file fails mid-run: a full disk, a file size limit, the file
deleted. Each ends the run with one line naming the file and the cause, exit code 1, and the
query endpoint file removed (the run used to abort with pages of Rust panics, or exit 0 with a
summary of rows that no longer existed). With recovery, rerunning it once there is room gives
what a run that never failed gives."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np

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


def _limit_file_size() -> None:
    # Python ignores SIGXFSZ, so a write past the limit fails with EFBIG instead of killing
    # the process: the same path through DuckDB as a full disk, without mounting anything
    limit = 8 * 2**20
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


_READINGS_SPEC = """
[pipeline]
name = "readings"

[streams.readings]
source = "jsonl:{path}"
id = "reading_id"
time = "ts"
fields = {{ series = "string", value = "float" }}

[[features]]
name = "series_stats"
stream = "readings"
key = "series"
metrics = ["value"]
trailing = ["1m", "1h"]
aggregations = ["count", "mean", "max"]
tumbling = ["10m"]
store = true
"""


def _readings(tmp_path: Path, n: int) -> Path:
    rng = np.random.default_rng(3)
    values = rng.normal(size=n)
    path = tmp_path / "readings.jsonl"
    with path.open("w") as f:
        for i in range(n):
            rec = {"reading_id": f"r{i}", "ts": 1_700_000_000_000 + 50 * i, "series": f"s{i % 40}"}
            f.write(json.dumps({**rec, "value": float(values[i])}) + "\n")
    spec = tmp_path / "readings.toml"
    spec.write_text(_READINGS_SPEC.format(path=path))
    return spec


def _bounded_run(
    spec: Path, db: Path, *extra: str, preexec_fn: Callable[[], None] | None = None
) -> subprocess.CompletedProcess[str]:
    flags = ["--quiet", "--pipeline", str(spec), "--duckdb", str(db), "--snapshot-interval", "0.2"]
    return subprocess.run(
        [sys.executable, "-m", "eddy", "run", *flags, *extra],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        preexec_fn=preexec_fn,
    )


def _rows(db: Path, sql: str) -> list[tuple[object, ...]]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


def test_a_full_disk_with_recovery_ends_with_the_line_and_a_restart_completes(
    tmp_path: Path,
) -> None:
    # With recovery the process ends at once, as a kill would: the epoch whose results did not
    # reach the file is never committed, so the restart (with room again) replays it.
    spec = _readings(tmp_path, 120_000)
    db, recovery = tmp_path / "eddy.duckdb", str(tmp_path / "recovery")
    full = _bounded_run(spec, db, "--recovery", recovery, preexec_fn=_limit_file_size)
    assert full.returncode == 1, full.stderr[-3000:]
    assert full.stderr.splitlines() == [f"eddy run: error: writing {db}: File too large"]
    assert "finished" not in full.stdout
    assert not _endpoint(db).exists()

    again = _bounded_run(spec, db, "--recovery", recovery)
    assert again.returncode == 0, again.stderr[-3000:]
    clean = _bounded_run(spec, tmp_path / "clean.duckdb")
    assert clean.returncode == 0, clean.stderr[-3000:]
    features = "SELECT * FROM features_series_stats ORDER BY event_time, id"
    windows = (  # the columns every pipeline has (some others are NaN, never equal)
        'SELECT features, key, metric, "window", window_start, window_end, count, mean '
        "FROM window_aggregates ORDER BY ALL"
    )
    assert len(_rows(db, features)) == 120_000
    assert _rows(db, features) == _rows(tmp_path / "clean.duckdb", features)
    assert _rows(db, windows) == _rows(tmp_path / "clean.duckdb", windows)


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
