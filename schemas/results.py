"""Results: what a step produced for the sinks, as columns per table (names from tables.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eddy.schemas.packing import packed_columns
from eddy.schemas.records import DeadLetter

__all__ = ["Results", "dead_letter_results"]


@dataclass
class Results:
    """What one batch produced: table -> columns, and counters for the run statistics."""

    tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    counters: dict[str, float] = field(default_factory=dict)  # added up across batches
    gauges: dict[str, float] = field(default_factory=dict)  # the latest value wins
    # (wall-clock ms an input batch was read, events of it processed): end-to-end latency
    ingest: list[tuple[int, int]] = field(default_factory=list)

    def __getstate__(self) -> dict[str, object]:
        # results of another process's shards cross to the DuckDB writer pickled: string
        # columns as one string each (schemas/packing.py)
        state = dict(self.__dict__)
        state["tables"] = {t: packed_columns(cols) for t, cols in self.tables.items()}
        return state

    def add(self, table: str, columns: dict[str, Any]) -> None:
        """Rows for ``table`` (column name -> values); an empty dict adds nothing."""
        if not columns:
            return
        n = len(next(iter(columns.values())))
        if n == 0:
            return
        self.tables.setdefault(table, {})
        prev = self.tables[table]
        if not prev:
            self.tables[table] = dict(columns)  # never grow a dict another Results holds
        else:  # same table twice in one batch: concatenate column-wise
            for k, v in columns.items():
                prev[k] = _concat(prev[k], v)

    def count(self, name: str, value: float) -> None:
        if value:
            self.counters[name] = self.counters.get(name, 0) + value

    def rows(self, table: str) -> int:
        cols = self.tables.get(table)
        return len(next(iter(cols.values()))) if cols else 0

    @classmethod
    def combine(cls, parts: list[Results]) -> Results:
        """One Results from many, each column concatenated once (not pairwise)."""
        out = cls()
        chunks: dict[str, dict[str, list[Any]]] = {}
        for r in parts:
            for t, cols in r.tables.items():
                dst = chunks.setdefault(t, {})
                for k, v in cols.items():
                    dst.setdefault(k, []).append(v)
            for k, v in r.counters.items():
                out.count(k, v)
            out.gauges.update(r.gauges)
            out.ingest.extend(r.ingest)
        for t, cols in chunks.items():
            out.tables[t] = {k: _concat_all(v) for k, v in cols.items()}
        return out

    def merge(self, other: Results) -> None:
        for t, cols in other.tables.items():
            self.add(t, cols)
        for k, v in other.counters.items():
            self.count(k, v)
        self.gauges.update(other.gauges)
        self.ingest.extend(other.ingest)


def _concat(a: Any, b: Any) -> Any:
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray) and a.ndim == b.ndim:
        return np.concatenate([a, b])
    return list(a) + list(b)


def _concat_all(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if all(isinstance(p, np.ndarray) for p in parts) and len({p.ndim for p in parts}) == 1:
        return np.concatenate(parts)
    return [x for p in parts for x in p]


def dead_letter_results(dead: list[DeadLetter], received_ms: int) -> Results:
    """Dead letters as rows of the ``dead_letters`` table."""
    out = Results()
    if dead:
        n = len(dead)
        out.add(
            "dead_letters",
            {
                "dead_letter_id": np.array([d.dead_letter_id for d in dead], dtype=object),
                "source": np.array([d.source for d in dead], dtype=object),
                "position": np.array([d.position for d in dead], dtype=np.int64),
                "stream": np.array([d.stream for d in dead], dtype=object),
                "raw": [d.raw for d in dead],
                "reason": np.array([d.reason for d in dead], dtype=object),
                "received_at": np.full(n, received_ms, dtype=np.int64),
            },
        )
        out.count("dead_letters", n)
    return out
