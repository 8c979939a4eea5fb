"""CSV and Parquet files as a Bytewax source: batches of rows, judged like JSONL lines.

Why this shape: a stream may read ``csv:PATH`` or ``parquet:PATH`` (a glob may match several
files, one partition each). Every row becomes one JSON line holding the stream's time, id and
declared fields, handed on as a :class:`~eddy.sources.base.RawBatch` exactly like a JSONL line,
so ``schemas.decode.decode_lines`` applies the SAME checks and writes the SAME dead-letter
reasons whatever the file format. A bad cell never drops a row silently and never crashes the
reader: it is one dead letter naming the field and what was wrong.

Reading is batched; no file is ever loaded whole:

* **CSV**: the file is read in blocks of 4 MiB. numpy finds the record ends (newlines outside
  quotes, so a quoted cell may span lines) and counts each record's cells in a few vectorised
  passes over the block; polars then parses the block's records with every column read as
  text (no schema inference: one bad value cannot turn a whole numeric column into strings or
  nulls). We split records ourselves because polars' own batched CSV reading can neither tell
  a short row from a row with empty cells (both come back as nulls) nor carry on after a
  malformed row; with the split, a row with the wrong number of cells, bytes that are not
  UTF-8 or a quote that never closes is one dead letter with that reason, and the rows around
  it survive. Resuming after ``n`` rows re-splits the file from the start (no parsing) and
  skips them.
* **Parquet**: ``pl.scan_parquet(path).select(declared columns).slice(rows done)`` read with
  ``collect_batches`` (polars' streaming engine: memory stays bounded by a few morsels, the
  slice skips whole row groups by their row counts, one pass over the file). The row count
  comes from the footer, so ``lag`` is the rows left.

Lines are built with polars expressions over whole columns (per field a ``"name":value``
fragment, joined by ``concat_str``); rows are touched one by one in Python only where a
conversion needs it (a list cell written as a JSON array, a Parquet binary value that is not
UTF-8, a row the CSV split rejected).

CSV cells are text and become JSON by the field's declared type (surrounding whitespace is
ignored except in string fields):

* an empty cell (``,,`` or ``,"",``; for types other than string also a cell of spaces): the
  field is absent, so ``optional`` / ``default`` apply;
* ``float``, ``int``: a JSON number when the text is one (kept as written) or parses as one
  (``+3``, ``.5``, `` 12 ``); otherwise the raw text as a JSON string, which the decoder
  rejects with ``field 'x': expected a number, got a string``;
* ``bool``: ``true`` / ``false`` / ``1`` / ``0`` in any case; anything else stays a string
  (``field 'x': expected true/false, got 'maybe'``);
* ``list[string]``: a cell holding a JSON array (``["a","b"]``) is that array; any other
  cell is split on ``;`` with each item stripped and empty items dropped (``a; b;`` is
  ``["a", "b"]``); a cell starting with ``[`` that is not a JSON array stays a string;
* ``string`` and the id: the text as is;
* the time field: a number as a number (epoch ms), anything else as text, so ISO-8601 with a
  zone passes and a timestamp without one gets the decoder's reason.

Rows are numbered from 1 after the header; blank lines are skipped and not numbered. The
header names columns (surrounding whitespace ignored, the first of equal names wins); a
declared field without a column is absent in every row. Quotes follow RFC 4180: a cell holding
``,``, ``"`` or a newline is quoted and its ``"`` doubled. Rows the split rejects carry their
reason with ``sources.base.dead_line``.

Parquet values are typed and encoded as they are (a string stays a JSON string even in a float
field, so the decoder names the wrong type); nulls are absent; a timestamp with a zone in the
time field becomes epoch ms, one without a zone its text (rejected for lacking a zone); NaN and
infinities are written as ``NaN`` / ``Infinity``, which the decoder rejects exactly as in JSONL.

Speed (shared 2-core box; 1M rows of an id, an epoch-ms time and 6 typed fields: two strings,
a float, an int, a bool and a ``;`` list; ``batch_rows`` 4,000; reading and building lines,
not decoding): CSV about 1.3M rows/s (0.75 s for 49 MB), Parquet about 1.9M rows/s, a CSV with
1% bad numbers and some empty cells about 1.1M rows/s. ``decode_lines`` of the same rows runs
at about 0.3M rows/s, so the source is not what limits a pipeline.
"""

