"""The fast path of batch decoding: msgspec parses and type-checks every line in C.

A batch either passes whole (every line one JSON object with every field of the right JSON
type, and every value within the limits ``schemas.events`` enforces) and comes back as columns,
or :func:`fast_columns` returns None and the caller decodes it the careful way, line by line
where needed, so each bad line gets a dead letter with its own reason. The fast path therefore
never decides what is bad; it only vouches for batches where nothing is, with the same values
the careful path would produce (``tests/schemas/test_fast_decode.py`` checks both agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

if TYPE_CHECKING:
    from eddy.schemas.events import FieldSpec

__all__ = ["fast_columns"]

# JSON types each field kind accepts (a time may be written as an integral float, as before)
_TYPES: dict[str, Any] = {"id": str, "str": str, "time": int | float, "float": float, "bool": bool}


@cache
def _decoder(specs: tuple[FieldSpec, ...]) -> msgspec.json.Decoder[Any]:
    fields = [(s.name, _TYPES[s.kind]) for s in specs]
    # gc=False: scalar fields only, so the records need no cycle tracking (less GC work)
    return msgspec.json.Decoder(msgspec.defstruct("Record", fields, gc=False))


def fast_columns(
    lines: Sequence[bytes],
    specs: tuple[FieldSpec, ...],
    max_bytes: int,
    max_str_len: int,
    ts_range: tuple[int, int],
) -> list[np.ndarray] | None:
    """One array per field of ``specs`` (the careful path's dtypes), or None when any line of
    the batch needs a closer look."""
    if not lines or max(map(len, lines)) > max_bytes:
        return None
    try:
        decode = _decoder(specs).decode
    except (TypeError, ValueError):  # a configured field name msgspec cannot use
        return None
    try:
        recs = list(map(decode, lines))
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError):
        return None
    columns: list[np.ndarray] = []
    for spec in specs:
        col = list(map(attrgetter(spec.name), recs))
        if spec.kind in ("id", "str"):
            lens = list(map(len, col))
            if max(lens) > max_str_len or (spec.kind == "id" and min(lens) == 0):
                return None
            values = np.empty(len(col), dtype=object)
            values[:] = col
            columns.append(values)
        elif spec.kind == "bool":
            columns.append(np.array(col, dtype=np.bool_))
        else:
            try:
                arr = np.array(col, dtype=np.float64)
            except OverflowError:  # an integer beyond float range: the careful path says so
                return None
            if spec.kind == "time":
                if not ((arr >= ts_range[0]) & (arr < ts_range[1])).all():
                    return None
                columns.append(arr.astype(np.int64))
            else:
                if not (np.isfinite(arr) & (arr >= spec.lo) & (arr <= spec.hi)).all():
                    return None
                columns.append(arr)
    return columns
