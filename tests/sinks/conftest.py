"""Batch builders for the DuckDB sink tests: columns come from schemas.tables, values are seeded."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from eddy.schemas.tables import TABLES

T0 = 1_700_000_000_000  # epoch ms


def make_batch(table: str, n: int, *, seed: int = 0, start: int = 0) -> dict[str, Any]:
    """A valid batch for any table: key columns unique per row (start..start+n), other
    columns seeded random values of the right kind."""
    rng = np.random.default_rng(seed)
    t = TABLES[table]
    cols: dict[str, Any] = {}
    ids = np.arange(start, start + n)
    for c in t.columns:
        typ = c.arrow_type
        in_pk = c.name in t.primary_key
        if pa.types.is_timestamp(typ):
            cols[c.name] = (T0 + ids * 1000) if in_pk else T0 + rng.integers(0, 10**6, n)
        elif pa.types.is_list(typ):
            if pa.types.is_floating(typ.value_type):
                cols[c.name] = rng.random((n, 4))
            else:
                cols[c.name] = [[f"d{j}" for j in range(i % 3)] for i in range(n)]
        elif pa.types.is_string(typ):
            cols[c.name] = np.array([f"{c.name}-{i}" for i in ids]) if in_pk else ["x"] * n
        elif pa.types.is_binary(typ):
            cols[c.name] = [f"raw {i}".encode() for i in ids]
        elif pa.types.is_boolean(typ):
            cols[c.name] = rng.random(n) < 0.5
        elif pa.types.is_integer(typ):
            cols[c.name] = ids.astype(np.int64) if in_pk else rng.integers(0, 5, n)
        else:
            cols[c.name] = rng.random(n)
    return cols
