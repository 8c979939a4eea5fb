"""`AheadGuard`: an event dated far ahead of its stream waits for others to confirm the jump.

One record with a wrong clock (a year 2099, a timestamp in microseconds) would move its
stream's watermark so far that every later event is late. The wall clock catches such a record
in a live stream (:class:`~eddy.schemas.decode.TimeBound`); a replay of past data needs a bound
relative to the stream itself, and one that still lets a stream resume after a real gap.

Per input partition the guard keeps the stream's position: the latest event time it let
through. An event more than ``max_ahead_ms`` past it is *suspect* and held back: it neither
moves the watermark nor reaches any stage. Then, in arrival order:

- ``confirm`` suspects in a row (counting the first) confirm the jump: the held events go on,
  in their order, and the position moves to them (a stream that resumed after a gap, or a
  stream whose events are further apart than ``max_ahead``: they are only delayed);
- ``confirm`` events within the bound, before that, refute it: the held events are refused
  (the engine writes them to ``dead_letters`` with how far ahead they were).

At the end of a bounded input, held events go on (nothing is left for them to harm). Every
decision depends only on the partition's event times in arrival order, never on how the input
was cut into batches or shards: every shard sees every batch's event times and decides alike.

>>> import numpy as np
>>> from eddy.operators.sharding import whole
>>> from eddy.schemas.batch import EventBatch
>>> def batch(ts):
...     ids = np.array([f"e{t}" for t in ts], dtype=object)
...     return whole(0, EventBatch("s", np.array(ts), ids, {}))
>>> guard = AheadGuard(max_ahead_ms=100, confirm=2)
>>> go, refused = guard.admit(batch([10, 20, 9_999, 30, 40]))
>>> go[0].batch.ts.tolist(), [(r.piece.batch.ts.tolist(), r.ahead_ms.tolist()) for r in refused]
([10, 20, 30, 40], [([9999], [9979])])
>>> go, refused = guard.admit(batch([5_000, 5_010, 5_020]))  # a gap, then the stream goes on
>>> [t for p in go for t in p.batch.ts.tolist()], refused
([5000, 5010, 5020], [])
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from eddy.operators.sharding import Piece
from eddy.operators.windows.watermark import NO_TIME

__all__ = ["AheadGuard", "Refused"]

_ACCEPT, _HELD, _REFUSED, _CONFIRMED = 0, 1, 2, 3


@dataclass(frozen=True)
class Refused:
    """A piece of held events that were refuted: ``ahead_ms`` per event of ``piece.batch``, how
    far past its partition's position it was; ``position`` that position per event."""

    piece: Piece
    ahead_ms: np.ndarray
    position: np.ndarray


@dataclass
class _Partition:
    position: int = NO_TIME
    held: list[Piece] = field(default_factory=list)
    held_position: list[np.ndarray] = field(default_factory=list)  # per whole-batch row
    suspects: int = 0
    normals: int = 0


