"""The boards decide shards share statistics through, and which one a run gets."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from eddy.dataflows.commands.run import reference_spec_path
from eddy.dataflows.run_options import RunOptions
from eddy.dataflows.stats_board import DirectoryBoard, needs_exchange_dir, stats_board
from eddy.operators.engine.exchange import FINAL, MemoryBoard, StatsPost
from eddy.schemas.spec_load import load_spec


def _stats(value: float) -> dict[str, np.ndarray]:
    return {
        "A": np.full((2, 3, 3), value),
        "b": np.full((2, 3), value),
        "counts": np.full(2, int(value), dtype=np.int64),
    }


def test_a_directory_board_keeps_posts_across_instances(tmp_path: Path) -> None:
    board = DirectoryBoard(tmp_path)
    for label in (-3, 4, 9):
        board.post("pick", 1, StatsPost(label, _stats(label)))
    board.post("pick", 1, StatsPost(4, _stats(100.0)))  # posted again: kept as first written
    (tmp_path / "pick" / "1" / ".12.77.tmp").write_bytes(b"half a post")  # being written
    other = DirectoryBoard(tmp_path)  # another process, or a restart
    got = [other.first_from("pick", 1, x) for x in (-10, 0, 5, 10)]
    assert [None if p is None else p.label for p in got] == [-3, 4, 9, None]
    post = got[1]
    assert post is not None
    for key, value in _stats(4).items():
        np.testing.assert_array_equal(post.stats[key], value)
        assert post.stats[key].dtype == value.dtype
    assert other.first_from("pick", 0, 0) is None and other.first_from("x", 1, 0) is None
    other.post("pick", 1, StatsPost(FINAL, _stats(1)))
    last = board.first_from("pick", 1, 10)
    assert last is not None and last.label == FINAL


def test_a_directory_board_deletes_all_but_the_latest_posts(tmp_path: Path) -> None:
    board = DirectoryBoard(tmp_path, keep=3)
    for label in range(8):
        board.post("pick", 0, StatsPost(label, _stats(label)))
    assert sorted(os.listdir(tmp_path / "pick" / "0")) == ["5.npy", "6.npy", "7.npy"]
    first = board.first_from("pick", 0, 0)
    assert first is not None and first.label == 5


def _options(tmp_path: Path, shards: int, **kw: object) -> RunOptions:
    spec = load_spec(reference_spec_path())
    spec = replace(spec, decide=tuple(replace(d, shards=shards) for d in spec.decide))
    return RunOptions(spec=spec, **kw)  # type: ignore[arg-type]


def test_which_board_a_run_gets(tmp_path: Path) -> None:
    assert stats_board(_options(tmp_path, 1, processes=2)) is None  # nothing to share
    assert isinstance(stats_board(_options(tmp_path, 3)), MemoryBoard)
    given = stats_board(_options(tmp_path, 3, processes=2, exchange_dir=str(tmp_path / "x")))
    assert isinstance(given, DirectoryBoard) and given.root == tmp_path / "x"
    kept = stats_board(_options(tmp_path, 3, recovery=str(tmp_path / "rec")))
    assert isinstance(kept, DirectoryBoard) and kept.root == tmp_path / "rec" / "exchange"
    cluster = _options(tmp_path, 3, processes=2)
    assert needs_exchange_dir(cluster)
    with pytest.raises(ValueError, match="--exchange-dir"):
        stats_board(cluster)


def test_a_run_that_does_not_resume_starts_from_an_empty_exchange(tmp_path: Path) -> None:
    stale = DirectoryBoard(tmp_path / "x")
    stale.post("pick_partner", 1, StatsPost(7, _stats(9)))  # a previous run's
    stale.post("other_stage", 0, StatsPost(7, _stats(9)))  # not this spec's: left alone
    given = str(tmp_path / "x")
    member = stats_board(_options(tmp_path, 2, processes=2, process_id=1, exchange_dir=given))
    assert member is not None and member.first_from("pick_partner", 1, 0) is not None
    first = stats_board(_options(tmp_path, 2, processes=2, exchange_dir=given))
    assert first is not None and first.first_from("pick_partner", 1, 0) is None
    assert stale.first_from("other_stage", 0, 0) is not None
    stale.post("pick_partner", 1, StatsPost(7, _stats(9)))
    resumed = _options(tmp_path, 2, processes=2, exchange_dir=given, recovery=str(tmp_path / "r"))
    kept = stats_board(resumed)
    assert kept is not None and kept.first_from("pick_partner", 1, 0) is not None
