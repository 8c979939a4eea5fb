"""The DuckDB file failing under the writer: a full disk, the file deleted or replaced. Each is
one WriteFailed naming the file and the cause, the writer refuses every later write, and the
Bytewax sink partition stops or raises once (a second raise, from the close Bytewax calls while
unwinding the first, aborts the process)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from eddy.operators.stats import RunStats
from eddy.schemas.results import Results
from eddy.sinks.duckdb import DuckDBWriter, WriteFailed
from eddy.sinks.duckdb_sink import DuckDBSink
from tests.sinks.conftest import make_batch
from tests.sinks.small_disk import small_tmpfs


def _fill(writer: DuckDBWriter) -> WriteFailed:
    """Write decisions until the file fails; the failure."""
    for i in range(10_000):
        try:
            writer.write("decisions", make_batch("decisions", 2_000, seed=i, start=i * 2_000))
        except WriteFailed as e:
            return e
    raise AssertionError("the small filesystem never filled up")


def test_a_full_disk_is_one_failure_naming_the_file_and_the_cause(tmp_path: Path) -> None:
    with small_tmpfs(tmp_path / "small", 4) as small:
        path = str(small / "full.duckdb")
        writer = DuckDBWriter(path)
        seen: list[WriteFailed] = []
        writer.on_failure(seen.append)
        failure = _fill(writer)
        assert str(failure) == f"writing {path}: No space left on device"
        assert isinstance(failure.__cause__, duckdb.Error)  # DuckDB's own words stay attached
        assert seen == [failure] and writer.failure is failure
        # the file is not written again: DuckDB could take a small batch and lose it later
        with pytest.raises(WriteFailed) as again:
            writer.write("decisions", make_batch("decisions", 1, start=10**9))
        assert again.value is failure
        writer.close()  # no second error: the failure is already known
        assert writer.failure is failure and seen == [failure]


def test_a_deleted_file_fails_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "gone.duckdb"
    writer = DuckDBWriter(str(path))
    assert writer.write("decisions", make_batch("decisions", 5)) == 5
    path.unlink()
    with pytest.raises(WriteFailed) as err:
        writer.write("decisions", make_batch("decisions", 5, start=5))
    assert str(err.value) == (
        f"writing {path}: the file was deleted while the pipeline was writing it"
    )
    writer.close()
    assert writer.failure is err.value


def test_a_replaced_file_fails_the_next_write(tmp_path: Path) -> None:
    path = tmp_path / "swapped.duckdb"
    writer = DuckDBWriter(str(path))
    writer.write("decisions", make_batch("decisions", 5))
    other = tmp_path / "other"
    other.write_bytes(b"")
    os.replace(other, path)
    with pytest.raises(WriteFailed, match="replaced by another"):
        writer.write("decisions", make_batch("decisions", 5, start=5))
    writer.close()


def test_a_file_deleted_after_the_last_write_is_a_failure_at_close(tmp_path: Path) -> None:
    path = tmp_path / "late.duckdb"
    writer = DuckDBWriter(str(path))
    writer.write("decisions", make_batch("decisions", 5))
    path.unlink()
    writer.close()  # close does not raise (callers close in finally blocks)
    assert writer.failure is not None and "deleted" in str(writer.failure)


def test_a_bad_batch_is_not_a_failure_of_the_file(tmp_path: Path) -> None:
    writer = DuckDBWriter(str(tmp_path / "ok.duckdb"))
    bad = make_batch("metrics", 2)
    bad["run_id"] = [None, "r"]  # a NULL primary key: the batch's fault
    with pytest.raises(duckdb.ConstraintException):
        writer.write("metrics", bad)
    assert writer.failure is None
    assert writer.write("metrics", make_batch("metrics", 2)) == 2
    writer.close()


def _results(n: int, start: int = 0) -> Results:
    r = Results()
    r.add("decisions", make_batch("decisions", n, start=start))
    return r


def _partition(writer: DuckDBWriter, drain_on_snapshot: bool = False) -> Any:
    sink = DuckDBSink(writer, RunStats(), "run", drain_on_snapshot=drain_on_snapshot)
    return sink.build_part("duckdb", "duckdb", None)


def test_the_sink_raises_a_failure_once(tmp_path: Path) -> None:
    path = tmp_path / "sink.duckdb"
    writer = DuckDBWriter(str(path))
    part = _partition(writer)
    path.unlink()
    part.write_batch([_results(10)])
    with pytest.raises(WriteFailed, match="deleted"):
        part.close()
    part.close()  # what Bytewax does while unwinding the first error: must not raise again
    writer.close()


def test_the_sink_of_a_run_that_stops_itself_drops_items_and_raises_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "stopping.duckdb"
    writer = DuckDBWriter(str(path))
    stops: list[WriteFailed] = []
    writer.on_failure(stops.append)  # what the runner does: stop the input
    part = _partition(writer)
    path.unlink()
    part.write_batch([_results(10)])
    deadline = time.monotonic() + 60
    while writer.failure is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer.failure is not None
    part.write_batch([_results(10, start=10)])  # the input has not noticed the stop yet
    part.close()
    assert stops == [writer.failure]
    writer.close()


def test_with_recovery_the_epoch_snapshot_fails(tmp_path: Path) -> None:
    # a snapshot that commits would let a restart skip input whose results are not in the file
    path = tmp_path / "recovering.duckdb"
    writer = DuckDBWriter(str(path))
    writer.on_failure(lambda _f: None)
    part = _partition(writer, drain_on_snapshot=True)
    path.unlink()
    part.write_batch([_results(10)])
    with pytest.raises(WriteFailed, match="deleted"):
        part.snapshot()
    part.close()
    writer.close()
