"""CSV text cells as JSON values, by the declared type of their field.

Why a module: what a cell becomes in the JSON line (a number, a bool, a list, a string or
nothing) is decided here, column by column with polars expressions; the reader in
:mod:`.csv_rows` only finds and parses the records.

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
* ``string`` and a string id: the text as is;
* an int id: a JSON integer when the text is one, or when it parses as a 64-bit integer
  (`` 7 ``, ``+7``, ``007`` are ``7``); anything else (``7.0``, ``x7``) as text, which the
  decoder rejects with ``field 'x': expected an integer id, got the string '7.0'``;
* the time field: a number as a number (epoch ms), anything else as text, so ISO-8601 with a
  zone passes and a timestamp without one gets the decoder's reason.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson
import polars as pl

from eddy.sources.files.json_lines import (
    NEEDS_ESCAPE,
    Out,
    Parts,
    join_lines,
    json_encoded,
    json_text,
)

__all__ = ["csv_lines"]

_JSON_NUMBER = r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$"
_JSON_INTEGER = r"^-?(?:0|[1-9][0-9]*)$"
# a list cell the plain `;` split cannot take as is (spaces to strip, empty items, a JSON array)
_LIST_NOT_PLAIN = r'^\s|\s$|\s;|;\s|^;|;;|;$|^\[|[\x00-\x1f"\\]'
_BOOL_WORDS = {"true": "true", "1": "true", "false": "false", "0": "false"}
_BOOL_FAST = {**_BOOL_WORDS, "True": "true", "TRUE": "true", "False": "false", "FALSE": "false"}


def _csv_fast(out: Out) -> pl.Expr:
    """True when the whole column takes the cheap conversion."""
    c = pl.col(out.name)
    if out.kind in ("float", "int", "time"):
        return c.str.contains(_JSON_NUMBER).all()
    if out.kind == "int id":
        return c.str.contains(_JSON_INTEGER).all()
    if out.kind == "bool":
        return c.is_in(list(_BOOL_FAST)).fill_null(True).all()
    if out.kind == "list[string]":
        return ~c.str.contains(_LIST_NOT_PLAIN).any()
    return ~c.str.contains(NEEDS_ESCAPE).any()


def _csv_value(out: Out, fast: bool) -> Parts:
    """The JSON value of a text column by the field's declared type (null: absent)."""
    c = pl.col(out.name)
    kind = out.kind
    if kind in ("string", "id"):
        return json_text(c, out, fast)
    if kind == "int id":
        if fast:
            return [c]
        as_int = c.str.strip_chars().cast(pl.Int64, strict=False)
        return [
            pl.when(c.str.contains(_JSON_INTEGER))
            .then(c)
            .when(as_int.is_not_null())
            .then(as_int.cast(pl.String))
            .otherwise(json_encoded(c, out))
        ]
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
            .otherwise(json_encoded(s if kind == "time" else c, out))
        ]
    if kind == "bool":
        if fast:
            return [c.replace_strict(_BOOL_FAST, default=None)]
        s = c.str.strip_chars()
        b = s.str.to_lowercase().replace_strict(_BOOL_WORDS, default=None)
        return [pl.when(b.is_not_null()).then(b).when(s != "").then(json_encoded(c, out))]
    # list[string]
    if fast:
        return ['["', c.str.replace_all(";", '","', literal=True), '"]']
    s = c.str.strip_chars()
    items = s.str.split(";").list.eval(
        pl.element().str.strip_chars().filter(pl.element().str.strip_chars() != "")
    )
    return [pl.when((s != "") & ~s.str.starts_with("[")).then(json_encoded(items, out))]


def _json_list(text: str) -> str:
    """A list cell written as JSON: the array, or the text itself if it is not one."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = text
    if not isinstance(value, list):
        value = text
    return orjson.dumps(value).decode()


def csv_lines(df: pl.DataFrame, outs: Sequence[Out]) -> list[bytes]:
    """JSON lines of a frame of text columns named by ``outs`` (nulls are empty cells)."""
    fast = df.select([_csv_fast(o).alias(o.name) for o in outs]).row(0)
    values: list[tuple[Out, Parts, bool]] = []
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
    return join_lines(df, values)
