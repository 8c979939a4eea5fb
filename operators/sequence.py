"""`Resequencer`: a partition's batches back in their order after being decoded in parallel.

A partition is read by one worker, which numbers its batches ``(token, 0), (token, 1), ...``
(``token`` names that reader: a restart numbers from 0 under a new one) before they are
spread over the workers to be decoded. A shard then receives them in any order and puts
them back in sequence: a batch waits until every earlier one of its partition has come.

>>> import numpy as np
>>> from eddy.operators.sharding import whole
>>> from eddy.schemas.batch import EventBatch
>>> def piece(seq):
...     return whole(0, EventBatch("s", np.array([seq]), np.array([str(seq)], object), {}),
...                  ("run-a", seq))
>>> r = Resequencer()
>>> [p.order[1] for p in r.push([piece(1), piece(2)])], [p.order[1] for p in r.push([piece(0)])]
([], [0, 1, 2])
"""

from __future__ import annotations

from eddy.operators.sharding import Piece

__all__ = ["Resequencer"]


class Resequencer:
    """See the module docstring. Pieces without an ``order`` pass straight through. State is
    plain and picklable (at an epoch's end nothing waits: every earlier batch has come)."""

    def __init__(self) -> None:
        self._next: dict[int, tuple[str, int]] = {}
        self._waiting: dict[int, dict[tuple[str, int], Piece]] = {}

    @property
    def waiting(self) -> int:
        return sum(len(w) for w in self._waiting.values())

    def push(self, pieces: list[Piece]) -> list[Piece]:
        """The pieces that are next in their partition, in order."""
        out: list[Piece] = []
        for piece in pieces:
            if piece.order is None:
                out.append(piece)
                continue
            part = piece.partition
            waiting = self._waiting.setdefault(part, {})
            waiting[piece.order] = piece
            nxt = self._next.get(part)
            token, seq = piece.order
            if nxt is None or (token != nxt[0] and seq == 0):  # a new reader starts from 0
                out.extend(waiting.pop(k) for k in sorted(k for k in waiting if k[0] != token))
                nxt = (token, 0)
            while nxt in waiting:
                out.append(waiting.pop(nxt))
                nxt = (nxt[0], nxt[1] + 1)
            self._next[part] = nxt
        return out