class AheadGuard:
    """See the module docstring. ``snapshot``/``restore`` through pickle (plain state)."""

    def __init__(self, max_ahead_ms: int, confirm: int = 3) -> None:
        if not max_ahead_ms > 0:
            raise ValueError(f"AheadGuard.max_ahead_ms: expected > 0, got {max_ahead_ms!r}")
        if not confirm >= 1:
            raise ValueError(f"AheadGuard.confirm: expected >= 1, got {confirm!r}")
        self.max_ahead_ms = max_ahead_ms
        self.confirm = confirm
        self._parts: dict[tuple[str, int], _Partition] = {}

    @property
    def holding(self) -> int:
        """Events held back now (over every partition, whole batches' rows)."""
        return sum(sum(len(p.ts_all) for p in st.held) for st in self._parts.values())

    def admit(self, piece: Piece) -> tuple[list[Piece], list[Refused]]:
        """What goes on now (earlier held pieces first, then this piece's rows), and what is
        refused."""
        st = self._parts.setdefault((piece.stream, piece.partition), _Partition())
        ts = piece.ts_all
        if not len(ts):
            return [piece], []
        if not st.held and self._all_within(st, ts):
            st.position = max(st.position, int(ts.max()))
            return [piece], []
        return self._slow(st, piece)

    def release_all(self) -> list[Piece]:
        """End of input: every held piece, to go on."""
        out = [p for st in self._parts.values() for p in st.held]
        for st in self._parts.values():
            st.held, st.held_position, st.suspects, st.normals = [], [], 0, 0
        return out

    # -- internals ---------------------------------------------------------------------------
    def _all_within(self, st: _Partition, ts: np.ndarray) -> bool:
        prior = np.empty(len(ts), dtype=np.int64)
        prior[0] = st.position
        np.maximum.accumulate(ts[:-1], out=prior[1:])
        np.maximum(prior, st.position, out=prior)
        # the first event of a partition has nothing to be ahead of
        return bool(((prior == NO_TIME) | (ts <= prior + self.max_ahead_ms)).all())

    def _slow(self, st: _Partition, piece: Piece) -> tuple[list[Piece], list[Refused]]:
        """Row by row, in arrival order (only batches with a suspect come here). What goes on
        goes in the order it was let through: events within the bound as they came, a
        confirmed run at the event that confirmed it, as a cut after any row would have it."""
        ts = piece.ts_all.tolist()
        status = np.zeros(len(ts), dtype=np.int8)
        row_position = np.zeros(len(ts), dtype=np.int64)
        run: list[int] = []  # this batch's rows in the held run
        confirmed: list[tuple[int, list[Piece], list[int]]] = []  # (row, earlier held, run)
        refused: list[Refused] = []
        for i, t in enumerate(ts):
            ahead = st.position != NO_TIME and t > st.position + self.max_ahead_ms
            if not st.held and not run:
                if not ahead:
                    st.position = max(st.position, t)
                    continue
                st.suspects, st.normals = 0, 0
            if ahead:
                status[i], row_position[i] = _HELD, st.position
                run.append(i)
                st.suspects += 1
                if st.suspects >= self.confirm:  # the stream moved: the run goes on
                    tops = [p.top for p in st.held] + [ts[j] for j in run]
                    st.position = max(st.position, *tops)
                    status[run] = _CONFIRMED
                    confirmed.append((i, st.held, list(run)))
                    self._clear(st, run)
                continue
            st.position = max(st.position, t)  # within the bound: goes on at once
            st.normals += 1
            if st.normals >= self.confirm:  # the stream stayed: the run is refused
                refused += [
                    _refused(p, pos) for p, pos in zip(st.held, st.held_position, strict=True)
                ]
                status[run] = _REFUSED
                self._clear(st, run)
        go = _in_order(piece, status, confirmed)
        bad = status == _REFUSED
        if bad.any():
            refused.append(_refused(piece.split(bad)[0], row_position[bad]))
        held = status == _HELD
        if held.any():
            st.held.append(piece.split(held)[0])
            st.held_position.append(row_position[held])
        return go, refused

    @staticmethod
    def _clear(st: _Partition, run: list[int]) -> None:
        st.held, st.held_position = [], []
        st.suspects = st.normals = 0
        run.clear()


def _in_order(
    piece: Piece, status: np.ndarray, confirmed: list[tuple[int, list[Piece], list[int]]]
) -> list[Piece]:
    """The pieces that go on, in the order they were let through."""
    accept = status == _ACCEPT
    if not confirmed and accept.all():
        return [piece]
    go: list[Piece] = []
    rows = np.arange(len(status))
    start = 0
    for at, earlier, run in confirmed:
        before = accept & (rows >= start) & (rows < at)
        if before.any():
            go.append(piece.split(before)[0])
        go += earlier
        mask = np.zeros(len(status), dtype=bool)
        mask[run] = True
        go.append(piece.split(mask)[0])
        start = at + 1
    rest = accept & (rows >= start)
    if rest.any():
        go.append(piece.split(rest)[0])
    return go


def _refused(piece: Piece, position_all: np.ndarray) -> Refused:
    """``position_all``: the position per whole-batch row of ``piece``; narrowed to the rows
    this shard holds."""
    rows = piece.rows
    position = position_all if rows is None else position_all[rows]
    return Refused(piece, piece.batch.ts - position, position)
