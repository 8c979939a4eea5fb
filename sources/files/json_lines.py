"""The JSON line of each row, built from per-field fragments over whole columns.

Why a module: CSV and Parquet rows become the same kind of line (the stream's time, id and
declared fields, keys in declaration order, absent values left out), so the keys and the
joining of fragments are shared by :mod:`.csv_cells` and :mod:`.parquet`.

Lines are built with polars expressions over whole columns (per field a ``"name":value``
fragment, joined by ``concat_str``); rows are touched one by one in Python only where a
conversion needs it (a list cell written as a JSON array, a Parquet binary value that is not
UTF-8, a row the CSV split rejected).
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
import polars as pl

from eddy.schemas.spec import StreamSpec

__all__ = ["NEEDS_ESCAPE", "Out", "Parts", "join_lines", "json_encoded", "json_text", "outputs"]

# a character a JSON string must escape
NEEDS_ESCAPE = r'[\x00-\x1f"\\]'


@dataclass(frozen=True)
class Out:
    """One key of the JSON line: the time, the id or a declared field."""

    name: str
    kind: str  # time, id (a string id), int id, string, float, int, bool, list[string]

    @property
    def key(self) -> str:
        return orjson.dumps(self.name).decode() + ":"


def outputs(stream: StreamSpec) -> tuple[Out, ...]:
    outs = [Out(stream.time, "time")]
    if stream.id is not None:
        outs.append(Out(stream.id, "int id" if stream.id_type == "int" else "id"))
    outs.extend(Out(f.name, f.type) for f in stream.fields)
    return tuple(outs)


# A field's JSON value is a list of parts (polars expressions and literal text) joined per
# row; ``exact`` says the value is null exactly where the cell is, so a column without nulls
# needs no per-row test for absence.
Parts = list[pl.Expr | str]


def json_text(e: pl.Expr, out: Out, plain: bool) -> Parts:
    """The text of ``e`` as a JSON string; ``plain``: no character needs escaping."""
    return ['"', e, '"'] if plain else [json_encoded(e, out)]


def json_encoded(e: pl.Expr, out: Out) -> pl.Expr:
    """The JSON of each value of ``e`` by polars' JSON writer, null where ``e`` is."""
    enc = pl.struct(e.alias(out.name)).struct.json_encode()
    return pl.when(e.is_not_null()).then(enc.str.strip_prefix("{" + out.key).str.strip_suffix("}"))


def _concat(parts: Parts, *, ignore_nulls: bool = False) -> pl.Expr:
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


def join_lines(df: pl.DataFrame, values: list[tuple[Out, Parts, bool]]) -> list[bytes]:
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
        parts: Parts = ["{"]
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
