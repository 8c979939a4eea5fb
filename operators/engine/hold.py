"""`OutcomeHold`: outcomes wait until the decisions they answer have been made.

An outcome answers a decision made before it, so a batch of an outcome stream is held until
every decision partition has reached its event time, or until the fastest one is a reward TTL
past it (an idle partition delays learning by a TTL at most). Rows are released by event time,
oldest first; a held piece keeps its whole batch's times (:class:`~eddy.operators.sharding.Piece`),
so a shard releases the same rows of a batch, at the same point, as an unsharded run.
"""

from __future__ import annotations

import numpy as np

from eddy.operators.sharding import Piece

__all__ = ["OutcomeHold"]

_NO_TS = 2**63 - 1
_MIN_TS = -(2**63)
_MAX_TS = int(np.iinfo(np.int64).max)


class OutcomeHold:
    """``gated`` false: there is no decision stream to wait for (everything passes)."""

    def __init__(self, ttl_ms: int, gated: bool, senders: int = 1) -> None:
        self._ttl = ttl_ms
        self._gated = gated
        self._senders = senders
        # decision partition -> largest event time handed over, per sender (keyed shard)
        self._decided_until: dict[int, list[int]] = {}
        self._held: list[Piece] = []
        self._held_low = _NO_TS

    def __len__(self) -> int:
        return len(self._held)

    def decided(self, partition: int, top: int, sender: int = 0) -> None:
        """``sender`` has handed over the decisions of ``partition`` up to event time ``top``.
        With several senders, a partition counts as reached only as far as all of them have
        reached it (a sender not heard from yet holds it back)."""
        tops = self._decided_until.get(partition)
        if tops is None:
            tops = self._decided_until[partition] = [_MIN_TS] * self._senders
        tops[sender] = max(tops[sender], top)

    def hold(self, piece: Piece) -> None:
        self._held.append(piece)
        self._held_low = min(self._held_low, piece.low)

    def reached(self) -> int:
        """Event time every decision partition has reached, or the fastest one's minus the
        TTL."""
        if not self._gated:
            return _MAX_TS
        if not self._decided_until:
            return _MIN_TS
        tops = [t for per_sender in self._decided_until.values() for t in per_sender]
        return max(min(tops), max(tops) - self._ttl)

    def release(self, until_ms: int) -> list[Piece]:
        """The held rows at or before ``until_ms``, in arrival order (a batch may be split)."""
        if not self._held or self._held_low > until_ms:
            return []
        keep: list[Piece] = []
        ready: list[Piece] = []
        for piece in self._held:
            if piece.low > until_ms:
                keep.append(piece)
                continue
            due = piece.ts_all <= until_ms
            if due.all():
                ready.append(piece)
                continue
            now, later = piece.split(due)
            ready.append(now)
            keep.append(later)
        self._held = keep
        self._held_low = min((p.low for p in keep), default=_NO_TS)
        return ready
