"""A Parquet file read a chunk at a time into JSON lines, its typed values as they are.

Why a module: Parquet is read by polars' streaming engine, not split by hand like CSV, and
its values are typed, so they are not converted by the declared type as CSV cells are.

``pl.scan_parquet(path).select(declared columns).slice(rows done)`` read with
``collect_batches`` (polars' streaming engine: memory stays bounded by a few morsels, the
slice skips whole row groups by their row counts, one pass over the file). The row count
comes from the footer, so ``lag`` is the rows left.

Parquet values are typed and encoded as they are (a string stays a JSON string even in a float
field, so the decoder names the wrong type); nulls are absent; a timestamp with a zone in the
time field becomes epoch ms, one without a zone its text (rejected for lacking a zone); NaN and
infinities are written as ``NaN`` / ``Infinity``, which the decoder rejects exactly as in JSONL.

A Parquet row has no text of its own, so the reader hands on no raw records
(``RawBatch.raw`` is None): the JSON line is the best raw we have, and a dead letter keeps it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

import orjson
import polars as pl

from eddy.sources.base import dead_line
from eddy.sources.files.json_lines import NEEDS_ESCAPE, join_lines, json_encoded, json_text

if TYPE_CHECKING:
    from polars._typing import PolarsDataType

    from eddy.sources.files.json_lines import Out, Parts

__all__ = ["PARQUET_ROWS", "ParquetRows"]

PARQUET_ROWS = 65_536  # rows per Parquet chunk (at least batch_rows)


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


def _typed_value(df: pl.DataFrame, out: Out, dtype: PolarsDataType) -> Parts:
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
        return json_text(c, out, not df.select(c.str.contains(NEEDS_ESCAPE).any()).item())
    if _json_safe(dtype):
        return [json_encoded(c, out)]
    # e.g. a list of binary values: rare, one value at a time
    texts = [
        None if v is None else orjson.dumps(v, default=_plain_json).decode()
        for v in df.get_column(out.name).to_list()
    ]
    return [pl.lit(pl.Series(texts, dtype=pl.String))]


def _typed_lines(df: pl.DataFrame, outs: Sequence[Out]) -> list[bytes]:
    """JSON lines of a frame of typed (Parquet) columns; a column missing from ``df`` is
    absent in every row, nulls are absent."""
    reasons: dict[int, str] = {}
    values: list[tuple[Out, Parts, bool]] = []
    for out in outs:
        if out.name not in df.columns:
            continue
        dtype = df.schema[out.name]
        if dtype == pl.Binary:
            df, dtype = _binary_as_text(df, out, reasons), pl.String()
        if dtype != pl.Null:
            values.append((out, _typed_value(df, out, dtype), True))
    lines = join_lines(df, values)
    for r, reason in reasons.items():
        lines[r] = dead_line(reason, lines[r])
    return lines


def _binary_as_text(df: pl.DataFrame, out: Out, reasons: dict[int, str]) -> pl.DataFrame:
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


class ParquetRows:
    """The rows of one Parquet file as JSON lines, a chunk at a time, after ``skip`` rows."""

    def __init__(
        self, path: str, outs: tuple[Out, ...], skip: int = 0, chunk_rows: int = PARQUET_ROWS
    ) -> None:
        self._path = path
        self._outs = outs
        self._skip = skip
        self._chunk_rows = chunk_rows
        self._it: Iterator[pl.DataFrame] | None = None
        self._present: tuple[Out, ...] = ()
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

    def read(self) -> tuple[list[bytes], None]:
        """JSON lines of the next chunk of rows; no raw records (the line is the best raw)."""
        if self._it is None:
            self._it = self._start()
        df = next(self._it, None)
        if df is None:
            self.done = True
            self.close()
            return [], None
        return _typed_lines(df, self._present), None

    def close(self) -> None:
        self._it = None
