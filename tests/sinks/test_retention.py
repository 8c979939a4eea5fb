"""Retention: rows past the bound are deleted by the writer (in batches, then checkpointed),
newer rows stay, and the run goes on writing; the spec key and the CLI flag that set it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from eddy.dataflows.cli import main
from eddy.operators.stats import RunStats
from eddy.schemas.results import Results
from eddy.schemas.spec import SpecError
from eddy.schemas.spec_load import loads_spec
from eddy.schemas.tables import TABLES
from eddy.sinks.duckdb import DuckDBWriter, retention_clock
from eddy.sinks.duckdb_sink import DuckDBSink
from tests.sinks.conftest import T0, make_batch

MINUTE = 60_000


def _decisions(start: int, n: int, first_ms: int, step_ms: int = 1000) -> dict:
    """``n`` decisions ``step_ms`` apart in event time from ``first_ms``."""
    batch = make_batch("decisions", n, start=start)
    batch["event_time"] = first_ms + step_ms * np.arange(n)
    return batch


def _event_times(w: DuckDBWriter, table: str = "decisions") -> list[int]:
    _, rows = w.query(f"SELECT epoch_ms(event_time) FROM {table} ORDER BY 1")
    return [r[0] for r in rows]


def test_every_table_has_a_retention_clock():
    clocks = {name: retention_clock(t) for name, t in TABLES.items()}
    assert clocks["decisions"] == ("event_time", "event")
    assert clocks["window_aggregates"] == ("window_end", "event")
    assert clocks["metrics"] == ("ts", "wall")
    assert clocks["dead_letters"] == ("received_at", "wall")
    assert all(c is not None for c in clocks.values())


def test_rows_older_than_the_newest_event_time_minus_retention_are_deleted(tmp_path):
    with DuckDBWriter(str(tmp_path / "r.duckdb"), retention_ms=MINUTE) as w:
        w.write("decisions", _decisions(0, 180, T0))  # T0 .. T0 + 179 s
        assert w.expire() == {"decisions": 119}  # older than T0 + 179 s - 60 s
        kept = _event_times(w)
        assert kept[0] == T0 + 119_000 and kept[-1] == T0 + 179_000 and len(kept) == 61
        # the run goes on: new rows are written, the bound follows the newest event time
        w.write("decisions", _decisions(180, 30, T0 + 180_000))
        assert w.expire() == {"decisions": 30}
        assert _event_times(w)[0] == T0 + 149_000
        assert w.counts()["decisions"] == 61


def test_wall_clock_tables_go_by_the_wall_clock(tmp_path):
    now = int(time.time() * 1000)
    metrics = make_batch("metrics", 4)
    metrics["ts"] = np.array([now - 3 * MINUTE, now - 2 * MINUTE, now - 1000, now])
    with DuckDBWriter(str(tmp_path / "r.duckdb"), retention_ms=MINUTE) as w:
        w.write("metrics", metrics)
        assert w.expire(now_ms=now) == {"metrics": 2}
        _, rows = w.query("SELECT epoch_ms(ts) FROM metrics ORDER BY 1")
        assert [r[0] for r in rows] == [now - 1000, now]


def test_a_pass_deletes_at_most_max_rows_per_table_and_the_next_ones_finish(tmp_path):
    with DuckDBWriter(str(tmp_path / "r.duckdb"), retention_ms=MINUTE) as w:
        w.write("decisions", _decisions(0, 100, T0))
        rewards = make_batch("rewards", 5)
        rewards["event_time"] = np.full(5, T0 - 10 * MINUTE)
        w.write("rewards", rewards)
        assert w.expire(max_rows=15) == {"decisions": 15, "rewards": 5}
        assert sum(w.expire(max_rows=15).get("decisions", 0) for _ in range(3)) == 24
        assert w.expire(max_rows=15) == {}
        assert len(_event_times(w)) == 61


def test_without_retention_nothing_is_deleted(tmp_path):
    with DuckDBWriter(str(tmp_path / "r.duckdb")) as w:
        w.write("decisions", _decisions(0, 100, T0))
        assert w.expire() == {} and w.maintain().deleted == 0
        assert w.counts()["decisions"] == 100


def test_maintain_deletes_then_checkpoints_and_reuses_the_space(tmp_path):
    path = tmp_path / "r.duckdb"
    w = DuckDBWriter(str(path), retention_ms=MINUTE, checkpoint_every_s=1e-9, expire_every_s=0)
    try:
        sizes = []
        for block in range(12):  # 12 x 2,000 rows, each block 100 s later in event time
            w.write("decisions", _decisions(2000 * block, 2000, T0 + 100_000 * block, 10))
            upkeep = w.maintain()
            assert upkeep.checkpoint_s is not None  # checkpointed after every pass
            assert upkeep.deleted == (2000 if block else 0)  # the previous block, whole
            sizes.append(path.stat().st_size)
        assert not Path(f"{path}.wal").exists() or Path(f"{path}.wal").stat().st_size == 0
        assert w.counts()["decisions"] <= 2000
        # the blocks of deleted rows are reused: the file does not grow with the stream
        assert max(sizes) == max(sizes[:3])
    finally:
        w.close()


def test_the_sink_deletes_old_rows_after_a_flush_and_keeps_writing(tmp_path):
    """In a run: the writer thread deletes after its flushes; the worker never waits for it."""
    writer = DuckDBWriter(str(tmp_path / "r.duckdb"), retention_ms=MINUTE, expire_every_s=0)
    stats = RunStats()
    part = DuckDBSink(writer, stats, "run-1").build_part("duckdb", "duckdb", None)
    try:
        old, new = Results(), Results()
        old.add("decisions", _decisions(0, 50, T0))  # T0 .. T0 + 49 s
        new.add("decisions", _decisions(50, 50, T0 + 10 * MINUTE))
        part.write_batch([old, new])
        part.snapshot()  # drains: flushed, then expired
        times = _event_times(writer)
        assert len(times) == 50 and min(times) == T0 + 10 * MINUTE
        assert stats.get("duckdb.expired_rows") == 50
        later = Results()
        later.add("decisions", _decisions(100, 10, T0 + 10 * MINUTE + 50_000))
        part.write_batch([later])
        part.snapshot()
        assert len(_event_times(writer)) == 60
    finally:
        part.close()
        writer.close()


def test_retention_is_a_pipeline_key():
    spec = """
[pipeline]
name = "r"
retention = "{value}"
[streams.s]
source = "jsonl:x.jsonl"
time = "ts"
fields = {{ k = "string", v = "float" }}
[[features]]
name = "f"
stream = "s"
key = "k"
metrics = ["v"]
tumbling = ["1m"]
"""
    assert loads_spec(spec.format(value="2h")).retention_ms == 2 * 60 * MINUTE
    assert (
        loads_spec(spec.format(value="1h").replace('retention = "1h"\n', "")).retention_ms is None
    )
    with pytest.raises(SpecError, match=r"key 'pipeline\.retention'"):
        loads_spec(spec.format(value="soon"))


@pytest.mark.parametrize(
    ("flag", "value", "needle"),
    [
        ("--retention", "soon", "--retention"),
        ("--retention", "0s", "--retention: expected a duration > 0"),
        ("--duckdb-memory-limit", "lots", "--duckdb-memory-limit: expected a size"),
    ],
)
def test_bad_long_run_flags_are_usage_errors(flag, value, needle, capsys):
    assert main(["run", flag, value, "--events", "10"]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
