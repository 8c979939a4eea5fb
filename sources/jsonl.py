"""JSONL files as a Bytewax source: one partition per file, micro-batches of raw lines.

Lines are passed on undecoded (``RawBatch``) with their 1-based line numbers, so decoding can
route every bad line to the dead letters with its file and line. The resume state is the byte
offset and line number after the last emitted line, so Bytewax recovery continues exactly there.
With ``follow=True`` the partition tails a growing file (like ``tail -f``) until ``stop`` is set;
a trailing line without its newline is held back until the newline arrives.
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

from eddy.sources.base import RawBatch

__all__ = ["JsonlReader", "JsonlSource"]

_READ_BYTES = 1 << 20
_ends_with_cr = methodcaller("endswith", b"\r")


@dataclass
class JsonlReader:
    """Reads raw lines from ``path`` in batches, starting at ``offset`` (bytes) / ``line``."""

    path: str
    stream: str
    partition: int = 0
    batch_lines: int = 2_000
    follow: bool = False
    offset: int = 0
    line: int = 0
    _buf: bytes = field(default=b"", repr=False)
    _lines: list[bytes] = field(default_factory=list, repr=False)
    _next: int = field(default=0, repr=False)
    _unread: int = field(default=0, repr=False)  # bytes (with newlines) of _lines[_next:]
    _fh: BinaryIO | None = field(default=None, repr=False)

    def _file(self) -> BinaryIO:
        if self._fh is None:
            fh = open(self.path, "rb")  # noqa: SIM115 - kept open across batches, closed in close()
            fh.seek(self.offset)
            self._fh = fh
        return self._fh

    def read(self) -> tuple[RawBatch | None, bool]:
        """Return ``(batch or None, at_eof)``.

        Complete lines wait in ``_lines`` (split once per chunk read, never one slice of the
        buffer per line); ``_buf`` holds only the partial line after the last newline."""
        fh = self._file()
        at_eof = False
        while len(self._lines) - self._next < self.batch_lines:
            chunk = fh.read(_READ_BYTES)
            if not chunk:
                at_eof = True
                if self._buf and not self.follow:  # a last line without its newline
                    self._lines.append(self._buf)
                    self._unread += len(self._buf) + 1  # counted as if it had its newline
                    self._buf = b""
                break
            parts = (self._buf + chunk).split(b"\n")
            self._buf = parts.pop()
            if self._next:
                del self._lines[: self._next]
                self._next = 0
            self._lines.extend(parts)
            self._unread += sum(map(len, parts)) + len(parts)
        take = self._lines[self._next : self._next + self.batch_lines]
        self._next += len(take)
        self._unread -= sum(map(len, take)) + len(take)
        first = self.line + 1
        self.line += len(take)
        if not any(map(_ends_with_cr, take)) and all(map(bytes.strip, take)):
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
        done = at_eof and not self._buf and self._next >= len(self._lines)
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

    def _consumed(self) -> int:
        """Byte offset just after the last line handed out (what a restart resumes from)."""
        fh = self._fh
        assert fh is not None
        return int(fh.tell()) - len(self._buf) - self._unread

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


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
    """One partition per file; ``stream`` is ``"requests"`` or ``"outcomes"``."""

    def __init__(
        self,
        paths: list[str],
        stream: str,
        *,
        batch_lines: int = 2_000,
        follow: bool = False,
        stop: threading.Event | None = None,
        partition_base: int = 0,
    ) -> None:
        for p in paths:
            if not os.path.isfile(p):
                raise FileNotFoundError(f"jsonl source: no such file {p!r}")
        self._paths = [os.path.abspath(p) for p in paths]
        self._stream = stream
        self._batch_lines = batch_lines
        self._follow = follow
        self._stop = stop
        self._base = partition_base

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
        )
        return _JsonlPartition(reader, self._stop)
