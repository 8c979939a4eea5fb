"""`EventBatch`: a columnar micro-batch of the valid events of one declared stream.

Every source ends up here: decoded JSON lines (files, Kafka, simulators) and CSV/Parquet frames.
The engine's stages read columns by the names the pipeline spec declares; nothing in this
module knows a scenario.

Column dtypes by declared type (``schemas.spec.FIELD_TYPES``):

=================  ===================================================================
``string``         object array of ``str`` (``None`` where an optional value is absent)
``float``, ``int`` float64 (NaN where an optional value is absent; ints are exact to 2**53)
``bool``           bool, or float64 0/1/NaN when the field is optional without a default
``list[string]``   object array of tuples of ``str`` (``None`` where absent)
=================  ===================================================================

>>> import numpy as np
>>> b = EventBatch("s", np.array([1, 2]), np.array(["a", "b"], dtype=object),
...                {"x": np.array([0.5, 1.5])})
>>> len(b), b.take(np.array([False, True])).columns["x"].tolist()
(2, [1.5])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from eddy.schemas.packing import packed, packed_columns

__all__ = ["EventBatch", "constant_column"]


def constant_column(value: object, n: int) -> np.ndarray:
    """An object column of ``n`` times ``value`` (one shared object: ``np.full`` would convert a
    string into a new object per row, about 20x slower).

    >>> constant_column("pick", 3)
    array(['pick', 'pick', 'pick'], dtype=object)
    """
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


def _no_ingest() -> np.ndarray:
    return np.empty(0, dtype=np.int64)


@dataclass
class EventBatch:
    """Valid events of ``stream``, rows in arrival order.

    ``ts`` event time (epoch ms, int64); ``ids`` the event id (the stream's ``id`` field as a
    string, or ``"<source>#<position>"`` when the stream declares none); ``columns`` the
    declared fields; ``ingest_ns`` when each row was read (wall clock, for latency; zeros when
    unknown).
    """

    stream: str
    ts: np.ndarray
    ids: np.ndarray
    columns: dict[str, np.ndarray]
    ingest_ns: np.ndarray = field(default_factory=_no_ingest)

    def __post_init__(self) -> None:
        n = len(self.ts)
        if len(self.ingest_ns) != n:
            self.ingest_ns = np.zeros(n, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ts)

    def __getstate__(self) -> dict[str, object]:
        # string columns pickle as one string each (schemas/packing.py): a batch crossing to
        # another process is pickled, and pickle's own way writes a column string by string
        state = dict(self.__dict__)
        state["ids"] = packed(self.ids)
        state["columns"] = packed_columns(self.columns)
        return state

    def take(self, index: np.ndarray) -> EventBatch:
        """Rows ``index`` (a bool mask or positions), in that order."""
        return EventBatch(
            self.stream,
            self.ts[index],
            self.ids[index],
            {k: v[index] for k, v in self.columns.items()},
            self.ingest_ns[index],
        )

    @staticmethod
    def concat(batches: Sequence[EventBatch]) -> EventBatch:
        """One batch from several of the same stream, rows in order."""
        if len(batches) == 1:
            return batches[0]
        first = batches[0]
        if any(b.stream != first.stream for b in batches):
            raise ValueError("EventBatch.concat: batches of different streams")
        return EventBatch(
            first.stream,
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.ids for b in batches]),
            {k: np.concatenate([b.columns[k] for b in batches]) for k in first.columns},
            np.concatenate([b.ingest_ns for b in batches]),
        )

    @staticmethod
    def empty(stream: str, columns: dict[str, np.dtype]) -> EventBatch:
        """A batch without rows whose columns have the given dtypes."""
        return EventBatch(
            stream,
            np.empty(0, np.int64),
            np.empty(0, object),
            {k: np.empty(0, dtype=d) for k, d in columns.items()},
        )
