"""Decide shards share what their policies learned, at fixed points of event time.

A decide stage with several shards (``[[decide]] shards``) decides and learns on each shard
alone; every ``merge_every`` of event time the shards exchange their per-arm sums (``A``,
``b``, counts: see ``LinearPolicy.own_stats``), so each decides with what all of them learned,
a little late, instead of with its own share.

The exchange is deterministic in event time. A shard's clock is how far the decision stream
has come in the messages it has acted on (its decisions, and the progress every keyed shard
reports to every decide shard). When the clock enters period ``q``
(``[q * every, (q + 1) * every)``) the shard posts what it has learned so far under the label
``q - 1``. Before it decides a batch whose latest event is in period ``m``, it takes from every
other shard that shard's first post labelled ``m - 2`` or later: never a later one, even when
it has already arrived. When that post is not there yet, the shard waits (the batch and every
message after it stay queued), so what a decision sees depends only on the order of the
shard's own messages, not on how fast the others run. One period of slack lets shards run
side by side without waiting in a live stream.

No shard waits for ever: the one whose queued batch is earliest only needs posts the others
made when their clocks passed a point before it. At the end of the input a shard posts under
:data:`FINAL`.

A :class:`StatsBoard` carries the posts: :class:`MemoryBoard` between shards of one process,
a directory (``dataflows/stats_board.py``) between processes and across restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["FINAL", "MemoryBoard", "StatsBoard", "StatsExchange", "StatsPost"]

FINAL = 2**62
"""The label of a shard's last post (at the end of the input)."""

KEEP_POSTS = 64
"""Posts a board keeps per shard: shards run within a few periods of each other."""


@dataclass(frozen=True)
class StatsPost:
    """What a shard had learned when its clock passed the end of period ``label``."""

    label: int
    stats: Mapping[str, np.ndarray]


class StatsBoard(Protocol):
    """Where the shards of a decide stage leave their posts for each other."""

    def post(self, stage: str, shard: int, post: StatsPost) -> None:
        """Keep ``post`` of ``shard``; a label posted before stays as it was (a shard
        restarted from a snapshot posts the same labels again)."""
        ...

    def first_from(self, stage: str, shard: int, label: int) -> StatsPost | None:
        """The first post of ``shard`` labelled ``label`` or later, or None."""
        ...


class MemoryBoard:
    """A board in this process (thread-safe): the shards of one process, or tests."""

    def __init__(self, keep: int = KEEP_POSTS) -> None:
        self._keep = keep
        self._lock = threading.Lock()
        self._posts: dict[tuple[str, int], list[StatsPost]] = {}

    def post(self, stage: str, shard: int, post: StatsPost) -> None:
        with self._lock:
            posts = self._posts.setdefault((stage, shard), [])
            if posts and posts[-1].label >= post.label:
                return
            posts.append(post)
            del posts[: -self._keep]

    def __getstate__(self) -> dict[str, object]:
        with self._lock:
            return {"keep": self._keep, "posts": {k: list(v) for k, v in self._posts.items()}}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.__init__(state["keep"])  # type: ignore[misc]
        self._posts = state["posts"]  # type: ignore[assignment]

    def first_from(self, stage: str, shard: int, label: int) -> StatsPost | None:
        with self._lock:
            for p in self._posts.get((stage, shard), ()):
                if p.label >= label:
                    return p
        return None


class StatsExchange:
    """The exchange of shard ``shard`` of decide stage ``stage`` (of ``shards``), every
    ``every_ms`` of event time, over ``board``. State (``period``, the labels in use) is
    picklable; the board is not part of it."""

    def __init__(
        self, stage: str, shard: int, shards: int, every_ms: int, board: StatsBoard
    ) -> None:
        if shards < 2 or not 0 <= shard < shards:
            raise ValueError(f"shard {shard} of {shards}: expected 0 <= shard < shards, shards > 1")
        if every_ms <= 0:
            raise ValueError(f"every_ms: expected > 0, got {every_ms}")
        self.stage = stage
        self.shard = shard
        self.every_ms = every_ms
        self.board = board
        self._peers = [p for p in range(shards) if p != shard]
        self.period: int | None = None
        self.used: dict[int, int] = {}  # peer -> label of its post in use

    def passed(self, t_ms: int, own: Callable[[], Mapping[str, np.ndarray]]) -> None:
        """The clock reached ``t_ms``: entering a new period posts ``own()``."""
        q = t_ms // self.every_ms
        if self.period is not None and q <= self.period:
            return
        self.period = q
        self.board.post(self.stage, self.shard, StatsPost(q - 1, own()))

    def finish(self, own: Callable[[], Mapping[str, np.ndarray]]) -> None:
        """The end of the input: the last post."""
        self.period = FINAL + 1
        self.board.post(self.stage, self.shard, StatsPost(FINAL, own()))

    def due(self, t_ms: int, force: bool = False) -> dict[int, StatsPost] | None:
        """The posts to take in before deciding a batch whose latest event is at ``t_ms``:
        ``{}`` when those in use suffice, None when one has not come yet. ``force`` (a peer
        that will never post again): go on without the posts that are not there."""
        need = t_ms // self.every_ms - 2
        out: dict[int, StatsPost] = {}
        for peer in self._peers:
            if self.used.get(peer, -(2**63)) >= need:
                continue
            post = self.board.first_from(self.stage, peer, need)
            if post is None:
                if force:
                    continue
                return None
            out[peer] = post
        return out

    def take(self, posts: Mapping[int, StatsPost]) -> None:
        """``posts`` (from :meth:`due`) are in use now."""
        for peer, post in posts.items():
            self.used[peer] = post.label

    def __getstate__(self) -> dict[str, object]:
        state = dict(self.__dict__)
        state["board"] = None  # a board is shared, never pickled: the owner sets it again
        return state