from __future__ import annotations

import csv
import glob
import io
import os
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import numpy as np
import orjson
import polars as pl
from bytewax.inputs import FixedPartitionedSource, StatefulSourcePartition

from eddy.schemas.spec import StreamSpec
from eddy.sources.base import RawBatch, dead_line

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

__all__ = ["KINDS", "FrameSource", "frame_rows"]

#: the file kinds this source reads
KINDS = ("csv", "parquet")

_BLOCK_BYTES = 4 << 20  # CSV bytes read at a time
_MAX_ROW_BYTES = 16 << 20  # a CSV record longer than this is cut and rejected
_PARQUET_ROWS = 65_536  # rows per Parquet chunk (at least batch_rows)
_NL, _QUOTE, _COMMA = 10, 34, 44

_JSON_NUMBER = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$"
_NEEDS_ESCAPE = r'[\x00-\x1f"\\]'
# a list cell the plain `;` split cannot take as is (spaces to strip, empty items, a JSON array)
_LIST_NOT_PLAIN = r'^\s|\s$|\s;|;\s|^;|;;|;$|^\[|[\x00-\x1f"\\]'
_BOOL_WORDS = {"true": "true", "1": "true", "false": "false", "0": "false"}
_BOOL_FAST = {**_BOOL_WORDS, "True": "true", "TRUE": "true", "False": "false", "FALSE": "false"}
_QUOTE_REASON = (
    'a quote (") opens a cell that is never closed; a cell holding a quote must be quoted '
    "and the quote doubled"
)


@dataclass(frozen=True)
class _Out:
    """One key of the JSON line: the time, the id or a declared field."""

    name: str
    kind: str  # time, id, string, float, int, bool, list[string]

    @property
    def key(self) -> str:
        return orjson.dumps(self.name).decode() + ":"


def _outputs(stream: StreamSpec) -> tuple[_Out, ...]:
    outs = [_Out(stream.time, "time")]
    if stream.id is not None:
        outs.append(_Out(stream.id, "id"))
    outs.extend(_Out(f.name, f.type) for f in stream.fields)
    return tuple(outs)


# -- building JSON lines from columns -------------------------------------------------------
# A field's JSON value is a list of parts (polars expressions and literal text) joined per
# row; ``exact`` says the value is null exactly where the cell is, so a column without nulls
# needs no per-row test for absence.
_Parts = list[pl.Expr | str]


def _text(e: pl.Expr, out: _Out, plain: bool) -> _Parts:
    """The text of ``e`` as a JSON string; ``plain``: no character needs escaping."""
    return ['"', e, '"'] if plain else [_encoded(e, out)]


def _encoded(e: pl.Expr, out: _Out) -> pl.Expr:
    """The JSON of each value of ``e`` by polars' JSON writer, null where ``e`` is."""
    enc = pl.struct(e.alias(out.name)).struct.json_encode()
    return pl.when(e.is_not_null()).then(enc.str.strip_prefix("{" + out.key).str.strip_suffix("}"))


def _concat(parts: _Parts, *, ignore_nulls: bool = False) -> pl.Expr:
    """One string expression of ``parts``; adjacent literal texts are merged."""
    exprs: list[pl.Expr] = []
    text = ""
    for p in parts:
        if isinstance(p, str):
            text += p
            continue
        if text:
            exprs.append(pl.lit(text))
            text = ""
        exprs.append(p)
    if text:
        exprs.append(pl.lit(text))
    return exprs[0] if len(exprs) == 1 else pl.concat_str(exprs, ignore_nulls=ignore_nulls)


