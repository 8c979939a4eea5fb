"""The delayed-reward join: decisions wait in keyed, columnar state for their outcome.

Time is event time only (the caller passes outcome timestamps and the watermark), so the join
is deterministic whatever the wall clock does.

Rules (``age`` = outcome time - decision time):

- ``add_decisions`` stores each decision (context, arm, propensity, event time) under its id.
  An id that is already pending, or was resolved recently, is not stored twice (one decision
  per request); the returned mask says which rows were accepted.
- ``match``: an outcome whose decision is pending and ``age <= ttl_ms`` matches; the decision
  leaves the state and its row is returned for learning. Otherwise the outcome is returned as
  unmatched with a reason: ``"expired"`` (its decision already timed out, or the outcome is
  older than the TTL allows — that decision then stays pending and will time out),
  ``"duplicate outcome"`` (its decision was already matched, possibly earlier in the same
  batch) or ``"unknown decision"`` (never seen, or resolved so long ago that it was forgotten).
- ``expire(now_ms)``: every pending decision with ``ts < now_ms - ttl_ms`` times out and is
  returned with ``default_reward``, ordered by (decision time, arrival order).

Memory: pending decisions live in growing numpy arrays (compacted when more than half the rows
are dead) indexed by a dict id -> row. Resolved ids are remembered as tombstones (to tell
"duplicate"/"expired" from "unknown") until their decision time is ``2 * ttl_ms`` behind the
watermark (purged once per TTL of event time, so at most ``3 * ttl`` of them are kept).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

__all__ = ["Expired", "Matched", "RewardJoin"]


@dataclass(frozen=True)
class Matched:
    """Outcomes that found their decision (``index``: their rows in the ``match`` input)."""

    X: np.ndarray
    arms: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    decision_ids: np.ndarray
    decision_ts: np.ndarray
    index: np.ndarray
    unmatched_index: np.ndarray
    unmatched_reason: np.ndarray  # str per unmatched row


@dataclass(frozen=True)
class Expired:
    """Decisions that timed out, to be learned with the default reward (``timed_out``)."""

    X: np.ndarray
    arms: np.ndarray
    propensities: np.ndarray
    rewards: np.ndarray
    decision_ids: np.ndarray
    ts: np.ndarray


class RewardJoin:
    """``RewardJoin(ttl_ms=30_000, default_reward=0.0, n_features=d)``; see the module doc."""

    def __init__(self, ttl_ms: int, default_reward: float, n_features: int) -> None:
        if not isinstance(ttl_ms, (int, np.integer)) or ttl_ms <= 0:
            raise ValueError(f"ttl_ms: expected an int > 0, got {ttl_ms!r}")
        if not np.isfinite(default_reward):
            raise ValueError(f"default_reward: expected a finite number, got {default_reward!r}")
        if not isinstance(n_features, (int, np.integer)) or n_features < 1:
            raise ValueError(f"n_features: expected an int >= 1, got {n_features!r}")
        self.ttl_ms = int(ttl_ms)
        self.default_reward = float(default_reward)
        self.n_features = int(n_features)
        self._row: dict[Any, int] = {}
        # tombstones, id -> decision ts (plain ints: dict work stays in C, nothing for the GC)
        self._matched: dict[Any, int] = {}
        self._expired: dict[Any, int] = {}
        self._tomb_min_ts = np.iinfo(np.int64).max
        self._alloc(1024)
        self._n = 0  # rows used (alive or dead)
        self.counts = {"decisions": 0, "duplicate decisions": 0, "matched": 0, "expired": 0}
        self.unmatched_counts = {"unknown decision": 0, "expired": 0, "duplicate outcome": 0}

    def _alloc(self, cap: int) -> None:
        self._ids = np.empty(cap, dtype=object)
        self._ts = np.zeros(cap, dtype=np.int64)
        self._X = np.zeros((cap, self.n_features))
        self._arms = np.zeros(cap, dtype=np.int64)
        self._props = np.zeros(cap)
        self._alive = np.zeros(cap, dtype=bool)

    @property
    def pending(self) -> int:
        """Decisions waiting for their outcome."""
        return len(self._row)

    # ------------------------------------------------------------------ decisions
    def add_decisions(
        self, ids: Any, ts_ms: Any, X: Any, arms: Any, propensities: Any
    ) -> np.ndarray:
        """Store a batch of decisions; return the mask of rows accepted (not duplicates)."""
        ids = np.asarray(ids, dtype=object).ravel()
        n = len(ids)
        ts_ms = np.asarray(ts_ms, dtype=np.int64).ravel()
        X = np.asarray(X, dtype=np.float64).reshape(n, self.n_features)
        arms = np.asarray(arms, dtype=np.int64).ravel()
        propensities = np.asarray(propensities, dtype=np.float64).ravel()
        if not (len(ts_ms) == len(arms) == len(propensities) == n):
            raise ValueError(
                f"add_decisions: expected {n} rows everywhere, got ts {len(ts_ms)}, "
                f"arms {len(arms)}, propensities {len(propensities)}"
            )
        accept = np.ones(n, dtype=bool)
        row, matched, expired = self._row, self._matched, self._expired
        id_list = ids.tolist()
        batch = set(id_list)
        # set operations run in C (a dict view against a set walks the smaller one); the
        # per-row loop runs only when some id is a duplicate
        if (
            len(batch) < n
            or not row.keys().isdisjoint(batch)
            or not matched.keys().isdisjoint(batch)
            or not expired.keys().isdisjoint(batch)
        ):
            seen: set[Any] = set()
            for i, d in enumerate(id_list):
                if d in row or d in matched or d in expired or d in seen:
                    accept[i] = False
                else:
                    seen.add(d)
        k = int(accept.sum())
        self.counts["decisions"] += k
        self.counts["duplicate decisions"] += n - k
        if k == 0:
            return accept
        self._reserve(k)
        s = slice(self._n, self._n + k)
        self._ids[s] = ids[accept]
        self._ts[s] = ts_ms[accept]
        self._X[s] = X[accept]
        self._arms[s] = arms[accept]
        self._props[s] = propensities[accept]
        self._alive[s] = True
        kept = id_list if k == n else ids[accept].tolist()
        self._row.update(zip(kept, range(self._n, self._n + k), strict=True))
        self._n += k
        return accept

    def _reserve(self, k: int) -> None:
        cap = len(self._ts)
        if self._n + k <= cap:
            return
        live = self.pending
        if live + k <= cap // 2:
            self._compact(cap)
            return
        self._compact(max(2 * cap, 2 * (live + k)))

    def _compact(self, cap: int) -> None:
        keep = np.flatnonzero(self._alive[: self._n])
        old = (self._ids, self._ts, self._X, self._arms, self._props)
        self._alloc(cap)
        m = len(keep)
        self._ids[:m] = old[0][keep]
        self._ts[:m] = old[1][keep]
        self._X[:m] = old[2][keep]
        self._arms[:m] = old[3][keep]
        self._props[:m] = old[4][keep]
        self._alive[:m] = True
        self._row = dict(zip(self._ids[:m].tolist(), range(m), strict=True))
        self._n = m

    def pending_arms(self, ids: Any) -> np.ndarray:
        """The arm of each id's decision while it waits for its outcome, else -1."""
        id_list = np.asarray(ids, dtype=object).ravel().tolist()
        rows = np.fromiter(map(self._row.get, id_list, repeat(-1)), np.int64, len(id_list))
        return np.where(rows >= 0, self._arms[np.maximum(rows, 0)], -1)

    # ------------------------------------------------------------------ outcomes
    def match(self, ids: Any, ts_ms: Any, rewards: Any) -> Matched:
        """Join a batch of outcomes to their decisions (see the module doc for the rules)."""
        ids = np.asarray(ids, dtype=object).ravel()
        ts_ms = np.asarray(ts_ms, dtype=np.int64).ravel()
        rewards = np.asarray(rewards, dtype=np.float64).ravel()
        if not len(ts_ms) == len(rewards) == len(ids):
            raise ValueError(
                f"match: expected {len(ids)} rows everywhere, got ts {len(ts_ms)}, "
                f"rewards {len(rewards)}"
            )
        row, matched, expired = self._row, self._matched, self._expired
        id_list = ids.tolist()
        rows = np.fromiter(map(row.get, id_list, repeat(-1)), np.int64, len(id_list))
        found = rows >= 0
        ok = found & (ts_ms - self._ts[np.where(found, rows, 0)] <= self.ttl_ms)
        if ok.any():  # the same id twice in one batch: the first occurrence matches
            okpos = np.flatnonzero(ok)
            keep = np.zeros(len(okpos), bool)
            keep[np.unique(rows[okpos], return_index=True)[1]] = True
            ok[okpos[~keep]] = False
        r_ok = rows[ok]
        bad = np.flatnonzero(~ok).tolist()
        matched_ids = ids[ok].tolist()
        for _ in map(row.pop, matched_ids):  # the loop runs in C
            pass
        matched.update(zip(matched_ids, self._ts[r_ok].tolist(), strict=True))
        reasons: list[str] = []
        for i in bad:  # rare: say why each one did not match
            d = id_list[i]
            if d in row or d in expired:
                reasons.append("expired")
            elif d in matched:
                reasons.append("duplicate outcome")
            else:
                reasons.append("unknown decision")
        self._alive[r_ok] = False
        if len(r_ok):
            self._tomb_min_ts = min(self._tomb_min_ts, int(self._ts[r_ok].min()))
        for why in reasons:
            self.unmatched_counts[why] += 1
        self.counts["matched"] += len(r_ok)
        return Matched(
            X=self._X[r_ok].copy(),
            arms=self._arms[r_ok].copy(),
            propensities=self._props[r_ok].copy(),
            rewards=rewards[ok],
            decision_ids=self._ids[r_ok].copy(),
            decision_ts=self._ts[r_ok].copy(),
            index=np.flatnonzero(ok),
            unmatched_index=np.asarray(bad, dtype=np.int64),
            unmatched_reason=np.asarray(reasons, dtype=object),
        )

    def expire(self, now_ms: int) -> Expired:
        """Time out every pending decision with ``ts < now_ms - ttl_ms``; forget old tombstones."""
        now_ms = int(now_ms)
        used = slice(0, self._n)
        hit = np.flatnonzero(self._alive[used] & (self._ts[used] < now_ms - self.ttl_ms))
        hit = hit[np.argsort(self._ts[hit], kind="stable")]
        ids = self._ids[hit].copy()
        self._alive[hit] = False
        id_list = ids.tolist()
        for _ in map(self._row.pop, id_list):  # the loop runs in C
            pass
        self._expired.update(zip(id_list, self._ts[hit].tolist(), strict=True))
        if len(hit):
            self._tomb_min_ts = min(self._tomb_min_ts, int(self._ts[hit].min()))
        self.counts["expired"] += len(hit)
        horizon = now_ms - 2 * self.ttl_ms
        # purge at most once per TTL of event time: rebuilding the dict every batch is quadratic
        if self._tomb_min_ts < horizon - self.ttl_ms:
            self._matched = {d: t for d, t in self._matched.items() if t >= horizon}
            self._expired = {d: t for d, t in self._expired.items() if t >= horizon}
            self._tomb_min_ts = _min_ts(self._matched, self._expired)
        out = Expired(
            X=self._X[hit],
            arms=self._arms[hit],
            propensities=self._props[hit],
            rewards=np.full(len(hit), self.default_reward),
            decision_ids=ids,
            ts=self._ts[hit],
        )
        if self._n > 1024 and self.pending < self._n // 2:
            self._compact(len(self._ts))
        return out

    # ------------------------------------------------------------------ state
    def snapshot(self) -> dict[str, Any]:
        """Picklable, compact copy of the state (pending rows only, plus tombstones)."""
        keep = np.flatnonzero(self._alive[: self._n])
        return {
            "ttl_ms": self.ttl_ms,
            "default_reward": self.default_reward,
            "n_features": self.n_features,
            "ids": self._ids[keep].copy(),
            "ts": self._ts[keep].copy(),
            "X": self._X[keep].copy(),
            "arms": self._arms[keep].copy(),
            "propensities": self._props[keep].copy(),
            "matched": dict(self._matched),
            "expired": dict(self._expired),
            "counts": dict(self.counts),
            "unmatched_counts": dict(self.unmatched_counts),
        }

    @classmethod
    def restore(cls, snap: dict[str, Any]) -> RewardJoin:
        j = cls(snap["ttl_ms"], snap["default_reward"], snap["n_features"])
        j._matched = dict(snap["matched"])
        j._expired = dict(snap["expired"])
        j._tomb_min_ts = _min_ts(j._matched, j._expired)
        n = len(snap["ids"])
        j._alloc(max(1024, 2 * n))
        j._ids[:n] = snap["ids"]
        j._ts[:n] = snap["ts"]
        j._X[:n] = snap["X"]
        j._arms[:n] = snap["arms"]
        j._props[:n] = snap["propensities"]
        j._alive[:n] = True
        j._row = dict(zip(j._ids[:n].tolist(), range(n), strict=True))
        j._n = n
        j.counts = dict(snap["counts"])
        j.unmatched_counts = dict(snap["unmatched_counts"])
        return j


def _min_ts(*tombstones: dict[Any, int]) -> int:
    return min((min(t.values(), default=_NEVER) for t in tombstones), default=_NEVER)


_NEVER = int(np.iinfo(np.int64).max)
