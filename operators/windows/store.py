"""Per-key event store: one columnar arena, a time-sorted segment per key, running sums.

Every key owns a slot ``[off, off + cap)`` of parallel arrays: event time ``ts``, admission
bound ``adm`` (see :mod:`.hopping`), metric values ``val[m]``, inclusive running sums
``pre[:, m, :]`` (count of non-missing values, sum, and the sum and sum of squares of ``x - ref``
with a per-key reference ``ref``) and min/max summaries of aligned blocks of ``BLOCK`` slots.
The key's live events are the sorted (event time, then arrival) segment ``[beg, beg + n)``;
``pb`` holds the running sums just before ``beg``. Range sums over ``[lo, hi)`` are therefore
two reads, and a range min/max costs ``O(BLOCK + (hi - lo) / BLOCK)``.

Inserting is an insertion sort from the end (streams are mostly in order, so usually nothing
moves); expiring advances ``beg``. A full slot is moved to its own front, or to a new slot of
1.5 times the size at the end of the arena; holes are closed in place (no new allocation)
when they exceed a fifth of it. Running sums are restarted (``ref`` = the mean of the live
values) every ``max(64, 2 n)`` inserts of a key, so their rounding error stays that of a short
sum. Memory is bounded by keys x live events per key (those inside the retention horizon),
not by the stream length.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["BLOCK", "KeyStore"]

BLOCK = 16
_NPRE = 4  # count, sum, shifted sum, shifted sum of squares


@njit(cache=True)
def slot_size(need):  # pragma: no cover - numba
    """Slot for ``need`` events: 1.5x plus 4 (slots need not align with blocks)."""
    return need + need // 2 + 4


@njit(cache=True, inline="always")
def blocks_from(p, end, s_val, bmin, bmax):  # pragma: no cover - numba
    """Recompute the block summaries covering positions ``[p, end)``."""
    n_m = s_val.shape[0]
    b0 = p // BLOCK
    b1 = (end - 1) // BLOCK
    for blk in range(b0, b1 + 1):
        a = blk * BLOCK
        z = min(a + BLOCK, end)
        for m in range(n_m):
            mn = np.inf
            mx = -np.inf
            for j in range(a, z):
                x = s_val[m, j]
                if x < mn:
                    mn = x
                if x > mx:
                    mx = x
            bmin[m, blk] = mn
            bmax[m, blk] = mx


@njit(cache=True)
def _blocks_all(beg, n, s_val, bmin, bmax):  # pragma: no cover - numba
    for k in range(len(beg)):
        if n[k] > 0:
            blocks_from(beg[k], beg[k] + n[k], s_val, bmin, bmax)


@njit(cache=True)
def _make_room(need, s_ts, s_adm, s_val, pre, bmin, bmax, off, cap, beg, n, used):
    # pragma: no cover - numba
    """Give every key ``k`` room for ``need[k]`` more events; returns the new ``used``."""
    for k in range(len(need)):
        a = need[k]
        if a == 0 or beg[k] + n[k] + a <= off[k] + cap[k]:
            continue
        if n[k] + a <= cap[k] and 4 * (n[k] + a) >= 3 * cap[k] - 16:
            dst = off[k]  # enough room once the expired front is reclaimed
        else:
            c = slot_size(n[k] + a)
            dst = used
            used += c
            off[k] = dst
            cap[k] = c
        src = beg[k]
        for j in range(n[k]):
            s_ts[dst + j] = s_ts[src + j]
            s_adm[dst + j] = s_adm[src + j]
            s_val[:, dst + j] = s_val[:, src + j]
            pre[dst + j] = pre[src + j]
        beg[k] = dst
        if n[k] > 0:
            blocks_from(dst, dst + n[k], s_val, bmin, bmax)
    return used


@njit(cache=True)
def _compact_inplace(order, s_ts, s_adm, s_val, pre, bmin, bmax, off, cap, beg, n):
    # pragma: no cover - numba
    """Slide every key's segment down to close the holes (keys visited by slot offset, so
    every move is to the left and never overwrites a segment not yet moved); returns
    the new ``used``."""
    pos = 0
    for q in range(len(order)):
        k = order[q]
        c = min(cap[k], n[k] + n[k] // 2 + 4)
        src = beg[k]
        for j in range(n[k]):
            s_ts[pos + j] = s_ts[src + j]
            s_adm[pos + j] = s_adm[src + j]
            s_val[:, pos + j] = s_val[:, src + j]
            pre[pos + j] = pre[src + j]
        off[k] = pos
        beg[k] = pos
        cap[k] = c
        if n[k] > 0:
            blocks_from(pos, pos + n[k], s_val, bmin, bmax)
        pos += c
    return pos


@njit(cache=True)
def _expire(cutoff, keep_from, s_ts, pre, pb, beg, n):  # pragma: no cover - numba
    """Drop, per key, events with ``ts <= cutoff`` unless ``ts >= keep_from[k]``."""
    for k in range(len(beg)):
        lim = min(cutoff, keep_from[k] - 1)
        b = beg[k]
        e = b + n[k]
        while b < e and s_ts[b] <= lim:
            b += 1
        if b > beg[k]:
            pb[k] = pre[b - 1]
        n[k] = e - b
        beg[k] = b


def _slots(n: np.ndarray) -> np.ndarray:
    return np.where(n > 0, n + n // 2 + 4, 0).astype(np.int64)


class KeyStore:
    """The arena and the per-key slot table (all numpy, so snapshots are plain arrays)."""

    def __init__(self, n_metrics: int) -> None:
        m = n_metrics
        self.n_metrics = m
        self.ts = np.zeros(0, dtype=np.int64)
        self.adm = np.zeros(0, dtype=np.int64)
        self.val = np.zeros((m, 0))
        self.pre = np.zeros((0, m, _NPRE))
        self.bmin = np.zeros((m, 0))
        self.bmax = np.zeros((m, 0))
        self.off = np.zeros(0, dtype=np.int64)
        self.cap = np.zeros(0, dtype=np.int64)
        self.beg = np.zeros(0, dtype=np.int64)
        self.n = np.zeros(0, dtype=np.int64)
        self.keep_from = np.zeros(0, dtype=np.int64)
        self.since = np.zeros(0, dtype=np.int64)
        self.pb = np.zeros((0, m, _NPRE))
        self.ref = np.zeros((0, m))
        self.used = 0

    @property
    def n_keys(self) -> int:
        return len(self.off)

    def add_keys(self, count: int) -> None:
        z = np.zeros(count, dtype=np.int64)
        self.off = np.concatenate([self.off, z + self.used])
        self.cap = np.concatenate([self.cap, z])
        self.beg = np.concatenate([self.beg, z + self.used])
        self.n = np.concatenate([self.n, z])
        self.keep_from = np.concatenate([self.keep_from, z + 2**62])
        self.since = np.concatenate([self.since, z])
        self.pb = np.concatenate([self.pb, np.zeros((count, self.n_metrics, _NPRE))])
        self.ref = np.concatenate([self.ref, np.full((count, self.n_metrics), np.nan)])

    def _alloc(self, size: int) -> None:
        """Resize the arena to ``size`` slots (a multiple of BLOCK), keeping ``[0, used)``."""
        m, u = self.n_metrics, self.used
        ts = np.empty(size, dtype=np.int64)
        adm = np.empty(size, dtype=np.int64)
        val = np.empty((m, size))
        pre = np.empty((size, m, _NPRE))
        ts[:u], adm[:u], val[:, :u], pre[:u] = (
            self.ts[:u], self.adm[:u], self.val[:, :u], self.pre[:u]
        )  # fmt: skip
        nb = size // BLOCK + 1
        bmin = np.empty((m, nb))
        bmax = np.empty((m, nb))
        ub = min(nb, self.bmin.shape[1])
        bmin[:, :ub], bmax[:, :ub] = self.bmin[:, :ub], self.bmax[:, :ub]
        self.ts, self.adm, self.val, self.pre, self.bmin, self.bmax = ts, adm, val, pre, bmin, bmax

    def reserve(self, need: np.ndarray) -> None:
        """Make room for ``need[k]`` new events of key ``k`` (int64 array, one per key)."""
        short = self.beg + self.n + need > self.off + self.cap
        if not short.any():
            return
        if self.used > 1.25 * int(self.cap.sum()) + 4096:  # holes: close them in place
            self.close_holes()
            short = self.beg + self.n + need > self.off + self.cap
        want = self.n[short] + need[short]
        moved = (want > self.cap[short]) | (4 * want < 3 * self.cap[short] - 16)
        size = self.used + int(_slots(want[moved]).sum())
        if size > len(self.ts):
            self._alloc(max(size, int(len(self.ts) * 1.5) + 1024) // BLOCK * BLOCK + BLOCK)
        self.used = int(
            _make_room(
                need, self.ts, self.adm, self.val, self.pre, self.bmin, self.bmax,
                self.off, self.cap, self.beg, self.n, self.used,
            )
        )  # fmt: skip

    def close_holes(self) -> None:
        """Slide all segments down over the holes left by moved slots (no allocation)."""
        order = np.argsort(self.off, kind="stable")
        self.used = int(
            _compact_inplace(
                order, self.ts, self.adm, self.val, self.pre, self.bmin, self.bmax,
                self.off, self.cap, self.beg, self.n,
            )
        )  # fmt: skip

    def expire(self, cutoff: int) -> None:
        _expire(np.int64(cutoff), self.keep_from, self.ts, self.pre, self.pb, self.beg, self.n)

    def _packed_order(self) -> np.ndarray:
        starts = np.repeat(self.beg, self.n)
        within = np.arange(int(self.n.sum())) - np.repeat(np.cumsum(self.n) - self.n, self.n)
        return starts + within

    def _load(self, n: np.ndarray, caps: np.ndarray, ts, adm, val, pre) -> None:
        """Lay out packed live events (key order) into fresh slots of ``caps``."""
        off = (np.cumsum(caps) - caps).astype(np.int64)
        self.used = 0
        self.bmin = np.zeros((self.n_metrics, 0))
        self.bmax = np.zeros((self.n_metrics, 0))
        self._alloc(int(caps.sum()) // BLOCK * BLOCK + BLOCK)
        dst = np.repeat(off, n) + (np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n))
        self.ts[dst], self.adm[dst], self.val[:, dst], self.pre[dst] = ts, adm, val, pre
        self.off, self.beg, self.cap, self.n = off, off.copy(), caps, n.copy()
        self.used = int(caps.sum())
        _blocks_all(self.beg, self.n, self.val, self.bmin, self.bmax)

    def compact(self) -> None:
        """Repack every key's live events into fresh slots (see :func:`slot_size`)."""
        o = self._packed_order()
        caps = _slots(self.n)
        self._load(self.n.copy(), caps, self.ts[o], self.adm[o], self.val[:, o], self.pre[o])

    def memory_bytes(self) -> int:
        arrays = (
            self.ts, self.adm, self.val, self.pre, self.bmin, self.bmax, self.off, self.cap,
            self.beg, self.n, self.keep_from, self.since, self.pb, self.ref,
        )  # fmt: skip
        return int(sum(a.nbytes for a in arrays))

    def snapshot(self) -> dict[str, np.ndarray]:
        """Live events only, packed, with their running sums as they are (restore is exact)."""
        o = self._packed_order()
        snap = {"ts": self.ts[o], "adm": self.adm[o], "val": self.val[:, o]}
        snap["pre"] = self.pre[o]
        for name in ("n", "keep_from", "since", "pb", "ref"):
            snap[name] = getattr(self, name).copy()
        return snap

    @classmethod
    def restore(cls, n_metrics: int, snap: dict[str, np.ndarray]) -> KeyStore:
        st = cls(n_metrics)
        n = np.asarray(snap["n"], dtype=np.int64)
        for name in ("keep_from", "since", "pb", "ref"):
            setattr(st, name, np.array(snap[name]))
        caps = _slots(n)
        st._load(n, caps, snap["ts"], snap["adm"], snap["val"], snap["pre"])
        return st