def _join(df: pl.DataFrame, values: list[tuple[_Out, _Parts, bool]]) -> list[bytes]:
    """``{"name":value,...}`` per row of ``df`` as bytes, keys in declaration order; null
    values are left out.

    Columns whose value is never null in this frame are joined as they are (one flat
    concatenation: the fast case); the others carry their own comma (after them before the
    first never-null column, before them after it), which vanishes with them where null."""
    if not values:
        return [b"{}"] * df.height
    solid = [exact and df.get_column(o.name).null_count() == 0 for o, _, exact in values]
    if any(solid):
        anchor = solid.index(True)
        parts: _Parts = ["{"]
        for i, ((o, v, _), whole) in enumerate(zip(values, solid, strict=True)):
            if i < anchor:
                parts.append(_concat([o.key, *v, ","]))
            elif whole:
                parts += ["," * (i > anchor), o.key, *v]
            else:
                parts.append(_concat([",", o.key, *v]))
        line = _concat([*parts, "}"], ignore_nulls=True)
    else:  # every column has a gap somewhere: separators between the present ones
        frags = [_concat([o.key, *v]) for o, v, _ in values]
        line = _concat(["{", pl.concat_str(frags, separator=",", ignore_nulls=True), "}"])
    return df.select(line.cast(pl.Binary).alias("line")).to_series().to_list()


def _csv_fast(out: _Out) -> pl.Expr:
    """True when the whole column takes the cheap conversion."""
    c = pl.col(out.name)
    if out.kind in ("float", "int", "time"):
        return c.str.contains(_JSON_NUMBER).all()
    if out.kind == "bool":
        return c.is_in(list(_BOOL_FAST)).fill_null(True).all()
    if out.kind == "list[string]":
        return ~c.str.contains(_LIST_NOT_PLAIN).any()
    return ~c.str.contains(_NEEDS_ESCAPE).any()


def _csv_value(out: _Out, fast: bool) -> _Parts:
    """The JSON value of a text column by the field's declared type (null: absent)."""
    c = pl.col(out.name)
    kind = out.kind
    if kind in ("string", "id"):
        return _text(c, out, fast)
    if kind in ("float", "int", "time"):
        if fast:
            return [c]
        s = c.str.strip_chars()
        s = pl.when(s != "").then(s)
        f = s.cast(pl.Float64, strict=False)
        return [
            pl.when(c.str.contains(_JSON_NUMBER))
            .then(c)
            .when(f.is_finite())
            .then(f.cast(pl.String))
            .otherwise(_encoded(s if kind == "time" else c, out))
        ]
    if kind == "bool":
        if fast:
            return [c.replace_strict(_BOOL_FAST, default=None)]
        s = c.str.strip_chars()
        b = s.str.to_lowercase().replace_strict(_BOOL_WORDS, default=None)
        return [pl.when(b.is_not_null()).then(b).when(s != "").then(_encoded(c, out))]
    # list[string]
    if fast:
        return ['["', c.str.replace_all(";", '","', literal=True), '"]']
    s = c.str.strip_chars()
    items = s.str.split(";").list.eval(
        pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != "")
    )
    return [pl.when((s != "") & ~s.str.starts_with("[")).then(_encoded(items, out))]


def _json_list(text: str) -> str:
    """A list cell written as JSON: the array, or the text itself if it is not one."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    if not isinstance(value, list):
        value = text
    return orjson.dumps(value).decode()


def _csv_lines(df: pl.DataFrame, outs: Sequence[_Out]) -> list[bytes]:
    """JSON lines of a frame of text columns named by ``outs`` (nulls are empty cells)."""
    fast = df.select([_csv_fast(o).alias(o.name) for o in outs]).row(0)
    values: list[tuple[_Out, _Parts, bool]] = []
    for out, ok in zip(outs, fast, strict=True):
        value = _csv_value(out, bool(ok))
        if out.kind == "list[string]" and not ok:
            col = df.get_column(out.name)
            rows = col.str.strip_chars_start().str.starts_with("[").fill_null(False).arg_true()
            if rows.len():  # JSON arrays: parsed one by one
                extra: list[str | None] = [None] * df.height
                for r, text in zip(rows.to_list(), col.gather(rows).to_list(), strict=True):
                    extra[r] = _json_list(text.strip())
                value = [pl.coalesce(pl.lit(pl.Series(extra, dtype=pl.String)), *value)]
        exact = bool(ok) or out.kind in ("string", "id")  # text: null only where empty
        values.append((out, value, exact))
    return _join(df, values)


def _json_safe(dtype: PolarsDataType) -> bool:
    """Whether polars' JSON writer takes this dtype (it cannot write binary values)."""
    if dtype in (pl.Binary, pl.Object, pl.Unknown):
        return False
    if isinstance(dtype, pl.List | pl.Array):
        return _json_safe(dtype.inner)
    if isinstance(dtype, pl.Struct):
        return all(_json_safe(f.dtype) for f in dtype.fields)
    return True


