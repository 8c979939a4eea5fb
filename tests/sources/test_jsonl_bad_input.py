"""The JSONL source with input that is not one good line after another: a byte-order mark,
lines far longer than any event, and where a restart resumes after them."""

from __future__ import annotations

from pathlib import Path

import pytest

import eddy.sources.jsonl as jsonl
from eddy.dataflows.commands.run import reference_spec_path
from eddy.schemas.batch import EventBatch
from eddy.schemas.decode import decode_lines
from eddy.schemas.records import DEAD_LETTER_RAW_BYTES, DeadLetter, dead_letter_raw
from eddy.schemas.spec_load import load_spec
from eddy.sources.base import RawBatch
from eddy.sources.jsonl import JsonlReader, JsonlSource
from tests.sources.drain import drain

SPEC = load_spec(reference_spec_path())
STREAM = SPEC.stream("requests")
BOM = b"\xef\xbb\xbf"


def _good(i: int) -> bytes:
    return (
        b'{"id": "r-%d", "ts": 1767225600000, "placement": "home_top", "device": "mobile", '
        b'"geo": "us", "floor_price": 0.5}' % i
    )


def _read_all(src: JsonlSource) -> tuple[list[RawBatch], tuple[int, int]]:
    batches, snapshot = drain(src)
    return batches, snapshot


def _decode(batches: list[RawBatch]) -> tuple[EventBatch, list[DeadLetter]]:
    lines = [x for b in batches for x in b.lines]
    positions = [p for b in batches for p in b.positions]
    return decode_lines(STREAM, lines, positions, batches[0].source, 0, SPEC.max_event_bytes)


# -- the byte-order mark ------------------------------------------------------------------
def test_a_bom_at_the_start_of_the_file_is_dropped_and_one_later_is_named(
    tmp_path: Path,
) -> None:
    p = tmp_path / "bom.jsonl"
    p.write_bytes(BOM + _good(1) + b"\n" + _good(2) + b"\n" + BOM + _good(3) + b"\n")
    batches, (offset, line) = _read_all(JsonlSource([str(p)], "requests"))
    batch, dead = _decode(batches)
    assert batch.ids.tolist() == ["r-1", "r-2"]
    assert [(d.position, d.reason, d.raw) for d in dead] == [
        (3, "starts with a UTF-8 byte-order mark (BOM)", BOM + _good(3))
    ]
    assert (offset, line) == (p.stat().st_size, 3)  # the BOM's bytes count in the offset


def test_a_resumed_reader_does_not_take_a_bom_on_its_first_line_for_the_files(
    tmp_path: Path,
) -> None:
    p = tmp_path / "bom.jsonl"
    p.write_bytes(BOM + _good(1) + b"\n" + BOM + _good(2) + b"\n")
    r = JsonlReader(str(p), "requests", batch_lines=1)
    first, _ = r.read()
    assert first is not None and first.lines == [_good(1)]
    again = JsonlReader(str(p), "requests", offset=r.offset, line=r.line)
    rest, _ = again.read()
    assert rest is not None and rest.lines == [BOM + _good(2)] and rest.positions == [2]


# -- lines longer than anything the decoder takes -----------------------------------------
@pytest.mark.parametrize("max_line_bytes", [SPEC.max_event_bytes, None])
def test_a_100_mb_line_is_one_bounded_dead_letter(
    tmp_path: Path, max_line_bytes: int | None
) -> None:
    """Through the real source and decoder: the dead letter keeps the line's first bytes and
    its reason the true size; the source hands on no line anywhere near the line's size (it
    reads in chunks and skips the rest), with its limit set to ``max_event_bytes`` or not."""
    size = 100 * 2**20
    p = tmp_path / "big.jsonl"
    head = b'{"id": "big", "ts": 1767225600000, "pad": "'
    with p.open("wb") as fh:
        fh.write(_good(1) + b"\n" + head)
        block = b"x" * 2**20
        left = size - len(head)
        while left:
            fh.write(block[:left])
            left -= min(left, len(block))
        fh.write(b"\n" + _good(3) + b"\n")
    kw = {} if max_line_bytes is None else {"max_line_bytes": max_line_bytes}
    batches, (offset, line) = _read_all(JsonlSource([str(p)], "requests", **kw))
    assert max(len(x) for b in batches for x in b.lines) < 2 * DEAD_LETTER_RAW_BYTES
    assert (offset, line) == (p.stat().st_size, 3)
    batch, dead = _decode(batches)
    assert batch.ids.tolist() == ["r-1", "r-3"]
    assert len(dead) == 1 and dead[0].position == 2
    assert dead[0].raw == (head + b"x" * DEAD_LETTER_RAW_BYTES)[:DEAD_LETTER_RAW_BYTES]
    assert dead[0].reason == (
        "record of 104,857,600 bytes exceeds the limit of 65,536 bytes (max_event_bytes); "
        "the first 65,536 bytes are kept"
    )


