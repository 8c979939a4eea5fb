"""A CSV file read a block at a time into JSON lines, each bad row one dead letter.

Why a module: the CSV reader keeps its place in the file (blocks, a record cut at a block's
end, a line too long to keep, the header) and turns each block's records into lines, rejecting
the rows that cannot be read while the rows around them survive.

The file is read in blocks of 4 MiB. numpy finds the record ends (newlines outside
quotes, so a quoted cell may span lines) and counts each record's cells in a few vectorised
passes over the block; polars then parses the block's records with every column read as
text (no schema inference: one bad value cannot turn a whole numeric column into strings or
nulls). We split records ourselves because polars' own batched CSV reading can neither tell
a short row from a row with empty cells (both come back as nulls) nor carry on after a
malformed row; with the split, a row with the wrong number of cells, bytes that are not
UTF-8 or a quote that never closes is one dead letter with that reason, and the rows around
it survive. Resuming after ``n`` rows re-splits the file from the start (no parsing) and
skips them.

Rows are numbered from 1 after the header; blank lines are skipped and not numbered. A UTF-8
byte-order mark before the header is dropped; a row that starts with one is rejected. The
header names columns (surrounding whitespace ignored, the first of equal names wins); a
declared field without a column is absent in every row. Quotes follow RFC 4180: a cell holding
``,``, ``"`` or a newline is quoted and its ``"`` doubled. Rows the split rejects carry their
reason with ``sources.base.dead_line``.

Each line comes with its row's original bytes (``sources.base.RawBatch.raw``: the record
without its line end, LF or CRLF), so a row the decoder rejects later (a bad number,
say) is dead-lettered with what the file holds, not with its JSON line. The block is already
split into records, so these are the block and the records' offsets
(``sources.base.RecordBytes``), cut into ``bytes`` only for the rows that need them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np
import polars as pl

from eddy.schemas.records import BOM_REASON, DEAD_LETTER_RAW_BYTES, UTF8_BOM
from eddy.sources.base import RecordBytes, dead_line
from eddy.sources.files.csv_blocks import Records, is_utf8, split_records
from eddy.sources.files.csv_cells import csv_lines
from eddy.sources.files.json_lines import Out

__all__ = ["CsvRows"]

_BLOCK_BYTES = 4 << 20  # CSV bytes read at a time
_MAX_ROW_BYTES = 16 << 20  # a CSV record longer than this is cut and rejected
_CR = 13
_NO_ROWS = RecordBytes(b"", np.zeros(0, np.int64), np.zeros(0, np.int64))
_QUOTE_REASON = (
    'a quote (") opens a cell that is never closed; a cell holding a quote must be quoted '
    "and the quote doubled"
)


class CsvRows:
    """The rows of one CSV file as JSON lines, a block at a time, after ``skip`` rows."""

    def __init__(self, path: str, outs: tuple[Out, ...], skip: int = 0) -> None:
        self._path = path
        self._outs = outs
        self._skip = skip
        self._seen = 0  # data rows split so far, skipped ones included
        self._fh: BinaryIO | None = None
        self._buf = b""
        self._eof = False
        self._rest_of_line = False  # skipping the rest of a line cut for its length
        self._ncols = 0
        self._cols: list[tuple[int, Out]] | None = None  # (column index, field); None: no header
        self.done = False
        self.total = -1  # rows in the file: unknown without reading it all

    def _file(self) -> BinaryIO:
        if self._fh is None:
            self._fh = open(self._path, "rb")  # noqa: SIM115 - kept open across reads, see close()
        return self._fh

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def _records(self) -> Records | None:
        """The next complete records, or None at the end of the file."""
        while True:
            data = self._buf
            if data:
                starts, ends, cells = split_records(data, self._eof)
                if ends.size and ends[0] > _MAX_ROW_BYTES:  # grown read by read until it ended
                    return self._too_long(data, int(ends[0]))
                if ends.size:
                    self._buf = data[int(ends[-1]) + 1 :]
                    return Records(data, starts, ends, cells)
                if self._eof or len(data) > _MAX_ROW_BYTES:
                    return self._cut(data)
            elif self._eof:
                return None
            chunk = self._file().read(_BLOCK_BYTES)
            if not chunk:
                self._eof = True
            elif self._rest_of_line:  # what follows a cut line, up to its newline, goes
                nl = chunk.find(b"\n")
                if nl >= 0:
                    self._rest_of_line = False
                    self._buf = chunk[nl + 1 :]
            else:
                self._buf = data + chunk

    def _cut(self, data: bytes) -> Records:
        """No record ends in ``data``: a quote is never closed, or a line is too long. Reject
        the first line (the rest of a line longer than ``_MAX_ROW_BYTES`` skipped) and go on
        after it with quotes reset. The dead letter keeps the line's first
        ``DEAD_LETTER_RAW_BYTES``."""
        nl = data.find(b"\n", 0, _MAX_ROW_BYTES)
        if nl >= 0:  # the newline is inside a quoted cell that does not close
            size, reason = nl, _QUOTE_REASON
            self._buf = data[nl + 1 :]
        elif len(data) <= _MAX_ROW_BYTES:  # the file ends inside a quoted cell
            size, reason = len(data), _QUOTE_REASON
            self._buf = b""
        else:
            size, reason = _MAX_ROW_BYTES, f"row is longer than {_size(_MAX_ROW_BYTES)}"
            nl = data.find(b"\n", _MAX_ROW_BYTES)
            self._buf = data[nl + 1 :] if nl >= 0 else b""
            self._rest_of_line = nl < 0 and not self._eof
        of = f" of its {size:,}" if reason == _QUOTE_REASON else ""
        return _first_bytes(data, size, reason, of)

    def _too_long(self, data: bytes, end: int) -> Records:
        """The first record of ``data`` ends at ``end``, past ``_MAX_ROW_BYTES``: reject it."""
        self._buf = data[end + 1 :]
        reason = f"row of {end:,} bytes is longer than {_size(_MAX_ROW_BYTES)}"
        return _first_bytes(data, end, reason, "")

    def read(self) -> tuple[list[bytes], RecordBytes]:
        """JSON lines of the next rows (maybe none) and each row's original bytes; ``done`` is
        set after the last."""
        recs = self._records()
        if recs is None:
            self.done = True
            self.close()
            return [], _NO_ROWS
        data, starts, ends = recs.data, recs.starts, recs.ends
        keep = np.ones(starts.size, bool)
        if recs.reason is None:  # blank lines: one cell and only whitespace
            for i in np.flatnonzero(recs.cells == 1).tolist():
                if not data[starts[i] : ends[i]].strip():
                    keep[i] = False
        idx = np.flatnonzero(keep)
        if self._cols is None:
            if not idx.size:
                return [], _NO_ROWS
            self._header(data[starts[idx[0]] : ends[idx[0]]])
            idx = idx[1:]
        skip = min(max(self._skip - self._seen, 0), idx.size)
        self._seen += idx.size
        idx = idx[skip:]
        if not idx.size:
            return [], _NO_ROWS
        if recs.reason is not None:
            raw = _row_bytes(data, starts[:1], ends[:1])
            return [dead_line(recs.reason, raw[0])], raw
        return self._lines(data, starts[idx], ends[idx], recs.cells[idx])

    def _header(self, raw: bytes) -> None:
        text = raw.decode("utf-8", "replace").removeprefix("\ufeff").rstrip("\r")
        try:
            names = next(csv.reader(io.StringIO(text, newline="")), [])
        except csv.Error:
            names = text.split(",")
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            index.setdefault(name.strip(), i)
        self._ncols = max(len(names), 1)
        self._cols = [(index[o.name], o) for o in self._outs if o.name in index]

    def _lines(
        self, data: bytes, starts: np.ndarray, ends: np.ndarray, cells: np.ndarray
    ) -> tuple[list[bytes], RecordBytes]:
        n = starts.size

        def record(i: int) -> bytes:
            return data[int(starts[i]) : int(ends[i])]

        if n == 1 or bool((starts[1:] == ends[:-1] + 1).all()):
            chunk = data[int(starts[0]) : int(ends[-1])]
        else:  # blank lines in between: leave them out
            chunk = b"\n".join(map(record, range(n)))
        raw = _row_bytes(data, starts, ends)
        reasons: dict[int, str] = {}
        utf8 = chunk.isascii() or is_utf8(chunk)
        if not utf8:
            for i in range(n):
                if not is_utf8(record(i)):
                    reasons[i] = "not valid UTF-8"
        if UTF8_BOM in chunk:  # e.g. files joined with `cat`, each with its BOM
            for i in range(n):
                if record(i).startswith(UTF8_BOM):
                    reasons[i] = BOM_REASON
        for i in np.flatnonzero(cells != self._ncols).tolist():
            k = int(cells[i])
            reasons.setdefault(i, f"row has {k} cell{'s' * (k != 1)}, the header has {self._ncols}")
        assert self._cols is not None
        outs = [o for _, o in self._cols]
        if outs:
            df = self._parse(chunk, n, utf8)
            if df is None:
                df = self._parse_slowly(map(record, range(n)))
            lines = csv_lines(df, outs)
        else:
            lines = [b"{}"] * n
        for i, reason in reasons.items():
            lines[i] = dead_line(reason, raw[i])
        return lines, raw

    def _parse(self, chunk: bytes, n: int, utf8: bool) -> pl.DataFrame | None:
        """The declared columns of ``n`` records as text, or None if polars disagrees."""
        assert self._cols is not None
        try:
            df = pl.read_csv(
                chunk,
                has_header=False,
                columns=[i for i, _ in self._cols],
                schema={f"c{i}": pl.String for i in range(self._ncols)},
                null_values=[""],
                truncate_ragged_lines=True,
                missing_columns="insert",
                encoding="utf8" if utf8 else "utf8-lossy",
                raise_if_empty=False,
            )
        except pl.exceptions.PolarsError:
            return None
        if df.height != n:
            return None
        return df.rename({f"c{i}": o.name for i, o in self._cols})

    def _parse_slowly(self, records: Iterable[bytes]) -> pl.DataFrame:
        """Python's csv module, one record at a time: for blocks polars does not read the way
        the split did (stray quotes inside cells, say)."""
        assert self._cols is not None
        columns: dict[str, list[str | None]] = {o.name: [] for _, o in self._cols}
        for raw in records:
            text = raw.decode("utf-8", "replace")
            try:
                cells = next(csv.reader(io.StringIO(text, newline="")), [])
            except csv.Error:
                cells = []
            for i, o in self._cols:
                columns[o.name].append(cells[i] or None if i < len(cells) else None)
        return pl.DataFrame(columns, schema={name: pl.String for name in columns})


def _first_bytes(data: bytes, size: int, reason: str, of: str) -> Records:
    """A rejected record of ``size`` bytes at the start of ``data``, cut to what a dead letter
    keeps (``of``: how the reason names the size it was cut from, if at all)."""
    cut = min(size, DEAD_LETTER_RAW_BYTES)
    if cut < size:
        reason = f"{reason}; the first {cut:,}{of} bytes are kept"
    one = np.zeros(1, np.int64)
    return Records(data, one, one + cut, one, reason)


def _row_bytes(data: bytes, starts: np.ndarray, ends: np.ndarray) -> RecordBytes:
    """The records ``data[starts[i]:ends[i]]``, less the CR of a CRLF line end."""
    if b"\r" in data:
        a = np.frombuffer(data, np.uint8)
        ends = ends - ((ends > starts) & (a[np.maximum(ends - 1, 0)] == _CR))
    return RecordBytes(data, starts, ends)


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"
