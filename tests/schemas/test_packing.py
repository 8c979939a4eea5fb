"""String columns cross processes packed, and come back as they were."""

from __future__ import annotations

import pickle

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from eddy.schemas.batch import EventBatch, constant_column
from eddy.schemas.packing import packed, packed_columns
from eddy.schemas.results import Results


def _roundtrip(x: object) -> object:
    return pickle.loads(pickle.dumps(x))


@given(st.lists(st.text(), min_size=0, max_size=60))
def test_any_strings_come_back_equal_and_in_order(items: list[str]) -> None:
    col = np.empty(len(items), dtype=object)
    col[:] = items
    back = _roundtrip(packed(col))
    assert isinstance(back, np.ndarray)
    assert back.dtype == object and back.shape == col.shape
    assert back.tolist() == items
    assert all(type(x) is str for x in back.tolist())


def test_a_string_column_is_pickled_as_one_string() -> None:
    col = np.array([f"id-{i}" for i in range(100)], dtype=object)
    out = packed(col)
    assert not isinstance(out, np.ndarray)
    # one joined string, not one pickled string per row (no memo entry per row)
    assert pickle.dumps(out).count(b"id-") == 100
    assert len(pickle.dumps(out)) < len(pickle.dumps(col))


def test_columns_not_all_distinct_strings_are_left_alone() -> None:
    n = 40
    names = ["alpha", "bravo", "charlie"]
    shared = np.array([names[i % 3] for i in range(n + 1)], dtype=object)  # first, last differ
    with_none = np.array(["a"] * (n - 1) + [None], dtype=object)
    with_nul = np.array(["a\x00b"] + ["c"] * (n - 1), dtype=object)
    tuples = np.empty(n, dtype=object)
    tuples[:] = [("a", "b")] * n
    numbers = np.arange(n, dtype=np.float64)
    short = np.array(["a", "b"], dtype=object)
    for col in (with_none, with_nul, tuples, numbers, short, constant_column("x", n), shared):
        assert packed(col) is col
        assert _roundtrip(packed(col)).tolist() == col.tolist()  # type: ignore[attr-defined]
    assert packed(["a"] * n) == ["a"] * n  # not an array: as it is


def test_a_str_subclass_comes_back_as_an_equal_str() -> None:
    col = np.array([np.str_(f"k{i}") for i in range(20)], dtype=object)
    back = _roundtrip(packed(col))
    assert isinstance(back, np.ndarray)
    assert back.tolist() == col.tolist()
    assert {hash(x) for x in back.tolist()} == {hash(x) for x in col.tolist()}


def test_packed_columns_packs_each_column() -> None:
    cols = {
        "s": np.array([str(i) for i in range(30)], dtype=object),
        "x": np.arange(30.0),
    }
    out = packed_columns(cols)
    assert out["x"] is cols["x"]
    assert _roundtrip(out["s"]).tolist() == cols["s"].tolist()  # type: ignore[attr-defined]


def test_an_event_batch_survives_pickling_whole() -> None:
    n = 50
    batch = EventBatch(
        "s",
        np.arange(n, dtype=np.int64),
        np.array([f"e{i}" for i in range(n)], dtype=object),
        {
            "name": np.array([f"n{i % 7}" for i in range(n)], dtype=object),
            "maybe": np.array([None if i % 3 else "x" for i in range(n)], dtype=object),
            "value": np.linspace(0.0, 1.0, n),
        },
        np.full(n, 123, dtype=np.int64),
    )
    back = _roundtrip(batch)
    assert isinstance(back, EventBatch)
    assert back.stream == "s"
    assert back.ts.tolist() == batch.ts.tolist()
    assert back.ids.tolist() == batch.ids.tolist() and back.ids.dtype == object
    assert back.ingest_ns.tolist() == batch.ingest_ns.tolist()
    assert set(back.columns) == set(batch.columns)
    for k, v in batch.columns.items():
        assert back.columns[k].dtype == v.dtype
        assert back.columns[k].tolist() == v.tolist()
    # pickling does not change the batch it was given
    assert isinstance(batch.ids, np.ndarray) and isinstance(batch.columns["name"], np.ndarray)


def test_results_survive_pickling_whole() -> None:
    n = 30
    res = Results()
    res.add(
        "decisions",
        {
            "decision_id": np.array([f"d{i}" for i in range(n)], dtype=object),
            "decide": constant_column("pick", n),
            "reward": np.linspace(0.0, 1.0, n),
        },
    )
    res.add("dead_letters", {"raw": [b"x"] * n, "reason": constant_column("bad", n)})
    res.count("events", n)
    back = _roundtrip(res)
    assert isinstance(back, Results)
    assert back.counters == res.counters
    assert set(back.tables) == set(res.tables)
    for t, cols in res.tables.items():
        for k, v in cols.items():
            assert type(back.tables[t][k]) is type(v)
            assert list(back.tables[t][k]) == list(v)
