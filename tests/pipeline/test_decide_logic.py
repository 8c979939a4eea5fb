"""The decide shards' Bytewax logic on one worker: a shard waiting for another's statistics is
resumed as soon as the other acts, keeps what that produced (in its snapshot too) and emits
it at its next call; at the end of the input no shard is left waiting."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from eddy.dataflows.shards import DecideGroup, DecideLogic, Parcel
from eddy.operators.engine import KeyedEngine
from eddy.operators.engine.exchange import MemoryBoard
from eddy.operators.engine.routing import Router
from eddy.operators.sharding import shard_index
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec
from tests.pipeline.cluster import recorded
from tests.pipeline.conftest import NOW_NS


def _decided(outs: list[Results]) -> list[str]:
    return [i for r in outs for i in r.tables.get("decisions", {}).get("decision_id", [])]


def test_a_waiting_shard_is_nudged_keeps_what_it_decided_and_ends_with_nothing_waiting(
    reference: Callable[..., PipelineSpec],
) -> None:
    spec = reference(events=4_000, rate_per_s=600.0)
    # periods shorter than a step: shard 0 waits at almost every step
    decide = tuple(replace(d, shards=2, merge_every_ms=200) for d in spec.decide)
    spec = replace(spec, decide=decide)
    stage = spec.decide[0].name
    router, keyed = Router(spec, 1), KeyedEngine(spec)
    group = DecideGroup(MemoryBoard())
    logics = [DecideLogic(spec, 1, None, True, group) for _ in range(2)]
    emitted: list[list[Results]] = [[], []]
    nudged = restored = 0
    for items in recorded(spec):
        keyed.process_many([router.pieces(p, b)[0] for p, b in items], NOW_NS, spec.batch_size)
        box = keyed.take_messages()
        for shard in (0, 1):  # shard 0 acts first: it waits for shard 1's post of the batch
            out, _ = logics[shard].on_batch([Parcel(stage, shard, box.get((stage, shard), []))])
            emitted[shard] += out
            engine = logics[shard].engine
            assert engine is not None
            held = out[-1].gauges[f"decide_waiting@{stage}#{shard}"]
            assert held == engine.queued and (held > 0) == engine.waiting
        if logics[0].kept:  # shard 1 acting resumed shard 0 at once
            nudged += 1
            assert logics[0].engine is not None and not logics[0].engine.waiting
            assert logics[0].notify_at() is not None
            if restored == 0:  # a snapshot now holds what shard 0 has not emitted yet
                snap = logics[0].snapshot()
                logics[0] = DecideLogic(spec, 1, snap, True, group)
                restored += 1
                assert logics[0].kept
            out, _ = logics[0].on_notify()
            emitted[0] += out
            assert not logics[0].kept
    assert nudged > 3 and restored == 1
    assert emitted[0][-1].gauges[f"decide_waiting@{stage}#0"] == 0
    for shard in (0, 1):
        out, _ = logics[shard].on_eof()
        emitted[shard] += out
        assert logics[shard].engine is not None and not logics[shard].engine.waiting
    requests = [
        i
        for items in recorded(spec)
        for _, b in items
        if b.stream == "requests"
        for i in b.ids.tolist()
    ]
    decided = _decided(emitted[0]) + _decided(emitted[1])
    assert sorted(decided) == sorted(requests)  # each once: none lost with the restore


def test_at_the_end_a_shard_whose_peer_never_posts_decides_without_it_after_patience(
    reference: Callable[..., PipelineSpec],
) -> None:
    """Shard 1 lives in another process that died: shard 0 waits for its posts as long as the
    group's patience, then decides without them rather than hang the end of the run."""
    spec = reference(events=2_000, rate_per_s=600.0)
    decide = tuple(replace(d, shards=2, merge_every_ms=200) for d in spec.decide)
    spec = replace(spec, decide=decide)
    stage = spec.decide[0].name
    router, keyed = Router(spec, 1), KeyedEngine(spec)
    group = DecideGroup(MemoryBoard(), patience_s=0.2)
    alone = DecideLogic(spec, 1, None, True, group)
    emitted: list[Results] = []
    for items in recorded(spec):
        keyed.process_many([router.pieces(p, b)[0] for p, b in items], NOW_NS, spec.batch_size)
        messages = keyed.take_messages().get((stage, 0), [])
        emitted += alone.on_batch([Parcel(stage, 0, messages)])[0]
    keyed.finish(NOW_NS)
    emitted += alone.on_batch([Parcel(stage, 0, keyed.take_messages().get((stage, 0), []))])[0]
    assert alone.engine is not None and alone.engine.waiting
    held = alone.engine.queued
    emitted += alone.on_eof()[0]
    assert not alone.engine.waiting and held > 0
    mine = [
        i
        for items in recorded(spec)
        for _, b in items
        if b.stream == "requests"
        for i, s in zip(b.ids.tolist(), shard_index(b.ids, 2).tolist(), strict=True)
        if s == 0
    ]
    assert sorted(_decided(emitted)) == sorted(mine)
