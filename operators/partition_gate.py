"""Start-up gate for multi-partition input: no partition may appear after the others ran ahead.

The engine's watermark is the minimum over the input partitions it has SEEN (see
``operators.windows.watermark``): once every partition has delivered a batch, a slow partition
holds the watermark back and a fast one cannot make it late. The trap is the start: if partition
0 delivers a few batches before partition 2's first one arrives (its consumer connects a moment
later, or it lives on another cluster process), the watermark has already moved past partition
2's first events and they are reported late.

:class:`PartitionGate` closes that gap. It holds every batch until each ``expected`` partition
(those known to have data when the run started) has delivered one, then releases what it holds:
the first row of every partition (so every partition is registered before any of them moves
the watermark), then the rest per partition in arrival order, merged across partitions by
event time; from then on it passes batches straight through. It also opens when
``timeout_s`` of wall-clock time passed since it first held something (a partition that was
expected but never delivers must not stall the pipeline; its late events are then reported,
not lost) and at the end of the input
(:meth:`release_all`). State is plain and picklable; a restored gate keeps its state (once
open, it stays open across restarts).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from eddy.operators.sharding import Piece

__all__ = ["PartitionGate"]


class PartitionGate:
    """Holds pieces of batches (:class:`~eddy.operators.sharding.Piece`) until every
    ``expected`` partition has delivered one."""

    def __init__(self, expected: Iterable[int], timeout_s: float = 5.0) -> None:
        if not timeout_s > 0:
            raise ValueError(f"PartitionGate timeout_s: expected seconds > 0, got {timeout_s!r}")
        self.expected = frozenset(int(p) for p in expected)
        self.timeout_s = float(timeout_s)
        self._waiting = set(self.expected)
        self._held: list[Piece] = []
        self._since: float | None = None  # wall-clock time of the first held item

    @property
    def is_open(self) -> bool:
        return not self._waiting

    @property
    def held(self) -> int:
        return len(self._held)

    def deadline(self) -> float | None:
        """Wall-clock time (epoch seconds) at which the gate opens anyway, if it holds items."""
        if self.is_open or self._since is None:
            return None
        return self._since + self.timeout_s

    def push(self, items: list[Piece], now_s: float) -> list[Piece]:
        """Take a list of pieces; return those that may be processed now, in processing
        order."""
        if self.is_open:
            return items
        if items and self._since is None:
            self._since = now_s
        self._held.extend(items)
        self._waiting.difference_update(p.partition for p in items)
        if self._waiting and self._since is not None and now_s - self._since >= self.timeout_s:
            self._waiting.clear()
        return self.release_all() if self.is_open else []

    def release_all(self) -> list[Piece]:
        """Open the gate and return everything held.

        First the FIRST ROW of every partition (earliest first), so each partition is
        registered in the watermark before any of them advances it (a whole first batch could
        span more than the allowed lateness); then the rest, per partition in arrival order,
        merged across partitions by the first event time of each partition's next batch. A
        shard's pieces are cut where the whole batches are, so every shard releases the same
        sequence."""
        self._waiting.clear()
        held, self._held, self._since = self._held, [], None
        queues: dict[int, list[Piece]] = {}
        for item in held:
            queues.setdefault(item.partition, []).append(item)
        out: list[Piece] = []
        for p in sorted(queues, key=lambda k: (_first_ts(queues[k][0]), k)):
            piece = queues[p][0]
            if len(piece.ts_all) > 1:
                first = np.zeros(len(piece.ts_all), dtype=bool)
                first[0] = True
                head, queues[p][0] = piece.split(first)
                out.append(head)
            else:
                out.append(queues[p].pop(0))
                if not queues[p]:
                    del queues[p]
        for q in queues.values():
            q.reverse()  # pop() from the end = arrival order
        while queues:
            p = min(queues, key=lambda k: (_first_ts(queues[k][-1]), k))
            out.append(queues[p].pop())
            if not queues[p]:
                del queues[p]
        return out


def _first_ts(piece: Piece) -> int:
    return int(piece.ts_all[0]) if len(piece.ts_all) else np.iinfo(np.int64).min
