"""The JSONL reader: line numbers, resume offsets and tailing a growing file."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eddy.schemas.records import oversize_line
from eddy.sources import jsonl
from eddy.sources.jsonl import JsonlReader


def test_positions_are_line_numbers_and_blank_lines_are_skipped(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_bytes(b'{"a":1}\n\n{"b":2}\r\n  \n{"c":3}')
    r = JsonlReader(str(p), "requests", batch_lines=10)
    batch, at_eof = r.read()
    assert batch is not None and at_eof
    assert batch.positions == [1, 3, 5]
    assert batch.lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}']
    assert batch.source == f"jsonl:{p}"


def test_resume_from_offset_continues_after_the_last_line(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_bytes(b"".join(b'{"i":%d}\n' % i for i in range(10)))
    r = JsonlReader(str(p), "requests", batch_lines=4)
    first, _ = r.read()
    assert first is not None and first.positions == [1, 2, 3, 4]
    assert (first.lag, first.lag_unit) == (p.stat().st_size - r.offset, "bytes")
    assert first.lag == len(b"".join(b'{"i":%d}\n' % i for i in range(4, 10)))
    r2 = JsonlReader(str(p), "requests", batch_lines=100, offset=r.offset, line=r.line)
    rest, _ = r2.read()
    assert rest is not None and rest.positions == list(range(5, 11))
    assert rest.lines[0] == b'{"i":4}'


def test_follow_holds_a_partial_line_until_its_newline(tmp_path: Path) -> None:
    p = tmp_path / "in.jsonl"
    p.write_bytes(b'{"a":1}\n{"b"')
    r = JsonlReader(str(p), "requests", follow=True)
    batch, _ = r.read()
    assert batch is not None and batch.lines == [b'{"a":1}']
    assert r.read()[0] is None
    with p.open("ab") as fh:
        fh.write(b':2}\n{"c":3}\n')
    batch, _ = r.read()
    assert batch is not None and batch.lines == [b'{"b":2}', b'{"c":3}']
    assert batch.positions == [2, 3]


@settings(max_examples=200, deadline=None)
@given(
    content=st.lists(st.sampled_from([b"a", b"{}", b" ", b"\r", b"\n", b"\n\n", b"xyz"])).map(
        b"".join
    ),
    read_bytes=st.integers(1, 12),
    batch_lines=st.integers(1, 5),
    max_line_bytes=st.sampled_from([4, 1 << 20]),
)
def test_every_chunking_reads_the_lines_a_whole_read_gives(
    content: bytes, read_bytes: int, batch_lines: int, max_line_bytes: int
) -> None:
    """However the file falls into reads (lines across reads, carriage returns in one read and
    their line in the next), the reader hands out each non-blank line once, with its number,
    without its CR, and any line over ``max_line_bytes`` as its oversize line."""
    want = []
    for i, raw in enumerate(content.split(b"\n"), 1):
        line = raw.removesuffix(b"\r")
        if len(raw) > max_line_bytes:  # blank or not: a dead letter of its size
            # (its CR goes too, as any line's)
            want.append((i, oversize_line(len(raw), max_line_bytes, raw).removesuffix(b"\r")))
        elif line.strip():
            want.append((i, line))
    with pytest.MonkeyPatch.context() as mp, tempfile.TemporaryDirectory() as tmp:
        mp.setattr(jsonl, "_READ_BYTES", read_bytes)
        p = Path(tmp) / "in.jsonl"
        p.write_bytes(content)
        r = JsonlReader(str(p), "s", batch_lines=batch_lines, max_line_bytes=max_line_bytes)
        got = []
        done = False
        while not done:
            batch, done = r.read()
            if batch is not None:
                got += zip(batch.positions, batch.lines, strict=True)
        r.close()
    assert got == want