def _plain_json(v: Any) -> Any:
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).decode("utf-8", "replace")
    return str(v)


def _typed_value(df: pl.DataFrame, out: _Out, dtype: PolarsDataType) -> _Parts:
    """The JSON value of a typed column, the value as it is (null: absent)."""
    c = pl.col(out.name)
    if isinstance(dtype, pl.Categorical | pl.Enum):
        c, dtype = c.cast(pl.String), pl.String()
    if out.kind == "time" and isinstance(dtype, pl.Datetime) and dtype.time_zone:
        return [c.dt.epoch("ms").cast(pl.String)]
    if dtype.is_integer() or dtype == pl.Boolean:
        return [c.cast(pl.String)]
    if dtype.is_float() or dtype.is_decimal():
        f = c.cast(pl.Float64)
        if df.select(f.is_finite().all()).item():
            return [f.cast(pl.String)]
        # JSON cannot hold them: written as the tokens the decoder rejects, as in JSONL
        return [
            pl.when(f.is_finite())
            .then(f.cast(pl.String))
            .when(f.is_nan())
            .then(pl.lit("NaN"))
            .when(f > 0)
            .then(pl.lit("Infinity"))
            .when(f < 0)
            .then(pl.lit("-Infinity"))
        ]
    if dtype == pl.String:
        return _text(c, out, not df.select(c.str.contains(_NEEDS_ESCAPE).any()).item())
    if _json_safe(dtype):
        return [_encoded(c, out)]
    # e.g. a list of binary values: rare, one value at a time
    texts = [
        None if v is None else orjson.dumps(v, default=_plain_json).decode()
        for v in df.get_column(out.name).to_list()
    ]
    return [pl.lit(pl.Series(texts, dtype=pl.String))]


def _typed_lines(df: pl.DataFrame, outs: Sequence[_Out]) -> list[bytes]:
    """JSON lines of a frame of typed (Parquet) columns; a column missing from ``df`` is
    absent in every row, nulls are absent."""
    reasons: dict[int, str] = {}
    values: list[tuple[_Out, _Parts, bool]] = []
    for out in outs:
        if out.name not in df.columns:
            continue
        dtype = df.schema[out.name]
        if dtype == pl.Binary:
            df, dtype = _binary_as_text(df, out, reasons), pl.String()
        if dtype != pl.Null:
            values.append((out, _typed_value(df, out, dtype), True))
    lines = _join(df, values)
    for r, reason in reasons.items():
        lines[r] = dead_line(reason, lines[r])
    return lines


def _binary_as_text(df: pl.DataFrame, out: _Out, reasons: dict[int, str]) -> pl.DataFrame:
    """A binary column as text; values that are not UTF-8 reject their row."""
    col = df.get_column(out.name)
    try:
        return df.with_columns(col.cast(pl.String))
    except pl.exceptions.PolarsError:
        pass
    texts: list[str | None] = []
    for r, v in enumerate(col.to_list()):
        try:
            texts.append(None if v is None else v.decode("utf-8"))
        except UnicodeDecodeError:
            reasons.setdefault(r, f"field {out.name!r}: not valid UTF-8")
            texts.append(None)
    return df.with_columns(pl.Series(out.name, texts, dtype=pl.String))


