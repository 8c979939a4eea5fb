"""CSV and Parquet sources: the same rows decode like JSONL, bad rows are single dead letters
with readable reasons, positions are row numbers, batches and resumes lose nothing."""

from __future__ import annotations

import csv
import datetime as dt
import pickle
import threading
from pathlib import Path
from typing import Any

import bytewax.operators as op
import numpy as np
import orjson
import polars as pl
import pytest
from bytewax.dataflow import Dataflow
from bytewax.testing import TestingSink, run_main

from eddy.schemas.batch import EventBatch
from eddy.schemas.decode import decode_lines
from eddy.schemas.records import DeadLetter
from eddy.schemas.spec import StreamSpec
from eddy.schemas.spec_load import loads_spec
from eddy.sources.base import RawBatch, dead_line
from eddy.sources.files import FrameSource, csv_rows, frame_rows
from eddy.sources.files import source as frame_source
from eddy.sources.jsonl import JsonlReader
from tests.sources.drain import drain


def _stream(source: str = "csv:x.csv") -> StreamSpec:
    spec = loads_spec(
        f"""
[streams.ev]
source = "{source}"
time = "ts"
id = "id"
[streams.ev.fields]
user = "string"
weight_kg = {{ type = "float", min = 0 }}
n = "int"
ok = "bool"
tags = {{ type = "list[string]", optional = true }}
note = {{ type = "string", optional = true }}
rate = {{ type = "float", default = 1.5 }}
[[detect]]
name = "d"
stream = "ev"
key = "user"
metrics = ["weight_kg"]
"""
    )
    return spec.stream("ev")


STREAM = _stream()
HEADER = ["id", "ts", "user", "weight_kg", "n", "ok", "tags", "note", "rate"]
EVENTS: list[dict[str, Any]] = [
    {"id": f"e{i}", "ts": 1_700_000_000_000 + i * 1000, "user": f"u{i % 3}",
     "weight_kg": round(0.5 + i * 0.25, 2), "n": i, "ok": i % 2 == 0,
     "tags": ["a", "b"] if i % 3 else None, "note": None if i % 4 else f'n "{i}", ok',
     "rate": None if i % 5 else 2.0 + i}
    for i in range(23)
]  # fmt: skip


def _csv_cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return ";".join(v)
    return str(v)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(HEADER)
        for e in rows:
            w.writerow([_csv_cell(e.get(k)) for k in HEADER])
    return path


def _write_parquet(path: Path, rows: list[dict[str, Any]], **kw: Any) -> Path:
    schema = {
        "id": pl.String, "ts": pl.Int64, "user": pl.String, "weight_kg": pl.Float64,
        "n": pl.Int64, "ok": pl.Boolean, "tags": pl.List(pl.String), "note": pl.String,
        "rate": pl.Float64,
    }  # fmt: skip
    pl.DataFrame(rows, schema=schema).write_parquet(path, **kw)
    return path


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    lines = [orjson.dumps({k: v for k, v in e.items() if v is not None}) for e in rows]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _batches(src: FrameSource, resume: int | None = None) -> list[RawBatch]:
    return drain(src, resume)[0]


def _decode(batches: list[RawBatch]) -> tuple[EventBatch, list[DeadLetter]]:
    """The batches decoded as one, with their raw records when they have them (as the
    dataflow's decode step does)."""
    lines = [x for b in batches for x in b.lines]
    positions = [p for b in batches for p in b.positions]
    raw = None
    if all(b.raw is not None for b in batches):
        raw = [r for b in batches for r in b.raw or ()]
    return decode_lines(STREAM, lines, positions, batches[0].source, raw=raw)


def _same(a: EventBatch, b: EventBatch) -> None:
    assert a.ts.tolist() == b.ts.tolist()
    assert a.ids.tolist() == b.ids.tolist()
    assert a.columns.keys() == b.columns.keys()
    for k in a.columns:
        x, y = a.columns[k], b.columns[k]
        assert x.dtype == y.dtype, k
        if x.dtype == np.float64:
            np.testing.assert_array_equal(x, y, err_msg=k)  # NaN == NaN here
        else:
            assert x.tolist() == y.tolist(), k


