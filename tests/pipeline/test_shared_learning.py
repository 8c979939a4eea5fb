"""Decide shards that share what they learned (``[[decide]] merge_every``): they learn about
as well as one shard, and what each decides does not depend on how fast the others run."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import replace

import numpy as np
import pytest

from eddy.operators.engine import DecideEngine, KeyedEngine
from eddy.operators.engine.decide import resume_waiting
from eddy.operators.engine.exchange import MemoryBoard
from eddy.operators.engine.messages import DecideMessage
from eddy.operators.engine.routing import Router
from eddy.schemas.batch import EventBatch
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec
from tests.pipeline.cluster import Cluster, closed_loop, recorded
from tests.pipeline.conftest import NOW_NS

DAY_MS = 86_400_000


def _sharing(spec: PipelineSpec, shards: int, every_ms: int) -> PipelineSpec:
    decide = tuple(replace(d, shards=shards, merge_every_ms=every_ms) for d in spec.decide)
    return replace(spec, decide=decide)


def _reward_share(spec: PipelineSpec) -> float:
    """Expected reward of the decisions over the oracle's, in % (closed loop, one keyed shard)."""
    cluster = Cluster(spec, keyed_shards=1, decide_shards=spec.decide[0].shards, slow=0, lag=0)
    closed_loop(cluster)
    board = cluster.scoreboard
    return 100.0 * board["chosen"] / board["oracle"]


def test_four_shards_that_share_learn_about_as_well_as_one(
    reference: Callable[..., PipelineSpec],
) -> None:
    spec = reference(events=40_000)
    one = _reward_share(_sharing(spec, 1, 500))
    shared = _reward_share(_sharing(spec, 4, 500))
    alone = _reward_share(_sharing(spec, 4, DAY_MS))  # a merge a day: each on its own
    assert shared >= one - 2.0, (one, shared)
    assert shared >= alone + 1.0, (shared, alone)


def _replay(
    spec: PipelineSpec, steps: list[list[tuple[int, EventBatch]]], late: int | None, lag: int
) -> tuple[dict[int, list[tuple[str, str, float]]], bool]:
    """One keyed shard and the decide shards; decide shard ``late`` gets its messages ``lag``
    steps after the others. The decisions per shard in order, and whether any shard waited."""
    router = Router(spec, 1)
    keyed = KeyedEngine(spec)
    stage = spec.decide[0]
    board = MemoryBoard()
    engines = [DecideEngine(spec, stage.name, s, 1, board) for s in range(stage.shards)]
    mail: deque[list[DecideMessage]] = deque()
    decisions: dict[int, list[tuple[str, str, float]]] = {s: [] for s in range(stage.shards)}
    waited = False

    def collect(shard: int, res: Results) -> None:
        dec = res.tables.get("decisions")
        if dec is not None:
            rows = zip(dec["decision_id"], dec["arm"], dec["propensity"], strict=True)
            decisions[shard] += [(str(i), str(a), float(p)) for i, a, p in rows]

    def deliver(box: dict[tuple[str, int], list[DecideMessage]], everything: bool) -> None:
        nonlocal waited
        for (_, shard), messages in sorted(box.items()):
            if shard == late:
                mail.append(messages)
            else:
                collect(shard, engines[shard].accept(messages, NOW_NS))
        while mail and (everything or len(mail) > lag):
            collect(late, engines[late].accept(mail.popleft(), NOW_NS))  # type: ignore[index]
        waited |= any(e.waiting for e in engines)
        for shard, res in enumerate(resume_waiting(engines, NOW_NS)):
            collect(shard, res)

    for items in steps:
        keyed.process_many([router.pieces(p, b)[0] for p, b in items], NOW_NS, spec.batch_size)
        deliver(keyed.take_messages(), everything=False)
    keyed.finish(NOW_NS)
    deliver(keyed.take_messages(), everything=True)
    for shard, engine in enumerate(engines):
        assert not engine.waiting
        collect(shard, engine.finish(NOW_NS))
    return decisions, waited


@pytest.mark.parametrize(("late", "lag"), [(1, 6), (0, 15)])
def test_what_a_shard_decides_does_not_depend_on_how_fast_the_others_run(
    reference: Callable[..., PipelineSpec], late: int, lag: int
) -> None:
    spec = _sharing(reference(events=6_000, rate_per_s=600.0), 3, 250)
    steps = recorded(spec)
    lockstep, _ = _replay(spec, steps, None, 0)
    lagged, waited = _replay(spec, steps, late, lag)
    assert waited  # the others waited for the late shard's posts
    assert all(lockstep[s] for s in lockstep)
    for shard in lockstep:
        assert lagged[shard] == lockstep[shard], shard
    n = sum(len(v) for v in lockstep.values())
    assert n == sum(len(b) for items in steps for _, b in items if b.stream == "requests")
    assert len({d for v in lockstep.values() for d, _, _ in v}) == n
    arms = {a for v in lockstep.values() for _, a, _ in v}
    assert len(arms) > 1 and np.isfinite([p for v in lockstep.values() for _, _, p in v]).all()
