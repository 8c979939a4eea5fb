"""`DecideEngine`: one ``[[decide]]`` stage on one decide shard, fed by the keyed part's
messages (:mod:`.messages`).

Decisions are spread over the stage's shards by decision id and outcomes by their join field,
so the reward join stays on the shard: a shard decides its events with its own policy and
learns from its own outcomes, and every ``[[decide]] merge_every`` of event time the shards
share what they learned (:mod:`.exchange`). Outcomes wait until every keyed shard has handed
over the decisions up to their event time (:class:`~.hold.OutcomeHold` with one sender per keyed
shard); decisions time out by the event time both the decision and the outcome streams have
reached, minus the allowed lateness.
"""

from __future__ import annotations

import pickle
from collections import deque
from collections.abc import Iterable, Sequence

import numpy as np
import orjson

from eddy.operators.engine.exchange import StatsBoard, StatsExchange
from eddy.operators.engine.hold import OutcomeHold
from eddy.operators.engine.keyed import context_selection
from eddy.operators.engine.messages import (
    ArmValues,
    Decided,
    DecideMessage,
    OutcomesSeen,
    ToDecide,
    ToLearn,
)
from eddy.operators.sharding import Piece, whole
from eddy.operators.stages.decide import DecideOutput, DecideStage
from eddy.operators.stats import shard_gauge
from eddy.schemas.batch import EventBatch, constant_column
from eddy.schemas.results import Results
from eddy.schemas.spec import PipelineSpec

__all__ = ["DecideEngine", "resume_waiting"]

_MIN_TS = -(2**63)
_MAX_TS = int(np.iinfo(np.int64).max)
_FAR_PAST = -(2**62)  # nothing to time out yet (and far from int64's edge)


