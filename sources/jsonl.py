"""JSONL files as a Bytewax source: one partition per file, micro-batches of raw lines.

Lines are passed on undecoded (``RawBatch``) with their 1-based line numbers, so decoding can
route every bad line to the dead letters with its file and line. The resume state is the byte
offset and line number after the last emitted line, so Bytewax recovery continues exactly there.
With ``follow=True`` the partition tails a growing file (like ``tail -f``) until ``stop`` is set;
a trailing line without its newline is held back until the newline arrives.

A UTF-8 byte-order mark at the very start of the file is dropped (Windows tools write one, and
Python's ``utf-8-sig`` reads it the same way); anywhere else it stays, and the decoder names it.

The file is read in chunks of 1 MiB, and no line longer than ``max_line_bytes`` is ever held
whole: once a line passes it, only its first bytes are kept and the rest is counted and skipped
up to its newline. The line is handed on as ``schemas.records.oversize_line`` (its true size
and first bytes), which the decoder turns into a dead letter. Give ``max_line_bytes`` the
spec's ``max_event_bytes``: any longer line is a dead letter anyway.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from operator import methodcaller
from typing import BinaryIO

from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from eddy.schemas.records import DEAD_LETTER_RAW_BYTES, UTF8_BOM, oversize_line
from eddy.sources.base import RawBatch

__all__ = ["MAX_LINE_BYTES", "JsonlReader", "JsonlSource"]

_READ_BYTES = 1 << 20
#: the longest line held whole when ``max_line_bytes`` is not given: the largest
#: ``max_event_bytes`` a spec may set, so that no line a decoder could accept is cut
MAX_LINE_BYTES = 64 << 20
_ends_with_cr = methodcaller("endswith", b"\r")


@dataclass
class JsonlReader:
    """Reads raw lines from ``path`` in batches, starting at ``offset`` (bytes) / ``line``;
    a line longer than ``max_line_bytes`` is handed on as its oversize line."""

    path: str
    stream: str
    partition: int = 0
    batch_lines: int = 2_000
    follow: bool = False
    offset: int = 0
    line: int = 0
    max_line_bytes: int = MAX_LINE_BYTES
    # the partial line after the last newline, in pieces (one small piece but for long lines)
    _part: list[bytes] = field(default_factory=list, repr=False)
    _part_len: int = field(default=0, repr=False)  # its bytes read, skipped ones included
    _over: bool = field(default=False, repr=False)  # too long: _part keeps only its head
    _lines: list[bytes] = field(default_factory=list, repr=False)
    _next: int = field(default=0, repr=False)
    _unread: int = field(default=0, repr=False)  # bytes (with newlines) of _lines[_next:]
    # line number -> bytes its oversize line is shorter than the line (for the resume offset)
    _shrunk: dict[int, int] = field(default_factory=dict, repr=False)
    _fh: BinaryIO | None = field(default=None, repr=False)
    _cr: bool = field(default=False, repr=False)  # a carriage return was read (CRLF lines?)

    def _file(self) -> BinaryIO:
        if self._fh is None:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across batches, closed in close()
            fh.seek(self.offset)
            self._fh = fh
        return self._fh

    def read(self) -> tuple[RawBatch | None, bool]:
        """Return ``(batch or None, at_eof)``.

        Complete lines wait in ``_lines`` (split once per chunk read, never one slice of the
        buffer per line); ``_part`` holds only the partial line after the last newline."""
        fh = self._file()
        at_eof = False
        while len(self._lines) - self._next < self.batch_lines:
            chunk = fh.read(_READ_BYTES)
            if not chunk:
                at_eof = True
                if self._part_len and not self.follow:  # a last line without its newline
                    self._end_part(b"")  # counted as if it had its newline
                break
            if not self._cr and b"\r" in chunk:
                self._cr = True
            nl = chunk.find(b"\n")
            if nl < 0:
                self._grow(chunk)
                continue
            head: list[bytes] = []
            if self._over or self._part_len > _READ_BYTES:  # a long line ends here
                self._end_part(chunk[:nl])
                chunk = chunk[nl + 1 :]
            elif self._part:  # the common case: a short partial line goes on in this chunk
                head = self._part
                self._part, self._part_len = [], 0
            parts = chunk.split(b"\n")
            tail = parts.pop()
            if head:  # the partial line starts the first line (the chunk has a newline)
                parts[0] = b"".join([*head, parts[0]])
            if parts:  # no line is longer than the chunk, but for the first one
                short = len(chunk) <= self.max_line_bytes >= len(parts[0])
                self._add(parts, short)
            if tail:
                self._grow(tail)
        take = self._lines[self._next : self._next + self.batch_lines]
        self._next += len(take)
        self._unread -= sum(map(len, take)) + len(take)
        first = self.line + 1
        self.line += len(take)
        if self._shrunk:
            for n in [n for n in self._shrunk if n <= self.line]:
                self._unread -= self._shrunk.pop(n)
        if first == 1 and take and take[0].startswith(UTF8_BOM):  # the file's BOM
            take[0] = take[0][len(UTF8_BOM) :]
        if not (self._cr and any(map(_ends_with_cr, take))) and all(map(bytes.strip, take)):
            lines = take  # the common case, checked with C loops (map) over the batch
            positions = list(range(first, first + len(take)))
        else:
            lines, positions = [], []
            for i, raw in enumerate(take):
                if raw.endswith(b"\r"):
                    raw = raw[:-1]
                if raw.strip():
                    lines.append(raw)
                    positions.append(first + i)
        self.offset = self._consumed()
        done = at_eof and not self._part_len and self._next >= len(self._lines)
        if not lines:
            return None, done
        batch = RawBatch(
            self.stream,
            f"jsonl:{self.path}",
            self.partition,
            positions,
            lines,
            time.time_ns(),
            lag=max(0, os.fstat(fh.fileno()).st_size - self.offset),
            lag_unit="bytes",
        )
        return batch, done

    def _grow(self, piece: bytes) -> None:
        """The partial line goes on with ``piece``; past ``max_line_bytes`` only its first
        ``DEAD_LETTER_RAW_BYTES`` are kept, and the rest is only counted."""
        self._part_len += len(piece)
        if not self._over:
            self._part.append(piece)
            if self._part_len > self.max_line_bytes:
                self._over = True
                self._part = _head(self._part)
        elif (room := DEAD_LETTER_RAW_BYTES - sum(map(len, self._part))) > 0:
            self._part.append(piece[:room])

    def _end_part(self, last: bytes) -> None:
        """The partial line ends with ``last`` (the bytes before its newline)."""
        size = self._part_len + len(last)
        if self._over or size > self.max_line_bytes:
            self._append_oversize(size, b"".join(_head([*self._part, last])))
        else:
            self._add([b"".join([*self._part, last])])
        self._part, self._part_len, self._over = [], 0, False

    def _add(self, lines: list[bytes], short: bool = False) -> None:
        """Complete lines (without their newlines) to hand out; one longer than
        ``max_line_bytes`` (possible within one chunk) goes as its oversize line. ``short``:
        the lines are known to be no longer (cut from a chunk no longer)."""
        if self._next:
            del self._lines[: self._next]
            self._next = 0
        if not short and max(map(len, lines)) > self.max_line_bytes:
            for line in lines:
                if len(line) > self.max_line_bytes:
                    self._append_oversize(len(line), line[:DEAD_LETTER_RAW_BYTES])
                else:
                    self._lines.append(line)
                    self._unread += len(line) + 1
            return
        self._lines.extend(lines)
        self._unread += sum(map(len, lines)) + len(lines)

    def _append_oversize(self, size: int, head: bytes) -> None:
        if self._next:
            del self._lines[: self._next]
            self._next = 0
        line = oversize_line(size, self.max_line_bytes, head)
        self._shrunk[self.line + len(self._lines) + 1] = size - len(line)
        self._lines.append(line)
        self._unread += size + 1

    def _consumed(self) -> int:
        """Byte offset just after the last line handed out (what a restart resumes from)."""
        fh = self._fh
        assert fh is not None
        return int(fh.tell()) - self._part_len - self._unread

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def _head(pieces: list[bytes]) -> list[bytes]:
    """The first ``DEAD_LETTER_RAW_BYTES`` of the bytes in ``pieces`` (without joining all)."""
    out: list[bytes] = []
    room = DEAD_LETTER_RAW_BYTES
    for piece in pieces:
        if room <= 0:
            break
        out.append(piece[:room])
        room -= len(out[-1])
    return out


class _JsonlPartition(StatefulSourcePartition[RawBatch, tuple[int, int]]):
    def __init__(self, reader: JsonlReader, stop: threading.Event | None) -> None:
        self._reader = reader
        self._stop = stop
        self._idle = False

    def next_batch(self) -> list[RawBatch]:
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        batch, at_eof = self._reader.read()
        self._idle = batch is None
        if batch is None and at_eof and not self._reader.follow:
            raise StopIteration
        return [batch] if batch is not None else []

    def next_awake(self) -> datetime | None:
        if self._idle and self._reader.follow:
            return datetime.now(UTC) + timedelta(milliseconds=50)
        return None

    def snapshot(self) -> tuple[int, int]:
        return (self._reader.offset, self._reader.line)

    def close(self) -> None:
        self._reader.close()


class JsonlSource(FixedPartitionedSource[RawBatch, tuple[int, int]]):
    """One partition per file of the declared stream ``stream``; ``max_line_bytes``: the
    longest line held whole (give it the spec's ``max_event_bytes``)."""

    def __init__(
        self,
        paths: list[str],
        stream: str,
        *,
        batch_lines: int = 2_000,
        follow: bool = False,
        stop: threading.Event | None = None,
        partition_base: int = 0,
        max_line_bytes: int = MAX_LINE_BYTES,
    ) -> None:
        for p in paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"jsonl source: no such file {p!r}")
        if max_line_bytes < 1:
            raise ValueError(
                f"jsonl source: max_line_bytes must be at least 1, got {max_line_bytes}"
            )
        self._paths = [os.path.abspath(p) for p in paths]
        self._stream = stream
        self._batch_lines = batch_lines
        self._follow = follow
        self._stop = stop
        self._base = partition_base
        self._max_line_bytes = max_line_bytes

    def list_parts(self) -> list[str]:
        return self._paths

    def build_part(
        self, step_id: str, for_part: str, resume_state: tuple[int, int] | None
    ) -> _JsonlPartition:
        offset, line = resume_state or (0, 0)
        reader = JsonlReader(
            for_part,
            self._stream,
            partition=self._base + self._paths.index(for_part),
            batch_lines=self._batch_lines,
            follow=self._follow,
            offset=offset,
            line=line,
            max_line_bytes=self._max_line_bytes,
        )
        return _JsonlPartition(reader, self._stop)
