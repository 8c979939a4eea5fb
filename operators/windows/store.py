"""Per-key event store: one columnar arena, a sorted segment per key.

Every key owns a slot ``[off, off + cap)`` of three parallel arrays (event time, admission
bound, metric values). Its live events are the sorted (by event time, then arrival) segment
``[beg, beg + n)`` inside that slot. Inserting is an insertion sort from the end (events are
mostly in order, so it usually moves nothing); expiring is advancing ``beg``. When a slot is
full, the segment is moved to the slot's front, or the key gets a new slot of twice the size at
the end of the arena; the arena is compacted when holes exceed half of it. Memory is therefore
bounded by (keys x events per key inside the retention horizon), never by the stream length.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["KeyStore"]


@njit(cache=True)
def _make_room(need, s_ts, s_adm, s_val, off, cap, beg, n, used):  # pragma: no cover - numba
    """Give every key ``k`` room for ``need[k]`` more events; returns the new ``used``.

    The arena must already have room for the worst case (see :meth:`KeyStore.reserve`).
    """
    for k in range(len(need)):
        a = need[k]
        if a == 0 or beg[k] + n[k] + a <= off[k] + cap[k]:
            continue
        if n[k] + a <= cap[k]:
            dst = off[k]
        else:
            c = max(8, cap[k])
            while c < 2 * (n[k] + a):
                c *= 2
            dst = used
            used += c
            off[k] = dst
            cap[k] = c
        src = beg[k]
        for j in range(n[k]):
            s_ts[dst + j] = s_ts[src + j]
            s_adm[dst + j] = s_adm[src + j]
            s_val[dst + j, :] = s_val[src + j, :]
        beg[k] = dst
    return used


@njit(cache=True)
def _expire(cutoff, keep_from, s_ts, beg, n):  # pragma: no cover - numba
    """Drop, per key, events with ``ts <= cutoff`` unless ``ts >= keep_from[k]``."""
    for k in range(len(beg)):
        lim = min(cutoff, keep_from[k] - 1)
        b = beg[k]
        e = b + n[k]
        while b < e and s_ts[b] <= lim:
            b += 1
        n[k] = e - b
        beg[k] = b


@njit(cache=True)
def _pack(s_ts, s_adm, s_val, beg, n, caps, d_ts, d_adm, d_val, off):  # pragma: no cover
    pos = 0
    for k in range(len(beg)):
        off[k] = pos
        for j in range(n[k]):
            d_ts[pos + j] = s_ts[beg[k] + j]
            d_adm[pos + j] = s_adm[beg[k] + j]
            d_val[pos + j, :] = s_val[beg[k] + j, :]
        pos += caps[k]
    return pos


class KeyStore:
    """The arena and the per-key slot table (all numpy, so snapshots are plain arrays)."""

    def __init__(self, n_metrics: int) -> None:
        self.n_metrics = n_metrics
        self.ts = np.zeros(0, dtype=np.int64)
        self.adm = np.zeros(0, dtype=np.int64)
        self.val = np.zeros((0, n_metrics), dtype=np.float64)
        self.off = np.zeros(0, dtype=np.int64)
        self.cap = np.zeros(0, dtype=np.int64)
        self.beg = np.zeros(0, dtype=np.int64)
        self.n = np.zeros(0, dtype=np.int64)
        self.keep_from = np.zeros(0, dtype=np.int64)
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

    def _grow_arena(self, size: int) -> None:
        if size <= len(self.ts):
            return
        new = max(size, int(len(self.ts) * 1.5) + 1024)
        ts = np.empty(new, dtype=np.int64)
        adm = np.empty(new, dtype=np.int64)
        val = np.empty((new, self.n_metrics), dtype=np.float64)
        ts[: self.used] = self.ts[: self.used]
        adm[: self.used] = self.adm[: self.used]
        val[: self.used] = self.val[: self.used]
        self.ts, self.adm, self.val = ts, adm, val

    def reserve(self, need: np.ndarray) -> None:
        """Make room for ``need[k]`` new events of key ``k`` (int64 array, one per key)."""
        short = self.beg + self.n + need > self.off + self.cap
        if not short.any():
            return
        if self.used > 2 * int(self.cap.sum()) + 4096:
            self.compact()
            short = self.beg + self.n + need > self.off + self.cap
        worst = np.maximum(4 * (self.n[short] + need[short]), self.cap[short]) + 8
        self._grow_arena(self.used + int(worst.sum()))
        self.used = int(
            _make_room(
                need, self.ts, self.adm, self.val, self.off, self.cap, self.beg, self.n, self.used
            )
        )

    def expire(self, cutoff: int) -> None:
        _expire(np.int64(cutoff), self.keep_from, self.ts, self.beg, self.n)

    def compact(self, slack: bool = True) -> None:
        """Repack every key's live events at the front of a fresh arena."""
        if slack:
            caps = np.where(self.n > 0, np.maximum(8, 2 * self.n), 0).astype(np.int64)
            caps = np.maximum(caps, np.minimum(self.cap, 8))
        else:
            caps = self.n.copy()
        total = int(caps.sum())
        ts = np.empty(total, dtype=np.int64)
        adm = np.empty(total, dtype=np.int64)
        val = np.empty((total, self.n_metrics), dtype=np.float64)
        off = np.empty_like(self.off)
        _pack(self.ts, self.adm, self.val, self.beg, self.n, caps, ts, adm, val, off)
        self.ts, self.adm, self.val = ts, adm, val
        self.off, self.beg, self.cap, self.used = off, off.copy(), caps, total

    def memory_bytes(self) -> int:
        arrays = (self.ts, self.adm, self.val, self.off, self.cap, self.beg, self.n, self.keep_from)
        return int(sum(a.nbytes for a in arrays))

    def snapshot(self) -> dict[str, np.ndarray]:
        """Live events only, packed: size is proportional to the live events."""
        order = np.repeat(self.beg, self.n) + (
            np.arange(int(self.n.sum())) - np.repeat(np.cumsum(self.n) - self.n, self.n)
        )
        return {
            "ts": self.ts[order],
            "adm": self.adm[order],
            "val": self.val[order],
            "n": self.n.copy(),
            "keep_from": self.keep_from.copy(),
        }

    @classmethod
    def restore(cls, n_metrics: int, snap: dict[str, np.ndarray]) -> KeyStore:
        st = cls(n_metrics)
        n = np.asarray(snap["n"], dtype=np.int64)
        st.ts = np.array(snap["ts"], dtype=np.int64)
        st.adm = np.array(snap["adm"], dtype=np.int64)
        st.val = np.array(snap["val"], dtype=np.float64).reshape(-1, n_metrics)
        st.n = n.copy()
        st.off = (np.cumsum(n) - n).astype(np.int64)
        st.beg = st.off.copy()
        st.cap = n.copy()
        st.keep_from = np.array(snap["keep_from"], dtype=np.int64)
        st.used = int(n.sum())
        return st
