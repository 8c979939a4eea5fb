"""DuckDBWriter against real DuckDB files: idempotence, round-trips, validation, big batches."""

from __future__ import annotations

import datetime as dt
import os
import threading

import duckdb
import numpy as np
import pytest

from eddy.schemas.tables import TABLES
from eddy.sinks.duckdb import BatchError, DuckDBWriter
from eddy.sinks.readonly_sql import ReadOnlyViolation
from tests.sinks.conftest import T0, make_batch


@pytest.fixture
def writer(tmp_path):
    w = DuckDBWriter(str(tmp_path / "eddy.duckdb"))
    yield w
    w.close()


def test_creates_every_table_with_its_primary_key(writer):
    assert set(writer.counts()) == set(TABLES)
    assert all(v == 0 for v in writer.counts().values())
    for name, t in TABLES.items():
        _, rows = writer.query(
            "SELECT constraint_column_names FROM duckdb_constraints() "
            f"WHERE table_name = '{name}' AND constraint_type = 'PRIMARY KEY'"
        )
        assert rows == [(list(t.primary_key),)], name


@pytest.mark.parametrize("table", sorted(TABLES))
def test_same_batch_twice_inserts_rows_once(writer, table):
    batch = make_batch(table, 50, seed=1)
    assert writer.write(table, batch) == 50
    assert writer.write(table, batch) == 0
    assert writer.counts()[table] == 50
    # an overlapping replay adds only the new keys
    assert writer.write(table, make_batch(table, 50, seed=2, start=25)) == 25
    assert writer.counts()[table] == 75


def test_replays_mixed_with_new_batches_count_exactly(writer):
    """New batches take the plain INSERT path, replays the conflict-tolerant one; switching
    back and forth never loses or duplicates a row."""
    expected = 0
    for i in range(40):
        if i % 7 == 3:  # replay an older batch, half overlapping with a new range
            assert writer.write("decisions", make_batch("decisions", 100, start=(i - 2) * 100)) == 0
        got = writer.write("decisions", make_batch("decisions", 100, start=i * 100))
        assert got == 100
        expected += 100
    overlap = make_batch("decisions", 200, start=3950)  # 50 old keys, 150 new
    assert writer.write("decisions", overlap) == 150
    expected += 150
    assert writer.counts()["decisions"] == expected


def test_composite_primary_key_distinguishes_each_component(writer):
    base = make_batch("window_aggregates", 4)
    base["key"] = ["p1", "p1", "p1", "p2"]
    base["metric"] = ["fill", "fill", "rpm", "fill"]
    base["window"] = ["tumbling_10s"] * 4
    base["window_start"] = np.array([T0, T0 + 10_000, T0, T0], dtype=np.int64)
    assert writer.write("window_aggregates", base) == 4
    assert writer.write("window_aggregates", base) == 0
    # same key, metric, window_start but another window: a new row
    other = {k: list(v)[:1] for k, v in base.items()}
    other["window"] = ["sliding_60s_10s"]
    assert writer.write("window_aggregates", other) == 1
    assert writer.counts()["window_aggregates"] == 5


def test_duplicate_keys_inside_one_batch_keep_one_row(writer):
    batch = make_batch("metrics", 3)
    for c in TABLES["metrics"].primary_key:
        batch[c] = [batch[c][0]] * 3
    assert writer.write("metrics", batch) == 1
    assert writer.counts()["metrics"] == 1


def test_timestamps_and_lists_round_trip(writer):
    batch = make_batch("decisions", 3)
    batch["event_time"] = np.array([T0, T0 + 1, T0 + 86_400_123], dtype=np.int64)
    batch["decided_at"] = [T0, None, T0 + 5]
    ctx = np.array([[0.5, -1.25, 3.0], [0.0, 1e-3, 2.5], [7.0, 8.0, 9.0]])
    batch["context"] = ctx
    writer.write("decisions", batch)
    _, rows = writer.query(
        "SELECT event_time, decided_at, context, epoch_ms(event_time) FROM decisions "
        "ORDER BY event_time"
    )
    epoch = dt.datetime(1970, 1, 1)
    assert [r[0] for r in rows] == [
        epoch + dt.timedelta(milliseconds=int(v)) for v in batch["event_time"]
    ]
    assert [r[3] for r in rows] == [int(v) for v in batch["event_time"]]
    assert rows[1][1] is None
    assert [r[2] for r in rows] == ctx.astype(np.float32).tolist()  # stored as FLOAT[]

    anomalies = make_batch("anomalies", 3)
    anomalies["detectors"] = [["mad", "ewma"], [], None]
    anomalies["event_time"] = np.array([T0 + 0.9, np.nan, T0 + 2.0])  # float ms: floor, NaN=NULL
    writer.write("anomalies", anomalies)
    _, rows = writer.query(
        "SELECT detectors, epoch_ms(event_time) FROM anomalies ORDER BY anomaly_id"
    )
    assert rows == [(["mad", "ewma"], T0), ([], None), (None, T0 + 2)]


def test_blob_and_bool_columns_round_trip(writer):
    batch = make_batch("dead_letters", 2)
    batch["raw"] = [b"\x00\xffnot json", b"{}"]
    writer.write("dead_letters", batch)
    _, rows = writer.query("SELECT raw FROM dead_letters ORDER BY dead_letter_id")
    assert [bytes(r[0]) for r in rows] == [b"\x00\xffnot json", b"{}"]
    rewards = make_batch("rewards", 2)
    rewards["timed_out"] = np.array([True, False])
    writer.write("rewards", rewards)
    _, rows = writer.query("SELECT timed_out FROM rewards ORDER BY decision_id")
    assert rows == [(True,), (False,)]