def _one_part(path: Path, kind: str, batch_rows: int = 4_000) -> FrameSource:
    return FrameSource(str(path), kind, STREAM, batch_rows=batch_rows)


# -- round trip ------------------------------------------------------------------------------
def test_jsonl_csv_and_parquet_decode_to_the_same_batch(tmp_path: Path) -> None:
    jl = _write_jsonl(tmp_path / "e.jsonl", EVENTS)
    reader = JsonlReader(str(jl), "ev", batch_lines=1000)
    raw, _ = reader.read()
    assert raw is not None
    want, dead = decode_lines(STREAM, raw.lines, raw.positions, raw.source)
    assert not dead and len(want) == len(EVENTS)
    assert want.columns["note"][0] == 'n "0", ok' and want.columns["tags"][0] is None
    for kind, path in (
        ("csv", _write_csv(tmp_path / "e.csv", EVENTS)),
        ("parquet", _write_parquet(tmp_path / "e.parquet", EVENTS)),
    ):
        got, dead = _decode(_batches(_one_part(path, kind)))
        assert not dead, (kind, dead)
        _same(got, want)


def test_iso_times_with_a_zone_and_typed_timestamps_match_epoch_ms(tmp_path: Path) -> None:
    t = dt.datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=dt.UTC)
    ms = 1_714_564_800_250
    rows = [{**EVENTS[0], "id": "a", "ts": ms}, {**EVENTS[1], "id": "b", "ts": ms}]
    want, _ = _decode(_batches(_one_part(_write_csv(tmp_path / "ms.csv", rows), "csv")))
    iso = [{**rows[0], "ts": "2024-05-01T14:00:00.250+02:00"}, {**rows[1], "ts": t.isoformat()}]
    got, dead = _decode(_batches(_one_part(_write_csv(tmp_path / "iso.csv", iso), "csv")))
    assert not dead
    _same(got, want)
    pq = tmp_path / "t.parquet"
    pl.DataFrame(rows).with_columns(pl.lit(t).alias("ts")).write_parquet(pq)
    got, dead = _decode(_batches(_one_part(pq, "parquet")))
    assert not dead
    _same(got, want)


# -- dead letters ----------------------------------------------------------------------------
def _reasons(path: Path, kind: str) -> tuple[EventBatch, dict[int, str]]:
    batch, dead = _decode(_batches(_one_part(path, kind)))
    return batch, {d.position: d.reason for d in dead}


def test_each_bad_csv_row_is_one_dead_letter_with_a_readable_reason(tmp_path: Path) -> None:
    p = tmp_path / "bad.csv"
    good = "1700000000000,u1,2.5,3,true,a;b,,2"
    p.write_bytes(
        (
            ",".join(HEADER) + "\n"
            f"g1,{good}\n"
            "b2,1700000000000,u1,heavy,3,true,a,,2\n"  # not a number
            "b3,1700000000000,u1,2.5,3,maybe,a,,2\n"  # not a bool
            "b4,1700000000000,,2.5,3,true,a,,2\n"  # required value missing
            "b5,1700000000000,u1\n"  # short row
            f"b6,{good},extra\n"  # long row
            "b7,2024-05-01T12:00:00,u1,2.5,3,true,a,,2\n"  # no time zone
            "b8,1700000000000,u1,2.5,3.5,true,a,,2\n"  # not an integer
            "b9,1700000000000,u1,-1,3,true,a,,2\n"  # below min
            f"g10,{good}\n"
        ).encode()
        + b"b11,1700000000000,u\xff,2.5,3,true,a,,2\n"  # not UTF-8
        + f"g12,{good}\r\n".encode()
    )
    batch, reasons = _reasons(p, "csv")
    assert batch.ids.tolist() == ["g1", "g10", "g12"]
    assert reasons == {
        2: "field 'weight_kg': expected a number, got a string",
        3: "field 'ok': expected true/false, got 'maybe'",
        4: "missing required field 'user'",
        5: "row has 3 cells, the header has 9",
        6: "row has 10 cells, the header has 9",
        7: "field 'ts': ISO-8601 timestamp '2024-05-01T12:00:00' has no time zone",
        8: "field 'n': expected an integer, got 3.5",
        9: "field 'weight_kg': -1 is outside [0, inf]",
        11: "not valid UTF-8",
    }