class DecideEngine:
    """Decide stage ``stage`` of ``spec``, shard ``shard`` (its policy seeded with the spec's
    seed plus the shard), fed by ``keyed_shards`` keyed shards. ``snapshot()`` /
    ``restore(snap)`` are exact."""

    def __init__(
        self,
        spec: PipelineSpec,
        stage: str,
        shard: int = 0,
        keyed_shards: int = 1,
        board: StatsBoard | None = None,
    ) -> None:
        self.spec = spec
        d = next(x for x in spec.decide if x.name == stage)
        self.decide_spec = d
        self.shard = shard
        _, own_names = context_selection(spec, d.context.features)
        _, arm_names = context_selection(spec, d.context.arm_features)
        self._stage = DecideStage(
            d,
            spec.stream(d.stream),
            spec.stream(d.reward.stream),
            own_names,
            arm_names,
            spec.seed + shard,
        )
        self._arm_values = np.full((len(d.arms), len(arm_names)), np.nan)
        self._hold = OutcomeHold(d.reward.ttl_ms, d.stream != d.reward.stream, keyed_shards)
        self._outcome_time = _MIN_TS
        self._expired_to = _MIN_TS  # the last expiry point (not state: a repeat is harmless)
        self._queue: deque[DecideMessage] = deque()  # waiting for another shard's post
        self._exchange: StatsExchange | None = None
        if d.shards > 1:
            if board is None:
                raise ValueError(f"decide stage {stage!r} has {d.shards} shards: give a board")
            self._exchange = StatsExchange(stage, shard, d.shards, d.merge_every_ms, board)

    @property
    def pending(self) -> int:
        return self._stage.pending

    @property
    def queued(self) -> int:
        """Messages waiting (see :attr:`waiting`)."""
        return len(self._queue)

    @property
    def waiting(self) -> bool:
        """Messages wait for another shard's post (see :mod:`.exchange`): call
        :meth:`resume` later."""
        return bool(self._queue)

    def accept(self, messages: Iterable[DecideMessage], now_ns: int) -> Results:
        """Act on the messages in order: decide, hold and learn outcomes, time decisions out.
        With shards that share statistics, the messages from a batch whose shared statistics
        have not come yet on wait (:attr:`waiting`)."""
        self._queue.extend(messages)
        return self.resume(now_ns)

    def resume(self, now_ns: int, force: bool = False) -> Results:
        """Act on the waiting messages as far as the posts of the other shards allow
        (``force``: as far as they go, without the posts that are not there)."""
        parts: list[Results] = []  # one per message, concatenated once at the end
        now_ms = now_ns // 1_000_000
        queue, exchange = self._queue, self._exchange
        while queue:
            m = queue[0]
            if exchange is not None:
                t = _decision_time(m)
                if t is not None:
                    exchange.passed(t, self._stage.own_stats)
                if isinstance(m, ToDecide) and t is not None:
                    posts = exchange.due(t, force)
                    if posts is None:
                        break
                    for peer, post in posts.items():
                        self._stage.set_peer_stats(peer, dict(post.stats))
                    exchange.take(posts)
            queue.popleft()
            out = Results()
            parts.append(out)
            if isinstance(m, ToDecide):
                res = self._stage.decide(m.batch, m.features, self._arm_values, now_ns)
                self._output(res, out, now_ms)
            elif isinstance(m, ArmValues):
                self._arm_values[m.owned] = m.values[m.owned]
            elif isinstance(m, OutcomesSeen):
                self._outcome_time = max(self._outcome_time, m.top)
            else:
                if isinstance(m, ToLearn):
                    self._hold.hold(whole(0, m.batch))
                elif isinstance(m, Decided):
                    self._hold.decided(m.partition, m.top, m.sender)
                self._learn(self._hold.release(self._hold.reached()), out, now_ms)
                self._expire(None, out, now_ms)
        out = Results.combine(parts)
        self._close(out)
        return out

    def finish(self, now_ns: int) -> Results:
        """End of bounded input: act on the waiting messages (without the posts that are not
        there: call :meth:`resume` until nothing waits first), learn every held outcome, time
        out every waiting decision, and post the last statistics."""
        out = self.resume(now_ns, force=True)
        now_ms = now_ns // 1_000_000
        self._learn(self._hold.release(_MAX_TS), out, now_ms)
        self._expire(_MAX_TS, out, now_ms)
        if self._exchange is not None:
            self._exchange.finish(self._stage.own_stats)
        self._close(out)
        return out

    def snapshot(self) -> bytes:
        state = {
            "stage": self._stage.snapshot(),
            "arm_values": self._arm_values,
            "hold": self._hold,
            "outcome_time": self._outcome_time,
            "queue": self._queue,
            "exchange": self._exchange,
        }
        return pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def restore(
        cls,
        spec: PipelineSpec,
        stage: str,
        snap: bytes,
        shard: int = 0,
        keyed_shards: int = 1,
        board: StatsBoard | None = None,
    ) -> DecideEngine:
        eng = cls(spec, stage, shard, keyed_shards, board)
        state = pickle.loads(snap)
        eng._stage.restore(state["stage"])
        eng._arm_values = state["arm_values"]
        eng._hold = state["hold"]
        eng._outcome_time = state["outcome_time"]
        eng._queue = state["queue"]
        exchange = state["exchange"]
        if exchange is not None and board is not None:
            exchange.board = board
            eng._exchange = exchange
        return eng

    # -- internals --------------------------------------------------------------------------
    def _learn(self, pieces: list[Piece], out: Results, now_ms: int) -> None:
        """Learn the released outcomes in one call (rows in the order they came)."""
        batches = [p.batch for p in pieces if len(p.batch)]
        if batches:
            self._output(self._stage.learn(EventBatch.concat(batches), now_ms), out, now_ms)

    def _expire(self, until_ms: int | None, out: Results, now_ms: int) -> None:
        """Time out the decisions whose TTL has passed in event time on both the decision
        stream and the outcome stream (``until_ms`` None: as far as both have reached, minus
        the allowed lateness). Read at different speeds, a fast decision stream must not time
        out decisions whose outcomes the slow outcome stream has not reached yet; an outcome
        stream with no events yet times nothing out."""
        at = until_ms
        if at is None:
            reached = min(self._hold.reached(), self._outcome_time)
            at = max(reached, _FAR_PAST) - self.spec.allowed_lateness_ms
        if at <= self._expired_to:  # nothing new can time out
            return
        self._expired_to = at
        self._output(self._stage.expire(at), out, now_ms)

    def _output(self, res: DecideOutput, out: Results, now_ms: int) -> None:
        out.add("decisions", res.decisions)
        out.add("rewards", res.rewards)
        out.add("unmatched_outcomes", res.unmatched)
        for alerts in res.drift_alerts:
            out.add("drift_alerts", alerts)
        if res.rewards:
            out.count("reward_sum", res.reward_sum)
            out.count("timed_out", int(res.rewards["timed_out"].sum()))
        if res.rejected:  # events the stage could not decide: dead letters, never lost
            n = len(res.rejected)
            name = res.stage
            out.add(
                "dead_letters",
                {
                    "dead_letter_id": np.array(
                        [f"decide:{name}#{i}" for i, _, _ in res.rejected], dtype=object
                    ),
                    "stream": constant_column(res.stream, n),
                    "source": constant_column(f"decide:{name}", n),
                    "position": np.zeros(n, dtype=np.int64),
                    "raw": [orjson.dumps({"id": i, "event_time": t}) for i, t, _ in res.rejected],
                    "reason": np.array([r[2] for r in res.rejected], dtype=object),
                    "received_at": np.full(n, now_ms, dtype=np.int64),
                },
            )

    def _close(self, out: Results) -> None:
        """Counters named after the tables; the policy's updates, the decisions waiting for
        their outcomes and the messages waiting for other shards' posts as this shard's gauges
        (the run's are their sums)."""
        for table in out.tables:
            out.count(table, out.rows(table))
        name = self.decide_spec.name
        out.gauges[shard_gauge("bandit_updates", name, self.shard)] = self._stage.n_learned
        out.gauges[shard_gauge("pending_decisions", name, self.shard)] = self.pending
        if self._exchange is not None:  # near 0; growing: the others' posts do not arrive
            out.gauges[shard_gauge("decide_waiting", name, self.shard)] = len(self._queue)


def resume_waiting(engines: Sequence[DecideEngine], now_ns: int) -> list[Results]:
    """Resume the engines that wait for each other's posts, round after round, until none
    moves; one :class:`Results` per engine. Shards that share statistics never all wait for
    ever (:mod:`.exchange`): once every message is in, none waits at the end."""
    outs = [Results() for _ in engines]
    moved = True
    while moved:
        moved = False
        for engine, out in zip(engines, outs, strict=True):
            if engine.waiting:
                before = engine.queued
                out.merge(engine.resume(now_ns))
                moved |= engine.queued < before
    return outs


def _decision_time(m: DecideMessage) -> int | None:
    """How far the decision stream has come, as far as ``m`` tells (None: it does not).

    The exchange's clock follows the decision stream only: outcomes released in a step come
    before the step's decisions, so a shard posting at its first decision of a period has
    learned what a single shard would have learned by then."""
    if isinstance(m, ToDecide):
        return int(m.batch.ts.max()) if len(m.batch) else None
    if isinstance(m, Decided):
        return m.top
    return None