def test_large_batch_in_one_write(writer):
    n = 100_000
    assert writer.write("decisions", make_batch("decisions", n, seed=3)) == n
    _, rows = writer.query("SELECT count(*), count(DISTINCT decision_id) FROM decisions")
    assert rows == [(n, n)]


def test_empty_batch_is_a_no_op(writer):
    assert writer.write("metrics", make_batch("metrics", 0)) == 0
    assert writer.counts()["metrics"] == 0


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda b: b.pop("propensity"), r"'decisions': batch is missing columns \['propensity'\]"),
        (lambda b: b.update(bogus=[1, 2]), r"'decisions': batch has unknown columns \['bogus'\]"),
        (lambda b: b.update(arm=["x"]), r"column 'arm' has 1 values but 'decision_id' has 2"),
        (lambda b: b.update(arm_index=np.array([1, 2**40])), r"'decisions', column 'arm_index'"),
        (lambda b: b.update(propensity=["a", "b"]), r"'decisions', column 'propensity'"),
        (lambda b: b.update(arm=5), r"column 'arm': expected an array or list, got int"),
    ],
)
def test_bad_batches_are_refused_with_table_and_column(writer, mutate, message):
    batch = make_batch("decisions", 2)
    mutate(batch)
    with pytest.raises(BatchError, match=message):
        writer.write("decisions", batch)
    assert writer.counts()["decisions"] == 0


def test_unknown_table_is_refused(writer):
    with pytest.raises(BatchError, match="unknown table 'nope'"):
        writer.write("nope", {})


def test_write_many_is_all_or_nothing(writer):
    good = make_batch("decisions", 5)
    assert writer.write_many({"decisions": good, "rewards": make_batch("rewards", 3)}) == {
        "decisions": 5,
        "rewards": 3,
    }
    # the metrics batch fails inside the transaction (NULL primary key): nothing is kept
    bad_metrics = make_batch("metrics", 2)
    bad_metrics["run_id"] = [None, "r"]
    with pytest.raises(duckdb.ConstraintException):
        writer.write_many({"anomalies": make_batch("anomalies", 4), "metrics": bad_metrics})
    counts = writer.counts()
    assert (counts["anomalies"], counts["metrics"]) == (0, 0)
    assert writer.write("anomalies", make_batch("anomalies", 4)) == 4


def test_query_refuses_writes_and_runs_read_only(writer):
    with pytest.raises(ReadOnlyViolation, match="INSERT statements are refused"):
        writer.query("INSERT INTO metrics SELECT * FROM metrics")
    with pytest.raises(duckdb.Error):
        writer.query("SELECT * FROM no_such_table")
    assert writer.query("SELECT 42 AS answer") == (["answer"], [(42,)])


def test_query_max_rows_and_timeout(writer):
    writer.write("decisions", make_batch("decisions", 20))
    names, rows = writer.query("SELECT decision_id FROM decisions", max_rows=7)
    assert names == ["decision_id"] and len(rows) == 7
    with pytest.raises(duckdb.InterruptException):
        writer.query(
            "SELECT count(*) FROM range(1000000000) a, range(1000) b WHERE a.range * b.range = -1",
            timeout_s=0.2,
        )
    assert writer.query("SELECT 1")[1] == [(1,)]


def test_reads_while_another_thread_writes(writer):
    stop = threading.Event()
    errors: list[BaseException] = []

    def pump() -> None:
        i = 0
        try:
            while not stop.is_set():
                writer.write("decisions", make_batch("decisions", 500, start=i * 500))
                i += 1
        except BaseException as e:  # surfaced below
            errors.append(e)

    t = threading.Thread(target=pump)
    t.start()
    seen: list[int] = []
    try:
        while len(seen) < 200 and (not seen or seen[-1] < 5_000):
            seen.append(writer.query("SELECT count(*) FROM decisions")[1][0][0])
    finally:
        stop.set()
        t.join()
    assert not errors
    assert seen == sorted(seen) and seen[-1] > seen[0]
    assert all(c % 500 == 0 for c in seen)  # a batch is visible whole or not at all


def test_close_is_idempotent_and_data_persists(tmp_path):
    path = str(tmp_path / "p.duckdb")
    with DuckDBWriter(path) as w:
        w.write("metrics", make_batch("metrics", 3))
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.write("metrics", make_batch("metrics", 1))
    con = duckdb.connect(path, read_only=True)
    assert con.execute("SELECT count(*) FROM metrics").fetchone() == (3,)
    con.close()
    with DuckDBWriter(path) as w2:  # reopening keeps rows and dedupes replays
        assert w2.write("metrics", make_batch("metrics", 3)) == 0


def test_checkpoint_threshold_is_applied_and_validated(tmp_path):
    with DuckDBWriter(str(tmp_path / "c.duckdb"), checkpoint_threshold="256MB") as w:
        _, rows = w.query("SELECT current_setting('checkpoint_threshold')")
        assert rows[0][0] == "244.1 MiB"  # DuckDB reports 256 MB (10^6) in MiB
    with pytest.raises(ValueError, match="checkpoint_threshold: expected a size"):
        DuckDBWriter(str(tmp_path / "d.duckdb"), checkpoint_threshold="1GB'; DROP TABLE x; --")


def test_checkpoint_moves_the_wal_into_the_file(tmp_path):
    path = str(tmp_path / "w.duckdb")
    with DuckDBWriter(path) as w:
        w.write("decisions", make_batch("decisions", 2000))
        wal = path + ".wal"
        assert os.path.getsize(wal) > 0
        w.checkpoint()
        assert not os.path.exists(wal) or os.path.getsize(wal) == 0
        assert w.counts()["decisions"] == 2000
