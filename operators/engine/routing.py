"""Which field sends each stream's rows to a keyed shard, for a pipeline spec.

A keyed stage (features, detect) keeps state per key, so all rows of a key must meet on one
shard: a stream is routed by the key its stages share. A decision stream that reads another
stream's features by key is routed by that key too (the lookup stays on the shard). A stream
without keyed stages is routed by its event id (its repeat check is spread too). When a
stream's stages key it by different fields, no routing keeps every key whole: the pipeline's
keyed part then runs on one shard (:func:`keyed_routes` returns None and :func:`why_unsplit`
says why).
"""

from __future__ import annotations

import numpy as np

from eddy.operators.sharding import Piece, cut, shard_index, whole
from eddy.operators.stages.base import key_column
from eddy.schemas.batch import EventBatch
from eddy.schemas.spec import PipelineSpec

__all__ = ["ID", "Router", "keyed_routes", "why_unsplit"]

#: route by the event id
ID = ""


def _fields(spec: PipelineSpec) -> dict[str, set[str | None]]:
    used: dict[str, set[str | None]] = {s.name: set() for s in spec.streams}
    for f in spec.features:
        used[f.stream].add(f.key)
    for det in spec.detect:
        used[det.stream].add(det.key)
    features = {f.name: f for f in spec.features}
    for d in spec.decide:
        for stage, _ in d.context.features:
            fs = features[stage]
            if fs.stream != d.stream:
                used[d.stream].add(fs.key)
    return used


def why_unsplit(spec: PipelineSpec) -> str | None:
    """Why the spec's keyed stages cannot be split into shards (None: they can)."""
    for stream, fields in _fields(spec).items():
        if None in fields:
            return f"stream {stream!r} has a stage without a key (one state for all its events)"
        if len(fields) > 1:
            names = ", ".join(sorted(str(f) for f in fields))
            return f"the stages of stream {stream!r} are keyed by different fields ({names})"
    return None


def keyed_routes(spec: PipelineSpec) -> dict[str, str] | None:
    """Stream -> the field whose value picks its rows' shard (:data:`ID`: the event id); None
    when the keyed stages cannot be split (:func:`why_unsplit`)."""
    if why_unsplit(spec) is not None:
        return None
    return {s: next(iter(f)) if f else ID for s, f in _fields(spec).items()}  # type: ignore[misc]


class Router:
    """Cuts batches into one piece per keyed shard (``shards`` of them; one when the spec's
    keyed stages cannot be split)."""

    def __init__(self, spec: PipelineSpec, shards: int) -> None:
        routes = keyed_routes(spec) if shards > 1 else None
        self._routes = routes or {}
        self.shards = shards if routes is not None else 1

    def pieces(
        self, partition: int, batch: EventBatch, order: tuple[str, int] | None = None
    ) -> list[Piece]:
        """The batch's piece for every shard (``order``: see :class:`Piece`)."""
        if self.shards == 1:
            return [whole(partition, batch, order)]
        field = self._routes[batch.stream]
        values: np.ndarray = batch.ids if field == ID else key_column(batch, field)
        return cut(partition, batch, shard_index(values, self.shards), self.shards, order)
