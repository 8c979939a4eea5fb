"""CSV and Parquet sources with input that is not what the spec declares: byte-order marks,
quotes left open at the end of a file, rows far too long, ids of the wrong type."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl
import pytest

from eddy.schemas.batch import EventBatch
from eddy.schemas.decode import decode_lines
from eddy.schemas.records import DEAD_LETTER_RAW_BYTES, DeadLetter
from eddy.schemas.spec import StreamSpec
from eddy.schemas.spec_load import loads_spec
from eddy.sources.base import RawBatch
from eddy.sources.files import FrameSource
from tests.sources.drain import drain

STREAM = loads_spec(
    """
[streams.ev]
source = "csv:x.csv"
time = "ts"
id = "id"
[streams.ev.fields]
v = "float"
[[detect]]
name = "d"
stream = "ev"
metrics = ["v"]
"""
).stream("ev")
INT_ID = dataclasses.replace(STREAM, id_type="int")
BOM = b"\xef\xbb\xbf"


def _read(path: Path, kind: str, stream: StreamSpec) -> list[RawBatch]:
    return drain(FrameSource(str(path), kind, stream, batch_rows=3))[0]


def _decode(
    path: Path, kind: str, stream: StreamSpec = STREAM
) -> tuple[EventBatch, list[DeadLetter]]:
    batches = _read(path, kind, stream)
    lines = [x for b in batches for x in b.lines]
    positions = [p for b in batches for p in b.positions]
    raw = [r for b in batches for r in b.raw] if all(b.raw is not None for b in batches) else None
    return decode_lines(stream, lines, positions, batches[0].source, raw=raw)


def test_a_bom_before_the_header_is_dropped_and_a_row_starting_with_one_is_named(
    tmp_path: Path,
) -> None:
    """Two files joined with `cat`, each with its BOM: the second header is a row that starts
    with a BOM, and the reason says so."""
    p = tmp_path / "bom.csv"
    p.write_bytes(
        BOM + b"id,ts,v\na,1767225600000,1\n" + BOM + b"id,ts,v\n" + BOM + b"b,1767225600000,2\n"
    )
    batch, dead = _decode(p, "csv")
    assert batch.ids.tolist() == ["a"]
    assert [(d.position, d.reason, d.raw) for d in dead] == [
        (2, "starts with a UTF-8 byte-order mark (BOM)", BOM + b"id,ts,v"),
        (3, "starts with a UTF-8 byte-order mark (BOM)", BOM + b"b,1767225600000,2"),
    ]


def test_a_quote_left_open_at_the_end_of_the_file_says_so(tmp_path: Path) -> None:
    p = tmp_path / "open.csv"
    p.write_bytes(b'id,ts,v\na,1767225600000,1\nb,1767225600000,"2')  # no newline after it
    batch, dead = _decode(p, "csv")
    assert batch.ids.tolist() == ["a"]
    assert [(d.position, d.raw) for d in dead] == [(2, b'b,1767225600000,"2')]
    assert dead[0].reason.startswith('a quote (") opens a cell that is never closed')


def test_a_row_longer_than_16_mib_keeps_a_bounded_prefix(tmp_path: Path) -> None:
    p = tmp_path / "long.csv"
    long_row = b"c,1767225600000," + b"9" * (17 << 20)
    p.write_bytes(b"id,ts,v\na,1767225600000,1\n" + long_row + b"\nd,1767225600000,4\n")
    batch, dead = _decode(p, "csv")
    assert batch.ids.tolist() == ["a", "d"]
    assert [(d.position, d.raw) for d in dead] == [(2, long_row[:DEAD_LETTER_RAW_BYTES])]
    assert dead[0].reason == (
        f"row of {len(long_row):,} bytes is longer than 16 MiB; the first 65,536 bytes are kept"
    )


def test_a_row_without_an_end_for_16_mib_is_cut_there(tmp_path: Path) -> None:
    p = tmp_path / "long.csv"
    long_row = b"c,1767225600000," + b"9" * (40 << 20)
    p.write_bytes(b"id,ts,v\na,1767225600000,1\n" + long_row + b"\nd,1767225600000,4\n")
    batch, dead = _decode(p, "csv")
    assert batch.ids.tolist() == ["a", "d"]
    assert [(d.position, d.raw) for d in dead] == [(2, long_row[:DEAD_LETTER_RAW_BYTES])]
    assert dead[0].reason == "row is longer than 16 MiB; the first 65,536 bytes are kept"


def test_a_quoted_cell_left_open_over_many_bytes_keeps_a_bounded_prefix(tmp_path: Path) -> None:
    p = tmp_path / "open_long.csv"
    row = b'b,1767225600000,"' + b"9" * 100_000
    p.write_bytes(b"id,ts,v\n" + row + b"\nc,1767225600000,3\n")
    _, dead = _decode(p, "csv")
    assert [(d.position, d.raw) for d in dead] == [(1, row[:DEAD_LETTER_RAW_BYTES])]
    assert dead[0].reason.endswith(f"; the first 65,536 of its {len(row):,} bytes are kept")


def test_a_csv_string_id_is_text_even_when_it_looks_like_a_number(tmp_path: Path) -> None:
    p = tmp_path / "ids.csv"
    p.write_bytes(b"id,ts,v\n777,1767225600000,1\n007,1767225600000,2\n")
    batch, dead = _decode(p, "csv")
    assert dead == [] and batch.ids.tolist() == ["777", "007"]


def test_a_csv_int_id_must_parse_as_an_integer(tmp_path: Path) -> None:
    p = tmp_path / "ids.csv"
    cells = ["7", " 8 ", "+9", "010", "-3", "18446744073709551615", "7.0", "x7", '" 7e2"']
    p.write_text("id,ts,v\n" + "".join(f"{c},1767225600000,1\n" for c in cells))
    batch, dead = _decode(p, "csv", INT_ID)
    assert batch.ids.tolist() == ["7", "8", "9", "10", "-3", "18446744073709551615"]
    assert [(d.position, d.reason) for d in dead] == [
        (7, "field 'id': expected an integer id, got the string '7.0'"),
        (8, "field 'id': expected an integer id, got the string 'x7'"),
        (9, "field 'id': expected an integer id, got the string ' 7e2'"),
    ]


@pytest.mark.parametrize(
    ("stream", "ids", "dtype", "reason"),
    [
        (STREAM, [7, 8], pl.Int64, "field 'id': expected a non-empty string id, got the integer 8"),
        (INT_ID, ["7", "8"], pl.String, "field 'id': expected an integer id, got the string '8'"),
    ],
)
def test_a_parquet_id_column_of_the_other_type_is_dead_lettered(
    tmp_path: Path, stream: StreamSpec, ids: list[object], dtype: pl.DataType, reason: str
) -> None:
    """Parquet values are typed: an int column is not a string id (nor the reverse), so two
    files cannot give one event two ids, 8 and "8"."""
    p = tmp_path / "ids.parquet"
    df = pl.DataFrame(
        {"id": ids, "ts": [1_767_225_600_000] * 2, "v": [1.0, 2.0]},
        schema={"id": dtype, "ts": pl.Int64, "v": pl.Float64},
    )
    df.write_parquet(p)
    batch, dead = _decode(p, "parquet", stream)
    assert len(batch) == 0
    assert [d.reason for d in dead][1] == reason
