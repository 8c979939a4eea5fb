"""Shards: a stable hash of a routing value, and a batch cut into its shards' pieces.

Keyed state is split into a fixed number of shards by a hash of the key that does not depend
on the process (CRC-32 of the key's UTF-8 text, mixed; not Python's salted ``hash``): every
process of a cluster, and every restart, sends a key to the same shard. A batch is cut into one
:class:`Piece` per shard, empty pieces included: every shard sees every batch's event times,
so its clocks (watermarks, outcome holds) are the ones an unsharded run has, while it holds
only its own keys' rows.

>>> import numpy as np
>>> from eddy.schemas.batch import EventBatch
>>> keys = np.array(["a", "b", "a", "c"], dtype=object)
>>> batch = EventBatch("s", np.array([5, 1, 7, 3]), keys, {"k": keys})
>>> pieces = cut(0, batch, shard_index(keys, 2), 2)
>>> [p.batch.ids.tolist() for p in pieces], [p.top for p in pieces]
([['b', 'c'], ['a', 'a']], [7, 7])
>>> pieces[0].prior().tolist()   # the largest time of the whole batch before each row
[5, 7]
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from eddy.operators.windows.watermark import NO_TIME
from eddy.schemas.batch import EventBatch

__all__ = ["Piece", "cut", "shard_index", "whole"]


def shard_index(values: np.ndarray, shards: int) -> np.ndarray:
    """The shard (0 .. shards-1) of every value (strings: a stage key or an id)."""
    n = len(values)
    if shards == 1:
        return np.zeros(n, dtype=np.int64)
    rows = values.tolist()
    distinct = list(dict.fromkeys(rows))
    crc = np.fromiter(
        map(zlib.crc32, map(str.encode, map(str, distinct))), np.uint64, len(distinct)
    )
    # CRC-32 is linear: the low bits of similar short keys agree too often; a multiplicative
    # (Fibonacci) step spreads them before the modulo
    mixed = ((crc * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)) >> np.uint64(8)
    codes = (mixed % np.uint64(shards)).astype(np.int64)
    if len(distinct) == n:  # every value once (ids): already in row order
        return codes
    return np.fromiter(
        map(dict(zip(distinct, codes.tolist(), strict=True)).__getitem__, rows), np.int64, n
    )


@dataclass(frozen=True)
class Piece:
    """One shard's rows of a batch of ``partition``: ``batch`` the rows, in order; ``rows``
    their positions in the whole batch (None: the piece is the whole batch); ``ts_all`` the
    whole batch's event times; ``order`` the batch's place in its partition when batches are
    decoded on several workers (:class:`~eddy.operators.sequence.Resequencer`)."""

    partition: int
    batch: EventBatch
    rows: np.ndarray | None
    ts_all: np.ndarray
    order: tuple[str, int] | None = None

    @property
    def stream(self) -> str:
        return self.batch.stream

    @property
    def top(self) -> int:
        """The whole batch's largest event time."""
        return int(self.ts_all.max())

    @property
    def low(self) -> int:
        return int(self.ts_all.min())

    def prior(self) -> np.ndarray:
        """Per row: the largest event time of the whole batch before it (``NO_TIME``)."""
        run = np.empty(len(self.ts_all), dtype=np.int64)
        run[0] = NO_TIME
        np.maximum.accumulate(self.ts_all[:-1], out=run[1:])
        return run if self.rows is None else run[self.rows]

    def upto(self) -> np.ndarray:
        """Per row: the largest event time of the whole batch up to it, itself included."""
        run = np.maximum.accumulate(self.ts_all)
        return run if self.rows is None else run[self.rows]

    def split(self, due_all: np.ndarray) -> tuple[Piece, Piece]:
        """The pieces of the whole batch's rows ``due_all`` (a mask over it) and of the rest."""
        return self._part(due_all), self._part(~due_all)

    def _part(self, mask_all: np.ndarray) -> Piece:
        if self.rows is None:
            batch = self.batch.take(mask_all)
            return Piece(self.partition, batch, None, self.ts_all[mask_all], self.order)
        mine = mask_all[self.rows]
        renumber = np.cumsum(mask_all) - 1
        return Piece(
            self.partition,
            self.batch.take(mine),
            renumber[self.rows[mine]],
            self.ts_all[mask_all],
            self.order,
        )


def whole(partition: int, batch: EventBatch, order: tuple[str, int] | None = None) -> Piece:
    """The piece that is the whole batch (one shard)."""
    return Piece(partition, batch, None, batch.ts, order)


def cut(
    partition: int,
    batch: EventBatch,
    shard: np.ndarray,
    shards: int,
    order: tuple[str, int] | None = None,
) -> list[Piece]:
    """One piece per shard (``shard``: each row's shard), empty ones included."""
    if shards == 1:
        return [whole(partition, batch, order)]
    by_shard = np.argsort(shard, kind="stable")
    bounds = np.searchsorted(shard[by_shard], np.arange(shards + 1))
    out = []
    for s in range(shards):
        rows = by_shard[bounds[s] : bounds[s + 1]]
        out.append(Piece(partition, batch.take(rows), rows, batch.ts, order))
    return out