# -- CSV ------------------------------------------------------------------------------------
def _split(data: bytes, final: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The complete records of ``data`` (which starts at a record start): their starts, ends
    (the newline excluded) and cell counts. With ``final`` a last record without its newline
    counts too, unless it is inside an unclosed quote."""
    a = np.frombuffer(data, np.uint8)
    if b'"' in data:
        outside = (np.cumsum(a == _QUOTE, dtype=np.uint8) & 1) == 0
        ends = np.flatnonzero((a == _NL) & outside)
        seps = np.flatnonzero((a == _COMMA) & outside)
        open_at_end = not outside[-1]
    else:
        ends = np.flatnonzero(a == _NL)
        seps = np.flatnonzero(a == _COMMA)
        open_at_end = False
    if final and not open_at_end and (ends.size == 0 or ends[-1] != a.size - 1):
        ends = np.append(ends, a.size)
    starts = np.zeros_like(ends)
    starts[1:] = ends[:-1] + 1
    cells = np.searchsorted(seps, ends) - np.searchsorted(seps, starts) + 1
    return starts, ends, cells


@dataclass
class _Records:
    """Records of one block: ``data[starts[i]:ends[i]]``; ``reason`` rejects them all (a cut
    record: a quote never closed, or too long)."""

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    cells: np.ndarray
    reason: str | None = None


class _Reader(Protocol):
    done: bool
    total: int

    def read(self) -> list[bytes]: ...

    def close(self) -> None: ...


class _CsvRows:
    """The rows of one CSV file as JSON lines, a block at a time, after ``skip`` rows."""

    def __init__(self, path: str, outs: tuple[_Out, ...], skip: int = 0) -> None:
        self._path = path
        self._outs = outs
        self._skip = skip
        self._seen = 0  # data rows split so far, skipped ones included
        self._fh: BinaryIO | None = None
        self._buf = b""
        self._eof = False
        self._rest_of_line = False  # skipping the rest of a line cut for its length
        self._ncols = 0
        self._cols: list[tuple[int, _Out]] | None = None  # (column index, field); None: no header
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

    def _records(self) -> _Records | None:
        """The next complete records, or None at the end of the file."""
        while True:
            data = self._buf
            if data:
                starts, ends, cells = _split(data, self._eof)
                if ends.size:
                    self._buf = data[int(ends[-1]) + 1 :]
                    return _Records(data, starts, ends, cells)
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

    def _cut(self, data: bytes) -> _Records:
        """No record ends in ``data``: a quote is never closed, or a line is too long. Reject
        the first line (cut at ``_MAX_ROW_BYTES``, the rest of a longer line skipped) and go
        on after it with quotes reset."""
        nl = data.find(b"\n", 0, _MAX_ROW_BYTES)
        if nl >= 0:  # the newline is inside a quoted cell that does not close
            cut, reason = nl, _QUOTE_REASON
            self._buf = data[nl + 1 :]
        else:
            cut, reason = (
                min(len(data), _MAX_ROW_BYTES),
                f"row is longer than {_size(_MAX_ROW_BYTES)}",
            )
            nl = data.find(b"\n", cut)
            self._buf = data[nl + 1 :] if nl >= 0 else b""
            self._rest_of_line = nl < 0 and not self._eof
        one = np.zeros(1, np.int64)
        return _Records(data, one, one + cut, one, reason)

    def read(self) -> list[bytes]:
        """JSON lines of the next rows (maybe none); ``done`` is set after the last."""
        recs = self._records()
        if recs is None:
            self.done = True
            self.close()
            return []
        data, starts, ends = recs.data, recs.starts, recs.ends
        keep = np.ones(starts.size, bool)
        if recs.reason is None:  # blank lines: one cell and only whitespace
            for i in np.flatnonzero(recs.cells == 1).tolist():
                if not data[starts[i] : ends[i]].strip():
                    keep[i] = False
        idx = np.flatnonzero(keep)
        if self._cols is None:
            if not idx.size:
                return []
            self._header(data[starts[idx[0]] : ends[idx[0]]])
            idx = idx[1:]
        skip = min(max(self._skip - self._seen, 0), idx.size)
        self._seen += idx.size
        idx = idx[skip:]
        if not idx.size:
            return []
        if recs.reason is not None:
            return [dead_line(recs.reason, data[starts[0] : ends[0]])]
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
    ) -> list[bytes]:
        n = starts.size

        def record(i: int) -> bytes:
            return data[int(starts[i]) : int(ends[i])]

        if n == 1 or bool((starts[1:] == ends[:-1] + 1).all()):
            chunk = data[int(starts[0]) : int(ends[-1])]
        else:  # blank lines in between: leave them out
            chunk = b"\n".join(map(record, range(n)))
        reasons: dict[int, str] = {}
        utf8 = chunk.isascii() or _is_utf8(chunk)
        if not utf8:
            for i in range(n):
                if not _is_utf8(record(i)):
                    reasons[i] = "not valid UTF-8"
        for i in np.flatnonzero(cells != self._ncols).tolist():
            k = int(cells[i])
            reasons.setdefault(i, f"row has {k} cell{'s' * (k != 1)}, the header has {self._ncols}")
        assert self._cols is not None
        outs = [o for _, o in self._cols]
        if outs:
            df = self._parse(chunk, n, utf8)
            if df is None:
                df = self._parse_slowly(map(record, range(n)))
            lines = _csv_lines(df, outs)
        else:
            lines = [b"{}"] * n
        for i, reason in reasons.items():
            lines[i] = dead_line(reason, record(i))
        return lines

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


def _size(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n} bytes"


def _is_utf8(b: bytes) -> bool:
    try:
        b.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# -- Parquet --------------------------------------------------------------------------------
class _ParquetRows:
    """The rows of one Parquet file as JSON lines, a chunk at a time, after ``skip`` rows."""

    def __init__(
        self, path: str, outs: tuple[_Out, ...], skip: int = 0, chunk_rows: int = _PARQUET_ROWS
    ) -> None:
        self._path = path
        self._outs = outs
        self._skip = skip
        self._chunk_rows = chunk_rows
        self._it: Iterator[pl.DataFrame] | None = None
        self._present: tuple[_Out, ...] = ()
        self.done = False
        self.total = -1

    def _start(self) -> Iterator[pl.DataFrame]:
        lf = pl.scan_parquet(self._path)
        schema = lf.collect_schema()
        self.total = int(lf.select(pl.len()).collect().item())
        self._present = tuple(o for o in self._outs if o.name in schema)
        # at least one column, so that chunks count the rows even when no field is there
        cols = [o.name for o in self._present] or list(schema)[:1]
        if not cols:
            return iter(())
        batches = (
            lf.select(cols)
            .slice(self._skip)
            .collect_batches(chunk_size=self._chunk_rows, lazy=True)
        )
        return iter(batches)

    def read(self) -> list[bytes]:
        if self._it is None:
            self._it = self._start()
        df = next(self._it, None)
        if df is None:
            self.done = True
            self.close()
            return []
        return _typed_lines(df, self._present)

    def close(self) -> None:
        self._it = None


def frame_rows(path: str, kind: str, stream: StreamSpec, skip: int = 0) -> Iterator[bytes]:
    """Every row of one file as the JSON line the source emits (after ``skip`` rows); for
    tools and tests that want the lines without a dataflow."""
    reader = _reader(path, kind, _outputs(stream), skip, _PARQUET_ROWS)
    try:
        while not reader.done:
            yield from reader.read()
    finally:
        reader.close()


def _reader(path: str, kind: str, outs: tuple[_Out, ...], skip: int, chunk: int) -> _Reader:
    if kind == "csv":
        return _CsvRows(path, outs, skip)
    if kind == "parquet":
        return _ParquetRows(path, outs, skip, chunk)
    raise ValueError(f"file source: kind must be one of {', '.join(KINDS)}, got {kind!r}")


# -- Bytewax --------------------------------------------------------------------------------
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
        self._next = 0

    def _fill(self) -> int:
        """Read the next lines into ``_pending``; how many came."""
        if self._next:
            del self._pending[: self._next]
            self._next = 0
        try:
            lines = self._reader.read()
        except (OSError, pl.exceptions.PolarsError) as e:  # unreadable from here on: say why
            row = self._rows + len(self._pending) + 1
            lines = [dead_line(f"cannot read the file from row {row} on: {e}")]
            self._reader.done = True
            self._reader.close()
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
        take = self._pending[self._next : self._next + self._batch_rows]
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
        self._outs = _outputs(stream)
        self._batch_rows = batch_rows
        self._stop = stop
        self._base = partition_base

    def list_parts(self) -> list[str]:
        return list(self._paths)

    def build_part(self, step_id: str, for_part: str, resume_state: int | None) -> _FramePartition:
        rows_done = resume_state or 0
        chunk = max(self._batch_rows, _PARQUET_ROWS)
        return _FramePartition(
            _reader(for_part, self._kind, self._outs, rows_done, chunk),
            stream=self._stream.name,
            source=f"{self._kind}:{for_part}",
            partition=self._base + self._paths.index(for_part),
            batch_rows=self._batch_rows,
            stop=self._stop,
            rows_done=rows_done,
        )
