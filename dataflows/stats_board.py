"""Where decide shards leave their statistics for each other (``operators/engine/exchange``).

:func:`stats_board` picks the board of a run: none when no decide stage has several shards; a
directory when the shards may live in several processes or a restart must find the posts
again (``--exchange-dir``, else ``exchange/`` in the recovery directory); else memory.

:class:`DirectoryBoard` keeps one file per post, ``<dir>/<stage>/<shard>/<label>.npy``
(written under a temporary name and renamed, so a reader never sees half a post). A label
written once stays as written. The poster deletes its posts but the latest
:data:`~eddy.operators.engine.exchange.KEEP_POSTS`.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from eddy.dataflows.run_options import RunOptions
from eddy.operators.engine.exchange import KEEP_POSTS, MemoryBoard, StatsBoard, StatsPost

__all__ = ["EXCHANGE_DIR_NEEDED", "DirectoryBoard", "needs_exchange_dir", "stats_board"]

_KEYS = ("A", "b", "counts")


class DirectoryBoard:
    """A :class:`~eddy.operators.engine.exchange.StatsBoard` in directory ``root``."""

    def __init__(self, root: str | Path, keep: int = KEEP_POSTS) -> None:
        self.root = Path(root)
        self._keep = keep

    def clear(self, stages: list[str]) -> None:
        """Delete the posts of ``stages`` (a run that does not resume starts with none)."""
        for stage in stages:
            shutil.rmtree(self.root / stage, ignore_errors=True)

    def _dir(self, stage: str, shard: int) -> Path:
        return self.root / stage / str(shard)

    def _labels(self, folder: Path) -> list[int]:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return sorted(int(n[:-4]) for n in names if n.endswith(".npy") and n[0] != ".")

    def post(self, stage: str, shard: int, post: StatsPost) -> None:
        folder = self._dir(stage, shard)
        path = folder / f"{post.label}.npy"
        if path.exists():
            return
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{post.label}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            for key in _KEYS:
                np.save(f, post.stats[key], allow_pickle=False)
        os.replace(tmp, path)
        labels = self._labels(folder)
        for old in labels[: -self._keep]:
            (folder / f"{old}.npy").unlink(missing_ok=True)

    def first_from(self, stage: str, shard: int, label: int) -> StatsPost | None:
        folder = self._dir(stage, shard)
        for found in self._labels(folder):
            if found >= label:
                try:
                    with open(folder / f"{found}.npy", "rb") as f:
                        stats = {key: np.load(f, allow_pickle=False) for key in _KEYS}
                except FileNotFoundError:  # deleted as too old since the listing: look again
                    return self.first_from(stage, shard, label)
                return StatsPost(found, stats)
        return None


def needs_exchange_dir(opts: RunOptions) -> bool:
    """Decide shards share statistics between processes and no directory is given."""
    shared = any(d.shards > 1 for d in opts.spec.decide)
    return shared and opts.processes > 1 and opts.exchange_dir is None and opts.recovery is None


def stats_board(opts: RunOptions) -> StatsBoard | None:
    """The board of this run (see the module docstring); ``ValueError`` when decide shards
    in several processes have no directory to share. Process 0 of a run that does not resume
    (no ``--recovery``) empties a given ``--exchange-dir`` of the spec's stages first: the
    other processes post only once the cluster is connected, which needs process 0."""
    if not any(d.shards > 1 for d in opts.spec.decide):
        return None
    if opts.exchange_dir is not None:
        board = DirectoryBoard(opts.exchange_dir)
        if opts.recovery is None and opts.process_id == 0:
            board.clear([d.name for d in opts.spec.decide])
        return board
    if opts.recovery is not None:
        return DirectoryBoard(Path(opts.recovery) / "exchange")
    if not needs_exchange_dir(opts):
        return MemoryBoard()
    raise ValueError(EXCHANGE_DIR_NEEDED)


EXCHANGE_DIR_NEEDED = (
    "--exchange-dir: decide shards in several processes share their statistics through a "
    "directory every process reaches; give one (or --recovery DIR)"
)
