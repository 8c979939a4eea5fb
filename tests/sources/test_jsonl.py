"""The JSONL reader: line numbers, resume offsets and tailing a growing file."""

from __future__ import annotations

from pathlib import Path

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
