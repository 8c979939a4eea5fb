"""`RecentIds`: repeated event ids of one stream, found within a horizon of event time.

A stream that declares an ``id`` promises one event per id; producers that retry, or a source
read twice, break the promise. A repeat is not processed a second time (it would be counted
twice by windows and detectors, and its stored rows would silently lose the conflict on their
primary key): the engine writes it to ``dead_letters`` with the id, how far apart in event time
the two events were, and which occurrence it is.

Memory is bounded by time, not by stream length: ids live in two generations, each spanning
``horizon_ms`` of event time. When an event reaches the end of the current generation, the
older one is dropped whole, so an id is remembered for at least ``horizon_ms`` and at most twice
that. The rows of a batch between two generation ends (found by binary search when the batch
is in event-time order) cost two set operations and a dict update when none repeats, all in C.

>>> import numpy as np
>>> seen = RecentIds(horizon_ms=1_000)
>>> ids = np.array(["a", "b", "a"], dtype=object)
>>> rep = seen.repeats(ids, np.array([0, 10, 20]))
>>> rep.index.tolist(), rep.occurrence.tolist(), rep.first_ts.tolist()
([2], [2], [0])
>>> seen.repeats(np.array(["b"], dtype=object), np.array([5_000])).index.tolist()  # forgotten
[]
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

__all__ = ["RecentIds", "Repeats"]


@dataclass(frozen=True)
class Repeats:
    """Rows of a batch whose id was seen before: their ``index`` in the batch, which
    ``occurrence`` of the id each is (2 for the first repeat) and the ``first_ts`` event time of
    the id's first event."""

    index: np.ndarray
    occurrence: np.ndarray
    first_ts: np.ndarray

    FIELDS: ClassVar[tuple[str, ...]] = ("index", "occurrence", "first_ts")


class RecentIds:
    """See the module docstring."""

    def __init__(self, horizon_ms: int) -> None:
        if horizon_ms <= 0:
            raise ValueError(f"RecentIds.horizon_ms: expected an int > 0, got {horizon_ms!r}")
        self.horizon_ms = horizon_ms
        # id -> first event time, in the current and the previous generation; occurrences
        # only of the ids seen more than once (rare: kept apart, new ids are one C update)
        self._cur: dict[object, int] = {}
        self._old: dict[object, int] = {}
        self._count: dict[object, int] = {}
        self._cur_start: int | None = None

    def __setstate__(self, state: dict[str, object]) -> None:
        cur, old = state["_cur"], state["_old"]
        assert isinstance(cur, dict) and isinstance(old, dict)
        if "_count" not in state:  # [first time, occurrences] per id, as once stored
            state["_count"] = {k: v[1] for d in (old, cur) for k, v in d.items() if v[1] > 1}
            state["_cur"] = {k: v[0] for k, v in cur.items()}
            state["_old"] = {k: v[0] for k, v in old.items()}
        self.__dict__.update(state)

    def repeats(self, ids: np.ndarray, ts: np.ndarray) -> Repeats:
        """Remember the batch's ids (rows in arrival order) and return its repeats."""
        lst = ids.tolist()
        times = ts.tolist()
        if not times:
            return _none()
        if self._cur_start is None:
            self._cur_start = times[0]
        found: list[Repeats] = []
        start = 0
        # rows between two generation ends are one piece: set operations on the whole piece
        for end in [*self._generation_ends(ts), len(times)]:
            if end > start:
                rep = self._piece(lst[start:end], times[start:end])
                if len(rep.index):
                    found.append(Repeats(rep.index + start, rep.occurrence, rep.first_ts))
            if end < len(times):
                self._rotate(times[end])
            start = end
        if not found:
            return _none()
        return Repeats(*(np.concatenate([getattr(r, f) for r in found]) for f in Repeats.FIELDS))

    def _generation_ends(self, ts: np.ndarray) -> list[int]:
        """The rows at which the current generation ends (each starts the next one)."""
        assert self._cur_start is not None
        horizon, limit = self.horizon_ms, self._cur_start + self.horizon_ms
        ends: list[int] = []
        if len(ts) < 2 or bool(np.all(ts[1:] >= ts[:-1])):  # in order: a binary search each
            i = int(np.searchsorted(ts, limit, side="left"))
            while i < len(ts):
                ends.append(i)
                i = int(np.searchsorted(ts, int(ts[i]) + horizon, side="left"))
            return ends
        for i, t in enumerate(ts.tolist()):
            if t >= limit:
                ends.append(i)
                limit = t + horizon
        return ends

    def _piece(self, lst: list[object], times: list[int]) -> Repeats:
        """Rows of one generation: new ids in one update, else row by row."""
        if (
            len(set(lst)) == len(lst)
            and self._cur.keys().isdisjoint(lst)
            and self._old.keys().isdisjoint(lst)
        ):  # the common case: every id new
            self._cur.update(zip(lst, times, strict=True))
            return _none()
        index: list[int] = []
        occurrence: list[int] = []
        first: list[int] = []
        for i, (key, t) in enumerate(zip(lst, times, strict=True)):
            seen = self._cur.get(key)
            if seen is None:
                seen = self._old.get(key)
            if seen is None:
                self._cur[key] = t
                continue
            count = self._count[key] = self._count.get(key, 1) + 1
            index.append(i)
            occurrence.append(count)
            first.append(seen)
        return Repeats(
            np.array(index, dtype=np.int64),
            np.array(occurrence, dtype=np.int64),
            np.array(first, dtype=np.int64),
        )

    def _rotate(self, t: int) -> None:
        if self._cur_start is None:
            self._cur_start = t
        elif t >= self._cur_start + self.horizon_ms:
            self._old, self._cur = self._cur, {}
            # a jump of more than a generation leaves nothing worth remembering
            if t >= self._cur_start + 2 * self.horizon_ms:
                self._old = {}
            if self._count:  # forgotten ids start counting again
                self._count = {k: c for k, c in self._count.items() if k in self._old}
            self._cur_start = t

    def __len__(self) -> int:
        return len(self._cur) + len(self._old)


def _none() -> Repeats:
    empty = np.empty(0, dtype=np.int64)
    return Repeats(empty, empty, empty)
