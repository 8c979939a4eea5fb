"""The exchange of learned statistics between decide shards: boards and the per-shard rules."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from eddy.operators.engine.exchange import FINAL, MemoryBoard, StatsExchange, StatsPost

EVERY = 1_000


def _stats(value: float) -> dict[str, np.ndarray]:
    return {
        "A": np.full((2, 3, 3), value),
        "b": np.full((2, 3), value),
        "counts": np.full(2, int(value), dtype=np.int64),
    }


def _exchange(board: MemoryBoard, shard: int, shards: int = 3) -> StatsExchange:
    return StatsExchange("pick", shard, shards, EVERY, board)


def test_a_board_gives_the_first_post_at_or_after_a_label() -> None:
    board = MemoryBoard()
    for label in (3, 7, 8):
        board.post("pick", 1, StatsPost(label, _stats(label)))
    found = [board.first_from("pick", 1, x) for x in (0, 3, 4, 8, 9)]
    assert [None if p is None else p.label for p in found] == [3, 3, 7, 8, None]
    assert board.first_from("pick", 2, 0) is None  # another shard
    assert board.first_from("other", 1, 0) is None  # another stage


def test_a_label_posted_again_keeps_what_was_posted_first() -> None:
    board = MemoryBoard()
    board.post("pick", 0, StatsPost(5, _stats(1.0)))
    board.post("pick", 0, StatsPost(5, _stats(2.0)))  # a restarted shard posts it again
    board.post("pick", 0, StatsPost(4, _stats(3.0)))  # an older one changes nothing either
    post = board.first_from("pick", 0, 0)
    assert post is not None and post.label == 5 and post.stats["b"][0, 0] == 1.0


def test_a_board_keeps_the_latest_posts_and_pickles() -> None:
    board = MemoryBoard(keep=4)
    for label in range(10):
        board.post("pick", 0, StatsPost(label, _stats(label)))
    first = board.first_from("pick", 0, 0)
    assert first is not None and first.label == 6
    again = pickle.loads(pickle.dumps(board))
    got = again.first_from("pick", 0, 8)
    assert got is not None and got.label == 8
    again.post("pick", 0, StatsPost(10, _stats(10)))  # the lock came back too


def test_entering_a_period_posts_what_was_learned_before_it() -> None:
    board = MemoryBoard()
    ex = _exchange(board, 0)
    learned = [0.0]
    ex.passed(5_500, lambda: _stats(learned[0]))  # first clock: period 5, label 4
    learned[0] = 1.0
    ex.passed(5_999, lambda: _stats(learned[0]))  # same period: nothing
    ex.passed(9_000, lambda: _stats(learned[0]))  # a jump: one post, label 8
    posts = [board.first_from("pick", 0, x) for x in (0, 5, 9)]
    assert [(p.label, p.stats["b"][0, 0]) for p in posts if p] == [(4, 0.0), (8, 1.0)]
    assert posts[2] is None
    ex.finish(lambda: _stats(2.0))
    last = board.first_from("pick", 0, 9)
    assert last is not None and last.label == FINAL


def test_a_decision_takes_each_peer_first_post_two_periods_back_never_a_later_one() -> None:
    board = MemoryBoard()
    ex = _exchange(board, 0)
    assert ex.due(10_000) is None  # needs label 8 from shards 1 and 2: none posted
    board.post("pick", 1, StatsPost(9, _stats(1.0)))
    assert ex.due(10_000) is None  # shard 2 still missing
    board.post("pick", 2, StatsPost(8, _stats(2.0)))
    board.post("pick", 2, StatsPost(11, _stats(3.0)))  # arrived early: not taken
    due = ex.due(10_000)
    assert due is not None and {p: post.label for p, post in due.items()} == {1: 9, 2: 8}
    ex.take(due)
    assert ex.due(10_999) == {}  # the posts in use cover period 8
    due = ex.due(13_000)  # needs 11: shard 1's 9 is too old and nothing newer is there
    assert due is None
    forced = ex.due(13_000, force=True)
    assert forced is not None and {p: x.label for p, x in forced.items()} == {2: 11}


def test_an_exchange_pickles_without_its_board() -> None:
    board = MemoryBoard()
    ex = _exchange(board, 1)
    ex.passed(4_000, lambda: _stats(0.0))
    ex.take({0: StatsPost(2, _stats(1.0))})
    again = pickle.loads(pickle.dumps(ex))
    assert again.board is None and again.period == 4 and again.used == {0: 2}


@pytest.mark.parametrize(
    ("shard", "shards", "every", "says"),
    [(0, 1, EVERY, "shards > 1"), (3, 3, EVERY, "0 <= shard"), (0, 2, 0, "every_ms")],
)
def test_bad_parameters_are_refused(shard: int, shards: int, every: int, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        StatsExchange("pick", shard, shards, every, MemoryBoard())