@pytest.mark.parametrize("read_bytes", [7, 64, 1 << 20])
def test_resume_offsets_stay_exact_around_over_long_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, read_bytes: int
) -> None:
    """Over-long lines within one read, across reads, and last in the file without its
    newline: after every batch the offset is just after its line in the file, and a reader
    started there goes on with the next line."""
    monkeypatch.setattr(jsonl, "_READ_BYTES", read_bytes)
    lines = [b'{"a": 1}', b"L" * 300, b"\r", b'{"b": 2}\r', b"M" * 150, b'{"c": 3}', b"N" * 120]
    p = tmp_path / "long.jsonl"
    p.write_bytes(b"\n".join(lines))  # the last line has no newline
    ends = [min(sum(len(x) + 1 for x in lines[: i + 1]), p.stat().st_size) for i in range(7)]
    r = JsonlReader(str(p), "requests", batch_lines=1, max_line_bytes=100)
    seen: list[tuple[int, bytes]] = []
    done = False
    while not done:
        batch, done = r.read()
        if batch is None:
            continue
        seen += zip(batch.positions, batch.lines, strict=True)
        assert r.offset == ends[r.line - 1]
        again = JsonlReader(str(p), "requests", offset=r.offset, line=r.line, max_line_bytes=100)
        nxt, _ = again.read()
        again.close()
        rest = [(i + 1, x.rstrip(b"\r")) for i, x in enumerate(lines[r.line :], r.line)]
        rest = [(i, x) for i, x in rest if x.strip()]
        if not rest:
            assert nxt is None
        else:
            assert nxt is not None
            assert (nxt.positions[0], dead_letter_raw(nxt.lines[0])) == rest[0]
    assert [pos for pos, _ in seen] == [1, 2, 4, 5, 6, 7]
    _, dead = decode_lines(STREAM, [x for _, x in seen], [i for i, _ in seen], "jsonl:x")
    by_pos = {d.position: (d.reason, d.raw) for d in dead}
    assert by_pos[2] == ("record of 300 bytes exceeds its source's limit of 100 bytes", b"L" * 300)
    assert by_pos[5] == ("record of 150 bytes exceeds its source's limit of 100 bytes", b"M" * 150)
    assert by_pos[7] == ("record of 120 bytes exceeds its source's limit of 100 bytes", b"N" * 120)


def test_a_tailed_line_that_grows_too_long_is_skipped_up_to_its_newline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past its limit a line keeps only its first bytes (a small cap here, to see it) while
    the rest is counted, across reads of a growing file."""
    monkeypatch.setattr(jsonl, "DEAD_LETTER_RAW_BYTES", 50)
    p = tmp_path / "tail.jsonl"
    p.write_bytes(b'{"a": 1}\n' + b"x" * 80)
    r = JsonlReader(str(p), "requests", follow=True, max_line_bytes=100)
    batch, _ = r.read()
    assert batch is not None and batch.lines == [b'{"a": 1}']
    with p.open("ab") as fh:
        fh.write(b"y" * 200)
    assert r.read()[0] is None  # still no newline: held back
    assert (r._part_len, sum(map(len, r._part))) == (280, 50)
    with p.open("ab") as fh:
        fh.write(b"z\n" + b'{"b": 2}\n')
    batch, _ = r.read()
    assert batch is not None and batch.positions == [2, 3]
    assert batch.lines[1] == b'{"b": 2}'
    _, dead = decode_lines(STREAM, batch.lines, batch.positions, "jsonl:x")
    assert (dead[0].raw, dead[0].reason) == (
        b"x" * 50,
        "record of 281 bytes exceeds its source's limit of 100 bytes; the first 50 bytes are kept",
    )
    assert r.offset == p.stat().st_size


def test_max_line_bytes_must_be_positive(tmp_path: Path) -> None:
    p = tmp_path / "a.jsonl"
    p.write_bytes(b"{}\n")
    with pytest.raises(ValueError, match="max_line_bytes must be at least 1"):
        JsonlSource([str(p)], "requests", max_line_bytes=0)