def test_a_rejected_row_keeps_its_csv_text_as_the_raw_record(tmp_path: Path) -> None:
    p = tmp_path / "short.csv"
    p.write_text(",".join(HEADER) + "\nx,1700000000000,u1\n")
    _, dead = _decode(_batches(_one_part(p, "csv")))
    assert [(d.position, d.raw, d.source) for d in dead] == [(1, b"x,1700000000000,u1", f"csv:{p}")]


@pytest.mark.parametrize("block_bytes", [97, 4 << 20])
def test_a_bad_csv_cell_is_dead_lettered_with_the_rows_own_bytes(
    tmp_path: Path, block_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not the JSON line the row became: the row as the file holds it, without its line end."""
    good = "1700000000000,u1,2.5,3,true,a;b,,2"
    bad = {
        2: b"b2,1700000000000,u1, heavy ,3,true,a,,2",  # not a number
        3: b'b3,1700000000000,"u,1",2.5,3,maybe,"x;y","say ""hi""\nbye",2',  # a quoted newline
        4: b"b4,1700000000000,u1,abc,3,true,a,,2\r",  # a CRLF line end: not part of the row
        5: b"b5,1700000000000,u1,2.5,3,true",  # short row (rejected by the split)
        7: b'b7,1700000000000,u1,2.5,3,nope,"a\r\nb",x,2',  # \r\n inside a quoted cell
        8: b"b8,1700000000000,u1,-1,3,true,a,,2",  # below min; the last line, no newline
    }
    rows = {1: f"g1,{good}".encode(), 6: f"g6,{good}\r".encode(), **bad}
    p = tmp_path / "bad_cells.csv"
    p.write_bytes(",".join(HEADER).encode() + b"\n" + b"\n".join(rows[i] for i in sorted(rows)))
    monkeypatch.setattr(csv_rows, "_BLOCK_BYTES", block_bytes)
    batches = _batches(_one_part(p, "csv", batch_rows=3))
    assert all(b.raw is not None and len(b.raw) == len(b.lines) for b in batches)
    batch, dead = _decode(batches)
    assert batch.ids.tolist() == ["g1", "g6"]
    assert {d.position: d.raw for d in dead} == {i: r.removesuffix(b"\r") for i, r in bad.items()}
    assert {d.position: d.reason for d in dead} == {
        2: "field 'weight_kg': expected a number, got a string",
        3: "field 'ok': expected true/false, got 'maybe'",
        4: "field 'weight_kg': expected a number, got a string",
        5: "row has 6 cells, the header has 9",
        7: "field 'ok': expected true/false, got 'nope'",
        8: "field 'weight_kg': -1 is outside [0, inf]",
    }
    # a batch pickled between workers carries its records
    for b in batches:
        again = pickle.loads(pickle.dumps(b))
        assert again == b and list(again.raw or ()) == list(b.raw or ())


def test_an_unclosed_quote_rejects_its_line_and_the_rows_after_it_survive(
    tmp_path: Path,
) -> None:
    p = tmp_path / "quote.csv"
    row = "1700000000000,u1,2.5,3,true,a,,2"
    p.write_text(",".join(HEADER) + f'\ng1,{row}\nb2,{row[:-2]},"oops\ng3,{row}\ng4,{row}\n')
    batch, reasons = _reasons(p, "csv")
    assert batch.ids.tolist() == ["g1", "g3", "g4"]
    assert list(reasons) == [2] and "quote" in reasons[2] and "never closed" in reasons[2]


def test_a_file_that_is_not_csv_gives_dead_letters_not_a_crash(tmp_path: Path) -> None:
    p = tmp_path / "noise.csv"
    rng = np.random.default_rng(1)
    p.write_bytes(b"id,ts,user\n" + rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    batch, dead = _decode(_batches(_one_part(p, "csv", batch_rows=50)))
    assert len(batch) == 0 and dead
    assert all(d.reason for d in dead)
    j = tmp_path / "json.csv"
    j.write_text('{"id": "a", "ts": 1}\n{"id": "b", "ts": 2}\n')
    batch, dead = _decode(_batches(_one_part(j, "csv")))
    assert len(batch) == 0 and [d.reason for d in dead] == ["missing required field 'ts'"]


def test_csv_cells_convert_by_the_declared_type(tmp_path: Path) -> None:
    p = tmp_path / "cells.csv"
    p.write_text(
        ",".join(HEADER) + "\n"
        'a,1700000000000,"u,1", 2 ,+3,TRUE,"[""x"", ""y""]","say ""hi""\nbye",\n'
        "b,1700000000000,u2,.5,1e2,0, p ; q ;,,\n"
        'c,1700000000000,u3,1,1,False,"[1]",,\n'
        'd,1700000000000,u4,1,1,1,"[oops",,\n'
    )
    lines = list(frame_rows(str(p), "csv", STREAM))
    batch, dead = decode_lines(STREAM, lines, [1, 2, 3, 4], "csv:x")
    assert batch.ids.tolist() == ["a", "b"]
    cols = batch.columns
    assert cols["user"].tolist() == ["u,1", "u2"]
    assert cols["weight_kg"].tolist() == [2.0, 0.5]
    assert cols["n"].tolist() == [3.0, 100.0]
    assert cols["ok"].tolist() == [True, False]
    assert cols["tags"].tolist() == [("x", "y"), ("p", "q")]
    assert cols["note"].tolist() == ['say "hi"\nbye', None]
    assert cols["rate"].tolist() == [1.5, 1.5]  # empty cell: the default
    assert [(d.position, d.reason) for d in dead] == [
        (3, "field 'tags': expected a list of strings, got an item 1"),
        (4, "field 'tags': expected a list of strings, got a string"),
    ]


def test_parquet_with_wrong_types_missing_columns_nulls_and_nan(tmp_path: Path) -> None:
    p = tmp_path / "typed.parquet"
    pl.DataFrame(
        {
            "id": ["a", "b", "c", "d"],
            "ts": [1_700_000_000_000] * 4,
            "user": ["u1", "u2", None, "u4"],
            "weight_kg": ["1.5", "2", "3", "4"],  # strings where the spec says float
            "n": [1, 2, 3, 4],
            "ok": [True, False, None, True],
            "rate": [None, 2.0, 3.0, float("nan")],
        }
    ).write_parquet(p)
    batch, reasons = _reasons(p, "parquet")
    assert len(batch) == 0
    assert reasons == {
        1: "field 'weight_kg': expected a number, got a string",
        2: "field 'weight_kg': expected a number, got a string",
        3: "missing required field 'user'",
        4: "contains NaN or Infinity, which JSON does not allow",  # checked before the fields
    }
    p2 = tmp_path / "typed2.parquet"
    pl.DataFrame(
        {
            "id": ["a", "b", "c"],
            "ts": [1_700_000_000_000] * 3,
            "user": ["u1", "u2", "u3"],
            "weight_kg": [1.5, None, 3.0],
            "ok": [True, False, True],
            "rate": [None, 2.0, float("nan")],
        }
    ).write_parquet(p2)  # no column "n"
    batch, reasons = _reasons(p2, "parquet")
    assert len(batch) == 0
    assert reasons == {
        1: "missing required field 'n'",
        2: "missing required field 'weight_kg'",
        3: "contains NaN or Infinity, which JSON does not allow",
    }
    p3 = tmp_path / "naive.parquet"
    pl.DataFrame({"id": ["a"], "ts": [dt.datetime(2024, 1, 1)]}).write_parquet(p3)
    (line,) = frame_rows(str(p3), "parquet", STREAM)
    _, dead = decode_lines(STREAM, [line], [1], "x")
    assert dead[0].reason == "field 'ts': ISO-8601 timestamp '2024-01-01 00:00:00' has no time zone"


def test_a_file_that_is_not_parquet_gives_one_dead_letter(tmp_path: Path) -> None:
    p = tmp_path / "no.parquet"
    p.write_text("id,ts\n1,2\n")
    batches = _batches(_one_part(p, "parquet"))
    _, dead = _decode(batches)
    assert [d.position for d in dead] == [1]
    assert dead[0].reason.startswith("cannot read the file from row 1 on: ")


def test_dead_line_is_decoded_as_a_dead_letter_with_its_reason_and_record() -> None:
    lines = [dead_line("row has 2 cells,\nthe header has 3", b"a,b"), b'{"id": 1}']
    batch, dead = decode_lines(STREAM, lines, [1, 2], "csv:x")
    assert len(batch) == 0
    assert [(d.position, d.reason, d.raw) for d in dead] == [
        (1, "row has 2 cells, the header has 3", b"a,b"),
        (2, "missing required field 'ts'", b'{"id": 1}'),
    ]


# -- positions, batches, resume ----------------------------------------------------------------
def test_positions_are_row_numbers_after_the_header(tmp_path: Path) -> None:
    p = tmp_path / "pos.csv"
    row = "1700000000000,u1,2.5,3,true,a,,2"
    p.write_text(",".join(HEADER) + f'\n\na,{row}\nb,{row[:-3]},"two\nlines",2\n\n  \nc,{row}\n')
    (batch,) = _batches(_one_part(p, "csv"))
    assert batch.positions == [1, 2, 3]
    assert (batch.stream, batch.source, batch.partition) == ("ev", f"csv:{p}", 0)
    assert (batch.lag, batch.lag_unit) == (-1, "records")
    pq = _write_parquet(tmp_path / "pos.parquet", EVENTS[:5])
    (batch,) = _batches(_one_part(pq, "parquet"))
    assert batch.positions == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_batch_cuts_give_the_same_lines(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = EVENTS * 5
    path = (
        _write_csv(tmp_path / "e.csv", rows)
        if kind == "csv"
        else _write_parquet(tmp_path / "e.parquet", rows, row_group_size=13)
    )
    want = list(frame_rows(str(path), kind, STREAM))
    assert len(want) == len(rows)
    monkeypatch.setattr(csv_rows, "_BLOCK_BYTES", 97)  # CSV blocks cut rows and quoted cells
    monkeypatch.setattr(frame_source, "PARQUET_ROWS", 5)
    for n in (1, 7, 1000):
        batches = _batches(_one_part(path, kind, batch_rows=n))
        assert all(len(b) == n for b in batches[:-1])
        assert [x for b in batches for x in b.lines] == want
        assert [p for b in batches for p in b.positions] == list(range(1, len(rows) + 1))
        if kind == "parquet":
            assert batches[0].lag == max(len(rows) - n, 0)


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_resume_from_a_snapshot_continues_without_loss_or_repeat(
    tmp_path: Path, kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = EVENTS * 4
    path = (
        _write_csv(tmp_path / "e.csv", rows)
        if kind == "csv"
        else _write_parquet(tmp_path / "e.parquet", rows, row_group_size=10)
    )
    monkeypatch.setattr(csv_rows, "_BLOCK_BYTES", 211)
    want = list(frame_rows(str(path), kind, STREAM))
    src = _one_part(path, kind, batch_rows=9)
    (key,) = src.list_parts()
    part = src.build_part("in", key, None)
    first: list[RawBatch] = []
    while sum(map(len, first)) < 27:
        first += part.next_batch()
    state = part.snapshot()
    assert state == 27
    rest = _batches(src, resume=state)
    got = first + rest
    assert [x for b in got for x in b.lines] == want
    assert [p for b in got for p in b.positions] == list(range(1, len(rows) + 1))


# -- the source in a dataflow -----------------------------------------------------------------
@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_a_dataflow_reads_every_file_of_a_glob(tmp_path: Path, kind: str) -> None:
    write = _write_csv if kind == "csv" else _write_parquet
    write(tmp_path / f"b.{kind}", EVENTS[10:])
    write(tmp_path / f"a.{kind}", EVENTS[:10])
    src = FrameSource(str(tmp_path / f"*.{kind}"), kind, STREAM, batch_rows=4, partition_base=8)
    assert src.list_parts() == [str(tmp_path / f"a.{kind}"), str(tmp_path / f"b.{kind}")]
    out: list[RawBatch] = []
    flow = Dataflow("files_test")
    op.output("out", op.input("in", flow, src), TestingSink(out))
    run_main(flow)
    by_part: dict[int, list[RawBatch]] = {}
    for b in out:
        by_part.setdefault(b.partition, []).append(b)
    assert sorted(by_part) == [8, 9]
    decoded = {part: _decode(bs) for part, bs in by_part.items()}
    assert decoded[8][0].ids.tolist() == [e["id"] for e in EVENTS[:10]]
    assert decoded[9][0].ids.tolist() == [e["id"] for e in EVENTS[10:]]
    assert not decoded[8][1] and not decoded[9][1]
    assert {bs[0].source for bs in by_part.values()} == {
        f"{kind}:{tmp_path / f'a.{kind}'}",
        f"{kind}:{tmp_path / f'b.{kind}'}",
    }


def test_a_pattern_without_files_and_an_unknown_kind_are_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no file matches .*\*\.csv"):
        FrameSource(str(tmp_path / "*.csv"), "csv", STREAM)
    (tmp_path / "a.csv").write_text("id\n")
    with pytest.raises(ValueError, match="kind"):
        FrameSource(str(tmp_path / "a.csv"), "xlsx", STREAM)


def test_a_stop_event_ends_the_partition(tmp_path: Path) -> None:
    stop = threading.Event()
    path = _write_csv(tmp_path / "e.csv", EVENTS)
    src = FrameSource(str(path), "csv", STREAM, batch_rows=5, stop=stop)
    part = src.build_part("in", src.list_parts()[0], None)
    assert len(part.next_batch()[0]) == 5
    stop.set()
    with pytest.raises(StopIteration):
        part.next_batch()


def test_a_line_longer_than_the_limit_is_one_dead_letter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_rows, "_BLOCK_BYTES", 16)
    monkeypatch.setattr(csv_rows, "_MAX_ROW_BYTES", 64)
    p = tmp_path / "long.csv"
    row = "1700000000000,u1,2.5,3,true,a,,2"
    p.write_text(",".join(HEADER) + f"\ng1,{row}\nlong,{'x' * 300}\ng3,{row}\n")
    batch, reasons = _reasons(p, "csv")
    assert batch.ids.tolist() == ["g1", "g3"]
    assert reasons == {2: "row is longer than 64 bytes"}


def test_the_python_csv_fallback_reads_like_polars(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write_csv(tmp_path / "e.csv", EVENTS)
    want = list(frame_rows(str(path), "csv", STREAM))
    monkeypatch.setattr(csv_rows.CsvRows, "_parse", lambda self, chunk, n, utf8: None)
    assert list(frame_rows(str(path), "csv", STREAM)) == want
