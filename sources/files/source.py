"""``csv:PATH`` / ``parquet:PATH`` as a Bytewax source: one partition per file.

Why a module: the partitions hand the lines of a file reader (:mod:`.csv_rows` or
:mod:`.parquet`) on in batches of ``batch_rows`` rows numbered from 1, keep the number of rows
emitted as the resume state, and turn a file that cannot be read further into one dead letter.
A reader that has each line's original record (CSV) hands it on in ``RawBatch.raw``.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from collections.abc import Iterator
from typing import Protocol

import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from eddy.schemas.records import dead_letter_raw
from eddy.schemas.spec import StreamSpec
from eddy.sources.base import RawBatch, RecordBytes, dead_line
from eddy.sources.files.csv_rows import CsvRows
from eddy.sources.files.json_lines import Out, outputs
from eddy.sources.files.parquet import PARQUET_ROWS, ParquetRows

__all__ = ["KINDS", "FrameSource", "frame_rows"]

#: the file kinds this source reads
KINDS = ("csv", "parquet")


class _Reader(Protocol):
    done: bool
    total: int

    def read(self) -> tuple[list[bytes], RecordBytes | None]:
        """The next lines and each line's original record, or None when the lines are the
        best record there is."""
        ...

    def close(self) -> None: ...


def frame_rows(path: str, kind: str, stream: StreamSpec, skip: int = 0) -> Iterator[bytes]:
    """Every row of one file as the JSON line the source emits (after ``skip`` rows); for
    tools and tests that want the lines without a dataflow."""
    reader = _reader(path, kind, outputs(stream), skip, PARQUET_ROWS)
    try:
        while not reader.done:
            yield from reader.read()[0]
    finally:
        reader.close()


def _reader(path: str, kind: str, outs: tuple[Out, ...], skip: int, chunk: int) -> _Reader:
    if kind == "csv":
        return CsvRows(path, outs, skip)
    if kind == "parquet":
        return ParquetRows(path, outs, skip, chunk)
    raise ValueError(f"file source: kind must be one of {', '.join(KINDS)}, got {kind!r}")


class _FramePartition(StatefulSourcePartition[RawBatch, int]):
    """One file; the state is the number of rows emitted."""

    def __init__(
        self,
        reader: _Reader,
        *,
        stream: str,
        source: str,
        partition: int,
        batch_rows: int,
        stop: threading.Event | None,
        rows_done: int,
    ) -> None:
        self._reader = reader
        self._stream = stream
        self._source = source
        self._partition = partition
        self._batch_rows = batch_rows
        self._stop = stop
        self._rows = rows_done
        self._pending: list[bytes] = []
        self._raw: RecordBytes | None = None  # the records of _pending, once a reader gives any
        self._next = 0

    def _fill(self) -> int:
        """Read the next lines into ``_pending``; how many came."""
        if self._next:
            del self._pending[: self._next]
            if self._raw is not None:
                self._raw = self._raw[self._next :]
            self._next = 0
        try:
            lines, raw = self._reader.read()
        except (OSError, pl.exceptions.PolarsError) as e:  # unreadable from here on: say why
            row = self._rows + len(self._pending) + 1
            lines, raw = [dead_line(f"cannot read the file from row {row} on: {e}")], None
            self._reader.done = True
            self._reader.close()
        if raw is not None and self._raw is None:  # lines so far are their own records
            self._raw = RecordBytes.of(map(dead_letter_raw, self._pending))
        if self._raw is not None:
            more = RecordBytes.of(map(dead_letter_raw, lines)) if raw is None else raw
            self._raw = RecordBytes.concat([self._raw, more]) if len(self._raw) else more
        self._pending.extend(lines)
        return len(lines)

    def next_batch(self) -> list[RawBatch]:
        if self._stop is not None and self._stop.is_set():
            raise StopIteration
        while len(self._pending) - self._next < self._batch_rows and not self._reader.done:
            if not self._fill() and not self._reader.done:
                return []  # a block of blank or skipped rows: come back (stop is checked)
        if self._next >= len(self._pending):
            raise StopIteration
        end = self._next + self._batch_rows
        take = self._pending[self._next : end]
        raw = None if self._raw is None else self._raw[self._next : end]
        self._next += len(take)
        first = self._rows + 1
        self._rows += len(take)
        total = self._reader.total
        batch = RawBatch(
            self._stream,
            self._source,
            self._partition,
            list(range(first, first + len(take))),
            take,
            time.time_ns(),
            lag=max(total - self._rows, 0) if total >= 0 else -1,
            lag_unit="records",
            raw=raw,
        )
        return [batch]

    def snapshot(self) -> int:
        return self._rows

    def close(self) -> None:
        self._reader.close()


class FrameSource(FixedPartitionedSource[RawBatch, int]):
    """``csv:PATH`` / ``parquet:PATH`` (``kind`` is ``csv`` or ``parquet``): one partition per
    file matching ``path`` (a glob; files sorted), batches of ``batch_rows`` rows of
    ``stream``. The resume state is the number of rows already emitted."""

    def __init__(
        self,
        path: str,
        kind: str,
        stream: StreamSpec,
        *,
        batch_rows: int = 4_000,
        stop: threading.Event | None = None,
        partition_base: int = 0,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"file source: kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if batch_rows < 1:
            raise ValueError(f"{kind} source: batch_rows must be at least 1, got {batch_rows}")
        found = [path] if os.path.isfile(path) else glob.glob(path)
        paths = sorted(os.path.abspath(p) for p in found if os.path.isfile(p))
        if not paths:
            raise FileNotFoundError(f"{kind} source: no file matches {path!r}")
        self._paths = paths
        self._kind = kind
        self._stream = stream
        self._outs = outputs(stream)
        self._batch_rows = batch_rows
        self._stop = stop
        self._base = partition_base

    def list_parts(self) -> list[str]:
        return list(self._paths)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FramePartition:
        rows_done = resume_state or 0
        chunk = max(self._batch_rows, PARQUET_ROWS)
        return _FramePartition(
            _reader(for_part, self._kind, self._outs, rows_done, chunk),
            stream=self._stream.name,
            source=f"{self._kind}:{for_part}",
            partition=self._base + self._paths.index(for_part),
            batch_rows=self._batch_rows,
            stop=self._stop,
            rows_done=rows_done,
        )
